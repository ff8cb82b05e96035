"""Comparison of restored tables with the original's (disaster_recovery.yml)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.module_utils._recovery import compare_checksums


def t(table, rows=10, s='1', x='2', enc=True, db='app'):
    return {'database': db, 'table': table, 'rows': rows, 'hash_sum': s, 'checksum_method': x, 'encrypted': enc}


def test_equal_tables():
    rows = compare_checksums([t('public.a'), t('public.b', 3)], [t('public.a'), t('public.b', 3)])
    assert [r['equal'] for r in rows] == [True, True]
    assert rows[1]['rows_original'] == rows[1]['rows_restored'] == 3


def test_differences_are_named():
    rows = compare_checksums([t('public.a', x='9'), t('public.b', enc=False)],
                             [t('public.a'), t('public.b'), t('public.c')])
    by = {r['table']: r for r in rows}
    assert by['public.a']['problem'] == 'rows or checksum differ' and by['public.a']['equal'] is False
    assert by['public.b']['problem'] == 'encryption differs' and by['public.b']['equal'] is False
    assert by['public.c']['problem'] == 'missing on the restored server' and by['public.c']['rows_restored'] is None


def test_without_an_original():
    rows = compare_checksums([t('public.a')], None)
    assert rows == [{'database': 'app', 'table': 'public.a', 'rows_restored': 10, 'encrypted_restored': True,
                     'equal': None}]
