# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The decisions of the collection's one safe restart path (module pg_restart), free of I/O so
that they are unit-tested: which library files a preload list needs, how a pending restart is
reported (ONE format for every role), which server-log lines say why a start failed, how the
server is (re)started without systemd, and where the KMS of the server key is."""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable

from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import split_guc_list

# Lines of a server log or journal that explain a failed start (PostgreSQL's severities).
REASON_RE = re.compile(r'\b(FATAL|PANIC|ERROR|HINT|DETAIL|WARNING):')
REASON_LIMIT = 8

ON_VALUES = frozenset({'on', 'true', 'yes', '1'})


def is_on(value: str | None) -> bool:
    """A boolean setting as postgres -C prints it."""
    return (value or '').strip().strip("'\"").lower() in ON_VALUES


def library_path(entry: str, pkglibdir: str) -> str:
    """The file PostgreSQL loads for one shared_preload_libraries entry: a bare name is
    <pkglibdir>/<name>.so, $libdir is expanded, a path without a suffix gets .so."""
    path = entry.replace('$libdir', pkglibdir)
    if '/' not in path:
        path = os.path.join(pkglibdir, path)
    if not os.path.splitext(path)[1]:
        path += '.so'
    return path


def missing_libraries(preload: str | None, pkglibdir: str,
                      exists: Callable[[str], bool] = os.path.exists) -> list[str]:
    """Entries of a shared_preload_libraries value whose file is not installed."""
    return [entry for entry in split_guc_list(preload) if not exists(library_path(entry, pkglibdir))]


def pending_message(service: str, reasons: Iterable[str], not_allowed_by: Iterable[str]) -> str:
    """The one way every role reports a restart that is needed but not allowed."""
    switches = [s for s in not_allowed_by if s]
    what = '; '.join(reasons) or 'changes of this run'
    by = ' and '.join('%s is false' % s for s in switches) or 'allowed is false'
    again = ' or '.join('%s=true' % s for s in switches) or 'restarts allowed'
    return ('PostgreSQL (%s) needs a restart for: %s. Restarts are not allowed here (%s): the changes '
            'wait for a restart. Run again with %s in a maintenance window (the collection restarts '
            'through its safe path: checks first, roll back on a failed start).' % (service, what, by, again))


def reason_lines(lines: Iterable[str], limit: int = REASON_LIMIT) -> list[str]:
    """PostgreSQL's reason from log/journal lines: the FATAL/PANIC/ERROR/... lines without the
    log_line_prefix, each once, the last `limit` of them."""
    found: list[str] = []
    for line in lines:
        m = REASON_RE.search(line)
        if not m:
            continue
        text = line[m.start():].strip()
        if text in found:
            found.remove(text)
        found.append(text)
    return found[-limit:]


def ctl_command(ctl: list[str], action: str) -> list[str]:
    """pg_ctlcluster VERSION CLUSTER ACTION (Debian) or pg_ctl ... ACTION: the action goes
    after pg_ctlcluster's version and cluster, and last for pg_ctl."""
    if not ctl:
        raise ValueError('no command to control PostgreSQL without systemd (ctl is empty)')
    return list(ctl) + [action]


def ctl_runs_as_owner(ctl: list[str]) -> bool:
    """pg_ctl refuses to run as root and must run as the cluster owner; pg_ctlcluster runs as
    root and switches to the owner itself."""
    return bool(ctl) and os.path.basename(ctl[0]) == 'pg_ctl'


def ctl_log_file(ctl: list[str]) -> str | None:
    """The startup log of a pg_ctl command (-l FILE / --log=FILE), where a failed start says why."""
    for i, arg in enumerate(ctl):
        if arg in ('-l', '--log') and i + 1 < len(ctl):
            return ctl[i + 1]
        if arg.startswith('--log='):
            return arg[len('--log='):]
    return None


def kms_endpoint(provider_type: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Where the KMS of a provider row (pg_tde_list_all_global_key_providers) is, with the
    files PostgreSQL uses to reach it; None for the file provider (no KMS)."""
    ptype = (provider_type or '').replace('-', '_')
    if ptype == 'kmip':
        return {'type': 'kmip', 'host': options.get('host'), 'port': int(options.get('port') or 5696),
                'ca': options.get('caPath') or None, 'cert': options.get('certPath') or None,
                'key': options.get('keyPath') or None}
    if ptype == 'vault_v2':
        return {'type': 'vault_v2', 'url': options.get('url'), 'mount': options.get('mountPath'),
                'token_path': options.get('tokenPath'), 'ca': options.get('caPath') or None,
                'namespace': options.get('namespace') or None}
    return None


def undo_problems(undo: Iterable[dict[str, Any]], exists: Callable[[str], bool] = os.path.exists) -> list[str]:
    """Undo entries that cannot be applied (a backup that is gone): said before any restart,
    because a rollback that cannot happen must not be relied on."""
    problems = []
    for entry in undo:
        backup = entry.get('backup') or ''
        if not entry.get('path'):
            problems.append('an undo entry without a path: %r' % (entry,))
        elif backup and not exists(backup):
            problems.append('the backup %s of %s is gone: the change could not be undone' % (backup, entry['path']))
    return problems


def _sentence(text: str) -> str:
    text = ' '.join(text.split()).rstrip('. ')
    return text[:1].upper() + text[1:]


def refusal_message(service: str, reasons: Iterable[str], problems: list[str], undone: list[str]) -> str:
    back = ('The previous files are back in place (%s) and reloaded; ' % ', '.join(undone)) if undone else ''
    what = '; '.join(reasons) or 'changes of this run'
    why = ' | '.join(_sentence(p) for p in problems)
    return ('Refusing to restart PostgreSQL (%s) for: %s. %s. %sPostgreSQL was not restarted and keeps '
            'running as it was.' % (service, what, why, back))


def failed_start_message(service: str, reasons: Iterable[str], said: list[str], where: str,
                         up_again: bool, again_said: list[str]) -> str:
    why = ' | '.join(said) or 'nothing in %s' % where
    if up_again:
        return ('PostgreSQL (%s) did not start with the new configuration (%s). The previous configuration '
                'files are back and the server runs again with them. PostgreSQL said: %s'
                % (service, '; '.join(reasons) or 'changes of this run', why))
    return ('PostgreSQL (%s) did not start with the new configuration (%s), and did NOT start again with the '
            'previous files either: it is DOWN. PostgreSQL said: %s. On the second start: %s'
            % (service, '; '.join(reasons) or 'changes of this run', why, ' | '.join(again_said) or 'nothing'))
