"""pg_tde_table_encrypt method: online, on the REAL pg_tde (PostgreSQL 17 clusters of
tests/support/pg.py): concurrent writers checked against an independent record, everything that
hangs on a table carried over (pg_dump before and after), refusals, interruptions at every step
(backend killed, KMS down, disk full) and resume. Small tables: the 1 GB figures come from
bench/online_encrypt.py."""
from __future__ import annotations

import difflib
import itertools
import os
import random
import re
import subprocess
import tempfile
import threading
import time

import pytest

from tests.support.ansible_runner import run_module
from tests.support.pg import PG_BIN

MODULE = 'pg_tde_table_encrypt'
_n = itertools.count(1)


def new_db(pg) -> str:
    name = 'onl%d' % next(_n)
    pg.create_database(name, extension=True)
    keyfile = os.path.join(pg.workdir, '%s.keys' % name)
    pg.psql("SELECT pg_tde_add_database_key_provider_file('fp', '%s');"
            "SELECT pg_tde_create_key_using_database_key_provider('k_%s', 'fp');"
            "SELECT pg_tde_set_key_using_database_key_provider('k_%s', 'fp');" % (keyfile, name, name), db=name)
    return name


def run(pg, db: str, check: bool = False, **args):
    params = pg.login_args(db)
    params.update(method='online', online_batch_rows=300, lock_timeout='2s', retry_delay=0.2)
    params.update(args)
    return run_module(MODULE, params, check=check)


def am(pg, db: str, rel: str) -> str:
    return pg.psql("SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = '%s'::regclass"
                   % rel, db=db)


