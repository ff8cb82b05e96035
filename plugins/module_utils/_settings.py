# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pg_tde include file of the configure role (module pg_tde_conf), free of I/O: the merged
shared_preload_libraries (the server's own list parsed ONCE with split_guc_list, pg_tde added
first or last, extras appended), the values as postgresql.conf spells them, and the file text."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import split_guc_list

# Settings with their own options: refused in `settings`.
OWN_SETTINGS = ('shared_preload_libraries', 'pg_tde.wal_encrypt', 'pg_tde.enforce_encryption')


def merged_preload(base: str | None, position: str = 'first', extra: Iterable[str] = ()) -> list[str]:
    """The server's own list with pg_tde added (a list that has it keeps its order), then the
    extra libraries that are missing."""
    libs = split_guc_list(base)
    if 'pg_tde' not in libs:
        libs = ['pg_tde'] + libs if position == 'first' else libs + ['pg_tde']
    for lib in extra:
        if lib not in libs:
            libs.append(lib)
    return libs


def pg_value(value: Any) -> str:
    """A value as postgresql.conf spells it: on/off, bare numbers, everything else quoted."""
    if value is True:
        return 'on'
    if value is False:
        return 'off'
    if isinstance(value, (int, float)):
        return str(value)
    return "'%s'" % str(value).replace("'", "''")


def refused_settings(settings: Mapping[str, Any]) -> list[str]:
    return [name for name in settings if name in OWN_SETTINGS]


def render(preload: list[str], settings: Mapping[str, Any], wal_encrypt: bool, enforce_encryption: bool,
           default_table_access_method: str, position: str) -> str:
    """The include file (the text the role's template wrote before, so an upgrade changes nothing
    that the server reads)."""
    lines = ['# Ansible managed',
             "# Written by the tdeops.pg_tde.configure role; edit the role's variables, not this file.",
             "# shared_preload_libraries is the server's own list with pg_tde added (%s)." % position,
             "shared_preload_libraries = '%s'" % ','.join(preload)]
    lines += ['%s = %s' % (name, pg_value(settings[name])) for name in sorted(settings)]
    lines += ['# Switched on only once the server key is set and verified (wal_encrypt needs a restart,',
              '# enforce_encryption a reload).',
              'pg_tde.wal_encrypt = %s' % pg_value(bool(wal_encrypt)),
              'pg_tde.enforce_encryption = %s' % pg_value(bool(enforce_encryption))]
    if default_table_access_method:
        lines += ['# New tables without USING are encrypted (configure_default_table_access_method).',
                  'default_table_access_method = %s' % pg_value(default_table_access_method)]
    return '\n'.join(lines) + '\n'


def preload_restart_reason(running: str | None, preload: list[str]) -> str | None:
    """Why the new preload list needs a restart, or None when the running server has it."""
    current = split_guc_list(running)
    if current == preload:
        return None
    return 'shared_preload_libraries (running: %s)' % ','.join(current)
