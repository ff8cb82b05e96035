"""Unit tests of pg_tde_info's pure helpers (no server)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_info as m


def test_split_relations_schema_qualified_with_kind():
    rows = [
        {'schema': 'public', 'name': 't', 'kind': 'r', 'encrypted': True},
        {'schema': 'public', 'name': 't_pkey', 'kind': 'i', 'encrypted': True},
        {'schema': 'pg_toast', 'name': 'pg_toast_16400', 'kind': 't', 'encrypted': False},
        {'schema': 'app', 'name': 'mv', 'kind': 'm', 'encrypted': None},
    ]
    enc, plain = m.split_relations(rows)
    assert enc == [{'name': 'public.t', 'kind': 'table'}, {'name': 'public.t_pkey', 'kind': 'index'}]
    assert plain == [{'name': 'pg_toast.pg_toast_16400', 'kind': 'toast'},
                     {'name': 'app.mv', 'kind': 'materialized view'}]


def test_wal_encryption():
    settings = [{'name': 'pg_tde.wal_encrypt', 'setting': 'off', 'pending_restart': True, 'context': 'postmaster'}]
    assert m.wal_encryption(settings, {'key_name': 'k'}, True) == {
        'setting': 'off', 'pending_restart': True, 'server_key_set': True}
    assert m.wal_encryption([], None, False) == {'setting': None, 'pending_restart': False,
                                                 'server_key_set': False}
    assert m.wal_encryption(settings, {'error': 'x'}, True)['server_key_set'] is False


def test_format_version():
    assert m.format_version((2, 2, 0)) == '2.2.0'
    assert m.format_version(None) is None


def test_relation_queries_never_call_pg_tde_without_preload():
    assert 'pg_tde_is_encrypted' not in m.RELATIONS_BY_AM_SQL
    assert 'pg_tde_is_encrypted' in m.RELATIONS_SQL


def test_relations_sql_sizes_only_when_asked():
    assert 'pg_relation_size' not in m.relations_sql(True, False)
    assert '{sizes}' not in m.relations_sql(False, False)
    with_sizes = m.relations_sql(True, True)
    assert "pg_relation_size(c.oid, 'main')" in with_sizes and 'AS bytes' in with_sizes
    assert 'pg_tde_is_encrypted' not in m.relations_sql(False, True)


def test_split_relations_keeps_bytes():
    enc, plain = m.split_relations([{'schema': 'public', 'name': 't', 'kind': 'r', 'encrypted': True, 'bytes': 8192},
                                    {'schema': 'public', 'name': 'u', 'kind': 'r', 'encrypted': False, 'bytes': None}])
    assert enc == [{'name': 'public.t', 'kind': 'table', 'bytes': 8192}]
    assert plain == [{'name': 'public.u', 'kind': 'table', 'bytes': 0}]
