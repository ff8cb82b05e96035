"""pg_tde_checksum's option handling (no server)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_checksum as m


def test_all_tables_of_the_databases_without_tables():
    assert m.requests_by_database([], ['a', 'b']) == ({'a': [], 'b': []}, [])


def test_tables_grouped_by_database_and_checked():
    wanted, problems = m.requests_by_database(
        [{'database': 'a', 'table': 'public.t'}, {'database': 'a', 'table': '"X"."Y z"'},
         {'database': 'b', 'table': 't'}], ['ignored'])
    assert wanted == {'a': ['public.t', '"X"."Y z"'], 'b': ['t']} and problems == []
    _w, problems = m.requests_by_database([{'database': 'a'}, {'database': 'a', 'table': 'a.b.c'},
                                           {'database': 'a', 'table': 't', 'x': 1}], [])
    assert len(problems) == 3 and 'tables[0] must be {database, table}' in problems[0]
    assert 'more than two parts' in problems[1]


def test_encrypted_column_never_calls_pg_tde_without_preload():
    assert m.encrypted_column(False) == 'NULL::boolean'
    assert 'pg_tde_is_encrypted' in m.encrypted_column(True)
