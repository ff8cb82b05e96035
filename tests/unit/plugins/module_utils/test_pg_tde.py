"""Unit tests of the pure decision logic in module_utils/_pg_tde.py (no server)."""
from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _pg_tde as t

KMIP_LISTED = ('{"host" : "127.0.0.1", "port" : 5696, "certPath" : "/etc/k/client.crt", '
               '"keyPath" : "/etc/k/client.key", "caPath" : "/etc/k/ca.crt"}')
KMIP_PARAMS = dict(type='kmip', kmip_host='127.0.0.1', kmip_port=5696, kmip_cert='/etc/k/client.crt',
                   kmip_key='/etc/k/client.key', kmip_ca='/etc/k/ca.crt')


def info(name, pid=-1, provider='kms', created='2026-11-23T18:29:58+00:00'):
    return {'key_name': name, 'provider_name': provider, 'provider_id': pid, 'key_creation_time': created}


# -- versions ------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    ('pg_tde 2.2.0', (2, 2, 0)), ('pg_tde 2.1', (2, 1, 0)), ('nothing', None), (None, None)])
def test_parse_tde_version(text, expected):
    assert t.parse_tde_version(text) == expected


def test_split_guc_list():
    assert t.split_guc_list('"pg_tde", pg_stat_statements ,') == ['pg_tde', 'pg_stat_statements']


# -- provider options ----------------------------------------------------------------------------

def test_normalize_options_parses_json_ignores_order_and_nulls():
    listed = t.normalize_options('kmip', KMIP_LISTED)
    reordered = t.normalize_options('kmip', {'caPath': '/etc/k/ca.crt', 'keyPath': '/etc/k/client.key',
                                             'certPath': '/etc/k/client.crt', 'port': '5696',
                                             'host': '127.0.0.1', 'namespace': None})
    assert listed == reordered
    assert listed['port'] == 5696


@pytest.mark.parametrize('value,expected', [('vault-v2', 'vault_v2'), ('VAULT_V2', 'vault_v2'),
                                            ('kmip', 'kmip'), (None, None)])
def test_normalize_provider_type(value, expected):
    assert t.normalize_provider_type(value) == expected


def test_desired_options_kmip_equal_to_listed():
    desired = t.desired_provider_options(KMIP_PARAMS)
    current = {'id': -1, 'name': 'kms', 'type': 'kmip', 'options': KMIP_LISTED}
    assert t.provider_differences(current, 'kmip', desired) == []
    assert t.provider_action(current, 'kmip', desired) == 'none'


def test_desired_options_vault_drops_unset_namespace_and_ca():
    opts = t.desired_provider_options(dict(type='vault_v2', vault_url='https://v:8200', vault_mount_path='secret',
                                           vault_token_path='/t', vault_ca_path=None, vault_namespace=None))
    assert opts == {'url': 'https://v:8200', 'mountPath': 'secret', 'tokenPath': '/t'}
    listed = {'type': 'vault-v2', 'options': {'url': 'https://v:8200', 'mountPath': 'secret',
                                              'tokenPath': '/t', 'caPath': None}}
    assert t.provider_differences(listed, 'vault_v2', opts) == []


def test_differences_name_what_changed():
    current = {'id': -1, 'name': 'kms', 'type': 'kmip', 'options': KMIP_LISTED}
    desired = t.desired_provider_options(dict(KMIP_PARAMS, kmip_ca='/etc/k/new-ca.crt', kmip_port=5697))
    assert t.provider_differences(current, 'kmip', desired) == ['caPath', 'port']
    assert t.provider_action(current, 'kmip', desired) == 'change'


def test_type_change_is_a_change():
    current = {'id': -1, 'name': 'p', 'type': 'file', 'options': '{"path" : "/k.per"}'}
    desired = t.desired_provider_options(KMIP_PARAMS)
    diffs = t.provider_differences(current, 'kmip', desired)
    assert diffs[0] == 'type' and 'path' in diffs and 'host' in diffs
    assert t.provider_action(current, 'kmip', desired) == 'change'


