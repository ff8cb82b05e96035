"""Unit tests of the install role's host check (module_utils/_host_check.py, module pg_tde_host_check)."""
from __future__ import annotations

import os

import subprocess

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _host_check as h


def run(argv):
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return out.returncode, out.stdout, out.stderr


def test_missing_items_names_binaries_library_and_python_modules():
    existing = {'/b/postgres'}
    missing = h.missing_items('/b', '/l', existing, {'psycopg': None, 'kmip': 'ImportError: no kmip'}, '/usr/bin/python3')
    assert missing == ['/b/pg_ctl', '/l/pg_tde.so (the pg_tde library)', 'Python module kmip for /usr/bin/python3']
    assert h.missing_items('/b', '/l', {'/b/postgres', '/b/pg_ctl', '/l/pg_tde.so'}, {'psycopg': None}, 'py') == []


def test_pkglibdir_falls_back_to_lib_next_to_the_binaries(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    assert h.pkglibdir(str(bindir), run) == str(tmp_path / 'lib')
    # a pg_config that answers
    cfg = bindir / 'pg_config'
    cfg.write_text('#!/bin/sh\necho /opt/pg/lib\n')
    cfg.chmod(0o755)
    assert h.pkglibdir(str(bindir) + '/', run) == '/opt/pg/lib'
    # one that says nothing
    cfg.write_text('#!/bin/sh\nexit 1\n')
    assert h.pkglibdir(str(bindir), run) == str(tmp_path / 'lib')


def test_check_host_on_a_fake_layout(tmp_path):
    bindir, libdir, datadir = tmp_path / 'bin', tmp_path / 'lib', tmp_path / 'data'
    for d in (bindir, libdir, datadir):
        d.mkdir()
    for b in ('postgres', 'pg_ctl'):
        (bindir / b).write_text('')
    out = h.check_host(str(bindir), str(datadir), ['json', 'no_such_module_tdeops'], 'py', run)
    assert out['pkglibdir'] == str(libdir) and out['cluster_exists'] is False
    assert out['missing'] == [os.path.join(str(libdir), 'pg_tde.so') + ' (the pg_tde library)',
                              'Python module no_such_module_tdeops for py']
    assert 'ModuleNotFoundError' in out['python_module_errors']['no_such_module_tdeops']
    (libdir / 'pg_tde.so').write_text('')
    (datadir / 'PG_VERSION').write_text('17\n')
    out = h.check_host(str(bindir), str(datadir), ['json'], 'py', run)
    assert out['missing'] == [] and out['cluster_exists'] is True


def test_server_running_reads_postmaster_pid(tmp_path):
    assert h.server_running(str(tmp_path)) is False
    pidfile = tmp_path / 'postmaster.pid'
    pidfile.write_text('%d\n/var/lib/postgresql/17/main\n' % os.getpid())
    assert h.server_running(str(tmp_path)) is True
    pidfile.write_text('999999999\n')
    assert h.server_running(str(tmp_path)) is False
    pidfile.write_text('garbage\n')
    assert h.server_running(str(tmp_path)) is False
