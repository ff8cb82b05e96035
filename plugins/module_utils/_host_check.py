# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the install role checks on a database host (module pg_tde_host_check): the server
binaries, the library directory (pg_config --pkglibdir, or lib next to the binaries), pg_tde.so,
the Python modules the collection's modules import, whether a cluster exists and, for a systemd
unit, whether it already runs enabled as wanted. Pure except the read functions, which take their
paths."""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable

# run(argv) -> (rc, stdout, stderr): AnsibleModule.run_command in the module
Runner = Callable[[list[str]], tuple[int, str, str]]

REQUIRED_BINARIES = ('postgres', 'pg_ctl')


def pkglibdir(bindir: str, run: Runner) -> str:
    """pg_config --pkglibdir, or the lib directory next to the binaries when pg_config is missing
    or says nothing."""
    pg_config = os.path.join(bindir, 'pg_config')
    if os.path.exists(pg_config):
        try:
            rc, out, _err = run([pg_config, '--pkglibdir'])
            if rc == 0 and out.strip():
                return out.strip()
        except OSError:
            pass
    return os.path.join(os.path.dirname(bindir.rstrip('/')), 'lib')


def python_module_problem(name: str) -> str | None:
    """None when `name` imports in this interpreter (the one Ansible runs the modules with), else why."""
    try:
        importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install that fails on import
        return '%s: %s' % (type(exc).__name__, exc)
    return None


def missing_items(bindir: str, libdir: str, existing: set[str], module_problems: dict[str, str | None],
                  python: str) -> list[str]:
    """What is missing, in the words the role has always used (pure: `existing` is the set of
    paths that exist)."""
    missing = [os.path.join(bindir, b) for b in REQUIRED_BINARIES if os.path.join(bindir, b) not in existing]
    lib = os.path.join(libdir, 'pg_tde.so')
    if lib not in existing:
        missing.append('%s (the pg_tde library)' % lib)
    missing += ['Python module %s for %s' % (m, python) for m, problem in module_problems.items() if problem]
    return missing


def server_running(datadir: str) -> bool:
    """What pg_ctl status decides: postmaster.pid names a process that exists."""
    try:
        with open(os.path.join(datadir, 'postmaster.pid')) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # it exists, owned by another user
        return True
    return True


def service_state(service: str, run: Runner) -> dict[str, Any]:
    """What `systemctl is-enabled` and `systemctl is-active` print for the unit (what the systemd
    module asks before it decides), or empty strings where systemctl is not there or fails."""
    state: dict[str, Any] = {'name': service, 'enabled': '', 'active': ''}
    for key, verb in (('enabled', 'is-enabled'), ('active', 'is-active')):
        try:
            _rc, out, _err = run(['systemctl', verb, service])
        except OSError:
            return state
        lines = out.strip().splitlines()
        state[key] = lines[0].strip() if len(lines) == 1 else ''
    return state


def service_settled(state: dict[str, Any], want_enabled: bool) -> bool:
    """True only when the unit runs and is enabled (or disabled) as wanted, by systemctl's own
    words: a task that enables and starts it would change nothing. Anything else (indirect,
    static, failed, unknown) is left to the systemd module."""
    return state.get('active') == 'active' and state.get('enabled') == ('enabled' if want_enabled else 'disabled')


def check_host(bindir: str, datadir: str, python_modules: list[str], python: str, run: Runner,
               service: str = '', service_enabled: bool = True) -> dict[str, Any]:
    libdir = pkglibdir(bindir, run)
    paths = [os.path.join(bindir, b) for b in REQUIRED_BINARIES] + [os.path.join(libdir, 'pg_tde.so')]
    existing = {p for p in paths if os.path.exists(p)}
    problems = {m: python_module_problem(m) for m in python_modules}
    return {'pkglibdir': libdir,
            'missing': missing_items(bindir, libdir, existing, problems, python),
            'python_module_errors': {m: p for m, p in problems.items() if p},
            'cluster_exists': os.path.exists(os.path.join(datadir, 'PG_VERSION')),
            'server_running': server_running(datadir),
            **service_result(service, service_enabled, run)}


def service_result(service: str, want_enabled: bool, run: Runner) -> dict[str, Any]:
    if not service:
        return {'service': {}, 'service_settled': False}
    state = service_state(service, run)
    return {'service': state, 'service_settled': service_settled(state, want_enabled)}
