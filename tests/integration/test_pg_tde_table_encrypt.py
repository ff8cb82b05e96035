"""pg_tde_table_encrypt through real ansible against PostgreSQL 17 with the real pg_tde.

These tests prove selection, planning, locking, verification (pg_tde_is_encrypted of every
part), integrity checks and refusals; the bytes on disk are looked at in
test_real_pg_tde_ondisk.py."""
from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

from tests.support.ansible_runner import run_module

MODULE = 'pg_tde_table_encrypt'
_n = itertools.count(1)


def new_db(pg, key: str | None = 'database') -> str:
    """A fresh database with the extension and (key='database') its own principal key from a
    file provider, (key='default') only the server-wide default key, (key=None) no key."""
    name = 'tbl%d' % next(_n)
    pg.create_database(name, extension=True)
    keyfile = os.path.join(pg.workdir, '%s.keys' % name)
    if key == 'database':
        pg.psql("SELECT pg_tde_add_database_key_provider_file('fp', '%s');"
                "SELECT pg_tde_create_key_using_database_key_provider('k_%s', 'fp');"
                "SELECT pg_tde_set_key_using_database_key_provider('k_%s', 'fp');" % (keyfile, name, name), db=name)
    elif key == 'default':
        pg.psql("SELECT pg_tde_add_global_key_provider_file('gp_%s', '%s');"
                "SELECT pg_tde_create_key_using_global_key_provider('dk_%s', 'gp_%s');"
                "SELECT pg_tde_set_default_key_using_global_key_provider('dk_%s', 'gp_%s');"
                % (name, keyfile, name, name, name, name), db=name)
    return name


def am(pg, db: str, rel: str) -> str:
    return pg.psql("SELECT coalesce(a.amname, '') FROM pg_class c LEFT JOIN pg_am a ON a.oid = c.relam "
                   "WHERE c.oid = '%s'::regclass" % rel, db=db)


def enc(pg, db: str, rel: str) -> str:
    return pg.psql("SELECT pg_tde_is_encrypted('%s')" % rel, db=db)


def run(pg, db: str, check: bool = False, diff: bool = False, **args):
    params = pg.login_args(db)
    params.update(args)
    return run_module(MODULE, params, check=check, diff=diff)


SCHEMA = """
CREATE SCHEMA sales;
CREATE TABLE public.big (id int PRIMARY KEY, doc text);
INSERT INTO public.big SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 3000) g;
INSERT INTO public.big VALUES (0, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g));
CREATE INDEX big_doc ON public.big (left(doc, 10));
CREATE TABLE public.small (id int);
INSERT INTO public.small SELECT generate_series(1, 10);
CREATE TABLE sales.orders (id int PRIMARY KEY, amount numeric);
INSERT INTO sales.orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g;
CREATE TABLE sales.order_lines (id int, note text);
CREATE TABLE public.scratch_1 (x int);
CREATE TABLE public.already (id int) USING tde_heap;
"""


def test_check_mode_returns_plan_and_changes_nothing(pg):
    db = new_db(pg)
    pg.psql(SCHEMA, db=db)
    res = run(pg, db, check=True, diff=True, all_tables=True, exclude=['public.scratch_%'])
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    planned = [(p['schema'], p['table']) for p in res['plan']]
    assert planned[0] == ('public', 'big')          # largest first
    assert set(planned) == {('public', 'big'), ('public', 'small'), ('sales', 'orders'), ('sales', 'order_lines')}
    assert [p['order'] for p in res['plan']] == [1, 2, 3, 4]
    sizes = [p['size_bytes'] for p in res['plan']]
    assert sizes == sorted(sizes, reverse=True)
    assert res['bytes_to_rewrite'] == sum(sizes) > 0
    assert res['plan'][0]['toast_bytes'] > 0 and res['plan'][0]['index_bytes'] > 0
    assert res['tables'] == []
    assert any('ALTER TABLE "public"."big" SET ACCESS METHOD "tde_heap"' == q for q in res['executed_queries'])
    reasons = {(s['schema'], s['table']): s['reason'] for s in res['skipped_tables']}
    assert reasons[('public', 'already')] == 'already tde_heap'
    assert 'excluded' in reasons[('public', 'scratch_1')]
    assert res['free_space'][0]['available_bytes'] > res['free_space'][0]['needed_bytes']
    assert res['diff']['after']['access_methods']['%s: public.big' % db] == 'tde_heap'
    for rel in ('public.big', 'public.small', 'sales.orders', 'sales.order_lines'):
        assert am(pg, db, rel) == 'heap'


