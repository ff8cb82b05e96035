"""Benchmark of pg_tde_table_encrypt method: online against the plain
`ALTER TABLE ... SET ACCESS METHOD tde_heap` on the same table, on the REAL pg_tde (PostgreSQL 17
bundle), with and without a concurrent write load, in one run. Called by bench/run.sh
(`bash bench/run.sh online`); never a timed test.

Table: pgbench_accounts of `pgbench -i` at the scale that gives BENCH_ONLINE_MB (default 1024).
Load: pgbench with a custom script of one UPDATE of a random account and one INSERT of a new
account per transaction, BENCH_ONLINE_CLIENTS clients (default 4) at a fixed rate of
BENCH_ONLINE_RATE transactions per second (default 200, -R), logged per second
(--aggregate-interval=1) so that throughput and the worst latency can be cut to the exact
window of each migration.

Scenarios, each starting from the heap table, CHECKPOINT and sync before each (not timed):
  load baseline       pgbench alone for BENCH_ONLINE_BASE_S seconds (default 30)
  alter               ALTER TABLE ... SET ACCESS METHOD tde_heap (psql), no load
  online              the module (its own Python process, as ansible runs it), no load
  alter + load        the ALTER while pgbench runs
  online + load       the module while pgbench runs
Longest exclusive lock: the module's own measure (switch_lock_seconds: from the grant of the
ACCESS EXCLUSIVE lock to the commit) and, for both methods, a sampler that reads pg_locks every
10 ms from its own connection (locks shorter than that can be missed; the module's figure is
exact). For the ALTER the exclusive lock is the whole rewrite.

Environment: BENCH_ONLINE_MB, BENCH_ONLINE_RATE, BENCH_ONLINE_CLIENTS, BENCH_ONLINE_BASE_S,
BENCH_OUT (results directory, default bench/results).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.pg import PG_BIN, PgCluster, chown_postgres, pg_available  # noqa: E402

MODULE_PATH = os.path.join(ROOT, 'plugins', 'modules', 'pg_tde_table_encrypt.py')
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
MB = int(os.environ.get('BENCH_ONLINE_MB', '1024'))
RATE = int(os.environ.get('BENCH_ONLINE_RATE', '200'))
CLIENTS = int(os.environ.get('BENCH_ONLINE_CLIENTS', '4'))
BASE_S = int(os.environ.get('BENCH_ONLINE_BASE_S', '30'))
OUT = os.environ.get('BENCH_OUT', os.path.join(ROOT, 'bench', 'results'))
SETTINGS = {
    'fsync': True, 'synchronous_commit': True, 'full_page_writes': True,
    'shared_buffers': '256MB', 'max_wal_size': '4GB', 'checkpoint_timeout': '30min',
    'maintenance_work_mem': '128MB', 'max_connections': 40,
}
SCRIPT = """\\set aid random(1, 100000 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES (nextval('bench_new_aid'), 1, :delta, 'new');
END;
"""
TABLE = 'public.pgbench_accounts'


def log(text: str) -> None:
    print('[online bench %s] %s' % (time.strftime('%H:%M:%S'), text), flush=True)


def load_average() -> str:
    return ' / '.join('%.2f' % v for v in os.getloadavg())


class Load(threading.Thread):
    """pgbench in runs of 5 s one after the other until stopped: each run ends normally and
    writes its whole per-second log (a pgbench killed in the middle loses its buffered log)."""

    def __init__(self, cmd: list[str], prefix: str, cwd: str) -> None:
        super().__init__(daemon=True)
        self.cmd, self.prefix, self.cwd = cmd, prefix, cwd
        self.stop = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.runs += 1
            subprocess.run(self.cmd + ['--log-prefix', '%s-%d' % (self.prefix, self.runs)], cwd=self.cwd,
                           capture_output=True)


class Bench:
    def __init__(self, base: str) -> None:
        self.base = base
        self.cluster = PgCluster(os.path.join(base, 'pg'), settings=SETTINGS)
        self.cluster.start()
        self.cluster.psql('CREATE EXTENSION pg_tde')
        self.cluster.create_database('bench', extension=True)
        keyfile = os.path.join(self.cluster.workdir, 'bench.keys')
        self.psql("SELECT pg_tde_add_database_key_provider_file('fp', '%s');"
                  "SELECT pg_tde_create_key_using_database_key_provider('bench_key', 'fp');"
                  "SELECT pg_tde_set_key_using_database_key_provider('bench_key', 'fp');" % keyfile)
        self.scale = max(1, round(MB / 15.3))
        self.script = os.path.join(base, 'load.sql')
        with open(self.script, 'w') as fh:
            fh.write(SCRIPT)
        chown_postgres(base, recursive=True)

    def psql(self, sql: str) -> str:
        return self.cluster.psql(sql, db='bench')

    def conn_args(self) -> list[str]:
        return ['-h', self.cluster.host, '-p', str(self.cluster.port), '-U', 'postgres']

    def init(self) -> None:
        log('pgbench -i -s %d (about %d MB)' % (self.scale, MB))
        subprocess.run([os.path.join(PG_BIN, 'pgbench'), '-i', '-q', '-s', str(self.scale), '-I', 'dtgvp']
                       + self.conn_args() + ['bench'], check=True, capture_output=True)
        self.psql('CREATE SEQUENCE bench_new_aid START %d' % (100000 * self.scale + 1))

    def settle(self) -> None:
        self.cluster.psql('CHECKPOINT')
        os.sync()

    def size(self) -> int:
        return int(self.psql("SELECT pg_total_relation_size('%s')" % TABLE))

    def to_heap(self) -> None:
        if self.psql("SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                     "WHERE c.oid = '%s'::regclass" % TABLE) != 'heap':
            self.psql('ALTER TABLE %s SET ACCESS METHOD heap' % TABLE)
        self.psql('VACUUM ANALYZE %s' % TABLE)

    # -- the two methods ------------------------------------------------------------------------
    def alter(self) -> dict:
        start = time.monotonic()
        self.psql('ALTER TABLE %s SET ACCESS METHOD tde_heap' % TABLE)
        return {'seconds': time.monotonic() - start}

    def online(self) -> dict:
        args = {'login_host': self.cluster.host, 'login_port': self.cluster.port, 'login_user': 'postgres',
                'login_db': 'bench', 'tables': [TABLE], 'method': 'online', 'lock_timeout': '1s',
                'retries': 10, 'retry_delay': 0.5}
        path = os.path.join(self.base, 'args.json')
        with open(path, 'w') as fh:
            json.dump({'ANSIBLE_MODULE_ARGS': args}, fh)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, MODULE_PATH, path], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=COLLECTIONS))
        took = time.monotonic() - start
        out = json.loads(proc.stdout[proc.stdout.index('{'):])
        if out.get('failed'):
            raise RuntimeError('module failed: %s' % out.get('msg'))
        t = out['tables'][0]
        return {'seconds': took, 'module': {k: t.get(k) for k in (
            'copied_rows', 'rounds', 'replayed_keys', 'setup_lock_seconds', 'switch_lock_wait_seconds',
            'switch_lock_seconds', 'verified', 'checksum_match', 'rows', 'seconds', 'phase_seconds')}}

    # -- measuring --------------------------------------------------------------------------------
    def sample_locks(self, conn, stop: threading.Event, oid: int, found: list[tuple[float, str]]) -> None:
        try:
            while not stop.is_set():
                rows = conn.execute("SELECT mode FROM pg_locks WHERE locktype = 'relation' AND granted AND "
                                    "relation = %s::oid AND mode IN ('AccessExclusiveLock', "
                                    "'ShareRowExclusiveLock', 'ExclusiveLock')", (oid,)).fetchall()
                now = time.time()
                for (mode,) in rows:
                    found.append((now, mode))
                time.sleep(0.01)
        finally:
            conn.close()

    @staticmethod
    def longest(found: list[tuple[float, str]], mode: str) -> float:
        times = sorted(t for t, m in found if m == mode)
        best = 0.0
        start = prev = None
        for t in times:
            if prev is None or t - prev > 0.25:     # a busy machine delays samples; locks are minutes apart
                start = t
            prev = t
            best = max(best, t - start + 0.01)
        return round(best, 3)

    def probe(self, stop: threading.Event, out: dict) -> None:
        """A writer of its own: the load's transaction every 50 ms, its latency counted from when it
        was due, so a lock shows as the longest wait an application saw."""
        import psycopg
        conn = psycopg.connect(host=self.cluster.host, port=self.cluster.port, user='postgres', dbname='bench',
                               autocommit=True)
        due = time.monotonic()
        try:
            while not stop.is_set():
                with conn.transaction():
                    conn.execute('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1')
                    conn.execute("INSERT INTO pgbench_accounts (aid, bid, abalance, filler) "
                                 "VALUES (nextval('bench_new_aid'), 1, 0, 'probe')")
                done = time.monotonic()
                out['worst_ms'] = max(out.get('worst_ms', 0.0), (done - due) * 1000.0)
                out['count'] = out.get('count', 0) + 1
                due = max(due + 0.05, done)
                time.sleep(max(0.0, due - time.monotonic()))
        finally:
            conn.close()

    def start_load(self, tag: str) -> tuple['Load', str]:
        prefix = os.path.join(self.base, 'pgbench-%s' % tag)
        load = Load([os.path.join(PG_BIN, 'pgbench'), '-n', '-c', str(CLIENTS), '-j', '2', '-R', str(RATE),
                     '-T', '5', '-f', self.script, '-l', '--aggregate-interval=1'] + self.conn_args() + ['bench'],
                    prefix, self.base)
        load.start()
        return load, prefix

    @staticmethod
    def stop_load(load: 'Load') -> None:
        load.stop.set()
        load.join()

    @staticmethod
    def load_in_window(prefix: str, start: float, end: float) -> dict:
        """Transactions and tps of the seconds inside [start, end], and the worst latency (ms, from
        the scheduled start, so it includes the wait behind a lock) of the transactions that ended
        in it or in the 5 s after it (a transaction blocked by a lock ends when the lock goes)."""
        count = 0
        worst = 0.0
        directory = os.path.dirname(prefix)
        for name in os.listdir(directory):
            if not name.startswith(os.path.basename(prefix)):
                continue
            with open(os.path.join(directory, name)) as fh:
                for line in fh:
                    f = line.split()
                    if len(f) < 6:
                        continue
                    t = int(f[0])
                    if t + 1 < start or t > end + 5:
                        continue
                    if t <= end:
                        count += int(f[1])
                    worst = max(worst, float(f[5]) / 1000.0)   # with -R latency counts from the schedule
        window = max(end - start, 1e-6)
        return {'transactions': count, 'tps': round(count / window, 1), 'worst_latency_ms': round(worst, 1)}

    def measured(self, name: str, fn, load: bool) -> dict:
        self.to_heap()
        self.settle()
        oid = int(self.psql("SELECT '%s'::regclass::oid" % TABLE))
        size = self.size()
        proc = prefix = None
        if load:
            proc, prefix = self.start_load(name.replace(' ', '_').replace('+', ''))
            time.sleep(5)                        # the load is steady before the migration starts
        found: list[tuple[float, str]] = []
        stop = threading.Event()
        import psycopg
        conn = psycopg.connect(host=self.cluster.host, port=self.cluster.port, user='postgres', dbname='bench',
                               autocommit=True)     # connected before the clock starts
        sampler = threading.Thread(target=self.sample_locks, args=(conn, stop, oid, found), daemon=True)
        sampler.start()
        probe: dict = {}
        prober = threading.Thread(target=self.probe, args=(stop, probe), daemon=True) if load else None
        if prober is not None:
            prober.start()
        start = time.time()
        res = fn()
        end = time.time()
        if prober is not None:
            time.sleep(1)                        # its transaction blocked by the lock has ended
        stop.set()
        sampler.join()
        if prober is not None:
            prober.join()
            res['probe_worst_ms'] = round(probe.get('worst_ms', 0.0), 1)
        if proc is not None:
            time.sleep(7)                        # transactions blocked by the lock end after it
            self.stop_load(proc)
            res['load'] = self.load_in_window(prefix, start, end)
        res.update(name=name, size_bytes=size,
                   sampled_access_exclusive_s=self.longest(found, 'AccessExclusiveLock'),
                   sampled_share_row_exclusive_s=self.longest(found, 'ShareRowExclusiveLock'))
        log('%s: %.1f s, sampled ACCESS EXCLUSIVE %.3f s %s' % (name, res['seconds'], res['sampled_access_exclusive_s'],
                                                             json.dumps(res.get('module') or res.get('load') or {})))
        return res

    def baseline_load(self) -> dict:
        self.to_heap()
        self.settle()
        proc, prefix = self.start_load('baseline')
        time.sleep(5)
        start = time.time()
        time.sleep(BASE_S)
        end = time.time()
        time.sleep(2)
        self.stop_load(proc)
        res = self.load_in_window(prefix, start, end)
        log('load baseline: %s' % json.dumps(res))
        return res


def fmt_ratio(a: float | None, b: float | None) -> str:
    return '%.2f' % (a / b) if a is not None and b else 'n/a'


def report(results: dict, meta: dict) -> str:
    r = results
    base_tps = r['baseline']['tps']
    lines = [
        '# Online table encryption benchmark, %s' % meta['when'],
        '',
        'Real pg_tde %s on %s; %s; table `pgbench_accounts` %.1f MB (%s rows, pgbench scale %d); '
        'load: pgbench, %d clients, fixed rate %d tps (-R), each transaction one UPDATE of a random account and '
        'one INSERT of a new one (custom script). fsync, synchronous_commit and full_page_writes on. '
        'CHECKPOINT and sync before every scenario (not timed). Load average %s before, %s after '
        '(2 CPUs shared with other work: the absolute times are noisy, the ratios come from the same run).'
        % (meta['pg_tde'], meta['server'], meta['machine'], r['alter']['size_bytes'] / 1048576.0, meta['rows'],
           meta['scale'], CLIENTS, RATE, meta['load_before'], meta['load_after']),
        '',
        '| scenario | total time | vs ALTER (same load) | longest ACCESS EXCLUSIVE lock | lock vs ALTER | '
        'writes blocked (SHARE ROW EXCLUSIVE) | load tps during | vs load alone | longest wait of a writer |',
        '|---|---|---|---|---|---|---|---|---|',
    ]

    def row(name: str, res: dict, ref: dict) -> str:
        mod = res.get('module') or {}
        lock = mod.get('switch_lock_seconds')
        lock_text = ('%.3f s (module) / %.3f s (sampled)' % (lock, res['sampled_access_exclusive_s'])
                     if lock is not None else '%.3f s (sampled, = the rewrite)' % res['sampled_access_exclusive_s'])
        ref_lock = ref['sampled_access_exclusive_s']
        load = res.get('load')
        return '| %s | %.1f s | %s | %s | %s | %s | %s | %s | %s |' % (
            name, res['seconds'], fmt_ratio(res['seconds'], ref['seconds']), lock_text,
            fmt_ratio(lock if lock is not None else res['sampled_access_exclusive_s'], ref_lock),
            '%.3f s' % (mod.get('setup_lock_seconds') or 0) if mod else '(inside the rewrite)',
            load['tps'] if load else '-', fmt_ratio(load['tps'], base_tps) if load else '-',
            '%.0f ms' % res['probe_worst_ms'] if load else '-')

    lines.append(row('ALTER TABLE, no load', r['alter'], r['alter']))
    lines.append(row('online, no load', r['online'], r['alter']))
    lines.append(row('ALTER TABLE + load', r['alter_load'], r['alter_load']))
    lines.append(row('online + load', r['online_load'], r['alter_load']))
    lines += [
        '',
        'Load alone (baseline of the same run): %.1f tps over %d s.' % (base_tps, BASE_S),
        '',
        '- *longest ACCESS EXCLUSIVE lock*: for the online method the module measures it (from the grant of the '
        'lock to the commit of the switch: the last catch-up round, the catalog changes and their verification); '
        'the sampler reads pg_locks every 10 ms from another connection. For the ALTER it is the whole rewrite.',
        '- *writes blocked*: the online method\'s setup takes SHARE ROW EXCLUSIVE (blocks writes, not reads) to '
        'create its triggers and the copy (catalog only).',
        '- *longest wait of a writer*: a probe of its own runs the load\'s transaction (one UPDATE, one INSERT) '
        'every 50 ms during the migration; its longest latency, counted from when the transaction was due, is '
        'the longest time an application writer was held up (by a lock, or by a machine that is busy). '
        '*load tps during*: pgbench transactions completed inside the migration window (pgbench runs in 5 s '
        'pieces; a piece whose clients are blocked by a lock ends late, so this counts the stall as lost '
        'throughput).',
        '- The online method reads the table about three times more (the copy, the comparison after the copy, '
        'the old table after the switch: verify_integrity) and writes the copy through INSERTs, so it takes '
        'longer in total; the point is that the table stays usable meanwhile.',
        '',
        'Module details:',
        '',
        '```',
        json.dumps({k: r[k].get('module') for k in ('online', 'online_load')}, indent=1),
        '```',
        '',
        'Raw results:',
        '',
        '```',
        json.dumps(r, indent=1, default=str),
        '```',
    ]
    return '\n'.join(lines) + '\n'


def main() -> int:
    missing = pg_available()
    if missing:
        print('SKIPPED LOUDLY: the real pg_tde bundle is needed: %s' % missing)
        return 1
    base = tempfile.mkdtemp(prefix='tdeops-online-bench-', dir='/tmp')
    os.chmod(base, 0o755)
    bench = Bench(base)
    try:
        meta = {'when': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                'load_before': load_average(), 'machine': '%s, %d CPUs' % (platform.machine(), os.cpu_count() or 0)}
        bench.init()
        meta['server'] = bench.psql('SHOW server_version')
        meta['pg_tde'] = bench.psql('SELECT pg_tde_version()')
        meta['rows'] = bench.psql('SELECT count(*) FROM %s' % TABLE)
        meta['scale'] = bench.scale
        results = {
            'baseline': bench.baseline_load(),
            'alter': bench.measured('alter', bench.alter, load=False),
            'online': bench.measured('online', bench.online, load=False),
            'alter_load': bench.measured('alter + load', bench.alter, load=True),
            'online_load': bench.measured('online + load', bench.online, load=True),
        }
        meta['load_after'] = load_average()
        text = report(results, meta)
        os.makedirs(OUT, exist_ok=True)
        stamp = datetime.date.today().isoformat()
        for name in ('online-%s.md' % stamp, 'online.md'):
            with open(os.path.join(OUT, name), 'w') as fh:
                fh.write(text)
        print(text)
        return 0
    finally:
        bench.cluster.destroy()
        subprocess.run(['rm', '-rf', base])


if __name__ == '__main__':
    sys.exit(main())
