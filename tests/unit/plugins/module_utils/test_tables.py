"""Selection rules, planning, ordering, free space and retry logic of _tables (no server)."""
from __future__ import annotations

import contextlib
import threading

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _tables as t


def rel(oid, schema, name, kind='r', am='heap', parent=0, ext=False, owned=True):
    return {'oid': oid, 'schema': schema, 'name': name, 'relkind': kind, 'access_method': am,
            'parent_oid': parent, 'extension_member': ext, 'owned': owned, 'populated': True,
            'tablespace_oid': 0}


CATALOG = [
    rel(1, 'public', 'orders'),
    rel(2, 'public', 'customers', am='tde_heap'),
    rel(3, 'sales', 'orders'),
    rel(4, 'sales', 'Items'),
    rel(5, 'public', 'events', kind='p', am=''),
    rel(6, 'public', 'events_2025', parent=5),
    rel(7, 'public', 'events_2026', kind='p', am='', parent=5),
    rel(8, 'public', 'events_2026_01', parent=7),
    rel(9, 'public', 'order_summary', kind='m'),
    rel(10, 'public', 'v_orders', kind='v', am=''),
    rel(11, 'public', 'orders_id_seq', kind='S', am=''),
    rel(12, 'public', 'ext_table', ext=True),
    rel(13, 'public', 'remote', kind='f', am=''),
    rel(14, 'public', 'tmp_1'),
    rel(15, 'public', 'tmpx1'),
]
PATH = ['public']


def names(result):
    return ['%s.%s' % (r['schema'], r['name']) for r in result['selected']]


def select(**kw):
    return t.select_relations(CATALOG, PATH, **kw)


# -- names ------------------------------------------------------------------

@pytest.mark.parametrize('text,expected', [
    ('orders', (None, 'orders')),
    ('Orders', (None, 'orders')),
    ('sales.orders', ('sales', 'orders')),
    ('Sales.Orders', ('sales', 'orders')),
    ('"Sales"."Order Items"', ('Sales', 'Order Items')),
    ('sales."Items"', ('sales', 'Items')),
    ('"a""b"', (None, 'a"b')),
    (' sales . orders ', ('sales', 'orders')),
    ('"with.dot"', (None, 'with.dot')),
])
def test_parse_relation_name(text, expected):
    assert t.parse_relation_name(text) == expected


@pytest.mark.parametrize('text', ['', 'db.sales.orders', 'a..b', '"open', 'a.', 'a b'])
def test_parse_relation_name_rejects(text):
    with pytest.raises(ValueError):
        t.parse_relation_name(text)


def test_quote_ident():
    assert t.quote_ident('a"b') == '"a""b"'
    assert t.qualified('Sales', 'x y') == '"Sales"."x y"'


@pytest.mark.parametrize('pattern,text,hit', [
    ('public.order%', 'public.orders', True),
    ('public.order%', 'sales.orders', False),
    ('%.orders', 'sales.orders', True),
    ('public.tmp_1', 'public.tmpx1', True),       # _ is one character
    ('public.tmp\\_%', 'public.tmpx1', False),     # an escaped _ is literal
    ('public.tmp\\_%', 'public.tmp_1', True),
    ('public.Orders', 'public.orders', False),     # case-sensitive, like LIKE
    ('public.a.c', 'public.abc', False),           # . is literal
    ('%', 'x.y', True),
])
def test_like_match(pattern, text, hit):
    assert t.like_match(pattern, text) is hit


# -- selection --------------------------------------------------------------

def test_unqualified_name_uses_search_path():
    assert names(select(tables=['orders'])) == ['public.orders']
    res = t.select_relations(CATALOG, ['sales', 'public'], tables=['orders'])
    assert names(res) == ['sales.orders']


def test_qualified_and_quoted_names():
    assert names(select(tables=['sales.orders', 'sales."Items"'])) == ['sales.orders', 'sales.Items']


def test_missing_name_is_an_error():
    res = select(tables=['nope', 'sales.Items'])  # unquoted Items folds to items: not found
    assert res['selected'] == []
    assert len(res['errors']) == 2
    assert 'nope' in res['errors'][0] and 'search_path public' in res['errors'][0]
    assert 'schema "sales"' in res['errors'][1]


def test_wrong_kinds_are_errors():
    res = select(tables=['v_orders', 'orders_id_seq', 'remote'])
    assert res['selected'] == []
    assert 'view' in res['errors'][0]
    assert 'sequence' in res['errors'][1]
    assert 'foreign table' in res['errors'][2]


def test_named_matview_needs_include_matviews():
    res = select(tables=['order_summary'])
    assert 'include_matviews' in res['errors'][0]
    assert names(select(tables=['order_summary'], include_matviews=True)) == ['public.order_summary']