def test_encrypt_selection_integrity_and_idempotence(pg):
    db = new_db(pg)
    pg.psql(SCHEMA, db=db)
    res = run(pg, db, tables=['big'], patterns=['sales.order\\_%'], exclude=['scratch_1'])
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is True
    done = {(t['schema'], t['table']): t for t in res['tables']}
    assert set(done) == {('public', 'big'), ('sales', 'order_lines')}
    big = done[('public', 'big')]
    assert big['status'] == 'encrypted' and big['verified'] is True and big['checksum_match'] is True
    assert big['rows'] == 3001 and big['attempts'] == 1 and big['seconds'] >= 0
    # the table, its two indexes, TOAST and TOAST index
    parts = pg.psql("SELECT string_agg(pg_tde_is_encrypted(c.oid::regclass)::text, ',') FROM pg_class c "
                    "WHERE c.oid = 'public.big'::regclass OR c.oid = (SELECT reltoastrelid FROM pg_class "
                    "WHERE oid = 'public.big'::regclass) OR c.oid IN (SELECT indexrelid FROM pg_index WHERE "
                    "indrelid IN ('public.big'::regclass, (SELECT reltoastrelid FROM pg_class WHERE "
                    "oid = 'public.big'::regclass)))", db=db)
    assert parts == 'true,true,true,true,true'
    assert enc(pg, db, 'sales.orders') == 'f'       # order\_% does not match "orders"
    assert enc(pg, db, 'public.small') == 'f'
    assert pg.psql('SELECT count(*) FROM public.big', db=db) == '3001'
    again = run(pg, db, tables=['big'], patterns=['sales.order\\_%'])
    assert not again.get('failed') and again['changed'] is False and again['plan'] == []
    assert {s['reason'] for s in again['skipped_tables']} == {'already tde_heap'}


def test_lock_timeout_leaves_locked_table_untouched(pg):
    db = new_db(pg)
    pg.psql(SCHEMA, db=db)
    holder = pg.connect(db, autocommit=False)
    try:
        holder.execute('LOCK TABLE sales.orders IN ACCESS SHARE MODE')
        res = run(pg, db, schemas=['sales'], lock_timeout='200ms', retries=1, retry_delay=0.2)
    finally:
        holder.rollback()
        holder.close()
    assert res['failed'] is True
    assert 'could not lock sales.orders within lock_timeout 200ms in 2 attempt(s)' in res['msg']
    assert 'untouched' in res['msg'] and 'lock timeout' in res['msg']
    assert res['changed'] is True                     # the other table went on
    by = {t['table']: t for t in res['tables']}
    assert by['orders']['status'] == 'failed' and by['orders']['attempts'] == 2
    assert by['order_lines']['status'] == 'encrypted'
    assert am(pg, db, 'sales.orders') == 'heap'
    assert pg.psql('SELECT count(*) FROM sales.orders', db=db) == '1000'


def test_lock_released_during_retries_succeeds(pg):
    db = new_db(pg)
    pg.psql('CREATE TABLE busy (id int); INSERT INTO busy VALUES (1)', db=db)
    holder = pg.connect(db, autocommit=False)
    holder.execute('LOCK TABLE busy IN ACCESS SHARE MODE')
    watcher = pg.connect(db)

    def release_after_first_wait():
        # hold the lock until the module has waited for it once, then let it go
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted "
                               "AND relation = 'busy'::regclass").fetchone()[0]:
                break
            time.sleep(0.05)
        time.sleep(0.6)
        holder.rollback()

    releaser = threading.Thread(target=release_after_first_wait)
    releaser.start()
    try:
        res = run(pg, db, tables=['busy'], lock_timeout='300ms', retries=5, retry_delay=0.5)
    finally:
        releaser.join()
        holder.close()
        watcher.close()
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['attempts'] > 1 and res['tables'][0]['status'] == 'encrypted'