def leftovers(pg, db: str) -> str:
    return pg.psql("SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c JOIN pg_namespace n "
                   "ON n.oid = c.relnamespace WHERE n.nspname = 'tdeops_online' AND c.relkind = 'r' "
                   "AND c.relname <> 'jobs'", db=db) + '|' + pg.psql(
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tdeops_online%'", db=db)


# ---------------------------------------------------------------------------------------------
# concurrent writers with an independent record of what they wrote
# ---------------------------------------------------------------------------------------------

class Writers:
    """Threads that insert, update (also the key) and delete rows of `table`, each on keys of its
    own, one autocommit statement at a time. Every statement returns the tableoid it hit, so the
    record says which writes went to the old table (before the switch) and which to the new."""

    def __init__(self, pg, db: str, table: str, first_free: int, threads: int = 2) -> None:
        self.pg, self.db, self.table = pg, db, table
        self.threads = threads
        self.stop = threading.Event()
        self.ops: list[list[tuple[int, str, int, int | None, str | None]]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self.next_key = [first_free + t for t in range(threads)]
        self.workers = [threading.Thread(target=self.work, args=(t,), daemon=True) for t in range(threads)]

    def start(self) -> 'Writers':
        for w in self.workers:
            w.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for w in self.workers:
            w.join(60)

    def work(self, t: int) -> None:
        rnd = random.Random(t)
        conn = self.pg.connect(self.db)
        mine = [k for k in range(1, 2001) if k % self.threads == t]   # initial rows of this thread
        seq = 0
        try:
            while not self.stop.is_set():
                seq += 1
                val = 't%d-%d' % (t, seq)
                op = rnd.random()
                try:
                    if op < 0.45 or not mine:
                        key = self.next_key[t]
                        self.next_key[t] += self.threads
                        row = conn.execute('INSERT INTO %s (id, v) VALUES (%%s, %%s) RETURNING tableoid::bigint'
                                           % self.table, (key, val)).fetchone()
                        mine.append(key)
                        self.ops[t].append((row[0], 'set', key, None, val))
                    elif op < 0.85:
                        key = rnd.choice(mine)
                        row = conn.execute('UPDATE %s SET v = %%s WHERE id = %%s RETURNING tableoid::bigint'
                                           % self.table, (val, key)).fetchone()
                        self.ops[t].append((row[0], 'set', key, None, val))
                    elif op < 0.92:
                        key = rnd.choice(mine)
                        new = self.next_key[t]
                        self.next_key[t] += self.threads
                        row = conn.execute('UPDATE %s SET id = %%s, v = %%s WHERE id = %%s RETURNING tableoid::bigint'
                                           % self.table, (new, val, key)).fetchone()
                        mine.remove(key)
                        mine.append(new)
                        self.ops[t].append((row[0], 'move', key, new, val))
                    else:
                        key = rnd.choice(mine)
                        row = conn.execute('DELETE FROM %s WHERE id = %%s RETURNING tableoid::bigint' % self.table,
                                           (key,)).fetchone()
                        mine.remove(key)
                        self.ops[t].append((row[0], 'del', key, None, None))
                except Exception as exc:  # noqa: BLE001 - a lock timeout of the application is not a loss
                    self.errors.append(str(exc))
                    if conn.closed or conn.broken:
                        conn = self.pg.connect(self.db)
                    time.sleep(0.01)
                    continue
                time.sleep(0.002)
        finally:
            conn.close()

    def model(self, initial: dict[int, str], only_oid: int | None = None) -> dict[int, str]:
        rows = dict(initial)
        for ops in self.ops:
            for oid, kind, key, new, val in ops:
                if only_oid is not None and oid != only_oid:
                    continue
                if kind == 'set':
                    rows[key] = val
                elif kind == 'move':
                    del rows[key]
                    rows[new] = val
                else:
                    del rows[key]
        return rows


def table_rows(pg, db: str, rel: str) -> dict[int, str]:
    out = pg.psql("SELECT string_agg(id || '=' || v, ';' ORDER BY id) FROM %s" % rel, db=db)
    return dict((int(k), v) for k, v in (p.split('=', 1) for p in out.split(';'))) if out else {}


def test_online_under_concurrent_writes_loses_and_duplicates_nothing(pg):
    db = new_db(pg)
    pg.psql("CREATE TABLE public.acct (id bigint PRIMARY KEY, v text NOT NULL, pad text DEFAULT repeat('x', 200));"
            "INSERT INTO public.acct (id, v) SELECT g, 'init-' || g FROM generate_series(1, 2000) g;"
            "CREATE INDEX acct_v ON public.acct (v)", db=db)
    initial = {k: 'init-%d' % k for k in range(1, 2001)}
    old_oid = int(pg.psql("SELECT 'public.acct'::regclass::oid", db=db))
    writers = Writers(pg, db, 'public.acct', first_free=10000).start()
    time.sleep(0.5)
    try:
        res = run(pg, db, tables=['acct'], online_keep_old=True)
        time.sleep(0.5)                          # writes go on after the switch, into the new table
    finally:
        writers.finish()
    assert not res.get('failed'), res.get('msg')
    t = res['tables'][0]
    assert t['status'] == 'encrypted' and t['method'] == 'online' and t['verified'] is True
    assert t['checksum_match'] is True and t['copied_rows'] >= 2000
    assert t['switch_lock_seconds'] is not None and t['setup_lock_seconds'] is not None
    assert t['old_table'] == 'tdeops_online.old_%d' % old_oid
    assert am(pg, db, 'public.acct') == 'tde_heap'
    assert pg.psql("SELECT pg_tde_is_encrypted('public.acct_v')", db=db) == 't'
    new_oid = int(pg.psql("SELECT 'public.acct'::regclass::oid", db=db))
    before = sum(1 for ops in writers.ops for o in ops if o[0] == old_oid)
    after = sum(1 for ops in writers.ops for o in ops if o[0] == new_oid)
    assert before > 20 and after > 0, (before, after, writers.errors[:3])
    # the old table is the table at the switch: exactly the writes that hit it
    assert table_rows(pg, db, 'tdeops_online.old_%d' % old_oid) == writers.model(initial, only_oid=old_oid)
    # the new table has every write, before and after the switch, nothing twice
    assert table_rows(pg, db, 'public.acct') == writers.model(initial)
    assert pg.psql('SELECT count(*) = count(DISTINCT id) FROM public.acct', db=db) == 't'
    # and back, online too, while the writers go on
    writers2 = Writers(pg, db, 'public.acct', first_free=100000).start()
    try:
        res = run(pg, db, tables=['acct'], state='decrypted')
    finally:
        writers2.finish()
    assert not res.get('failed'), res.get('msg')
    assert am(pg, db, 'public.acct') == 'heap'
    assert leftovers(pg, db) == 'old_%d|0' % old_oid        # only the old table we asked to keep
    current = writers.model(initial)
    for ops in writers2.ops:                                   # the second batch of writes on top
        for _, kind, key, new, val in ops:
            if kind == 'set':
                current[key] = val
            elif kind == 'move':
                del current[key]
                current[new] = val
            else:
                del current[key]
    assert table_rows(pg, db, 'public.acct') == current


# ---------------------------------------------------------------------------------------------
# everything that hangs on the table is carried over: pg_dump before and after
# ---------------------------------------------------------------------------------------------

DEPENDENTS = """
CREATE ROLE onl_app_%(db)s; CREATE ROLE onl_reader_%(db)s; CREATE ROLE onl_delegate_%(db)s;
CREATE SCHEMA shop AUTHORIZATION onl_app_%(db)s;
SET ROLE onl_app_%(db)s;
CREATE TABLE shop.customers (id int PRIMARY KEY, name text);
INSERT INTO shop.customers SELECT g, 'c' || g FROM generate_series(1, 50) g;
CREATE SEQUENCE shop.ext_seq;
CREATE TABLE shop.orders (
    id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 10 INCREMENT BY 3 CACHE 2) PRIMARY KEY,
    no serial,
    customer_id int NOT NULL REFERENCES shop.customers ON DELETE CASCADE,
    parent_id bigint,
    amount numeric(10,2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    note text COLLATE "C",
    created timestamptz NOT NULL DEFAULT now(),
    doubled numeric GENERATED ALWAYS AS (amount * 2) STORED,
    ext bigint DEFAULT nextval('shop.ext_seq'),
    CONSTRAINT note_len CHECK (length(note) < 100),
    CONSTRAINT no_unique UNIQUE (no)
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE shop.orders SET (toast.autovacuum_enabled = false);
ALTER TABLE shop.orders ADD CONSTRAINT parent_fk FOREIGN KEY (parent_id) REFERENCES shop.orders (id) ON DELETE SET NULL;
ALTER TABLE shop.orders ADD CONSTRAINT small CHECK (amount < 1000000) NOT VALID;
ALTER TABLE shop.orders ALTER COLUMN note SET STATISTICS 500;
ALTER TABLE shop.orders ALTER COLUMN amount SET (n_distinct = 100);
CREATE INDEX orders_note_lower ON shop.orders (lower(note)) WHERE note IS NOT NULL;
CREATE UNIQUE INDEX orders_created_id ON shop.orders (created, id) INCLUDE (amount);
ALTER TABLE shop.orders REPLICA IDENTITY USING INDEX orders_created_id;
ALTER TABLE shop.orders CLUSTER ON no_unique;
CREATE STATISTICS shop.orders_stats (ndistinct, dependencies) ON customer_id, amount FROM shop.orders;
ALTER STATISTICS shop.orders_stats SET STATISTICS 200;
INSERT INTO shop.orders (customer_id, amount, note) SELECT 1 + g %% 50, g, 'n' || g FROM generate_series(1, 900) g;
UPDATE shop.orders SET parent_id = id - 3 WHERE id > 30 AND id %% 2 = 0;
CREATE TABLE shop.lines (id int PRIMARY KEY, order_id bigint REFERENCES shop.orders ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
                         qty int);
INSERT INTO shop.lines SELECT g, 10 + 3 * (g %% 800), g FROM generate_series(1, 300) g;
CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.touch();
CREATE TRIGGER orders_never AFTER DELETE ON shop.orders FOR EACH STATEMENT EXECUTE FUNCTION shop.touch();
ALTER TABLE shop.orders DISABLE TRIGGER orders_never;
CREATE RULE orders_no_huge AS ON INSERT TO shop.orders WHERE NEW.amount > 999999 DO INSTEAD NOTHING;
ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE shop.orders FORCE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON shop.orders FOR SELECT TO onl_reader_%(db)s USING (customer_id < 10);
CREATE POLICY all_rows ON shop.orders AS PERMISSIVE FOR ALL TO onl_app_%(db)s USING (true) WITH CHECK (amount >= 0);
GRANT SELECT, INSERT ON shop.orders TO onl_delegate_%(db)s WITH GRANT OPTION;
GRANT SELECT (id, amount), UPDATE (note) ON shop.orders TO onl_reader_%(db)s;
GRANT USAGE ON SCHEMA shop TO onl_reader_%(db)s, onl_delegate_%(db)s;
SET ROLE onl_delegate_%(db)s;
GRANT SELECT ON shop.orders TO onl_reader_%(db)s;
SET ROLE onl_app_%(db)s;
CREATE VIEW shop.big_orders WITH (security_barrier = true) AS SELECT id, amount AS total FROM shop.orders WHERE amount > 100
    WITH CASCADED CHECK OPTION;
CREATE VIEW shop.big_orders_2 AS SELECT b.id, b.total, o.note FROM shop.big_orders b JOIN shop.orders o USING (id);
GRANT SELECT ON shop.big_orders TO onl_reader_%(db)s;
COMMENT ON TABLE shop.orders IS 'the orders';
COMMENT ON COLUMN shop.orders.note IS 'free text';
COMMENT ON INDEX shop.orders_note_lower IS 'for search';
COMMENT ON CONSTRAINT note_len ON shop.orders IS 'short notes';
COMMENT ON CONSTRAINT parent_fk ON shop.orders IS 'tree';
COMMENT ON TRIGGER orders_touch ON shop.orders IS 'fills note';
COMMENT ON POLICY own_rows ON shop.orders IS 'readers see some';
COMMENT ON RULE orders_no_huge ON shop.orders IS 'no huge';
RESET ROLE;
CREATE PUBLICATION onl_pub_%(db)s FOR TABLE shop.orders (id, created, amount, customer_id) WHERE (id > 5), shop.customers;
"""


def dump(pg, db: str) -> str:
    proc = subprocess.run([os.path.join(PG_BIN, 'pg_dump'), '--schema-only', '-h', pg.host, '-p', str(pg.port),
                           '-U', pg.user, '-d', db, '--exclude-schema=tdeops_online'],
                          capture_output=True, text=True, check=True)
    lines = [line for line in proc.stdout.splitlines()
             if not line.startswith('SET default_table_access_method') and not line.startswith('--')]
    return re.sub(r'\n{2,}', '\n\n', '\n'.join(lines))


def test_online_carries_every_dependent_over(pg):
    db = new_db(pg)
    pg.psql(DEPENDENTS % {'db': db}, db=db)
    before = dump(pg, db)
    plan = run(pg, db, check=True, tables=['shop.orders'])
    assert not plan.get('failed'), plan.get('msg')
    online = plan['plan'][0]['online']
    assert online['refused'] == [] and online['key'] == ['id']
    assert [w['step'] for w in online['lock_windows']] == ['setup', 'switch', 'after the switch']
    assert 'shop.lines (references it, ACCESS EXCLUSIVE)' in online['lock_windows'][1]['also']
    assert set(online['carried_over']['views']) == {'shop.big_orders', 'shop.big_orders_2'}
    assert am(pg, db, 'shop.orders') == 'heap'                       # check mode changed nothing
    res = run(pg, db, tables=['shop.orders'])
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['status'] == 'encrypted' and res['tables'][0]['checksum_match'] is True
    after = dump(pg, db)
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), 'before', 'after', lineterm='', n=2))
    assert not diff, '\n'.join(diff)
    assert am(pg, db, 'shop.orders') == 'tde_heap'
    # the carried-over objects work: identity and serial go on, FKs are enforced both ways and
    # validated, the trigger fires, RLS applies, views read the new table
    pg.psql("INSERT INTO shop.orders (customer_id, amount) VALUES (2, 7)", db=db)
    nxt = pg.psql("SELECT id, no, note FROM shop.orders WHERE id = (SELECT max(id) FROM shop.orders)", db=db)
    assert pg.psql("SELECT count(*) FROM tdeops_online.jobs", db=db) == '0' and nxt.split('|')[2] == 'touched'
    assert int(nxt.split('|')[0]) == 10 + 3 * 900 and int(nxt.split('|')[1]) == 901
    assert pg.psql("SELECT bool_and(convalidated) FROM pg_constraint WHERE contype = 'f'", db=db) == 't'
    bad = pg.psql_result("INSERT INTO shop.lines VALUES (9999, 123456789, 1)", db=db)
    assert bad.returncode != 0 and 'violates foreign key constraint' in bad.stderr
    pg.psql('DELETE FROM shop.customers WHERE id = 3', db=db)          # cascades into the new table
    assert pg.psql('SELECT count(*) FROM shop.orders WHERE customer_id = 3', db=db) == '0'
    reader = pg.psql("SET ROLE onl_reader_%s; SELECT count(*), max(customer_id) FROM shop.orders" % db, db=db)
    assert reader == pg.psql('SELECT count(*), max(customer_id) FROM shop.orders WHERE customer_id < 10', db=db)
    assert reader.endswith('|9')
    assert pg.psql('SELECT count(*) FROM shop.big_orders_2', db=db) == pg.psql(
        'SELECT count(*) FROM shop.orders WHERE amount > 100', db=db)
    assert leftovers(pg, db) == '|0'