def test_actions_missing_and_absent():
    desired = {'path': '/k'}
    assert t.provider_differences(None, 'file', desired) == ['missing']
    assert t.provider_action(None, 'file', desired) == 'add'
    assert t.provider_action(None, 'file', desired, 'absent') == 'none'
    assert t.provider_action({'type': 'file', 'options': {}}, 'file', desired, 'absent') == 'delete'


def test_provider_statement_kmip_typed_function():
    sql, args = t.provider_statement('add', 'global', 'kmip', 'kms',
                                     t.desired_provider_options(KMIP_PARAMS))
    assert sql.startswith('SELECT pg_tde_add_global_key_provider_kmip(')
    assert sql.count('%s') == 6 and '%s::int' in sql
    assert args == ['kms', '127.0.0.1', 5696, '/etc/k/client.crt', '/etc/k/client.key', '/etc/k/ca.crt']


def test_provider_statement_vault_uses_namespace_overload_only_when_given():
    base = {'url': 'https://v', 'mountPath': 'secret', 'tokenPath': '/t', 'caPath': '/ca'}
    sql, args = t.provider_statement('change', 'database', 'vault_v2', 'v', base)
    assert 'pg_tde_change_database_key_provider_vault_v2(' in sql and sql.count('%s') == 5
    assert args == ['v', 'https://v', 'secret', '/t', '/ca']
    sql, args = t.provider_statement('add', 'global', 'vault_v2', 'v', dict(base, namespace='ns1'))
    assert sql.count('%s') == 6 and args[-1] == 'ns1'


@pytest.mark.parametrize('action', ['add', 'change'])
@pytest.mark.parametrize('scope', ['global', 'database'])
def test_vault_statement_per_pg_tde_version(action, scope):
    """pg_tde 2.0 has only the 5-argument vault_v2 functions; 2.1+ adds a 6-argument overload with
    the namespace. Without a namespace the statement fits both; with one it needs 2.1+."""
    base = {'url': 'https://v', 'mountPath': 'secret', 'tokenPath': '/t', 'caPath': None}
    sql, args = t.provider_statement(action, scope, 'vault_v2', 'v', base)
    assert sql == 'SELECT pg_tde_%s_%s_key_provider_vault_v2(%s)' % (
        action, scope, ', '.join(['%s::text'] * 5))
    assert args == ['v', 'https://v', 'secret', '/t', None]
    sql, args = t.provider_statement(action, scope, 'vault_v2', 'v', dict(base, namespace='team/a'))
    assert sql == 'SELECT pg_tde_%s_%s_key_provider_vault_v2(%s)' % (
        action, scope, ', '.join(['%s::text'] * 6))
    assert args == ['v', 'https://v', 'secret', '/t', None, 'team/a']
    # an empty namespace is no namespace (2.0 servers keep working)
    assert t.provider_statement(action, scope, 'vault_v2', 'v', dict(base, namespace=''))[0].count('%s') == 5


class _ProcSession:
    def __init__(self, n):
        self.n, self.sql = n, None

    def query_one(self, sql, params=None):
        self.sql = sql
        return {'n': self.n}


@pytest.mark.parametrize('n,expected', [(0, False), (1, True), (2, True)])
def test_has_vault_namespace_overload(n, expected):
    session = _ProcSession(n)
    assert t.has_vault_namespace_overload(session) is expected
    assert "proname = 'pg_tde_add_global_key_provider_vault_v2'" in session.sql and 'pronargs = 6' in session.sql


def test_provider_statement_file_and_delete():
    sql, args = t.provider_statement('add', 'database', 'file', 'f', {'path': '/k.per'})
    assert sql == 'SELECT pg_tde_add_database_key_provider_file(%s::text, %s::text)'
    assert args == ['f', '/k.per']
    sql, args = t.provider_statement('delete', 'global', 'kmip', 'kms', {})
    assert sql == 'SELECT pg_tde_delete_global_key_provider(%s::text)' and args == ['kms']
    with pytest.raises(ValueError):
        t.provider_statement('add', 'cluster', 'file', 'f', {})


def test_redaction_keeps_paths_and_masks_inline_secrets():
    opts = {'url': 'https://v', 'tokenPath': '/etc/t', 'token': 's.SECRET', 'caPath': '/ca',
            'password': 'x', 'keyPath': '/k'}
    out = t.redact_options(opts)
    assert out['tokenPath'] == '/etc/t' and out['keyPath'] == '/k' and out['url'] == 'https://v'
    assert out['token'] == t.REDACTED and out['password'] == t.REDACTED
    assert 's.SECRET' not in repr(out)