def test_decrypt_and_enforce_encryption(pg):
    db = new_db(pg)
    pg.psql(SCHEMA, db=db)
    assert not run(pg, db, schemas=['sales']).get('failed')
    pg.psql('ALTER DATABASE %s SET pg_tde.enforce_encryption = on' % db)
    refused = run(pg, db, schemas=['sales'], state='decrypted')
    assert refused['failed'] is True and refused['changed'] is False
    assert 'pg_tde.enforce_encryption is on in database "%s"' % db in refused['msg']
    assert 'Nothing was changed' in refused['msg'] and 'RESET pg_tde.enforce_encryption' in refused['msg']
    assert am(pg, db, 'sales.orders') == 'tde_heap'
    pg.psql('ALTER DATABASE %s RESET pg_tde.enforce_encryption' % db)
    res = run(pg, db, schemas=['sales'], state='decrypted')
    assert not res.get('failed'), res.get('msg')
    assert {t['status'] for t in res['tables']} == {'decrypted'}
    assert all(t['verified'] and t['checksum_match'] for t in res['tables'])
    assert am(pg, db, 'sales.orders') == 'heap' and enc(pg, db, 'sales.orders_pkey') == 'f'
    assert run(pg, db, schemas=['sales'], state='decrypted')['changed'] is False


def test_partitions(pg):
    db = new_db(pg)
    pg.psql("""
        CREATE TABLE ev (id int, at date, v text) PARTITION BY RANGE (at);
        CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (id);
        CREATE TABLE ev_2026_a PARTITION OF ev_2026 FOR VALUES IN (1, 2);
        CREATE TABLE ev_2026_b PARTITION OF ev_2026 FOR VALUES IN (3);
        CREATE INDEX ON ev (id);
        INSERT INTO ev VALUES (1, '2025-05-01', 'a'), (1, '2026-05-01', 'b'), (3, '2026-06-01', 'c');
    """, db=db)
    res = run(pg, db, tables=['ev'], exclude=['ev_2026_b'])
    assert not res.get('failed'), res.get('msg')
    by = {t['table']: t for t in res['tables']}
    done = sorted(name for name, t in by.items() if t['status'] == 'encrypted')
    # PostgreSQL 17 sets the access method of the partitioned tables too (catalog only, first)
    assert done == ['ev', 'ev_2025', 'ev_2026', 'ev_2026_a']
    assert [p['table'] for p in res['plan']][:2] == ['ev', 'ev_2026']
    assert {p['partition_of'] for p in res['plan']} == {None, 'public.ev', 'public.ev_2026'}
    assert enc(pg, db, 'ev_2026_b') == 'f'
    assert not any('partitioned table' in w for w in res.get('warnings', []))
    assert am(pg, db, 'ev_2025') == 'tde_heap' and am(pg, db, 'ev') == 'tde_heap'
    assert am(pg, db, 'ev_2026') == 'tde_heap' and am(pg, db, 'ev_2026_b') == 'heap'
    # a partitioned table has no storage: pg_tde_is_encrypted says NULL, not true
    assert enc(pg, db, 'ev') == ''
    # partitions created later inherit tde_heap from their partitioned table
    pg.psql("CREATE TABLE ev_2027 PARTITION OF ev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')", db=db)
    assert am(pg, db, 'ev_2027') == 'tde_heap' and enc(pg, db, 'ev_2027') == 't'
    idx = pg.psql("SELECT string_agg(pg_tde_is_encrypted(indexrelid::regclass)::text, ',') FROM pg_index "
                  "WHERE indrelid = 'ev_2025'::regclass", db=db)
    assert idx == 'true'
    assert pg.psql('SELECT count(*) FROM ev', db=db) == '3'


def test_matviews_only_when_asked(pg):
    db = new_db(pg)
    pg.psql("CREATE TABLE src (id int); INSERT INTO src SELECT generate_series(1, 50);"
            "CREATE MATERIALIZED VIEW mv AS SELECT id * 2 AS d FROM src;"
            "CREATE MATERIALIZED VIEW mv_empty AS SELECT 1 AS one WITH NO DATA;", db=db)
    res = run(pg, db, all_tables=True)
    assert not res.get('failed'), res.get('msg')
    assert am(pg, db, 'mv') == 'heap' and am(pg, db, 'src') == 'tde_heap'
    named = run(pg, db, tables=['mv'])
    assert named['failed'] is True and 'include_matviews' in named['msg']
    res = run(pg, db, all_tables=True, include_matviews=True)
    assert not res.get('failed'), res.get('msg')
    by = {t['table']: t for t in res['tables']}
    assert by['mv']['status'] == 'encrypted' and by['mv']['checksum_match'] is True and by['mv']['rows'] == 50
    assert by['mv_empty']['status'] == 'encrypted' and by['mv_empty']['checksum_match'] is None
    assert am(pg, db, 'mv') == 'tde_heap' and am(pg, db, 'mv_empty') == 'tde_heap'
    assert pg.psql('SELECT sum(d) FROM mv', db=db) == '2550'