# ---------------------------------------------------------------------------------------------
# refusals: up front, with the reason, nothing changed (also in check mode)
# ---------------------------------------------------------------------------------------------

def test_online_refusals(pg):
    db = new_db(pg)
    pg.psql("""
        CREATE TABLE nokey (a int, b text);
        CREATE TABLE mvsrc (id int PRIMARY KEY); CREATE MATERIALIZED VIEW mv AS SELECT id FROM mvsrc;
        CREATE TABLE typed (id int PRIMARY KEY); CREATE FUNCTION typed_rows() RETURNS SETOF typed LANGUAGE sql AS 'SELECT * FROM typed';
        CREATE TABLE parted (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
        CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
        CREATE TABLE parted_d PARTITION OF parted DEFAULT;
        CREATE TABLE base (id int PRIMARY KEY); CREATE TABLE child (extra int) INHERITS (base);
        CREATE TABLE fine (id int PRIMARY KEY);
    """, db=db)
    res = run(pg, db, check=True, tables=['nokey', 'mvsrc', 'typed', 'parted', 'base', 'fine'])
    assert res['failed'] is True and res['changed'] is False
    msg = res['msg']
    assert msg.startswith('Nothing was changed')
    assert 'public.nokey cannot be moved online: it has no primary key and no unique index' in msg
    assert 'materialized view public.mv reads it' in msg
    assert 'public.typed cannot be moved online: function public.typed_rows() depends on it' in msg
    assert 'public.parted_1 cannot be moved online: it is a partition of public.parted, which has a DEFAULT' in msg
    assert 'public.parted_d cannot' not in msg          # the default partition itself can be moved
    assert 'public.base cannot be moved online: it takes part in table inheritance' in msg
    assert 'public.fine' not in msg and 'use method: rewrite' in msg
    assert run(pg, db, tables=['nokey'])['failed'] is True
    assert am(pg, db, 'nokey') == 'heap' and leftovers(pg, db) == '|0'
    # the same tables move with method rewrite
    plain = run(pg, db, tables=['nokey'], method='rewrite')
    assert not plain.get('failed'), plain.get('msg')