def test_public_provider():
    out = t.public_provider({'id': -2, 'name': 'v', 'type': 'vault-v2',
                             'options': '{"url" : "https://v", "tokenPath" : "/t", "token": "abc"}'})
    assert out == {'id': -2, 'name': 'v', 'type': 'vault_v2', 'scope': 'global',
                   'options': {'url': 'https://v', 'tokenPath': '/t', 'token': t.REDACTED}}
    assert t.public_provider(None) is None


def test_find_provider():
    providers = [{'name': 'a'}, {'name': 'b'}]
    assert t.find_provider(providers, 'b') == {'name': 'b'}
    assert t.find_provider(providers, 'c') is None


# -- keys ----------------------------------------------------------------------------------------

def test_same_key_is_name_and_provider_id():
    assert t.same_key(info('k1'), info('k1', created='other'))
    assert not t.same_key(info('k1'), info('k1', pid=-2))
    assert not t.same_key(info('k1'), None)


def test_key_matches_checks_name_provider_and_scope():
    assert t.key_matches(info('k1'), 'k1', 'kms', 'global')
    assert not t.key_matches(info('k1'), 'k2', 'kms', 'global')
    assert not t.key_matches(info('k1'), 'k1', 'other', 'global')
    assert not t.key_matches(info('k1', pid=1), 'k1', 'kms', 'global')
    assert not t.key_matches(None, 'k1', 'kms', 'global')


def test_plan_nothing_when_in_place():
    current = {'server': info('k1'), 'default': info('k1'), 'databases': {'app': info('k1')}}
    assert t.plan_key_targets(current, 'k1', 'kms', 'global', ['server', 'default', 'database'], ['app']) == []


def test_plan_first_set_is_not_a_rotation():
    current = {'server': None, 'default': None, 'databases': {'postgres': None}}
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['server', 'default'], [])
    assert [(s['target'], s['old_key']) for s in plan] == [('default', None), ('server', None)]


def test_plan_first_default_key_becomes_the_server_key():
    # pg_tde 2.2: setting a default key while no server key is set sets the server key too
    current = {'server': None, 'default': None, 'databases': {'postgres': None}}
    for targets in (['server', 'default'], ['default']):
        plan = t.plan_key_targets(current, 'k1', 'kms', 'global', targets, [])
        assert [(s['target'], s['followed_default']) for s in plan] == [('default', False), ('server', True)]
    # a server key in place stays where it is
    current['server'] = info('s1')
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['default'], [])
    assert [s['target'] for s in plan] == ['default']


def test_plan_rotation_and_default_followers():
    # app and the server follow the default key (same name and provider); own has its own key
    current = {'server': info('k1'), 'default': info('k1'),
               'databases': {'app': info('k1'), 'own': info('own1'), 'none': None}}
    plan = t.plan_key_targets(current, 'k2', 'kms', 'global', ['default'], [])
    assert plan[0] == {'target': 'default', 'database': None, 'old_key': 'k1', 'new_key': 'k2',
                       'followed_default': False}
    followers = [(s['target'], s['database']) for s in plan if s['followed_default']]
    assert followers == [('server', None), ('database', 'app')]
    assert not any(s['database'] in ('own', 'none') for s in plan)


def test_plan_database_targets_only_listed_databases():
    current = {'server': None, 'default': None, 'databases': {'a': info('k0'), 'b': None, 'c': info('k0')}}
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['database'], ['a', 'b'])
    assert [(s['database'], s['old_key']) for s in plan] == [('a', 'k0'), ('b', None)]


def test_plan_same_name_other_provider_is_a_set():
    current = {'server': info('k1', provider='old'), 'default': None, 'databases': {}}
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['server'], [])
    assert plan and plan[0]['old_key'] == 'k1'