def test_partitioned_table_brings_all_levels():
    assert names(select(tables=['events'])) == [
        'public.events', 'public.events_2025', 'public.events_2026', 'public.events_2026_01']


def test_schema_selection_skips_extension_tables_and_matviews():
    got = names(select(schemas=['public']))
    assert 'public.ext_table' not in got
    assert 'public.order_summary' not in got
    assert 'public.v_orders' not in got and 'public.orders_id_seq' not in got
    assert 'public.orders' in got and 'public.events_2026_01' in got
    assert 'public.order_summary' in names(select(schemas=['public'], include_matviews=True))


def test_named_extension_table_is_allowed():
    assert names(select(tables=['ext_table'])) == ['public.ext_table']


def test_unknown_schema_is_an_error():
    assert 'schema "nope"' in select(schemas=['nope'])['errors'][0]


def test_patterns():
    assert names(select(patterns=['%.orders'])) == ['public.orders', 'sales.orders']
    assert names(select(patterns=['public.tmp\\_%'])) == ['public.tmp_1']
    assert select(patterns=['nothing%'])['errors'] == []


def test_all_tables_excludes_partition_tree_and_names():
    res = select(all_tables=True, exclude=['events', 'sales.orders', 'public.tmp%'])
    got = names(res)
    assert not any(n.startswith('public.events') for n in got)
    assert 'sales.orders' not in got and 'public.orders' in got
    assert 'public.tmp_1' not in got and 'public.tmpx1' not in got
    excluded = {'%s.%s' % (r['schema'], r['name']): e for r, e in res['excluded']}
    assert excluded['public.events_2026_01'] == 'events'
    assert excluded['public.tmpx1'] == 'public.tmp%'


def test_bad_exclude_name_is_an_error():
    assert 'exclude: ' in select(all_tables=True, exclude=['a.b.c'])['errors'][0]


def test_unqualified_exclude_matches_every_schema():
    got = names(select(all_tables=True, exclude=['orders']))
    assert 'public.orders' not in got and 'sales.orders' not in got


def test_exclude_one_partition():
    got = names(select(tables=['events'], exclude=['public.events_2025']))
    assert got == ['public.events', 'public.events_2026', 'public.events_2026_01']


def test_union_without_duplicates_in_given_order():
    got = names(select(tables=['sales.orders', 'orders'], schemas=['sales'], patterns=['public.orders']))
    assert got == ['sales.orders', 'public.orders', 'sales.Items']


# -- planning ---------------------------------------------------------------

@pytest.mark.parametrize('kind,am,state,version,action', [
    ('r', 'heap', 'encrypted', 150000, 'rewrite'),
    ('r', 'tde_heap', 'encrypted', 150000, 'skip'),
    ('r', 'tde_heap', 'decrypted', 150000, 'rewrite'),
    ('r', 'heap', 'decrypted', 150000, 'skip'),
    ('r', 'columnar', 'encrypted', 170000, 'skip'),
    ('m', 'heap', 'encrypted', 170000, 'rewrite'),
    ('p', '', 'encrypted', 150000, 'skip'),
    ('p', '', 'encrypted', 170000, 'set_access_method'),
    ('p', 'heap', 'encrypted', 170000, 'set_access_method'),
    ('p', 'tde_heap', 'encrypted', 170000, 'skip'),
    ('p', 'tde_heap', 'decrypted', 170000, 'set_access_method'),
    ('p', '', 'decrypted', 180000, 'skip'),
    ('f', '', 'encrypted', 170000, 'skip'),
])
def test_decide_action(kind, am, state, version, action):
    assert t.decide_action(rel(1, 's', 'x', kind=kind, am=am), state, version)[0] == action


def test_decide_action_reasons():
    assert t.decide_action(rel(1, 's', 'x', am='tde_heap'), 'encrypted', 170000) == ('skip', 'already tde_heap')
    reason = t.decide_action(rel(1, 's', 'x', kind='p', am=''), 'encrypted', 150000)[1]
    assert 'PostgreSQL 15' in reason and 'partitioned' in reason


def item(name, size, action='rewrite', db='db'):
    return {'database': db, 'schema': 's', 'table': name, 'size_bytes': size, 'action': action}


def test_order_largest_first_parents_first():
    items = [item('small', 10), item('big', 1000), item('parent', 0, 'set_access_method'), item('mid', 100),
             item('tie_b', 100), item('tie_a', 100, db='a')]
    got = [i['table'] for i in t.order_plan(items, 'largest_first')]
    assert got == ['parent', 'big', 'tie_a', 'mid', 'tie_b', 'small']
    assert [i['order'] for i in items if i['table'] == 'parent'] == [1]