# ---------------------------------------------------------------------------------------------
# interruptions: the table stays usable, the next run resumes
# ---------------------------------------------------------------------------------------------

class Engine:
    """OnlineMove driven directly (not through ansible), so that a test can act at its pause
    points: the named steps of _online.OnlineMove._run."""

    def __init__(self, pg, db: str, table: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import PgSession

        class _Module:
            check_mode = False

        self.pg, self.db, self.table = pg, db, table
        conn = psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname=db, autocommit=True,
                               row_factory=dict_row)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        self.session = PgSession(_Module(), conn, db)
        self.pid = conn.info.backend_pid
        schema, name = table.split('.')
        self.item = {'oid': int(pg.psql("SELECT '%s'::regclass::oid" % table, db=db)), 'schema': schema,
                     'table': name}

    def run(self, pause=None, **options):
        from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import pg_error_text
        from ansible_collections.tdeops.pg_tde.plugins.module_utils._online import OnlineMove
        opts = dict(lock_timeout='2s', retries=1, retry_delay=0.1, verify_integrity=True, batch_rows=150,
                    keep_old=False, max_catchup_seconds=60, pg_error_text=pg_error_text, pause=pause)
        opts.update(options)
        try:
            return OnlineMove(self.session, self.item, 'encrypted', **opts).run()
        finally:
            self.session.close()

    def kill(self) -> None:
        self.pg.psql('SELECT pg_terminate_backend(%d)' % self.pid, db=self.db)
        time.sleep(0.2)


