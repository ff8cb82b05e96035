"""Run one module of the collection through real ansible (ad-hoc, on localhost) and
return its result dict. Used by the integration tests: argument specs, check mode,
diff and no_log all go through ansible itself, as they would in a playbook."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = os.path.join(ROOT, '.venv', 'bin')
    env['PATH'] = venv_bin + os.pathsep + env.get('PATH', '')
    env['ANSIBLE_COLLECTIONS_PATH'] = os.path.join(ROOT, '.cache', 'collections')
    env['ANSIBLE_CONFIG'] = os.path.join(ROOT, 'ansible.cfg')
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    env['ANSIBLE_LOAD_CALLBACK_PLUGINS'] = '1'
    env['ANSIBLE_NOCOLOR'] = '1'
    env['ANSIBLE_DEPRECATION_WARNINGS'] = '0'
    env.setdefault('ANSIBLE_PYTHON_INTERPRETER', sys.executable)
    return env


def run_module(module: str, args: dict[str, Any] | None = None, *, check: bool = False,
               diff: bool = False, python: str | None = None, timeout: int = 300) -> dict[str, Any]:
    """Run tdeops.pg_tde.<module> (or a FQCN) on localhost; return the host result.

    The result has 'failed', 'changed', 'msg' and the module's return values; the raw
    ansible output is in result['_stdout'] for assertions on what was printed."""
    fqcn = module if '.' in module else 'tdeops.pg_tde.' + module
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible'), 'localhost', '-c', 'local',
           '-i', 'localhost,', '-m', fqcn, '-a', json.dumps(args or {})]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    env = ansible_env()
    if python:
        env['ANSIBLE_PYTHON_INTERPRETER'] = python
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    try:
        doc = json.loads(proc.stdout[proc.stdout.index('{'):])
        result = doc['plays'][0]['tasks'][0]['hosts']['localhost']
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError('no JSON result from ansible (rc=%s): %s\nstdout:\n%s\nstderr:\n%s'
                             % (proc.returncode, exc, proc.stdout, proc.stderr))
    result['_stdout'] = proc.stdout
    result['_stderr'] = proc.stderr
    return result
