"""Benchmark of pg_tde_table_encrypt against a raw `psql -c 'ALTER TABLE ... SET ACCESS METHOD'`
loop, in the same run on the same data, on PostgreSQL 17 with the REAL pg_tde. Called by
bench/run.sh; never a timed test.

Cluster: a throw-away PostgreSQL 17 cluster (tests/support/pg.py PgCluster) with pg_tde preloaded,
production-like settings (fsync, synchronous_commit and full_page_writes on, wal_level replica,
shared_buffers 256MB, parallel query at its defaults) and a principal key for the benchmark
database from a file key provider (BENCH_PROVIDER=kmip: a PyKMIP server from tests/support/kms.py
instead; pg_tde fetches the key once, so the provider does not change the timings). Without a
real pg_tde (2.x, tde_heap tables encrypted on disk) the benchmark stops: there is no stand-in.

Every rewrite is timed: each scenario rewrites heap -> tde_heap and back, by the raw loop, by the
module without verify_integrity and by the module with it (the default), in rotating order, ROUNDS
times; throughput = bytes rewritten / best time per direction, summed, with the medians beside
them. Best, not median, is the headline because the noise of a shared machine only ever adds time,
so the minimum is the cost of the work itself and the median says how noisy the run was. Before
every timed rewrite, on every side, the server is levelled outside the timing: CHECKPOINT, then
sync(2). The module runs as its own Python process (what ansible runs on the host); its fixed
cost (interpreter, imports, connection, planning) is measured on its own with a run that has
nothing to do. Where the time of a verified rewrite goes comes from the module's own
phase_seconds, and the cost of one checksum pass from timed queries (the row hash the module used
before, hashtextextended(row::text), against hash_record_extended, with and without parallel
workers).

Environment: BENCH_BIG_MB (size of the large table, default 300), BENCH_TABLES (tables in the
many-tables scenario, default 24), BENCH_SMALL_MB (size of each, default 6), BENCH_PARALLEL
(default 4), BENCH_ROUNDS (default 5), BENCH_PROVIDER (file or kmip, default file), BENCH_OUT
(results directory, default bench/results).
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
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import (  # noqa: E402
    load_text, log, real_pg_tde_cluster, server_version, settle, write_results,
)
from tests.support.pg import PG_BIN, PgCluster  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, '.cache', 'collections'))
from ansible_collections.tdeops.pg_tde.plugins.module_utils._tables import checksum_statement  # noqa: E402

MODULE_PATH = os.path.join(ROOT, 'plugins', 'modules', 'pg_tde_table_encrypt.py')
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')

BIG_MB = int(os.environ.get('BENCH_BIG_MB', '300'))
N_TABLES = int(os.environ.get('BENCH_TABLES', '24'))
SMALL_MB = int(os.environ.get('BENCH_SMALL_MB', '6'))
PARALLEL = int(os.environ.get('BENCH_PARALLEL', '4'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '5'))
PROVIDER = os.environ.get('BENCH_PROVIDER', 'file')
ROW_BYTES = 120  # about, for md5 text + ints + timestamp + tuple header

# Targets (issue 12): module / raw throughput.
TARGETS = {'unverified': 0.97, 'verified': 0.8, 'many': 1.5}
SIDES = ('raw', 'unverified', 'verified')


def psql_alter(cluster: PgCluster, table: str, am: str) -> None:
    subprocess.run([os.path.join(PG_BIN, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cluster.host,
                    '-p', str(cluster.port), '-U', 'postgres', '-d', 'bench', '-c',
                    'ALTER TABLE %s SET ACCESS METHOD %s' % (table, am)], check=True)


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


def run_module_process(cluster: PgCluster, args: dict, workdir: str) -> tuple[float, dict]:
    """The module as the Python process ansible starts on the host (AnsibleModule reads the
    arguments file), timed end to end."""
    path = os.path.join(workdir, 'args.json')
    with open(path, 'w') as fh:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, fh)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    settle(cluster)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, MODULE_PATH, path], capture_output=True, text=True, env=env)
    took = time.monotonic() - start
    out = json.loads(proc.stdout[proc.stdout.index('{'):])
    if out.get('failed'):
        raise RuntimeError('module failed: %s' % out.get('msg'))
    return took, out


def total_bytes(cluster: PgCluster, tables: list[str]) -> int:
    return int(cluster.psql("SELECT sum(pg_total_relation_size(c::regclass)) FROM unnest(ARRAY[%s]) c"
                            % ','.join("'%s'" % t for t in tables), db='bench'))


def fill(cluster: PgCluster, table: str, mb: int) -> None:
    rows = mb * 1024 * 1024 // ROW_BYTES
    cluster.psql('CREATE TABLE %s (id bigint PRIMARY KEY, a text, b bigint, c timestamptz)' % table, db='bench')
    cluster.psql('INSERT INTO %s SELECT g, md5(g::text), g * 2, now() FROM generate_series(1, %d) g'
                 % (table, rows), db='bench')
    cluster.psql('VACUUM ANALYZE %s' % table, db='bench')


def scenario(cluster: PgCluster, workdir: str, name: str, tables: list[str], parallel: int) -> dict:
    """raw, module without verification, module with it: encrypt and decrypt, ROUNDS times,
    in rotating order so that checkpoints and caches favour no side."""
    size = total_bytes(cluster, tables)
    seconds: dict[str, dict[str, list[float]]] = {s: {'enc': [], 'dec': []} for s in SIDES}
    phase: dict[str, dict[str, list[float]]] = {s: {'enc': [], 'dec': []} for s in SIDES[1:]}
    per_table: list[dict[str, Any]] = []

    def raw(direction: str) -> float:
        return raw_loop(cluster, tables, 'tde_heap' if direction == 'enc' else 'heap')

    def module(side: str) -> Callable[[str], float]:
        def run(direction: str) -> float:
            state = 'encrypted' if direction == 'enc' else 'decrypted'
            took, out = run_module_process(cluster, module_args(cluster, tables, state, parallel,
                                                                side == 'verified'), workdir)
            assert out['summary']['changed'] == len(tables), out['summary']
            if side == 'verified':
                assert all(t['checksum_match'] for t in out['tables']), out['tables']
                per_table.extend(dict(t['phase_seconds'], direction=direction) for t in out['tables'])
            phase[side][direction].append(out['summary']['seconds'])
            return took
        return run

    runners = {'raw': raw, 'unverified': module('unverified'), 'verified': module('verified')}
    for rnd in range(ROUNDS):
        order = SIDES[rnd % 3:] + SIDES[:rnd % 3]
        for side in order:
            for direction in ('enc', 'dec'):
                took = runners[side](direction)
                seconds[side][direction].append(took)
                log('%s round %d %s %s: %.2f s' % (name, rnd + 1, side, direction, took))
    mb = size / 1048576.0
    best = {s: min(seconds[s]['enc']) + min(seconds[s]['dec']) for s in SIDES}
    med = {s: statistics.median(seconds[s]['enc']) + statistics.median(seconds[s]['dec']) for s in SIDES}
    out: dict[str, Any] = {
        'name': name, 'tables': len(tables), 'bytes': size, 'mb': round(mb, 1), 'parallel': parallel,
        'seconds': {s: {d: [round(x, 2) for x in v] for d, v in seconds[s].items()} for s in SIDES},
        'change_phase_seconds': {s: {d: [round(x, 2) for x in v] for d, v in phase[s].items()} for s in phase},
        'best_s': {s: round(best[s], 2) for s in SIDES},
        'mb_s': {s: round(2 * mb / best[s], 1) for s in SIDES},
        'ratio': {s: round(best['raw'] / best[s], 3) for s in SIDES[1:]},
        'ratio_enc': {s: round(min(seconds['raw']['enc']) / min(seconds[s]['enc']), 3) for s in SIDES[1:]},
        'ratio_dec': {s: round(min(seconds['raw']['dec']) / min(seconds[s]['dec']), 3) for s in SIDES[1:]},
        'median_ratio': {s: round(med['raw'] / med[s], 3) for s in SIDES[1:]},
        # per round (the sides of one round ran within a minute of each other, under about the same
        # load), raw / module; the median of those is the most robust figure on a busy machine
        'paired_ratio': {s: round(statistics.median(
            (seconds['raw']['enc'][i] + seconds['raw']['dec'][i]) / (seconds[s]['enc'][i] + seconds[s]['dec'][i])
            for i in range(ROUNDS)), 3) for s in SIDES[1:]},
        # the module's own wall time of the changes (summary.seconds: first lock to last check), without
        # the start of the Python process, its imports and the planning
        'phase_ratio': {s: round(best['raw'] / (min(phase[s]['enc']) + min(phase[s]['dec'])), 3) for s in SIDES[1:]},
        'spread': {s: round((max(seconds[s]['enc'] + seconds[s]['dec']) - min(seconds[s]['enc'] + seconds[s]['dec']))
                            / statistics.median(seconds[s]['enc'] + seconds[s]['dec']), 3) for s in SIDES},
    }
    if per_table and len(tables) == 1:
        keys = ('lock', 'checksum_before', 'rewrite', 'check', 'checksum_after', 'commit')
        out['phases'] = {d: {k: round(statistics.median([p.get(k, 0.0) for p in per_table if p['direction'] == d]), 3)
                             for k in keys} for d in ('enc', 'dec')}
    return out


def fixed_cost(cluster: PgCluster, workdir: str, tables: list[str], state: str) -> float:
    """Median wall time of module runs that find nothing to do (tables already in `state`):
    what the module costs whatever the size of the table."""
    took = []
    for _ in range(5):
        t, out = run_module_process(cluster, module_args(cluster, tables, state, 1, False), workdir)
        assert out['summary']['planned'] == 0, out['summary']
        took.append(t)
    return statistics.median(took)


CHECKSUMS = {
    'scan only: count(*)': 'SELECT count(*) FROM ONLY big',
    'before: count, sum(h::numeric), bit_xor(h), h = hashtextextended(row::text) (hashed twice per row)':
        'SELECT count(*), sum(h::numeric), bit_xor(h) FROM (SELECT hashtextextended(ROW(r.*)::text, 0) AS h '
        'FROM ONLY big AS r) q',
    'per-column hash, sum and bit_xor (hashed twice per row)':
        'SELECT count(*), sum(h), bit_xor(h) FROM (SELECT hash_record_extended(r.*, 0) AS h FROM ONLY big AS r) q',
    'now: count, sum(hash_record_extended(r.*)) (the module\'s checksum_statement)':
        checksum_statement('public', 'big'),
}


def checksum_passes(cluster: PgCluster) -> list[dict[str, Any]]:
    """One checksum pass over the large table (heap and tde_heap), serial and with the server's
    parallel workers: what verify_integrity costs per pass. Best of 3."""
    out = []
    for am in ('heap', 'tde_heap'):
        if am == 'tde_heap':
            psql_alter(cluster, 'big', 'tde_heap')
        for label, sql in CHECKSUMS.items():
            for workers in (0, None):
                prefix = 'SET max_parallel_workers_per_gather = 0; ' if workers == 0 else ''
                took = []
                for _ in range(3):
                    settle(cluster)
                    start = time.monotonic()
                    cluster.psql(prefix + sql, db='bench')
                    took.append(time.monotonic() - start)
                out.append({'access_method': am, 'query': label,
                            'workers': 'none' if workers == 0 else 'server default',
                            'seconds': round(min(took), 2)})
                log('checksum pass %s %s (%s): %.2f s' % (am, label, out[-1]['workers'], out[-1]['seconds']))
    psql_alter(cluster, 'big', 'heap')
    return out


def main() -> int:
    base = tempfile.mkdtemp(prefix='tdeops-bench-', dir='/tmp')
    os.chmod(base, 0o755)
    started = time.monotonic()
    load_start = os.getloadavg()
    with real_pg_tde_cluster(base, PROVIDER) as (cluster, flavour):
        log('cluster on port %d (%s); filling: 1 x %d MB, %d x %d MB'
            % (cluster.port, flavour, BIG_MB, N_TABLES, SMALL_MB))
        fill(cluster, 'big', BIG_MB)
        small = ['s%02d' % i for i in range(N_TABLES)]
        for t in small:
            fill(cluster, t, SMALL_MB)
        cluster.psql('CHECKPOINT')
        rows = int(cluster.psql('SELECT count(*) FROM big', db='bench'))
        one = scenario(cluster, base, 'one large table', ['big'], 1)
        idle = fixed_cost(cluster, base, ['big'], 'decrypted')
        log('module with nothing to do (fixed cost): %.3f s' % idle)
        many = scenario(cluster, base, 'many tables', small, PARALLEL)
        seq_enc, _ = run_module_process(cluster, module_args(cluster, small, 'encrypted', 1, True), base)
        run_module_process(cluster, module_args(cluster, small, 'decrypted', PARALLEL, False), base)
        log('many tables, module parallel=1, verified, encrypt: %.2f s' % seq_enc)
        passes = checksum_passes(cluster)
        report = {
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
            'flavour': flavour, 'server': server_version(cluster), 'host': platform.node(),
            'cpus': os.cpu_count(), 'load_start': load_start, 'load_end': os.getloadavg(),
            'rounds': ROUNDS, 'provider': PROVIDER, 'one': one, 'many': many, 'big_rows': rows,
            'many_seq_verified_enc_s': round(seq_enc, 2), 'fixed_cost_s': round(idle, 3),
            'checksum_passes': passes, 'parallel_settings': load_text(cluster),
            'total_s': round(time.monotonic() - started, 1),
        }
    shutil.rmtree(base, ignore_errors=True)
    text = render(report)
    write_results('table_encrypt', report, text)
    print(text)
    log('one large table: unverified %.3f (target >= %.2f), verified %.3f (target >= %.2f); %d tables '
        'parallel=%d: verified %.3f, unverified %.3f (target >= %.2f)'
        % (one['ratio']['unverified'], TARGETS['unverified'], one['ratio']['verified'], TARGETS['verified'],
           N_TABLES, PARALLEL, many['ratio']['verified'], many['ratio']['unverified'], TARGETS['many']))
    return 0


def verdict(value: float, target: float) -> str:
    return 'met' if value >= target else 'NOT met'


def headline(r: dict) -> list[str]:
    """The results table (also copied into bench/results/latest.md)."""
    one, many = r['one'], r['many']
    lines = [
        '| scenario | data | raw ALTER (enc+dec) | module, verify_integrity off | module, verify_integrity on (default) | target |',
        '|---|---|---|---|---|---|',
    ]

    def cell(sc: dict, side: str) -> str:
        # paired_ratio: results written before the bench paired its rounds do not have it
        paired = ('; paired per round %.2f' % sc['paired_ratio'][side]) if 'paired_ratio' in sc else ''
        return ('%.2f s, %.1f MB/s, **%.2fx** raw (enc %.2f, dec %.2f; medians %.2f%s; change phase %.2fx)'
                % (sc['best_s'][side], sc['mb_s'][side], sc['ratio'][side], sc['ratio_enc'][side],
                   sc['ratio_dec'][side], sc['median_ratio'][side], paired, sc['phase_ratio'][side]))

    lines.append('| one large table | %s MB | %.2f s, %.1f MB/s | %s | %s | off >= %.2fx: %s; on >= %.2fx: %s |'
                 % (one['mb'], one['best_s']['raw'], one['mb_s']['raw'], cell(one, 'unverified'), cell(one, 'verified'),
                    TARGETS['unverified'], verdict(one['ratio']['unverified'], TARGETS['unverified']),
                    TARGETS['verified'], verdict(one['ratio']['verified'], TARGETS['verified'])))
    lines.append('| %d tables, parallel=%d | %s MB | %.2f s, %.1f MB/s | %s | %s | >= %.1fx: off %s, on %s |'
                 % (many['tables'], many['parallel'], many['mb'], many['best_s']['raw'], many['mb_s']['raw'],
                    cell(many, 'unverified'), cell(many, 'verified'), TARGETS['many'],
                    verdict(many['ratio']['unverified'], TARGETS['many']),
                    verdict(many['ratio']['verified'], TARGETS['many'])))
    return lines


def render(r: dict) -> str:
    one, many = r['one'], r['many']
    lines = [
        '# pg_tde_table_encrypt benchmark, %s' % r['date'],
        '',
        '%s (`%s`); %s CPUs shared with other work: load average %.2f / %.2f / %.2f at the '
        'start, %.2f / %.2f / %.2f at the end; fsync, synchronous_commit and full_page_writes on, wal_level '
        'replica, shared_buffers 256MB, %s; %d rounds in rotating order (raw, module without verification, '
        'module with it), best time per direction (medians beside them: see the docstring of '
        'bench/table_encrypt.py for why); every rewrite is timed (heap -> tde_heap and back, so MB/s counts '
        'the data twice) and starts from a levelled server (CHECKPOINT and sync before it, not timed).'
        % (r['flavour'], r['server'], r['cpus'], *r['load_start'], *r['load_end'],
           r['parallel_settings'], r['rounds']),
        '',
        '- Raw: `psql -c \'ALTER TABLE ... SET ACCESS METHOD ...\'`, one psql per table, sequential.',
        '- Module: `pg_tde_table_encrypt` as its own Python process, as ansible runs it on the host, end to end '
        '(interpreter start, imports, connection, catalog reads, key check, free space check, the rewrites, '
        'checks of every part with pg_tde_is_encrypted, and with verify_integrity the row count and checksum '
        'before and after each rewrite, under its lock). Ratios are raw time / module time (above 1: the module '
        'is faster): of the best times (headline), of the medians, and the median of the ratios within each round '
        '("paired", the sides of a round ran under about the same load). "change phase" is the module\'s own '
        'summary.seconds (first lock to last check after commit), without the Python start, imports and planning.',
        '',
    ]
    lines += headline(r)
    lines += ['']
    if one.get('phases'):
        lines += ['Where the time of a verified rewrite of the large table goes (the module\'s phase_seconds, '
                  'medians, %d rows):' % r['big_rows'], '',
                  '| direction | lock | checksum before | ALTER (rewrite) | pg_tde_is_encrypted checks | '
                  'checksum after | commit |', '|---|---|---|---|---|---|---|']
        for d, label in (('enc', 'heap -> tde_heap'), ('dec', 'tde_heap -> heap')):
            p = one['phases'][d]
            lines.append('| %s | %.3f s | %.2f s | %.2f s | %.3f s | %.2f s | %.3f s |'
                         % (label, p['lock'], p['checksum_before'], p['rewrite'], p['check'], p['checksum_after'],
                            p['commit']))
        lines.append('')
    lines += ['One checksum pass over the large table (best of 3; "server default" = max_parallel_workers_per_gather '
              'as configured, the module\'s case):', '',
              '| table | query | parallel workers | seconds |', '|---|---|---|---|']
    for p in r['checksum_passes']:
        lines.append('| %s | %s | %s | %.2f |' % (p['access_method'], p['query'], p['workers'], p['seconds']))
    lines += [
        '',
        'Also measured in this run:',
        '',
        '- many tables, module with parallel=1 and verify_integrity, encrypt: %.2f s' % r['many_seq_verified_enc_s'],
        '- the module with nothing to do (fixed cost per run: interpreter, imports, connection, catalog, key '
        'check; median of 5): %.3f s' % r['fixed_cost_s'],
        '- spread of each timing, (max - min) / median: one large table %s; many tables %s'
        % (json.dumps(one['spread']), json.dumps(many['spread'])),
        '',
        'All times (s) per round, end to end, and the module\'s change phase (summary.seconds):',
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
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
