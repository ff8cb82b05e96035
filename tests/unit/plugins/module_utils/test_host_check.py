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


def fake_systemctl(answers):
    """run() that answers `systemctl VERB UNIT` from answers[VERB] = (rc, stdout)."""
    calls = []

    def _run(argv):
        calls.append(argv)
        rc, out = answers[argv[1]]
        return rc, out, ''
    return _run, calls


def test_service_settled_only_when_active_and_enabled_as_wanted():
    settled = {'enabled': 'enabled', 'active': 'active'}
    assert h.service_settled(settled, True)
    assert not h.service_settled(settled, False)       # wanted disabled: the systemd task decides
    assert h.service_settled({'enabled': 'disabled', 'active': 'active'}, False)
    for enabled, active in (('indirect', 'active'), ('static', 'active'), ('enabled-runtime', 'active'),
                            ('enabled', 'failed'), ('enabled', 'inactive'), ('enabled', 'activating'), ('', '')):
        assert not h.service_settled({'enabled': enabled, 'active': active}, True), (enabled, active)


def test_service_state_reads_systemctl_words():
    run_, calls = fake_systemctl({'is-enabled': (0, 'enabled\n'), 'is-active': (0, 'active\n')})
    assert h.service_state('postgresql@17-main', run_) == {'name': 'postgresql@17-main', 'enabled': 'enabled',
                                                           'active': 'active'}
    assert calls == [['systemctl', 'is-enabled', 'postgresql@17-main'], ['systemctl', 'is-active', 'postgresql@17-main']]
    # a unit systemd does not know: is-enabled prints an error on stderr, nothing usable on stdout
    run_, _calls = fake_systemctl({'is-enabled': (1, ''), 'is-active': (3, 'inactive\n')})
    assert h.service_state('nope', run_)['enabled'] == ''
    # several lines (an alias listing) are not taken as a state
    run_, _calls = fake_systemctl({'is-enabled': (0, 'enabled\nalias\n'), 'is-active': (0, 'active\n')})
    assert h.service_state('x', run_)['enabled'] == ''


def test_service_state_without_systemctl():
    def _run(argv):
        raise OSError('No such file or directory: systemctl')
    assert h.service_state('x', _run) == {'name': 'x', 'enabled': '', 'active': ''}


def test_check_host_asks_systemd_only_for_a_service(tmp_path):
    run_, calls = fake_systemctl({'is-enabled': (0, 'enabled\n'), 'is-active': (0, 'active\n')})

    def runner(argv):
        return run_(argv) if argv[0] == 'systemctl' else run(argv)
    res = h.check_host(str(tmp_path), str(tmp_path), [], 'py', runner)
    assert res['service'] == {} and res['service_settled'] is False and calls == []
    res = h.check_host(str(tmp_path), str(tmp_path), [], 'py', runner, 'pg.service', True)
    assert res['service_settled'] is True and res['service']['name'] == 'pg.service'
    res = h.check_host(str(tmp_path), str(tmp_path), [], 'py', runner, 'pg.service', False)
    assert res['service_settled'] is False