def test_statements_for_keys():
    assert t.set_key_statement('server', 'global') == \
        'SELECT pg_tde_set_server_key_using_global_key_provider(%s::text, %s::text)'
    assert 'pg_tde_set_default_key_using_global_key_provider' in t.set_key_statement('default', 'global')
    assert 'pg_tde_set_key_using_database_key_provider' in t.set_key_statement('database', 'database')
    assert 'pg_tde_set_key_using_global_key_provider' in t.set_key_statement('database', 'global')
    assert 'pg_tde_create_key_using_database_key_provider' in t.create_key_statement('database')


def test_already_exists_text():
    assert t.is_key_already_exists('cannot create key "k1" because it already exists (SQLSTATE 22023)')
    assert not t.is_key_already_exists('key "k1" does not exist')


def test_provider_users_and_default_databases():
    server, default = info('s1', pid=-1), info('d1', pid=-2)
    dbs = {'a': info('d1', pid=-2), 'b': info('x', pid=1), 'c': None}
    assert t.provider_users(-1, server, default, dbs) == ['server key "s1"']
    assert t.provider_users(-2, server, default, dbs) == ['default key "d1"', 'key "d1" of database "a"']
    assert t.provider_users(1, None, None, {'b': dbs['b']}) == ['key "x" of database "b"']
    assert t.provider_users(-3, server, default, dbs) == []
    assert t.databases_on_default(default, dbs) == ['a']


def test_same_id_keys_elsewhere():
    # database provider ids restart at 1 in each database; pg_tde checks them all on a change
    dbs = {'a': info('ka', pid=1), 'b': info('kb', pid=1), 'c': info('kc', pid=2), 'd': None,
           'g': info('gk', pid=-1)}
    assert t.same_id_keys_elsewhere(1, 'b', dbs) == ['key "ka" of database "a"']
    assert t.same_id_keys_elsewhere(2, 'b', dbs) == ['key "kc" of database "c"']
    assert t.same_id_keys_elsewhere(3, 'b', dbs) == []
    assert t.same_id_keys_elsewhere(-1, 'b', dbs) == [], 'global ids are unique: no collision'
    assert t.same_id_keys_elsewhere(None, 'b', dbs) == []


def test_other_database_in_change_error():
    text = 'key "ka" used by database "a" not found in modified key provider "pb" (SQLSTATE XX000)'
    assert t.other_database_in_change_error(text, 'b') == ('ka', 'a')
    assert t.other_database_in_change_error(text, 'a') is None
    assert t.other_database_in_change_error('key "gk" used as server key not found in modified key '
                                            'provider "g"', 'b') is None
    assert t.other_database_in_change_error(None, 'b') is None


def test_provider_scope_of():
    assert t.provider_scope_of(-1) == 'global' and t.provider_scope_of(3) == 'database'
    assert t.provider_scope_of(None) is None


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,word', [
    ('SSL error: BIO_do_connect failed (SQLSTATE XX000)', 'three causes'),
    ('SSL error: Loading the client certificate failed', 'kmip_cert'),
    ('SSL error: Loading the client key failed', 'does not match'),
    ('SSL error: Loading the CA certificate failed', 'kmip_ca'),
    ('cannot delete provider which is currently in use', 'Rotate'),
    ('key "k" used by database "app" not found in modified key provider "p"', 'fetchable'),
    ('key provider "x" does not exists', 'pg_tde_provider'),
    ('key "k" does not exist HINT: Use pg_tde_create_key_using_global_key_provider() to create it.', 'create'),
    ('key "k" not found in key provider "p"', 'unreachable'),
    ('principal key not configured for current database', 'pg_tde_key'),
    ('principal key not configured', 'wal_encrypt'),
    ('principal key not configured (SQLSTATE XX000) HINT: Use pg_tde_set_key_using_database_key_provider() '
     'or pg_tde_set_key_using_global_key_provider() to configure one.', 'targets: [database]'),
    ('pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed.', 'default_table_access_method'),
    ('Failed to open keyring file /root/nope/keyring.per: Permission denied', 'file_path'),
    ('Invalid provider type.', 'vault-v2'),
    ('cannot create key "k" because it already exists', 'rotation'),
    ('default principal key is not set', 'absent'),
    ('cannot delete default principal key (SQLSTATE 55006) HINT: There are encrypted tables in the database '
     'with id: 16384.', 'new default key'),
    ('cannot delete principal key DETAIL: There are encrypted tables in the database.', 'fall back'),
    ('HTTP(S) request to keyring provider "v" failed', 'vault_url'),
    ('Key provider "x" already exists.', 'already exists'),
])
def test_explanations(text, word):
    assert word in t.explain_tde_error(text)
    msg = t.tde_failure_message('Adding', text)
    assert text.rstrip('.') in msg and word in msg