def test_no_key_refusal(pg):
    db = new_db(pg, key=None)
    pg.psql('CREATE TABLE t (id int)', db=db)
    res = run(pg, db, tables=['t'])
    assert res['failed'] is True and res['changed'] is False
    assert 'Database "%s" has no principal key' % db in res['msg']
    assert 'pg_tde_key_info()' in res['msg'] and 'pg_tde_default_key_info()' in res['msg']
    assert 'Nothing was changed' in res['msg']
    assert am(pg, db, 't') == 'heap'
    # in check mode too: the plan is not offered when it could not be carried out
    assert run(pg, db, check=True, tables=['t'])['failed'] is True


def test_default_key_is_enough(pg):
    db = new_db(pg, key='default')
    pg.psql('CREATE TABLE t (id int)', db=db)
    res = run(pg, db, tables=['t'])
    assert not res.get('failed'), res.get('msg')
    assert am(pg, db, 't') == 'tde_heap'
    # leave no default key behind for the other tests of this module
    pg.psql('DROP TABLE t', db=db)
    pg.psql('SELECT pg_tde_delete_default_key()', db=db)


def test_missing_table_and_bad_options_change_nothing(pg):
    db = new_db(pg)
    pg.psql('CREATE TABLE present (id int); CREATE VIEW v AS SELECT 1', db=db)
    res = run(pg, db, tables=['present', 'absent', 'v'])
    assert res['failed'] is True and res['changed'] is False
    assert 'table "absent" does not exist' in res['msg'] and '"public.v" is a view' in res['msg']
    assert am(pg, db, 'present') == 'heap'
    res = run(pg, db, tables=['present'], lock_timeout='soon')
    assert res['failed'] is True and 'lock_timeout "soon" is not valid' in res['msg']
    assert am(pg, db, 'present') == 'heap'
    res = run(pg, db)
    assert res['failed'] is True and 'name what to change' in res['msg']


def test_free_space_refusal(pg):
    db = new_db(pg)
    pg.psql('CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)', db=db)
    res = run(pg, db, tables=['t'], free_space_margin=1e15)
    assert res['failed'] is True and res['changed'] is False
    assert 'Not enough free space' in res['msg'] and 'Nothing was changed' in res['msg']
    assert am(pg, db, 't') == 'heap'


def test_parallel_across_databases(pg):
    db1, db2 = new_db(pg), new_db(pg)
    for db in (db1, db2):
        pg.psql(';'.join('CREATE TABLE t%d (id int PRIMARY KEY, v text);'
                         'INSERT INTO t%d SELECT g, md5(g::text) FROM generate_series(1, %d) g'
                         % (i, i, 200 * i) for i in range(1, 6)), db=db)
    res = run(pg, db1, databases=[db1, db2], all_tables=True, parallel=3)
    assert not res.get('failed'), res.get('msg')
    assert len(res['tables']) == 10 and {t['status'] for t in res['tables']} == {'encrypted'}
    assert all(t['checksum_match'] for t in res['tables'])
    assert res['summary']['changed'] == 10 and res['summary']['bytes_rewritten'] == res['bytes_to_rewrite']
    for db in (db1, db2):
        assert pg.psql("SELECT count(*) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                       "WHERE c.relname ~ '^t[0-9]$' AND a.amname = 'tde_heap'", db=db) == '5'


@pytest.mark.parametrize('order', ['as_given'])
def test_as_given_order(pg, order):
    db = new_db(pg)
    pg.psql('CREATE TABLE a (id int); CREATE TABLE b (id int); INSERT INTO b SELECT generate_series(1, 5000)', db=db)
    res = run(pg, db, check=True, tables=['a', 'b'], order=order)
    assert [p['table'] for p in res['plan']] == ['a', 'b']


def test_refuses_when_pg_tde_is_not_loaded(pg_cluster_factory):
    plain = pg_cluster_factory(preload=())
    plain.psql('CREATE TABLE t (id int)')
    res = run_module(MODULE, dict(plain.login_args(), tables=['t']))
    assert res['failed'] is True and res['changed'] is False
    assert 'pg_tde is not loaded' in res['msg'] and 'shared_preload_libraries' in res['msg']


def run_playbook(playbook: str, tmp_path, extra_vars: dict) -> dict:
    """ansible-playbook on a local inventory; returns {task name: localhost result} of the last
    run of each task. ansible_become=false overrides the play's become (the test runs as root
    against the cluster's socket, where the test cluster trusts every local user)."""
    import json
    import subprocess
    import sys

    from tests.support.ansible_runner import ROOT, ansible_env
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('localhost ansible_connection=local ansible_become=false '
                         'ansible_python_interpreter=%s\n' % sys.executable)
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(inventory),
                           os.path.join(ROOT, 'playbooks', playbook), '-e', json.dumps(extra_vars)],
                          capture_output=True, text=True, env=ansible_env(), timeout=300)
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    tasks = {t['task']['name']: t['hosts']['localhost'] for play in doc['plays'] for t in play['tasks']}
    return {'rc': proc.returncode, 'tasks': tasks, 'stats': doc['stats']['localhost']}


