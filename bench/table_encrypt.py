"""Benchmark of pg_tde_table_encrypt against a raw `psql -c 'ALTER TABLE ... SET ACCESS METHOD'`
loop, in the same run on the same data. Called by bench/run.sh; never a timed test.

Cluster: PostgreSQL 15 with the pg_tde test double when it is installed, otherwise a plain
PostgreSQL 15 cluster with a stand-in (tde_heap = heap's handler, pg_tde_* SQL functions), in
a throw-away directory. fsync, synchronous_commit and full_page_writes are ON (production
settings), unlike the test clusters.

Every rewrite is timed: each scenario rewrites heap -> tde_heap and back, by the raw loop and
by the module, in alternation (raw first in odd rounds, module first in even ones), ROUNDS
times; throughput = bytes rewritten / best time per direction, summed, with the medians
beside them. Best, not median, is the headline because the noise of this kind of machine only
ever adds time (a shared virtual disk: the same levelled ALTER of 1 GB takes 10.6 to 16.8 s),
so the minimum is the cost of the work itself and the median says how noisy the run was.
Before every timed rewrite, on both sides, the server is levelled outside the timing:
CHECKPOINT, then sync(2). Without that, a checkpoint or the kernel's writeback of the
previous rewrite lands inside whichever run comes next.
The module runs as its own Python process (what ansible runs on the host) and, once, through
the ansible CLI (adds the controller's start-up). Its fixed cost (interpreter, imports,
connection, planning) is measured on its own with a run that has nothing to do.

Environment: BENCH_BIG_MB (size of the large table, default 1024), BENCH_TABLES (tables in the
many-tables scenario, default 24), BENCH_SMALL_MB (size of each, default 6), BENCH_PARALLEL
(default 4), BENCH_ROUNDS (default 5), BENCH_OUT (results directory, default bench/results).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.pg import PG_BIN, PgCluster, chown_postgres, pg_available  # noqa: E402

# the cluster a module run talks to, by port (settle() before each timed run)
cluster_of: dict[int, 'PgCluster'] = {}
MODULE_PATH = os.path.join(ROOT, 'plugins', 'modules', 'pg_tde_table_encrypt.py')
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')

BIG_MB = int(os.environ.get('BENCH_BIG_MB', '1024'))
N_TABLES = int(os.environ.get('BENCH_TABLES', '24'))
SMALL_MB = int(os.environ.get('BENCH_SMALL_MB', '6'))
PARALLEL = int(os.environ.get('BENCH_PARALLEL', '4'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '5'))
OUT = os.environ.get('BENCH_OUT', os.path.join(ROOT, 'bench', 'results'))
ROW_BYTES = 120  # about, for md5 text + ints + timestamp + tuple header

SETTINGS = {
    'fsync': True, 'synchronous_commit': True, 'full_page_writes': True,
    'shared_buffers': '256MB', 'max_wal_size': '4GB', 'checkpoint_timeout': '30min',
    'maintenance_work_mem': '128MB', 'max_connections': 40,
}

STANDIN_SQL = r"""
CREATE ACCESS METHOD tde_heap TYPE TABLE HANDLER heap_tableam_handler;
INSERT INTO pg_extension (oid, extname, extowner, extnamespace, extrelocatable, extversion)
  VALUES (99999, 'pg_tde', 10, 2200, false, '2.2.0');
CREATE FUNCTION pg_tde_version() RETURNS text LANGUAGE sql AS $$ SELECT 'pg_tde 2.2.0 (bench stand-in)' $$;
CREATE FUNCTION pg_tde_key_info() RETURNS TABLE (key_name text, provider_name text, provider_id int,
  key_creation_time timestamptz) LANGUAGE sql AS $$ SELECT 'bench'::text, 'bench'::text, 1, now() $$;
CREATE FUNCTION pg_tde_default_key_info() RETURNS TABLE (key_name text, provider_name text, provider_id int,
  key_creation_time timestamptz) LANGUAGE sql AS $$ SELECT NULL::text, NULL::text, NULL::int, NULL::timestamptz $$;