def test_no_explanation_for_unknown_text():
    assert t.explain_tde_error('something else') is None
    assert t.tde_failure_message('X', 'boom') == 'X failed: boom.'


# -- files ---------------------------------------------------------------------------------------

def fake_stat(tree):
    def st(path):
        if path not in tree:
            raise FileNotFoundError(path)
        mode, uid, gid = tree[path]
        return SimpleNamespace(st_mode=mode, st_uid=uid, st_gid=gid)
    return st


TREE = {
    '/etc': (stat.S_IFDIR | 0o755, 0, 0),
    '/etc/pg': (stat.S_IFDIR | 0o750, 0, 120),
    '/etc/pg/ok.crt': (stat.S_IFREG | 0o640, 0, 120),
    '/etc/pg/root.key': (stat.S_IFREG | 0o600, 0, 0),
    '/etc/pg/own.key': (stat.S_IFREG | 0o600, 110, 120),
    '/etc/closed': (stat.S_IFDIR | 0o700, 0, 0),
    '/etc/closed/x': (stat.S_IFREG | 0o644, 0, 0),
    '/var': (stat.S_IFDIR | 0o755, 0, 0),
    '/var/keys': (stat.S_IFDIR | 0o700, 110, 120),
    '/var/ro': (stat.S_IFDIR | 0o755, 0, 0),
}


@pytest.mark.parametrize('path,problem', [
    ('/etc/pg/ok.crt', None),
    ('/etc/pg/own.key', None),
    ('/etc/pg/root.key', 'is not readable'),
    ('/etc/closed/x', 'not searchable'),
    ('/etc/pg/missing.crt', 'does not exist'),
    ('/nope/x', 'does not exist (directory /nope is missing)'),
    ('/etc/pg', 'is a directory'),
    ('relative/x', 'absolute'),
    ('', 'empty'),
])
def test_path_access_problem_for_postgres_user(path, problem):
    got = t.path_access_problem(path, 110, [120], stat_func=fake_stat(TREE))
    if problem is None:
        assert got is None
    else:
        assert problem in got


def test_path_access_root_reads_everything_that_exists():
    assert t.path_access_problem('/etc/pg/root.key', 0, [0], stat_func=fake_stat(TREE)) is None
    assert 'does not exist' in t.path_access_problem('/etc/pg/nope', 0, [0], stat_func=fake_stat(TREE))


def test_path_access_write_needed():
    assert 'not writable' in t.path_access_problem('/etc/pg/ok.crt', 110, [120], need_write=True,
                                                   stat_func=fake_stat(TREE))


def test_dir_write_problem():
    st = fake_stat(TREE)
    assert t.dir_write_problem('/var/keys/k.per', 110, [120], stat_func=st) is None
    assert 'not writable' in t.dir_write_problem('/var/ro/k.per', 110, [120], stat_func=st)
    assert 'missing' in t.dir_write_problem('/var/none/k.per', 110, [120], stat_func=st)


def test_path_access_on_real_files(tmp_path):
    f = tmp_path / 'a.crt'
    f.write_text('x')
    os.chmod(f, 0o600)
    me = os.getuid()
    assert t.path_access_problem(str(f), me, list(os.getgroups())) is None
    assert t.path_access_problem(str(tmp_path / 'none'), me, []) == 'does not exist'


# -- vault ---------------------------------------------------------------------------------------

def test_kv_mount_problem():
    assert t.kv_mount_problem('secret', {'type': 'kv', 'options': {'version': '2'}}) is None
    assert t.kv_mount_problem('secret', {'data': {'type': 'kv', 'options': {'version': '2'}}}) is None
    assert 'KV version 1' in t.kv_mount_problem('kv', {'type': 'kv', 'options': {'version': '1'}})
    assert 'KV version 1' in t.kv_mount_problem('kv', {'type': 'kv', 'options': None})
    assert 'transit' in t.kv_mount_problem('t', {'type': 'transit'})
