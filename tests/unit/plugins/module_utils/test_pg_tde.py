"""Unit tests of the pure decision logic in module_utils/_pg_tde.py (no server)."""
from __future__ import annotations

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


def test_statements_for_keys():
    assert t.set_key_statement('server', 'global') == \
        'SELECT pg_tde_set_server_key_using_global_key_provider(%s::text, %s::text)'
    assert 'pg_tde_set_default_key_using_global_key_provider' in t.set_key_statement('default', 'global')
    assert 'pg_tde_set_key_using_database_key_provider' in t.set_key_statement('database', 'database')
    assert 'pg_tde_set_key_using_global_key_provider' in t.set_key_statement('database', 'global')
    assert 'pg_tde_create_key_using_database_key_provider' in t.create_key_statement('database')


def test_provider_scope_of():
    assert t.provider_scope_of(-1) == 'global' and t.provider_scope_of(3) == 'database'
    assert t.provider_scope_of(None) is None


class _Rows:
    def __init__(self, rows):
        self.rows, self.sql = rows, []

    def query(self, sql, params=None):
        self.sql.append(sql)
        return self.rows


def test_connectable_databases_rule_is_datallowconn_not_a_name():
    # template1 can hold the extension and a key of its own; template0 never allows connections
    session = _Rows([{'datname': 'app'}, {'datname': 'postgres'}, {'datname': 'template1'}])
    assert t.connectable_databases(session) == ['app', 'postgres', 'template1']
    assert 'datallowconn' in session.sql[0] and 'template' not in session.sql[0]


def test_verify_key_calls_the_function_of_the_kind():
    for kind, func in (('server', 'pg_tde_verify_server_key'), ('default', 'pg_tde_verify_default_key'),
                       ('database', 'pg_tde_verify_key')):
        session = _Rows([])
        t.verify_key(session, kind)
        assert session.sql == ['SELECT %s()' % func]
    assert t.KEY_KINDS == tuple(t.VERIFY_FUNCTION) == tuple(t.KEY_INFO_FUNCTION)
