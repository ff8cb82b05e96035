"""playbooks/rotate_keys.yml on two real pg_tde servers of this machine (two inventory hosts):
the dry run prints the plan and rotates nothing, the run rotates every host, a re-run in the
same period finds the keys in place and rotates nothing (changed=0)."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.support.ansible_runner import ROOT, ansible_env, run_module

pytestmark = pytest.mark.slow


def playbook(inventory, *extra, check=False):
    env = ansible_env()
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(inventory),
           os.path.join(ROOT, 'playbooks', 'rotate_keys.yml')] + list(extra) + (['--check'] if check else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    return proc.returncode, doc


def report(doc):
    """The msg of the report task: {dry_run, suffix, hosts: {host: [lines]}}."""
    for play in doc['plays']:
        for task in play['tasks']:
            if task['task']['name'].startswith('Old and new key names per host'):
                return task['hosts']['localhost']['msg']
    raise AssertionError('no report task')



def test_fleet_rotation_dry_run_run_and_rerun(pg_cluster_factory, kmip_server, kmip_client_files, tmp_path):
    hosts = {}
    tag = uuid.uuid4().hex[:6]
    for name in ('dbA', 'dbB'):
        cluster = pg_cluster_factory()
        login = cluster.login_args()
        assert run_module('pg_tde_provider', dict(login, name='kms', type='kmip', kmip_host=kmip_server.host,
                                                  kmip_port=kmip_server.port, kmip_cert=kmip_client_files.cert,
                                                  kmip_key=kmip_client_files.key, kmip_ca=kmip_server.ca))['changed']
        app = cluster.create_database('app', extension=True)
        base = '%s-%s' % (name, tag)
        assert run_module('pg_tde_key', dict(login, name=base + '-wal', provider='kms', targets=['server']))['changed']
        assert run_module('pg_tde_key', dict(login, name=base + '-default', provider='kms', targets=['default']))['changed']
        assert run_module('pg_tde_key', dict(cluster.login_args(app), name=base + '-app', provider='kms',
                                             targets=['database'], databases=[app]))['changed']
        hosts[name] = {
            'ansible_connection': 'local', 'ansible_become': False,
            'ansible_python_interpreter': os.path.join(ROOT, '.venv', 'bin', 'python'),
            'pg_layout_socket_dir': cluster.socket_dir, 'pg_layout_port': cluster.port,
            'configure_server_key': {'name': base + '-wal', 'provider': 'kms'},
            'configure_default_key': {'name': base + '-default', 'provider': 'kms'},
            'configure_database_keys': [{'name': base + '-app', 'provider': 'kms', 'databases': [app]}],
            '_cluster': None}
        hosts[name].pop('_cluster')
        hosts[name]['_login'] = login
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(json.dumps({'all': {'children': {'pg_tde_servers': {'hosts': {
        n: {k: v for k, v in h.items() if k != '_login'} for n, h in hosts.items()}}}}}))
    suffix = ['-e', 'rotate_keys_suffix=20261201']

    rc, doc = playbook(inventory, *suffix, check=True)
    assert rc == 0, json.dumps(doc)[-3000:]
    plan = report(doc)
    assert plan['dry_run'] is True and plan['suffix'] == '20261201'
    assert {(line['target'], line['action']) for line in plan['hosts']['dbA']} == {
        ('server', 'would rotate'), ('default', 'would rotate'), ('database', 'would rotate')}
    keys = run_module('pg_tde_info', dict(hosts['dbA']['_login'], include_relations=False))['pg_tde']['principal_keys']
    assert keys['server']['key_name'].endswith('-wal')      # nothing rotated

    rc, doc = playbook(inventory, *suffix)
    assert rc == 0, json.dumps(doc)[-3000:]
    done = report(doc)['hosts']
    for name in hosts:
        lines = {(line['target'], line['database']): line for line in done[name]}
        assert lines[('server', None)]['old_key'] == '%s-%s-wal' % (name, tag)
        assert lines[('server', None)]['new_key'] == '%s-%s-wal-20261201' % (name, tag)
        assert lines[('server', None)]['action'] == 'rotated'
        assert lines[('database', 'app')]['action'] == 'rotated'
        keys = run_module('pg_tde_info', dict(hosts[name]['_login'], include_relations=False))['pg_tde']['principal_keys']
        assert keys['server']['key_name'] == '%s-%s-wal-20261201' % (name, tag)
        assert keys['default']['key_name'] == '%s-%s-default-20261201' % (name, tag)
        assert keys['databases']['app']['key_name'] == '%s-%s-app-20261201' % (name, tag)

    # "to be sure": the same period again rotates nothing
    rc, doc = playbook(inventory, *suffix)
    assert rc == 0
    assert doc['stats']['dbA']['changed'] == 0 and doc['stats']['dbB']['changed'] == 0
    assert {line['action'] for line in report(doc)['hosts']['dbB']} == {'already in place'}