def test_encrypt_tables_playbook(pg, tmp_path):
    """playbooks/encrypt_tables.yml on an inventory: the check-mode plan first, then the
    rewrite of every user table of the database but the excluded ones; a second run plans
    nothing and changes nothing."""
    db = new_db(pg)
    pg.psql(SCHEMA, db=db)
    # the server is found through the host's layout (pg_layout_port/_socket_dir), as the roles find it
    extra = {'tde_tables_hosts': 'all', 'tde_tables_databases': [db], 'tde_tables_exclude': ['public.scratch_%'],
             'pg_layout_socket_dir': pg.socket_dir, 'pg_layout_port': pg.port,
             'tde_tables_parallel': 2}
    first = run_playbook('encrypt_tables.yml', tmp_path, extra)
    assert first['rc'] == 0, first
    plan = first['tasks']['Plan the change (check mode, nothing is changed)']
    assert plan['changed'] is False      # the plan is not a change in the recap
    planned = {(i['schema'], i['table']) for i in plan['plan']}
    assert planned == {('public', 'big'), ('public', 'small'), ('sales', 'orders'), ('sales', 'order_lines')}
    result = first['tasks']['Rewrite the tables']
    assert result['changed'] is True and result['summary']['changed'] == 4 and result['summary']['failed'] == 0
    assert all(t['verified'] is True and t['checksum_match'] is not False for t in result['tables'])
    for rel in ('public.big', 'public.small', 'sales.orders', 'sales.order_lines'):
        assert enc(pg, db, rel) == 't', rel
    assert enc(pg, db, 'public.scratch_1') == 'f'

    second = run_playbook('encrypt_tables.yml', tmp_path, extra)
    assert second['rc'] == 0 and second['stats']['changed'] == 0, second['stats']
    assert second['tasks']['Rewrite the tables']['plan'] == []


def test_checksum_hash_per_column_and_text_fallback(pg):
    """verify_integrity hashes rows column by column (hash_record_extended) and falls back to
    the row's text for a column type without a hash function (json, point), inside the same
    transaction; both ways prove the rows, there and back, and say where the time went."""
    db = new_db(pg)
    pg.psql("CREATE TABLE plain (id int PRIMARY KEY, note text, amount numeric, tags text[], at timestamptz);"
            "INSERT INTO plain SELECT g, md5(g::text), g / 7.0, ARRAY[g::text, NULL], now() FROM generate_series(1, 2000) g;"
            "INSERT INTO plain VALUES (0, NULL, NULL, NULL, NULL);"
            "CREATE TABLE odd (id int, doc json, spot point);"
            "INSERT INTO odd SELECT g, json_build_object('g', g), point(g, -g) FROM generate_series(1, 500) g;"
            "CREATE TABLE empty_odd (doc json)", db=db)
    res = run(pg, db, tables=['plain', 'odd', 'empty_odd'])
    assert not res.get('failed'), res.get('msg')
    by = {r['table']: r for r in res['tables']}
    assert by['plain']['checksum_method'] == 'record' and by['plain']['rows'] == 2001
    assert by['odd']['checksum_method'] == 'text' and by['odd']['rows'] == 500
    # an empty table never reaches a value: the per-column hash answers (0 rows) before and after
    assert by['empty_odd']['rows'] == 0 and by['empty_odd']['checksum_match'] is True
    for r in res['tables']:
        assert r['status'] == 'encrypted' and r['checksum_match'] is True and r['verified'] is True
        assert set(r['phase_seconds']) == {'lock', 'checksum_before', 'rewrite', 'check', 'checksum_after', 'commit'}
        assert enc(pg, db, r['table']) == 't'
    back = run(pg, db, tables=['plain', 'odd'], state='decrypted')
    assert not back.get('failed'), back.get('msg')
    assert all(r['checksum_match'] is True for r in back['tables'])
    assert pg.psql('SELECT count(*) FROM odd WHERE spot[0] = id AND (doc->>\'g\')::int = id', db=db) == '500'