SMALL = ("CREATE TABLE public.t (id int PRIMARY KEY, v text NOT NULL); CREATE INDEX t_v ON public.t (v);"
         "INSERT INTO public.t SELECT g, 'v' || g FROM generate_series(1, 1000) g")


def write_some(pg, db: str, model: dict[int, str], tag: str) -> None:
    """Writes between steps (recorded in model), so every step has changes to carry."""
    base = max(model) + 1
    pg.psql("INSERT INTO public.t VALUES (%d, '%s-a'), (%d, '%s-b'); UPDATE public.t SET v = '%s-u' WHERE id = 7;"
            "DELETE FROM public.t WHERE id = (SELECT min(id) FROM public.t WHERE id > 100)" % (base, tag, base + 1,
                                                                                              tag, tag), db=db)
    model[base] = '%s-a' % tag
    model[base + 1] = '%s-b' % tag
    model[7] = '%s-u' % tag
    del model[min(k for k in model if k > 100)]


STEPS = ['setup', 'copy', 'copy_batch', 'first_round', 'indexes', 'catchup', 'switch', 'switch_locked', 'finish']
RESUMED_FROM = {'setup': None, 'copy': 'copy', 'copy_batch': 'copy', 'first_round': 'first_round',
                'indexes': 'indexes', 'catchup': 'catchup', 'switch': 'catchup', 'switch_locked': 'catchup',
                'finish': 'swapped'}


@pytest.mark.parametrize('step', STEPS)
def test_online_backend_killed_at_each_step_then_resumed(pg, step):
    db = new_db(pg)
    pg.psql(SMALL, db=db)
    model = {k: 'v%d' % k for k in range(1, 1001)}
    engine = Engine(pg, db, 'public.t')
    blocked: list[threading.Thread] = []

    def pause(name):
        if name == 'switch_locked':
            # inside the switch transaction, table locked: this write waits for the lock and lands
            # in the old table once the killed switch has rolled back
            blocked.append(threading.Thread(target=write_some, args=(pg, db, model, name)))
            blocked[0].start()
            time.sleep(0.5)
        else:
            write_some(pg, db, model, name)
        if name == step:
            engine.kill()

    res = engine.run(pause=pause)
    for thread in blocked:
        thread.join(60)
    assert res['status'] == 'failed', res
    if step == 'finish':
        assert 'the switch is done' in res['error'] and 'Run again to finish' in res['error']
    else:
        assert 'connection lost' in res['error'] and 'The table is untouched' in res['error']
    assert res['job_kept'] is (step != 'setup')
    # the table is in place and usable (the old one until the switch, the new one after it)
    write_some(pg, db, model, 'between')
    assert am(pg, db, 'public.t') == ('tde_heap' if step == 'finish' else 'heap')
    assert table_rows(pg, db, 'public.t') == model
    # the next run resumes where the job stopped and finishes it
    again = run(pg, db, tables=['t'])
    assert not again.get('failed'), again.get('msg')
    assert again['tables'][0]['resumed_from'] == RESUMED_FROM[step]
    assert again['tables'][0]['status'] == 'encrypted'
    assert am(pg, db, 'public.t') == 'tde_heap' and pg.psql("SELECT pg_tde_is_encrypted('public.t_v')", db=db) == 't'
    assert table_rows(pg, db, 'public.t') == model
    assert leftovers(pg, db) == '|0'
    assert run(pg, db, tables=['t'])['changed'] is False