def test_order_as_given():
    items = [item('small', 10), item('big', 1000), item('parent', 0, 'set_access_method')]
    assert [i['table'] for i in t.order_plan(items, 'as_given')] == ['parent', 'small', 'big']


def test_format_bytes():
    assert t.format_bytes(0) == '0 bytes'
    assert t.format_bytes(2048) == '2.0 kB'
    assert t.format_bytes(3 * 1024 ** 3) == '3.0 GB'


# -- free space -------------------------------------------------------------

def test_space_needed_counts_parallel_largest_per_device():
    items = [dict(item('a', 100), device=1, directory='/d1'), dict(item('b', 300), device=1, directory='/d1'),
             dict(item('c', 200), device=1, directory='/d1b'), dict(item('d', 50), device=2, directory='/d2'),
             dict(item('p', 0, 'set_access_method'), device=3, directory='/x')]
    one = t.space_needed(items, 1, 0)
    assert one[1]['needed_bytes'] == 300 and one[2]['needed_bytes'] == 50 and 3 not in one
    two = t.space_needed(items, 2, 10)
    assert two[1]['needed_bytes'] == 550 and two[1]['directories'] == ['/d1', '/d1b']
    short = t.space_shortfalls(two, {1: 549, 2: 10 ** 9})
    assert len(short) == 1 and short[0]['available_bytes'] == 549
    assert t.space_shortfalls(two, {1: 550, 2: 55}) == []


def test_retry_delays_double_and_cap():
    assert t.retry_delays(3, 2) == [2.0, 4.0, 8.0]
    assert t.retry_delays(0, 5) == []
    assert t.retry_delays(12, 1)[-1] == t.MAX_RETRY_DELAY


def test_storage_problems():
    parts = [{'relation': 'x', 'part': 'table', 'encrypted': True},
             {'relation': 'x_pkey', 'part': 'index', 'encrypted': False},
             {'relation': 'pg_toast.t', 'part': 'TOAST', 'encrypted': None}]
    bad = t.storage_problems(parts, True)
    assert len(bad) == 2 and 'x_pkey (index): pg_tde_is_encrypted = false' in bad[0] and 'NULL' in bad[1]
    assert t.storage_problems(parts[1:2], False) == []


def test_statements_quote_names():
    it = {'schema': 'Sales', 'table': 'a"b', 'relkind': 'm'}
    assert t.rewrite_statement(it, 'tde_heap') == 'ALTER MATERIALIZED VIEW "Sales"."a""b" SET ACCESS METHOD "tde_heap"'
    assert 'FROM ONLY "Sales"."a""b" AS r' in t.checksum_statement('Sales', 'a"b')


def test_checksum_statement_hashes():
    record = t.checksum_statement('s', 'x')
    assert record == ('SELECT count(*) AS rows, coalesce(sum(hash_record_extended(r.*, 0)), 0)::text AS hash_sum '
                      'FROM ONLY "s"."x" AS r')
    # one aggregate of the hash: a second one would make PostgreSQL hash every row twice
    assert record.count('hash_record_extended') == 1
    assert 'sum(hashtextextended(r::text, 0))' in t.checksum_statement('s', 'x', 'text')


# -- rewrite_table against a scripted fake session ---------------------------

class FakeError(Exception):
    def __init__(self, sqlstate, text):
        super().__init__(text)
        self.diag = type('Diag', (), {'sqlstate': sqlstate})()


class FakeConn:
    def __init__(self):
        self.log = []

    @contextlib.contextmanager
    def transaction(self):
        self.log.append('BEGIN')
        try:
            yield
        except BaseException:
            self.log.append('ROLLBACK')
            raise
        self.log.append('COMMIT')


class FakeSession:
    """Answers the queries rewrite_once makes; lock_failures LOCK TABLEs fail with 55P03."""

    def __init__(self, lock_failures=0, after_am='tde_heap', rows_after=3, encrypted_after=True,
                 record_hash=True):
        self.conn = FakeConn()
        self.lock_failures = lock_failures
        self.altered = False
        self.after_am = after_am
        self.rows_after = rows_after
        self.encrypted_after = encrypted_after
        self.record_hash = record_hash  # False: a column type without an extended hash function
        self.checksums = []
        self.executed_queries = []

    def query(self, sql, params=None):
        self.conn.log.append(sql.split()[0] + ' ' + sql.split()[1])
        if sql.startswith('LOCK'):
            if self.lock_failures:
                self.lock_failures -= 1
                raise FakeError('55P03', 'canceling statement due to lock timeout')
            return []
        if 'pg_tde_is_encrypted' in sql:
            return [{'relation': 'x', 'part': 'table', 'encrypted': self.encrypted_after if self.altered else False}]
        return []

    def query_one(self, sql, params=None):
        if 'AS am' in sql:
            return {'am': self.after_am if self.altered else 'heap'}
        if 'AS hash_sum' in sql:
            method = 'record' if 'hash_record_extended' in sql else 'text'
            self.checksums.append(('after' if self.altered else 'before', method))
            if method == 'record' and not self.record_hash:
                raise FakeError('42883', 'could not identify an extended hash function for type json')
            n = self.rows_after if self.altered else 3
            return {'rows': n, 'hash_sum': str(n * 7)}
        return {}

    def execute(self, sql, params=None):
        self.executed_queries.append(sql)
        self.altered = True
        return []


