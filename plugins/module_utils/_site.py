# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which database hosts a run of playbooks/site.yml may restart. Hosts where every setting that
needs a restart is already as wanted run all at once; the others one at a time (site_serial),
because only they can be restarted by the configure, pgbackrest or hardening role."""
from __future__ import annotations

from typing import Any

ON = ('on', 'true', 'yes', '1')


def _on(value: Any) -> bool:
    return str(value).strip().lower() in ON


def restart_reasons(probe: dict[str, Any] | None, want: dict[str, Any]) -> list[str]:
    """Why this host may be restarted by the run ([] = it will not be).

    probe: one row of the site.yml probe query (or None when it failed): preload, wal_encrypt,
    archive_mode, extension, server_key, pending (settings waiting for a restart),
    postmaster_start, dropin_mtime. want: configure_wal_encrypt, site_configure, site_pgbackrest,
    site_hardening, hardening_restart_postgresql, pgbackrest_restart_postgresql."""
    if not probe:
        return ['the server could not be asked (new host, server down or unreachable)']
    reasons: list[str] = []
    if want.get('site_configure', True):
        preload = [p.strip().strip('"') for p in str(probe.get('preload') or '').split(',') if p.strip()]
        if 'pg_tde' not in preload:
            reasons.append('pg_tde is not preloaded yet')
        if not probe.get('extension'):
            reasons.append('the pg_tde extension is not created yet')
        # the configure role writes wal_encrypt as wanted once the server key is set: a restart
        if _on(probe.get('wal_encrypt')) != bool(want.get('configure_wal_encrypt')):
            reasons.append('pg_tde.wal_encrypt is %s, wanted %s' % (
                probe.get('wal_encrypt') or 'off', 'on' if want.get('configure_wal_encrypt') else 'off'))
    pending = [p for p in (probe.get('pending') or []) if p]
    if pending:
        reasons.append('settings wait for a restart: %s' % ', '.join(pending))
    if want.get('site_pgbackrest') and want.get('pgbackrest_restart_postgresql', True) \
            and str(probe.get('archive_mode') or '') != 'on':
        reasons.append('archive_mode is %s (pgBackRest needs on)' % (probe.get('archive_mode') or 'off'))
    if want.get('site_hardening') and want.get('hardening_restart_postgresql'):
        started, dropin = probe.get('postmaster_start'), probe.get('dropin_mtime')
        if not dropin:
            reasons.append('the hardening drop-in of the PostgreSQL unit is not there yet')
        elif started is not None and str(started) < str(dropin):
            reasons.append('the postmaster started before the hardening drop-in was written')
    return reasons