def test_online_interrupted_then_aborted(pg):
    db = new_db(pg)
    pg.psql(SMALL, db=db)
    engine = Engine(pg, db, 'public.t')
    engine.run(pause=lambda name: engine.kill() if name == 'catchup' else None)
    assert leftovers(pg, db) != '|0'
    warned = run(pg, db, tables=[], all_tables=True, exclude=['t'])
    assert any('an online move of public.t' in w and 'is pending' in w for w in warned.get('warnings', []))
    res = run(pg, db, tables=['t'], online_abort=True)
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['status'] == 'aborted' and res['changed'] is True
    assert leftovers(pg, db) == '|0' and am(pg, db, 'public.t') == 'heap'
    assert pg.psql('SELECT count(*) FROM public.t', db=db) == '1000'


def test_online_truncate_and_alter_meanwhile_start_over(pg):
    db = new_db(pg)
    pg.psql(SMALL, db=db)
    engine = Engine(pg, db, 'public.t')
    engine.run(pause=lambda name: engine.kill() if name == 'catchup' else None)
    pg.psql("TRUNCATE public.t; INSERT INTO public.t VALUES (1, 'after truncate')", db=db)
    res = run(pg, db, tables=['t'])
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['restarted'] == 'the table was truncated while the copy was built'
    assert table_rows(pg, db, 'public.t') == {1: 'after truncate'}
    engine = Engine(pg, db, 'public.t')
    pg.psql('ALTER TABLE public.t SET ACCESS METHOD heap', db=db)
    engine = Engine(pg, db, 'public.t')
    engine.run(pause=lambda name: engine.kill() if name == 'indexes' else None)
    pg.psql("ALTER TABLE public.t ADD COLUMN extra int DEFAULT 5", db=db)
    res = run(pg, db, tables=['t'])
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['restarted'].startswith('the table was altered')
    assert pg.psql('SELECT extra FROM public.t', db=db) == '5' and leftovers(pg, db) == '|0'


def test_online_kms_down_mid_copy(pg_cluster_factory, make_kmip_server):
    """The KMS goes away and the server restarts in the middle of the copy: the run stops, the table
    (still heap) stays usable, a run while the KMS is down is refused before it changes anything,
    and the run after the KMS is back resumes the copy."""
    kms = make_kmip_server()
    client = kms.client_cert('postgres-test')
    pg = pg_cluster_factory()
    db = 'kmsdb'
    pg.create_database(db, extension=True)
    pg.psql("SELECT pg_tde_add_database_key_provider_kmip('kms', '%s', %d, '%s', '%s', '%s');"
            "SELECT pg_tde_create_key_using_database_key_provider('online_kms_key', 'kms');"
            "SELECT pg_tde_set_key_using_database_key_provider('online_kms_key', 'kms')"
            % (kms.host, kms.port, client.cert, client.key, kms.ca), db=db)
    pg.psql(SMALL, db=db)
    model = {k: 'v%d' % k for k in range(1, 1001)}
    engine = Engine(pg, db, 'public.t')
    seen: list[str] = []

    def pause(name):
        seen.append(name)
        if name == 'copy_batch' and seen.count('copy_batch') == 2:      # in the middle of the copy
            kms.stop()
            pg.restart()

    res = engine.run(pause=pause)
    assert res['status'] == 'failed' and res['job_kept'] is True, res
    write_some(pg, db, model, 'kms-down')
    assert table_rows(pg, db, 'public.t') == model and am(pg, db, 'public.t') == 'heap'
    refused = run(pg, db, tables=['t'])
    assert refused['failed'] is True and refused['changed'] is False
    assert 'Nothing was changed' in refused['msg']
    assert 'not found in key provider' in refused['msg'] or 'cannot be fetched' in refused['msg']
    kms.start()
    res = run(pg, db, tables=['t'])
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['resumed_from'] == 'copy' and res['tables'][0]['checksum_match'] is True
    assert table_rows(pg, db, 'public.t') == model and am(pg, db, 'public.t') == 'tde_heap'


@pytest.fixture
def small_fs():
    """A 6 MB tmpfs (a tablespace that fills up); skips loudly where mounting is not allowed."""
    path = tempfile.mkdtemp(prefix='tdeops-online-fs-', dir='/tmp')
    os.chmod(path, 0o755)
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=6M,mode=0700', 'tdeops-online', path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        os.rmdir(path)
        pytest.skip('SKIPPED LOUDLY: cannot mount a tmpfs for the disk-full test (%s)' % proc.stderr.strip())
    subprocess.run(['chown', 'postgres:postgres', path], check=True)
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', path], capture_output=True)
        os.rmdir(path)


