"""tdeops.pg_tde.pg_restart, the collection's one safe restart, on throw-away clusters with the
REAL pg_tde, controlled by pg_ctl (the path of hosts where PostgreSQL is not a systemd unit):
a restart refused because the KMS of the server key is down leaves the server running with the
previous files; a start that fails is rolled back and the server runs again; allowed=false
reports the pending restart; the restart happens through pg_ctl."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.integration.test_pg_tde_report import kmip_setup, place_material
from tests.support.ansible_runner import run_module
from tests.support.pg import CONF_SET, chown_postgres


def layout(cluster, **extra) -> dict:
    """The module's options for a test cluster: pg_ctl, its startup log, the socket."""
    args = dict(service='test-cluster', systemd=False, bindir=cluster.bindir, confdir=cluster.datadir,
                datadir=cluster.datadir, socket_dir=cluster.socket_dir, port=cluster.port,
                ctl=[os.path.join(cluster.bindir, 'pg_ctl'), '-w', '-t', '60', '-m', 'fast', '-D', cluster.datadir,
                     '-l', cluster.log_path],
                start_timeout=30, kms_timeout=3)
    args.update(extra)
    return args


def postmaster_start(cluster) -> str:
    return cluster.psql('SELECT pg_postmaster_start_time()')


def change_with_undo(cluster, **settings) -> list[dict]:
    """Change the cluster's include file as a role does: a backup first, the undo entry returned."""
    path = os.path.join(cluster.datadir, CONF_SET)
    backup = path + '.bak-pg_restart'
    shutil.copy2(path, backup)
    cluster.set_conf(**settings)
    return [{'path': path, 'backup': backup}]


def conf_text(cluster) -> str:
    with open(os.path.join(cluster.datadir, CONF_SET)) as fh:
        return fh.read()


def test_pg_ctl_path_restarts_for_archive_mode(pg_cluster_factory):
    cluster = pg_cluster_factory()
    before = postmaster_start(cluster)
    undo = change_with_undo(cluster, archive_mode='on', archive_command='/bin/true')
    check = run_module('pg_restart', layout(cluster, reasons=['pgbackrest: archive_mode=on'], undo=undo), check=True)
    assert check['changed'] and check['outcome'] == 'restarted' and 'would restart' in check['msg'], check
    assert postmaster_start(cluster) == before
    res = run_module('pg_restart', layout(cluster, reasons=['pgbackrest: archive_mode=on'], undo=undo))
    assert not res.get('failed'), res['msg']
    assert res['changed'] and res['outcome'] == 'restarted'
    assert [c['name'] for c in res['checks']] == ['parse', 'libraries']
    assert cluster.psql('SHOW archive_mode') == 'on'
    assert postmaster_start(cluster) != before


def test_not_allowed_reports_the_pending_restart(pg_cluster_factory):
    cluster = pg_cluster_factory()
    before = postmaster_start(cluster)
    undo = change_with_undo(cluster, archive_mode='on')
    res = run_module('pg_restart', layout(cluster, reasons=['pgbackrest: archive_mode=on'], undo=undo, allowed=False,
                                          not_allowed_by=['pgbackrest_restart_postgresql']))
    assert not res.get('failed') and not res['changed'] and res['restart_pending'], res
    assert res['msg'].startswith('PostgreSQL (test-cluster) needs a restart for: pgbackrest: archive_mode=on.')
    assert 'pgbackrest_restart_postgresql is false' in res['msg']
    assert postmaster_start(cluster) == before
    assert "archive_mode = 'on'" in conf_text(cluster)     # nothing undone: the change waits


def test_failed_start_is_rolled_back(pg_cluster_factory):
    cluster = pg_cluster_factory()
    good = conf_text(cluster)
    undo = change_with_undo(cluster, listen_addresses='192.0.2.1')
    res = run_module('pg_restart', layout(cluster, reasons=['test: listen_addresses'], undo=undo))
    assert res['failed'] and res['outcome'] == 'rolled_back', res
    assert 'did not start with the new configuration' in res['msg']
    assert 'runs again with them' in res['msg']
    assert 'could not' in res['msg'], res['msg']        # PostgreSQL's own reason, quoted
    assert conf_text(cluster) == good
    assert cluster.psql('SELECT 1') == '1'
    assert cluster.psql('SHOW listen_addresses') == '127.0.0.1'


