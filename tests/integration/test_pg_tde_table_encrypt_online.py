"""pg_tde_table_encrypt method: online, on the REAL pg_tde (PostgreSQL 17 clusters of
tests/support/pg.py): concurrent writers checked against an independent record, everything that
hangs on a table carried over (pg_dump before and after), refusals, interruptions at every step
(backend killed, KMS down, disk full) and resume. Small tables: the 1 GB figures come from
bench/online_encrypt.py."""
from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
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