ITEM = {'database': 'db', 'schema': 's', 'table': 'x', 'oid': 1, 'relkind': 'r', 'action': 'rewrite',
        'populated': True}


def run(session, **kw):
    opts = dict(lock_timeout='1s', retries=2, retry_delay=0, verify_integrity=True,
                pg_error_text=str, stop=threading.Event())
    opts.update(kw)
    return t.rewrite_table(session, dict(ITEM), 'encrypted', **opts)


def test_rewrite_ok():
    s = FakeSession()
    res = run(s)
    assert res['status'] == 'encrypted' and res['changed'] and res['verified'] and res['checksum_match']
    assert res['rows'] == 3 and res['attempts'] == 1 and res['checksum_method'] == 'record'
    assert s.checksums == [('before', 'record'), ('after', 'record')]
    # the outer transaction and the savepoint around the first checksum both commit
    assert s.conn.log.count('COMMIT') == 2 and 'ROLLBACK' not in s.conn.log
    assert set(res['phase_seconds']) == {'lock', 'checksum_before', 'rewrite', 'check', 'checksum_after', 'commit'}


def test_rewrite_falls_back_to_the_text_hash():
    s = FakeSession(record_hash=False)
    res = run(s)
    assert res['status'] == 'encrypted' and res['checksum_match'] and res['checksum_method'] == 'text'
    # the failed per-column hash rolls back to its savepoint only; before and after use one hash
    assert s.checksums == [('before', 'record'), ('before', 'text'), ('after', 'text')]
    assert s.conn.log.count('ROLLBACK') == 1 and s.conn.log.count('COMMIT') == 1


def test_rewrite_without_verification_reads_no_rows():
    s = FakeSession()
    res = run(s, verify_integrity=False)
    assert res['status'] == 'encrypted' and res['checksum_match'] is None and s.checksums == []
    assert 'checksum_before' not in res['phase_seconds']


def test_rewrite_retries_lock_then_succeeds():
    res = run(FakeSession(lock_failures=2))
    assert res['status'] == 'encrypted' and res['attempts'] == 3


def test_rewrite_gives_up_after_retries():
    s = FakeSession(lock_failures=5)
    res = run(s)
    assert res['status'] == 'failed' and res['lock_timeout'] and res['attempts'] == 3 and not res['changed']
    assert s.executed_queries == []


def test_rewrite_rolls_back_on_checksum_mismatch():
    s = FakeSession(rows_after=2)
    res = run(s)
    assert res['status'] == 'failed' and res['checksum_match'] is False and not res['changed']
    assert 'rows differ' in res['error'] and s.conn.log[-1] == 'ROLLBACK'


def test_rewrite_rolls_back_when_not_encrypted():
    s = FakeSession(encrypted_after=False)
    res = run(s)
    assert res['status'] == 'failed' and res['verified'] is False and s.conn.log[-1] == 'ROLLBACK'
    assert 'pg_tde_is_encrypted = false' in res['error']


def test_rewrite_skips_table_encrypted_meanwhile():
    s = FakeSession()
    s.altered = True  # the access method is already tde_heap under the lock
    res = run(s)
    assert res['status'] == 'skipped' and not res['changed'] and s.executed_queries == []


def test_other_errors_are_not_retried():
    class Broken(FakeSession):
        def execute(self, sql, params=None):
            raise FakeError('53100', 'could not extend file: No space left on device')
    res = run(Broken())
    assert res['status'] == 'failed' and res['attempts'] == 1 and not res['lock_timeout']
    assert 'No space left' in res['error']


def test_stop_interrupts_backoff():
    stop = threading.Event()
    stop.set()
    res = run(FakeSession(lock_failures=5), retry_delay=60, stop=stop)
    assert res['status'] == 'failed' and res['attempts'] == 1 and 'stopped' in res['error']