def test_online_disk_full_mid_copy(pg, small_fs):
    db = new_db(pg)
    pg.psql("CREATE TABLESPACE onl_small LOCATION '%s'" % small_fs)
    try:
        pg.psql("CREATE TABLE public.t (id int PRIMARY KEY, v text NOT NULL) TABLESPACE onl_small;"
                "INSERT INTO public.t SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 12000) g", db=db)
        size = int(pg.psql("SELECT pg_total_relation_size('public.t')", db=db))
        # refused up front when the free space check says no
        refused = run(pg, db, tables=['t'], free_space_margin=1000)
        assert refused['failed'] is True and 'Not enough free space' in refused['msg']
        assert leftovers(pg, db) == '|0'
        # the check passes, then the file system fills up in the middle of the copy
        filler = os.path.join(small_fs, 'filler')
        engine = Engine(pg, db, 'public.t')

        def pause(name):
            # after the setup, before the first batch (PostgreSQL extends a file ahead of the rows
            # it bulk-inserts, so filling up later may not be felt by such a small copy)
            if name == 'copy':
                free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
                with open(filler, 'wb') as fh:
                    fh.write(b"\0" * max(0, free - 64 * 1024))

        res = engine.run(pause=pause, batch_rows=1000)
        assert res['status'] == 'failed' and res['job_kept'] is False, res
        assert 'No space left on device' in res['error'] and 'were removed' in res['error']
        assert leftovers(pg, db) == '|0'
        assert pg.psql('SELECT count(*) FROM public.t', db=db) == '12000' and am(pg, db, 'public.t') == 'heap'
        os.unlink(filler)
        res = run(pg, db, tables=['t'])
        assert not res.get('failed'), res.get('msg')
        assert res['tables'][0]['rows'] == 12000 and size > 0
    finally:
        pg.psql('DROP TABLE IF EXISTS public.t', db=db)
        pg.psql('DROP TABLESPACE IF EXISTS onl_small')


def test_encrypt_tables_playbook_online(pg, tmp_path):
    """playbooks/encrypt_tables.yml with tde_tables_method: online: the plan (not counted as a
    change), then the online move; a second run changes nothing."""
    import json
    import sys

    from tests.support.ansible_runner import ROOT, ansible_env
    db = new_db(pg)
    pg.psql(SMALL, db=db)
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('localhost ansible_connection=local ansible_become=false '
                         'ansible_python_interpreter=%s\n' % sys.executable)
    extra = {'tde_tables_hosts': 'all', 'tde_tables_databases': [db], 'tde_tables_method': 'online',
             'tde_tables_login_unix_socket': pg.socket_dir, 'tde_tables_login_port': pg.port,
             'tde_tables_online_batch_rows': 400}

    def play() -> dict:
        proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(inventory),
                               os.path.join(ROOT, 'playbooks', 'encrypt_tables.yml'), '-e', json.dumps(extra)],
                              capture_output=True, text=True, env=ansible_env(), timeout=300)
        doc = json.loads(proc.stdout[proc.stdout.index('{'):])
        tasks = {t['task']['name']: t['hosts']['localhost'] for p in doc['plays'] for t in p['tasks']}
        return {'rc': proc.returncode, 'tasks': tasks, 'stats': doc['stats']['localhost']}

    first = play()
    assert first['rc'] == 0, first
    plan = first['tasks']['Plan the change (check mode, nothing is changed)']
    assert plan['changed'] is False and plan['plan'][0]['method'] == 'online'
    assert plan['plan'][0]['online']['lock_windows'][1]['mode'] == 'ACCESS EXCLUSIVE'
    result = first['tasks']['Rewrite the tables']
    assert result['changed'] is True and result['tables'][0]['method'] == 'online'
    assert first['stats']['changed'] == 1
    assert am(pg, db, 'public.t') == 'tde_heap'
    second = play()
    assert second['rc'] == 0 and second['stats']['changed'] == 0, second['stats']


PARTITIONS = """
CREATE ROLE onl_part_reader_%(db)s;
CREATE TABLE ev (id bigint NOT NULL, at date NOT NULL, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') WITH (fillfactor = 90);
CREATE TABLE ev_2026 PARTITION OF ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ev_v ON ev (v);
CREATE INDEX ev_2025_local ON ev_2025 (id) WHERE v IS NOT NULL;
ALTER TABLE ev ADD CONSTRAINT ev_v_len CHECK (length(v) < 50);
CREATE FUNCTION ev_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.v := coalesce(NEW.v, 'stamped'); RETURN NEW; END $$;
CREATE TRIGGER ev_all BEFORE INSERT ON ev FOR EACH ROW EXECUTE FUNCTION ev_stamp();
CREATE TRIGGER ev_2025_own BEFORE UPDATE ON ev_2025 FOR EACH ROW EXECUTE FUNCTION ev_stamp();
GRANT SELECT ON ev_2025 TO onl_part_reader_%(db)s;
COMMENT ON TABLE ev_2025 IS 'last year';
INSERT INTO ev SELECT g, DATE '2025-01-01' + (g %% 365), 'r' || g FROM generate_series(1, 1500) g;
INSERT INTO ev SELECT g, DATE '2026-01-01' + (g %% 365), 'r' || g FROM generate_series(1501, 2000) g;
"""