def test_missing_library_is_refused_before_the_restart(pg_cluster_factory):
    cluster = pg_cluster_factory()
    before = postmaster_start(cluster)
    good = conf_text(cluster)
    undo = change_with_undo(cluster, shared_preload_libraries='pg_tde,no_such_lib')
    res = run_module('pg_restart', layout(cluster, reasons=['configure: shared_preload_libraries'], undo=undo))
    assert res['failed'] and res['outcome'] == 'refused', res
    assert 'Refusing to restart' in res['msg'] and 'no_such_lib' in res['msg']
    assert 'keeps running as it was' in res['msg']
    assert conf_text(cluster) == good
    assert postmaster_start(cluster) == before


@pytest.fixture
def wal_encrypted(pg_cluster_factory, make_kmip_server):
    """A cluster with WAL encryption on, its server key on a KMIP server of its own."""
    server = make_kmip_server()
    material = place_material(server, server.client_cert('postgres-restart'))
    cluster = pg_cluster_factory()
    kmip_setup(cluster, server, material, 'wal')
    cluster.set_conf(**{'pg_tde.wal_encrypt': 'on'})
    cluster.restart()
    assert cluster.psql('SHOW pg_tde.wal_encrypt') == 'on'
    yield cluster, server
    shutil.rmtree(material['base'], ignore_errors=True)


def test_kms_down_with_wal_encryption_refuses_and_keeps_the_server_running(wal_encrypted):
    cluster, server = wal_encrypted
    ok = run_module('pg_restart', layout(cluster, reasons=['hardening: unit limits'], undo=[]), check=True)
    assert not ok.get('failed'), ok['msg']
    assert {c['name']: c['ok'] for c in ok['checks']} == {'parse': True, 'libraries': True, 'server_key': True,
                                                          'kms': True}
    server.stop()
    before = postmaster_start(cluster)
    good = conf_text(cluster)
    undo = change_with_undo(cluster, archive_mode='on', archive_command='/bin/true')
    res = run_module('pg_restart', layout(cluster, reasons=['pgbackrest: archive_mode=on'], undo=undo))
    assert res['failed'] and res['outcome'] == 'refused', res
    assert 'Refusing to restart PostgreSQL (test-cluster) for: pgbackrest: archive_mode=on' in res['msg']
    # pg_tde_verify_server_key() asks the KMS (nothing cached), and the KMS check names the KMIP server
    assert 'cannot be fetched from provider' in res['msg'], res['msg']
    assert 'KMIP server %s:%s' % (server.host, server.port) in res['msg'], res['msg']
    assert 'keeps running as it was' in res['msg']
    assert postmaster_start(cluster) == before
    assert conf_text(cluster) == good
    assert cluster.psql('SHOW archive_mode') == 'off'
    assert cluster.psql("SELECT count(*) FROM pg_settings WHERE pending_restart") == '0'


def test_reload_mode_rolls_back_a_file_the_server_refuses(pg_cluster_factory):
    cluster = pg_cluster_factory()
    good = conf_text(cluster)
    undo = change_with_undo(cluster, work_mem='lots')
    res = run_module('pg_restart', layout(cluster, mode='reload', reasons=['configure: work_mem'], undo=undo))
    assert res['failed'] and res['outcome'] == 'refused', res
    assert 'work_mem' in res['msg']
    assert conf_text(cluster) == good
    chown_postgres(os.path.join(cluster.datadir, CONF_SET))
    undo = change_with_undo(cluster, work_mem='8MB')
    res = run_module('pg_restart', layout(cluster, mode='reload', reasons=['configure: work_mem'], undo=undo))
    assert not res.get('failed') and res['outcome'] == 'reloaded', res
    assert cluster.psql('SHOW work_mem') == '8MB'