CREATE FUNCTION pg_tde_verify_key() RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pg_tde_is_encrypted(r regclass) RETURNS boolean LANGUAGE sql AS $$
  SELECT CASE WHEN c.relkind IN ('r', 'm', 't') THEN a.amname = 'tde_heap'
              WHEN c.relkind = 'i' THEN (SELECT a2.amname = 'tde_heap' FROM pg_index i
                   JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am a2 ON a2.oid = t.relam
                   WHERE i.indexrelid = c.oid) END
  FROM pg_class c LEFT JOIN pg_am a ON a.oid = c.relam WHERE c.oid = r $$;
"""


def log(text: str) -> None:
    print('[bench %s] %s' % (time.strftime('%H:%M:%S'), text), flush=True)


def make_cluster(base: str) -> tuple[PgCluster, str]:
    missing = pg_available()
    if missing is None:
        cluster = PgCluster(os.path.join(base, 'pg'), settings=SETTINGS)
        cluster.start()
        cluster.psql('CREATE EXTENSION pg_tde')
        cluster.create_database('bench', extension=True)
        keyfile = os.path.join(cluster.workdir, 'bench.keys')
        cluster.psql("SELECT pg_tde_add_database_key_provider_file('fp', '%s');"
                     "SELECT pg_tde_create_key_using_database_key_provider('bench_key', 'fp');"
                     "SELECT pg_tde_set_key_using_database_key_provider('bench_key', 'fp');" % keyfile, db='bench')
        return cluster, 'PostgreSQL 15 + pg_tde test double'
    log('pg_tde double not installed (%s): plain cluster with the stand-in access method' % missing)
    libdir = os.path.join(base, 'lib')
    os.makedirs(libdir)
    shutil.copy(os.path.join(os.path.dirname(PG_BIN), 'lib', 'auto_explain.so'), os.path.join(libdir, 'pg_tde.so'))
    chown_postgres(libdir, recursive=True)
    settings = dict(SETTINGS, dynamic_library_path='%s:$libdir' % libdir)
    cluster = PgCluster(os.path.join(base, 'pg'), settings=settings)
    cluster.start()
    cluster.create_database('bench')
    cluster.psql(STANDIN_SQL, db='bench')
    return cluster, 'PostgreSQL 15, stand-in tde_heap (heap handler)'


def psql_alter(cluster: PgCluster, table: str, am: str) -> None:
    subprocess.run([os.path.join(PG_BIN, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cluster.host,
                    '-p', str(cluster.port), '-U', 'postgres', '-d', 'bench', '-c',
                    'ALTER TABLE %s SET ACCESS METHOD %s' % (table, am)], check=True)


def settle(cluster: PgCluster) -> None:
    """Level the field before a timed rewrite (not timed): no dirty buffers, no dirty page
    cache, no checkpoint owed, whoever ran before."""
    cluster.psql('CHECKPOINT')
    os.sync()


def raw_loop(cluster: PgCluster, tables: list[str], am: str) -> float:
    settle(cluster)
    start = time.monotonic()
    for table in tables:
        psql_alter(cluster, table, am)
    return time.monotonic() - start


def module_args(cluster: PgCluster, tables: list[str], state: str, parallel: int, verify: bool) -> dict:
    return {'login_host': cluster.host, 'login_port': cluster.port, 'login_user': 'postgres', 'login_db': 'bench',
            'tables': tables, 'state': state, 'parallel': parallel, 'verify_integrity': verify,
            'lock_timeout': '30s'}


def run_module_process(args: dict, workdir: str) -> tuple[float, dict]:
    """The module as the Python process ansible starts on the host (AnsibleModule reads the
    arguments file), timed end to end."""
    path = os.path.join(workdir, 'args.json')
    with open(path, 'w') as fh:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, fh)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    settle(cluster_of[args['login_port']])
    start = time.monotonic()
    proc = subprocess.run([sys.executable, MODULE_PATH, path], capture_output=True, text=True, env=env)
    took = time.monotonic() - start
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    if out.get('failed'):
        raise RuntimeError('module failed: %s' % out.get('msg'))
    return took, out


def run_module_ansible(args: dict) -> tuple[float, dict]:
    from tests.support.ansible_runner import run_module
    settle(cluster_of[args['login_port']])
    start = time.monotonic()
    out = run_module('pg_tde_table_encrypt', args)
    took = time.monotonic() - start
    if out.get('failed'):
        raise RuntimeError('module failed: %s' % out.get('msg'))
    return took, out


def total_bytes(cluster: PgCluster, tables: list[str]) -> int:
    return int(cluster.psql("SELECT sum(pg_total_relation_size(c::regclass)) FROM unnest(ARRAY[%s]) c"
                            % ','.join("'%s'" % t for t in tables), db='bench'))


def fill(cluster: PgCluster, table: str, mb: int) -> None:
    rows = mb * 1024 * 1024 // ROW_BYTES
    cluster.psql('CREATE TABLE %s (id bigint PRIMARY KEY, a text, b bigint, c timestamptz);'
                 'INSERT INTO %s SELECT g, md5(g::text), g * 2, now() FROM generate_series(1, %d) g'
                 % (table, table, rows), db='bench')
    cluster.psql('VACUUM ANALYZE %s' % table, db='bench')


def scenario(cluster: PgCluster, workdir: str, name: str, tables: list[str], parallel: int) -> dict:
    size = total_bytes(cluster, tables)
    keys = ('raw_enc', 'raw_dec', 'mod_enc', 'mod_dec')
    seconds: dict[str, list[float]] = {k: [] for k in keys}
    phase: dict[str, list[float]] = {'mod_enc': [], 'mod_dec': []}

    def module_run(state: str, key: str) -> float:
        took, out = run_module_process(module_args(cluster, tables, state, parallel, False), workdir)
        assert out['summary']['changed'] == len(tables), out['summary']
        phase[key].append(out['summary']['seconds'])
        return took

    raw_pair = [('raw_enc', lambda: raw_loop(cluster, tables, 'tde_heap')),
                ('raw_dec', lambda: raw_loop(cluster, tables, 'heap'))]
    mod_pair = [('mod_enc', lambda: module_run('encrypted', 'mod_enc')),
                ('mod_dec', lambda: module_run('decrypted', 'mod_dec'))]
    for rnd in range(ROUNDS):
        # alternate who goes first, so checkpoints and cache state do not favour one side
        for key, fn in (raw_pair + mod_pair if rnd % 2 == 0 else mod_pair + raw_pair):
            took = fn()
            seconds[key].append(took)
            log('%s round %d %s: %.2f s%s' % (name, rnd + 1, key, took,
                                              ' (change phase %.2f s)' % phase[key][-1] if key in phase else ''))
    med = {k: statistics.median(v) for k, v in seconds.items()}
    best = {k: min(v) for k, v in seconds.items()}
    raw = best['raw_enc'] + best['raw_dec']
    mod = best['mod_enc'] + best['mod_dec']
    mod_phase = min(phase['mod_enc']) + min(phase['mod_dec'])
    mb = size / 1048576.0
    return {'name': name, 'tables': len(tables), 'bytes': size, 'mb': round(mb, 1), 'parallel': parallel,
            'seconds': {k: [round(x, 2) for x in v] for k, v in seconds.items()},
            'change_phase_seconds': {k: [round(x, 2) for x in v] for k, v in phase.items()},
            'raw_s': round(raw, 2), 'module_s': round(mod, 2), 'module_phase_s': round(mod_phase, 2),
            'raw_mb_s': round(2 * mb / raw, 1), 'module_mb_s': round(2 * mb / mod, 1),
            'module_phase_mb_s': round(2 * mb / mod_phase, 1),
            'ratio': round(raw / mod, 3), 'phase_ratio': round(raw / mod_phase, 3),
            'ratio_enc': round(best['raw_enc'] / best['mod_enc'], 3),
            'ratio_dec': round(best['raw_dec'] / best['mod_dec'], 3),
            'median_ratio': round((med['raw_enc'] + med['raw_dec']) / (med['mod_enc'] + med['mod_dec']), 3),
            'spread': {k: round((max(v) - min(v)) / statistics.median(v), 3) for k, v in seconds.items()}}


def fixed_cost(cluster: PgCluster, workdir: str, tables: list[str], state: str) -> float:
    """Median wall time of module runs that find nothing to do (tables already in `state`):
    what the module costs whatever the size of the table."""
    took = []
    for _ in range(5):
        t, out = run_module_process(module_args(cluster, tables, state, 1, False), workdir)
        assert out['summary']['planned'] == 0, out['summary']
        took.append(t)
    return statistics.median(took)


def main() -> int:
    base = tempfile.mkdtemp(prefix='tdeops-bench-', dir='/tmp')
    os.chmod(base, 0o755)
    started = time.monotonic()
    cluster = None
    try:
        cluster, flavour = make_cluster(base)
        cluster_of[cluster.port] = cluster
        log('cluster on port %d (%s); filling: 1 x %d MB, %d x %d MB'
            % (cluster.port, flavour, BIG_MB, N_TABLES, SMALL_MB))
        fill(cluster, 'big', BIG_MB)
        small = ['s%02d' % i for i in range(N_TABLES)]
        for t in small:
            fill(cluster, t, SMALL_MB)
        cluster.psql('CHECKPOINT')
        one = scenario(cluster, base, 'one large table', ['big'], 1)
        idle = fixed_cost(cluster, base, ['big'], 'decrypted')
        log('module with nothing to do (fixed cost): %.3f s' % idle)
        many = scenario(cluster, base, 'many tables', small, PARALLEL)
        # the same large-table encryption through the ansible CLI, and with the integrity proof
        ans_enc, _ = run_module_ansible(module_args(cluster, ['big'], 'encrypted', 1, False))
        log('one large table via ansible CLI encrypt: %.2f s' % ans_enc)
        verify_dec, vout = run_module_process(module_args(cluster, ['big'], 'decrypted', 1, True), base)
        log('one large table decrypt with verify_integrity: %.2f s' % verify_dec)
        seq_enc, _ = run_module_process(module_args(cluster, small, 'encrypted', 1, False), base)
        log('many tables module parallel=1 encrypt: %.2f s' % seq_enc)
        report = {
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
            'flavour': flavour, 'host': platform.node(), 'cpus': os.cpu_count(),
            'load': os.getloadavg(), 'rounds': ROUNDS, 'one': one, 'many': many,
            'ansible_cli_enc_s': round(ans_enc, 2),
            'ansible_cli_ratio': round(min(one['seconds']['raw_enc']) / ans_enc, 3),
            'verify_dec_s': round(verify_dec, 2), 'verify_rows': vout['tables'][0]['rows'],
            'many_seq_module_enc_s': round(seq_enc, 2),
            'fixed_cost_s': round(idle, 3),
            'total_s': round(time.monotonic() - started, 1),
        }
        write_report(report)
        log('one large table: module/raw %.3f end to end, %.3f change phase (target >= 0.95); many tables '
            'parallel=%d: %.3f end to end, %.3f change phase (target >= 1.5)'
            % (one['ratio'], one['phase_ratio'], PARALLEL, many['ratio'], many['phase_ratio']))
        return 0
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


def write_report(r: dict) -> None:
    one, many = r['one'], r['many']

    def row(label: str, sc: dict, target: float) -> list[str]:
        return [
            '| %s | %s MB | %.2f s | %.1f | %.2f s | %.1f | **%.3f** (enc %.3f, dec %.3f; medians %.3f) '
            '| %.2f s | %.1f | %.3f | >= %s: %s end to end, %s change phase |'
            % (label, sc['mb'], sc['raw_s'], sc['raw_mb_s'], sc['module_s'], sc['module_mb_s'], sc['ratio'],
               sc['ratio_enc'], sc['ratio_dec'], sc['median_ratio'], sc['module_phase_s'], sc['module_phase_mb_s'],
               sc['phase_ratio'],
               target, 'met' if sc['ratio'] >= target else 'NOT met',
               'met' if sc['phase_ratio'] >= target else 'NOT met'),
        ]

    lines = [
        '# pg_tde_table_encrypt benchmark, %s' % r['date'],
        '',
        '%s; %s CPUs shared with other work (load average at the end %.1f / %.1f / %.1f); fsync, '
        'synchronous_commit and full_page_writes on; %d rounds (raw first, then module first, ...), best time '
        'per direction (medians beside them: see the docstring of bench/table_encrypt.py for why); every '
        'rewrite is timed (heap -> tde_heap and back, so MB/s counts the data twice) '
        'and starts from a levelled server (CHECKPOINT and sync before it, not timed, on both sides).'
        % (r['flavour'], r['cpus'], r['load'][0], r['load'][1], r['load'][2], r['rounds']),
        '',
        '- Baseline (raw): `psql -c \'ALTER TABLE ... SET ACCESS METHOD ...\'`, one psql per table, sequential.',
        '- Module end to end: `pg_tde_table_encrypt` as its own Python process, as ansible runs it on the host '
        '(interpreter start, imports, connection, catalog reads, key check, free space check, the rewrites, '
        'verification), verify_integrity false (the baseline proves nothing either).',
        '- Module change phase: the same runs, the wall time the module reports in `summary.seconds` '
        '(from the first lock to the last commit and check after commit; without start-up and planning).',
        '',
        '| scenario | data | raw (enc+dec) | raw MB/s | module end to end | MB/s | module / raw | '
        'module change phase | MB/s | change phase / raw | target |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    lines += row('one large table', one, 0.95)
    lines += row('%d tables, parallel=%d' % (many['tables'], many['parallel']), many, 1.5)
    lines += [
        '',
        'Also measured in this run:',
        '',
        '- one large table, encrypt through the ansible CLI (controller start-up included): %.2f s, '
        'raw / ansible %.3f' % (r['ansible_cli_enc_s'], r['ansible_cli_ratio']),
        '- one large table, decrypt with verify_integrity (row count + checksum before and after, %d rows): %.2f s'
        % (r['verify_rows'], r['verify_dec_s']),
        '- many tables, module with parallel=1, encrypt: %.2f s' % r['many_seq_module_enc_s'],
        '- the module with nothing to do (fixed cost per run: interpreter, imports, connection, catalog, key '
        'check; median of 5): %.3f s' % r['fixed_cost_s'],
        '- spread of each timing, (max - min) / median: one large table %s; many tables %s'
        % (json.dumps(one['spread']), json.dumps(many['spread'])),
        '',
        'All times (s) per round, end to end, and the module\'s change phase:',
        '',
        '```',
        json.dumps({'one large table': one['seconds'], 'one large table, change phase': one['change_phase_seconds'],
                    'many tables': many['seconds'], 'many tables, change phase': many['change_phase_seconds']},
                   indent=1),
        '```',
        '',
        'Total benchmark wall time: %.1f s. Run with `bash bench/run.sh` (sizes: BENCH_* in '
        'bench/table_encrypt.py).' % r['total_s'],
        '',
    ]
    os.makedirs(OUT, exist_ok=True)
    name = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    text = '\n'.join(lines)
    for path in (os.path.join(OUT, '%s.md' % name), os.path.join(OUT, 'latest.md')):
        with open(path + '.tmp', 'w') as fh:
            fh.write(text)
        os.replace(path + '.tmp', path)
    print(text)


if __name__ == '__main__':
    sys.exit(main())