def test_online_partition_under_writes_through_the_parent(pg):
    """A partition is moved online while rows are inserted, updated, deleted and moved between
    partitions through the partitioned table; the switch detaches the old partition and attaches
    the copy (indexes, CHECK constraints and triggers of the partitioned table attach to it)."""
    db = new_db(pg)
    pg.psql(PARTITIONS % {'db': db}, db=db)
    before = dump(pg, db)
    model = {int(i): (at, v) for i, at, v in (line.split('|') for line in pg.psql(
        'SELECT id, at, v FROM ev ORDER BY id', db=db).splitlines())}
    stop = threading.Event()
    errors: list[str] = []

    def write() -> None:
        rnd = random.Random(7)
        conn = pg.connect(db)
        nxt = 5000
        try:
            while not stop.is_set():
                op = rnd.random()
                try:
                    if op < 0.3:
                        at = '2025-06-01' if rnd.random() < 0.7 else '2026-06-01'
                        conn.execute('INSERT INTO ev (id, at) VALUES (%s, %s)', (nxt, at))
                        model[nxt] = (at, 'stamped')
                        nxt += 1
                    elif op < 0.6:
                        key = rnd.choice(list(model))
                        conn.execute('UPDATE ev SET v = %s WHERE id = %s', ('u%d' % nxt, key))
                        model[key] = (model[key][0], 'u%d' % nxt)
                        nxt += 1
                    elif op < 0.85:      # moves the row to the other partition (DELETE + INSERT)
                        key = rnd.choice(list(model))
                        at = '2026-03-03' if model[key][0] < '2026' else '2025-03-03'
                        conn.execute('UPDATE ev SET at = %s WHERE id = %s', (at, key))
                        model[key] = (at, model[key][1])
                    else:
                        key = rnd.choice(list(model))
                        conn.execute('DELETE FROM ev WHERE id = %s', (key,))
                        del model[key]
                except Exception as exc:  # noqa: BLE001
                    errors.append(str(exc))
                    break
                time.sleep(0.003)
        finally:
            conn.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        res = run(pg, db, tables=['ev_2025'])
        time.sleep(0.3)
    finally:
        stop.set()
        writer.join(60)
    assert not errors, errors[:3]
    assert not res.get('failed'), res.get('msg')
    assert res['tables'][0]['status'] == 'encrypted' and res['tables'][0]['checksum_match'] is True
    assert res['tables'][0]['replayed_keys'] > 0
    assert am(pg, db, 'ev_2025') == 'tde_heap' and am(pg, db, 'ev_2026') == 'heap'
    got = {int(i): (at, v) for i, at, v in (line.split('|') for line in pg.psql(
        'SELECT id, at, v FROM ev ORDER BY id', db=db).splitlines())}
    assert got == model
    assert pg.psql("SELECT count(*) FROM ev_2025 WHERE at >= '2026-01-01'", db=db) == '0'
    diff = list(difflib.unified_diff(before.splitlines(), dump(pg, db).splitlines(), 'before', 'after',
                                     lineterm='', n=2))
    assert not diff, '\n'.join(diff)
    assert pg.psql("SELECT string_agg(pg_tde_is_encrypted(indexrelid::regclass)::text, ',') FROM pg_index "
                   "WHERE indrelid = 'ev_2025'::regclass", db=db) == 'true,true,true'
    assert leftovers(pg, db) == '|0'


def test_online_table_with_a_column_type_without_hash_function(pg):
    """json and point have no extended hash function: every checksum of the job (the copy, each
    catch-up round, the old table after the switch) uses the row's text hash, probed once up
    front, while writers change the table."""
    db = new_db(pg)
    pg.psql("CREATE TABLE public.docs (id bigint PRIMARY KEY, v text NOT NULL, "
            "body json DEFAULT '{\"w\": 1}', at point DEFAULT point(1, 1));"
            "INSERT INTO public.docs (id, v, body, at) SELECT g, 'init-' || g, json_build_object('n', g), "
            "point(g, g) FROM generate_series(1, 2000) g", db=db)
    initial = {k: 'init-%d' % k for k in range(1, 2001)}
    writers = Writers(pg, db, 'public.docs', first_free=10000).start()
    time.sleep(0.3)
    try:
        res = run(pg, db, tables=['docs'])
    finally:
        writers.finish()
    assert not res.get('failed'), res.get('msg')
    t = res['tables'][0]
    assert t['status'] == 'encrypted' and t['verified'] is True and t['checksum_match'] is True
    assert am(pg, db, 'public.docs') == 'tde_heap'
    assert table_rows(pg, db, 'public.docs') == writers.model(initial)
    assert leftovers(pg, db) == '|0'