def run_playbook(tmp_path, cluster, tasks: list, extra_vars: dict | None = None):
    """A play on localhost (as root, no become) with pg_layout pointing at a test cluster that is
    NOT a systemd unit: pg_ctl controls it."""
    import json
    import subprocess

    from tests.support.ansible_runner import ROOT, ansible_env
    play = [{'hosts': 'localhost', 'gather_facts': False, 'vars': dict({
        'pg_layout_control': 'ctl', 'pg_layout_service': 'test-cluster',
        'pg_layout_ctl': layout(cluster)['ctl'], 'pg_layout_bindir': cluster.bindir,
        'pg_layout_datadir': cluster.datadir, 'pg_layout_confdir': cluster.datadir,
        'pg_layout_socket_dir': cluster.socket_dir, 'pg_layout_port': cluster.port,
        'pg_layout_server_log': cluster.log_path, 'pg_layout_start_timeout': 30}, **(extra_vars or {})),
        'tasks': [{'ansible.builtin.include_role': {'name': 'tdeops.pg_tde.pg_layout'}}] + tasks}]
    (tmp_path / 'play.yml').write_text(json.dumps(play))
    (tmp_path / 'hosts').write_text('localhost ansible_connection=local ansible_become=false '
                                    'ansible_python_interpreter=%s\n' % os.path.join(ROOT, '.venv', 'bin', 'python'))
    env = ansible_env()
    env['ANSIBLE_STDOUT_CALLBACK'] = 'default'
    return subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(tmp_path / 'hosts'),
                           str(tmp_path / 'play.yml')], capture_output=True, text=True, env=env, timeout=600)


PGBACKREST_POSTGRESQL = {'ansible.builtin.include_role': {'name': 'tdeops.pg_tde.pgbackrest', 'tasks_from': 'postgresql'},
                         'vars': {'_pgbackrest_archive_command': '/bin/true', '_pgbackrest_restore_command': '/bin/false',
                                  '_pgbackrest_server': {'archive_mode': 'off'}, '_pgbackrest_applied': [],
                                  '_pgbackrest_not_applied': [], '_pgbackrest_wal_encrypt': False}}


def test_pgbackrest_archive_mode_restarts_where_postgresql_is_not_a_systemd_unit(pg_cluster_factory, tmp_path):
    """Issue 13: the pgbackrest handler needed pg_layout_systemd, so archive_mode was set and never
    took effect on such a host (`pgbackrest check`: [087] archive_mode must be enabled)."""
    cluster = pg_cluster_factory()
    proc = run_playbook(tmp_path, cluster, [PGBACKREST_POSTGRESQL, {'ansible.builtin.meta': 'flush_handlers'}])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert cluster.psql('SHOW archive_mode') == 'on'
    assert 'Restart PostgreSQL safely' in proc.stdout
    assert cluster.psql("SELECT count(*) FROM pg_settings WHERE pending_restart") == '0'


def test_pgbackrest_archive_mode_with_wal_encryption_and_kms_down(wal_encrypted, tmp_path):
    """Issue 13: with WAL encryption on and the KMS down, the pgbackrest change that needs a restart
    ends with PostgreSQL still running and a failure that says why."""
    cluster, server = wal_encrypted
    server.stop()
    before = postmaster_start(cluster)
    proc = run_playbook(tmp_path, cluster, [PGBACKREST_POSTGRESQL, {'ansible.builtin.meta': 'flush_handlers'}])
    assert proc.returncode != 0, proc.stdout[-4000:]
    assert 'Refusing to restart PostgreSQL (test-cluster) for: pgbackrest: archive_mode=on' in proc.stdout, proc.stdout[-4000:]
    assert 'cannot be fetched from provider' in proc.stdout
    assert postmaster_start(cluster) == before
    assert cluster.psql('SHOW archive_mode') == 'off'
