"""The configure role refuses bad variables before its first change, on the real pg_tde.

A table of bad inputs runs the role (ansible-playbook, local connection) against a fresh server
(PostgreSQL 17 without pg_tde preloaded, like a host the role has never seen) and against a
configured one (pg_tde loaded, a global provider and a server key in place). Each run must fail,
name the variable path, and leave everything as it was: the configuration files, every setting,
the extension in each database, the provider rows and the keys. Also in check mode."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from tests.support.ansible_runner import ROOT, ansible_env

pytestmark = pytest.mark.slow

PLAYBOOK = """---
- name: Configure pg_tde (bad inputs)
  hosts: db
  gather_facts: false
  roles:
    - role: tdeops.pg_tde.configure
"""


def run_role(tmp_path, cluster, variables, check=False):
    host = {
        'ansible_connection': 'local', 'ansible_become': False,
        'ansible_python_interpreter': os.path.join(ROOT, '.venv', 'bin', 'python'),
        'pg_layout_socket_dir': cluster.socket_dir, 'pg_layout_port': cluster.port,
        'pg_layout_bindir': cluster.bindir, 'pg_layout_datadir': cluster.datadir,
        'pg_layout_confdir': cluster.datadir, 'pg_layout_service': 'tdeops-test-no-such-unit',
        'configure_server_log': cluster.log_path, 'configure_kms_preflight': False,
    }
    host.update(variables)
    inventory = tmp_path / 'hosts.json'
    inventory.write_text(json.dumps({'all': {'hosts': {'db': host}}}))
    playbook = tmp_path / 'configure.yml'
    playbook.write_text(PLAYBOOK)
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(inventory), str(playbook)]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), timeout=600)
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    return proc.returncode, doc


def failure(doc):
    """(task name, msg) of the failed task, and the number of tasks that reported a change."""
    changed = 0
    failed = None
    for play in doc['plays']:
        for task in play['tasks']:
            result = task['hosts'].get('db', {})
            changed += bool(result.get('changed'))
            if result.get('failed') and failed is None:
                failed = (task['task']['name'], str(result.get('msg')))
    return failed, changed


def snapshot(cluster):
    """Everything the role could change: configuration files, settings (with pending_restart),
    the extension per database, provider rows and keys where pg_tde is loaded."""
    files = {}
    for root, _dirs, names in os.walk(cluster.datadir):
        for name in names:
            path = os.path.join(root, name)
            if name.endswith('.conf') or '/conf.d' in path:
                with open(path, 'rb') as f:
                    files[os.path.relpath(path, cluster.datadir)] = hashlib.sha256(f.read()).hexdigest()
    state = {'files': files,
             'settings': cluster.psql("SELECT string_agg(name || '=' || setting || ':' || pending_restart, ',' "
                                      "ORDER BY name) FROM pg_settings"),
             'pid': cluster.psql('SELECT pg_postmaster_start_time()')}
    dbs = cluster.psql('SELECT string_agg(datname, \',\' ORDER BY datname) FROM pg_database WHERE datallowconn')
    preloaded = 'pg_tde' in cluster.psql('SHOW shared_preload_libraries')
    for db in dbs.split(','):
        ext = cluster.psql("SELECT count(*) FROM pg_extension WHERE extname = 'pg_tde'", db=db)
        state['ext ' + db] = ext
        if preloaded and ext == '1':
            state['providers ' + db] = cluster.psql(
                "SELECT string_agg(id || name || type || options::text, ',' ORDER BY id) FROM "
                "(SELECT * FROM pg_tde_list_all_global_key_providers() UNION ALL "
                "SELECT * FROM pg_tde_list_all_database_key_providers()) p", db=db)
            state['keys ' + db] = cluster.psql(
                "SELECT concat_ws(',', (SELECT key_name FROM pg_tde_key_info()), "
                "(SELECT key_name FROM pg_tde_server_key_info()), (SELECT key_name FROM pg_tde_default_key_info()))",
                db=db)
    return state


@pytest.fixture(scope='module')
def fresh(pg_bin, tmp_path_factory):
    """PostgreSQL 17 without pg_tde preloaded, databases postgres and appdb."""
    from tests.support.fixtures_pg import _base_dir, _cleanup, _make
    base = _base_dir('tdeops-pgv-')
    cluster = _make(base, (), None, True, False, 'fresh')
    cluster.create_database('appdb')
    yield cluster
    cluster.destroy()
    _cleanup(base)


@pytest.fixture(scope='module')
def configured(pg_bin):
    """pg_tde loaded, the extension in postgres (not in appdb), a global file provider fp and the
    server key k1 on it."""
    from tests.support.fixtures_pg import _base_dir, _cleanup, _make
    from tests.support.pg import chown_postgres
    base = _base_dir('tdeops-pgv-')
    cluster = _make(base, ('pg_tde',), None, True, True, 'configured')
    keys = os.path.join(cluster.workdir, 'keys')
    os.makedirs(keys)
    chown_postgres(keys)
    cluster.psql("SELECT pg_tde_add_global_key_provider_file('fp', '%s/fp.per');"
                 "SELECT pg_tde_create_key_using_global_key_provider('k1', 'fp');"
                 "SELECT pg_tde_set_server_key_using_global_key_provider('k1', 'fp');" % keys)
    cluster.create_database('appdb')
    cluster.keyring = keys + '/fp.per'
    yield cluster
    cluster.destroy()
    _cleanup(base)


def file_provider(name='lab', **kw):
    prov = {'name': name, 'type': 'file', 'file_path': '/tmp/tdeops-never-created/lab.per'}
    prov.update(kw)
    return prov


BAD = [
    # (id, which cluster, variables, words that must be in the message)
    # The entries of configure_providers and configure_database_keys are checked by pg_tde_config_check
    # (elements: raw), which names the index and the fix; the argument-spec engine named only the list.
    ('kmpi', 'fresh', {'configure_providers': [file_provider(type='kmpi')]},
     ['configure_providers[0].type: is "kmpi"', 'Fix: set it to one of kmip, vault_v2, file (did you mean "kmip"?)']),
    ('provider state misspelt', 'fresh', {'configure_providers': [file_provider(), file_provider('lab2', state='gone')]},
     ['configure_providers[1].state: is "gone"', 'Fix: set it to one of present, absent']),
    ('provider option of another type', 'fresh', {'configure_providers': [file_provider(kmip_host='kms')]},
     ['configure_providers[0].kmip_host', 'belongs to a kmip provider']),
    ('kmip provider without its files', 'fresh', {'configure_providers': [{'name': 'kms', 'type': 'kmip',
                                                                          'kmip_host': 'kms'}]},
     ['configure_providers[0].kmip_cert', 'configure_providers[0].kmip_ca']),
    ('provider name of 200 bytes', 'fresh', {'configure_providers': [file_provider(name='p' * 200)]},
     ['configure_providers[0].name', 'shorter than 128 bytes']),
    ('server key name of 300 bytes (fresh)', 'fresh', {
        'configure_providers': [file_provider()], 'configure_server_key': {'name': 'k' * 300, 'provider': 'lab'}},
     ['configure_server_key.name', '300 bytes']),
    ('server key name of 300 bytes, a key already set', 'configured', {
        'configure_server_key': {'name': 'k' * 300, 'provider': 'fp'}},
     ['configure_server_key.name', '300 bytes']),
    ('database key where the extension will not be', 'fresh', {
        'configure_providers': [file_provider()],
        'configure_database_keys': [{'name': 'appkey', 'provider': 'lab', 'databases': ['appdb']}]},
     ['configure_database_keys[0].databases[0]', 'configure_extension_databases']),
    ('database key where the extension will not be (configured)', 'configured', {
        'configure_database_keys': [{'name': 'appkey', 'provider': 'fp', 'databases': ['appdb']}]},
     ['configure_database_keys[0].databases[0]', 'does not have the pg_tde extension']),
    ('key on a provider that exists nowhere', 'configured', {
        'configure_default_key': {'name': 'd1', 'provider': 'nope'}},
     ['configure_default_key.provider', 'providers there: fp']),
    ('WAL encryption without a server key', 'fresh', {'configure_wal_encrypt': True}, ['configure_wal_encrypt']),
    ('login database without the extension', 'fresh', {'configure_extension_databases': ['appdb']},
     ['configure_login_db']),
    ('extension database that does not exist', 'fresh', {'configure_extension_databases': ['postgres', 'nodb']},
     ['configure_extension_databases[1]', 'does not exist']),
    ('misspelt provider option', 'fresh', {'configure_providers': [file_provider(file_pth='/x')]},
     ['configure_providers[0].file_pth', 'did you mean "file_path"']),
    ('database key provider_scope misspelt', 'fresh', {
        'configure_providers': [file_provider()],
        'configure_database_keys': [{'name': 'k', 'provider': 'lab', 'provider_scope': 'globl', 'databases': ['postgres']}]},
     ['configure_database_keys[0].provider_scope: is "globl"', 'did you mean "global"']),
]


# The measured cases of issue 13 run in check mode too (the check runs there as well).
CHECK_MODE = {'kmpi', 'server key name of 300 bytes, a key already set', 'database key where the extension will not be'}
CASES = [b + (False,) for b in BAD] + [b + (True,) for b in BAD if b[0] in CHECK_MODE]


@pytest.mark.parametrize('case,which,variables,words,check', CASES,
                         ids=['%s-%s' % (c[0], 'check' if c[4] else 'run') for c in CASES])
def test_bad_input_changes_nothing(pg_bin, request, tmp_path, case, which, variables, words, check):
    cluster = request.getfixturevalue(which)
    before = snapshot(cluster)
    rc, doc = run_role(tmp_path, cluster, variables, check=check)
    failed, changed = failure(doc)
    assert rc != 0 and failed, '%s: the role did not fail: %s' % (case, json.dumps(doc)[-2000:])
    name, msg = failed
    for word in words:
        assert word in msg, '%s: %r not in the message of "%s": %s' % (case, word, name, msg)
    assert changed == 0, '%s: %d task(s) changed something before the refusal' % (case, changed)
    assert snapshot(cluster) == before, case


def test_a_role_without_privileges_is_told_so_not_given_a_false_state(configured):
    """A login role that is not a superuser cannot list the providers (pg_tde revokes the functions
    from PUBLIC): the module says so and names the variable, instead of reporting them absent."""
    from tests.support.ansible_runner import run_module
    configured.psql("DO $$BEGIN CREATE ROLE tdeops_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    args = dict(configured.login_args(), login_user='tdeops_app', var_prefix='configure_',
                default_key={'name': 'd1', 'provider': 'fp'})
    result = run_module('pg_tde_config_check', args)
    assert result.get('failed'), result
    paths = {p['path']: p for p in result['problems']}
    assert 'login_user' in paths, result['msg']
    assert 'not a superuser' in paths['login_user']['problem']
    # pg_tde's load state needs pg_read_all_settings: not known, said so
    assert 'may not read shared_preload_libraries' in paths['configure_default_key.provider']['problem'], paths
    assert 'does not exist' not in paths['configure_default_key.provider']['problem']
    # with it, the provider list is what is refused (pg_tde revokes it from PUBLIC): said so
    configured.psql('GRANT pg_read_all_settings TO tdeops_app')
    result = run_module('pg_tde_config_check', args)
    problem = {p['path']: p for p in result['problems']}['configure_default_key.provider']['problem']
    assert 'lacks the privilege to list the global key providers' in problem, problem
    # the same inputs as the superuser: the provider is there, nothing to say
    ok = run_module('pg_tde_config_check', dict(args, login_user='postgres'), check=True)
    assert not ok.get('failed') and ok['problems'] == [] and not ok['changed'], ok
    assert ok['server']['providers']['global'] == {'fp': 'file'}
