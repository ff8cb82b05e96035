"""What TDE costs at run time: pgbench TPS on PostgreSQL 17 with the REAL pg_tde, heap against
tde_heap tables and WAL encryption off against on, in the same run on the same machine. Called by
bench/run.sh; never a timed test.

Cluster: bench/common.py real_pg_tde_cluster (production-like settings: fsync, synchronous_commit
and full_page_writes on, shared_buffers 256MB), a global key provider (file by default,
BENCH_PROVIDER=kmip for PyKMIP) with a default key and a server key. Two databases initialised with
`pgbench -i -s SCALE`: `bench` with heap tables and `bench_tde` with tde_heap tables (and their
indexes; default_table_access_method = tde_heap; checked with pg_tde_is_encrypted). The data of
each is larger than shared_buffers, so reads keep going through pg_tde's decryption, as they do
on a server whose data does not fit in memory.

Workloads: `pgbench -S` (select-only) and pgbench's built-in TPC-B-like script, CLIENTS clients,
DURATION seconds each, after an untimed select-only warm-up; TPC-B runs start from a levelled
server (CHECKPOINT and sync). pg_tde.wal_encrypt off and on need a restart: each round runs one
WAL mode completely, then the other (alternating which goes first), and inside it heap and
tde_heap alternate too. TPS is pgbench's "without initial connection time"; the headline is the
best run of each cell (noise only ever lowers TPS), the median beside it.

Environment: BENCH_SCALE (pgbench scale, default 40, about 600 MB per database), BENCH_CLIENTS
(default 4), BENCH_DURATION (seconds per run, default 15), BENCH_WARMUP (seconds, default 3),
BENCH_ROUNDS (default 3), BENCH_PROVIDER (file or kmip), BENCH_OUT (results directory).
"""
from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import log, real_pg_tde_cluster, server_version, settle, write_results  # noqa: E402
from tests.support.pg import PG_BIN, PgCluster  # noqa: E402

SCALE = int(os.environ.get('BENCH_SCALE', '40'))
CLIENTS = int(os.environ.get('BENCH_CLIENTS', '4'))
DURATION = int(os.environ.get('BENCH_DURATION', '15'))
WARMUP = int(os.environ.get('BENCH_WARMUP', '3'))
ROUNDS = int(os.environ.get('BENCH_ROUNDS', '3'))
PROVIDER = os.environ.get('BENCH_PROVIDER', 'file')
JOBS = max(1, min(CLIENTS, os.cpu_count() or 1))

DATABASES = {'heap': 'bench', 'tde_heap': 'bench_tde'}
WORKLOADS = {'select-only': ['-S'], 'TPC-B-like': []}
CELLS = [(wal, am) for wal in ('off', 'on') for am in ('heap', 'tde_heap')]


def pgbench(cluster: PgCluster, db: str, args: list[str]) -> str:
    cmd = [os.path.join(PG_BIN, 'pgbench'), '-h', cluster.host, '-p', str(cluster.port), '-U', 'postgres'] + args + [db]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError('pgbench %s failed: %s%s' % (' '.join(args), proc.stdout, proc.stderr))
    return proc.stdout


def tps(output: str) -> float:
    found = re.search(r'tps = ([0-9.]+) \(without initial connection time\)', output)
    if not found:
        raise RuntimeError('no TPS in pgbench output:\n%s' % output)
    return float(found.group(1))


def prepare(cluster: PgCluster) -> dict[str, Any]:
    cluster.create_database(DATABASES['tde_heap'], extension=True)
    cluster.psql("ALTER DATABASE %s SET default_table_access_method = 'tde_heap'" % DATABASES['tde_heap'])
    sizes = {}
    for am, db in DATABASES.items():
        log('pgbench -i -s %d in %s (%s)' % (SCALE, db, am))
        pgbench(cluster, db, ['-i', '-q', '-s', str(SCALE)])
        encrypted = cluster.psql("SELECT bool_and(pg_tde_is_encrypted(c.oid::regclass)) FROM pg_class c "
                                 "WHERE c.relname LIKE 'pgbench_%' AND c.relkind IN ('r', 'i')", db=db)
        if encrypted != ('t' if am == 'tde_heap' else 'f'):
            raise RuntimeError('%s: pg_tde_is_encrypted of the pgbench tables and indexes is %s, expected %s'
                               % (db, encrypted, am == 'tde_heap'))
        sizes[am] = int(cluster.psql('SELECT pg_database_size(current_database())', db=db))
    return sizes


def set_wal(cluster: PgCluster, mode: str) -> None:
    cluster.set_conf(**{'pg_tde.wal_encrypt': mode})
    cluster.restart()
    have = cluster.psql('SHOW pg_tde.wal_encrypt')
    if have != mode:
        raise RuntimeError('pg_tde.wal_encrypt is %s after the restart, expected %s' % (have, mode))


def measure(cluster: PgCluster, results: dict, wal: str, am: str) -> None:
    db = DATABASES[am]
    for workload, extra in WORKLOADS.items():
        pgbench(cluster, db, ['-S', '-n', '-c', str(CLIENTS), '-j', str(JOBS), '-T', str(WARMUP)])
        if workload != 'select-only':
            settle(cluster)
        value = tps(pgbench(cluster, db, extra + ['-c', str(CLIENTS), '-j', str(JOBS), '-T', str(DURATION)]))
        results[workload]['%s/%s' % (wal, am)].append(value)
        log('WAL encryption %s, %s, %s: %.1f tps' % (wal, am, workload, value))


def main() -> int:
    base = tempfile.mkdtemp(prefix='tdeops-bench-rt-', dir='/tmp')
    os.chmod(base, 0o755)
    started = time.monotonic()
    load_start = os.getloadavg()
    results: dict[str, dict[str, list[float]]] = {w: {'%s/%s' % c: [] for c in CELLS} for w in WORKLOADS}
    with real_pg_tde_cluster(base, PROVIDER) as (cluster, flavour):
        sizes = prepare(cluster)
        server = server_version(cluster)
        for rnd in range(ROUNDS):
            for wal in (('off', 'on') if rnd % 2 == 0 else ('on', 'off')):
                set_wal(cluster, wal)
                for am in (('heap', 'tde_heap') if rnd % 2 == 0 else ('tde_heap', 'heap')):
                    measure(cluster, results, wal, am)
        set_wal(cluster, 'off')
    shutil.rmtree(base, ignore_errors=True)
    report = {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'flavour': flavour, 'server': server, 'host': platform.node(), 'cpus': os.cpu_count(),
        'load_start': load_start, 'load_end': os.getloadavg(), 'rounds': ROUNDS, 'scale': SCALE,
        'clients': CLIENTS, 'jobs': JOBS, 'duration': DURATION, 'warmup': WARMUP, 'provider': PROVIDER,
        'database_bytes': sizes, 'tps': results,
        'best': {w: {c: max(v) for c, v in cells.items()} for w, cells in results.items()},
        'median': {w: {c: statistics.median(v) for c, v in cells.items()} for w, cells in results.items()},
        'total_s': round(time.monotonic() - started, 1),
    }
    text = render(report)
    write_results('runtime_tde', report, text)
    print(text)
    return 0


def ratio(cells: dict[str, float], num: str, den: str) -> float:
    return cells[num] / cells[den] if cells[den] else 0.0


def headline(r: dict) -> list[str]:
    """The results table (also copied into bench/results/latest.md)."""
    lines = [
        '| workload | heap | tde_heap | tde_heap / heap | heap + WAL encryption | WAL encryption on / off (heap) '
        '| tde_heap + WAL encryption | all of TDE / none |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for workload in r['tps']:
        best, med = r['best'][workload], r['median'][workload]

        def cell(key: str) -> str:
            return '%.0f tps (median %.0f)' % (best[key], med[key])

        def rat(num: str, den: str) -> str:
            return '**%.3f** (medians %.3f)' % (ratio(best, num, den), ratio(med, num, den))

        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |'
                     % (workload, cell('off/heap'), cell('off/tde_heap'), rat('off/tde_heap', 'off/heap'),
                        cell('on/heap'), rat('on/heap', 'off/heap'), cell('on/tde_heap'),
                        rat('on/tde_heap', 'off/heap')))
    return lines


def render(r: dict) -> str:
    mb = {k: v / 1048576.0 for k, v in r['database_bytes'].items()}
    lines = [
        '# What TDE costs at run time: pgbench, %s' % r['date'],
        '',
        '%s (`%s`); %s CPUs shared with other work: load average %.2f / %.2f / %.2f at the start, '
        '%.2f / %.2f / %.2f at the end; fsync, synchronous_commit and full_page_writes on, shared_buffers '
        '256MB; pgbench scale %d (heap database %.0f MB, tde_heap database %.0f MB: %s), %d clients, %d threads, '
        '%d s per run after a %d s select-only warm-up, %d rounds; best TPS per cell (medians beside them).'
        % (r['flavour'], r['server'], r['cpus'], *r['load_start'], *r['load_end'], r['scale'], mb['heap'],
           mb['tde_heap'], 'larger than shared_buffers, so reads keep going through decryption' if mb['tde_heap'] > 256
           else 'they fit in shared_buffers, so pages are decrypted once: raise BENCH_SCALE for a server whose '
           'data does not fit', r['clients'], r['jobs'], r['duration'], r['warmup'], r['rounds']),
        '',
        '- heap / tde_heap: every pgbench table and index as heap (database `bench`) or tde_heap (`bench_tde`).',
        '- WAL encryption: `pg_tde.wal_encrypt` off or on (a restart between; each round runs one mode '
        'completely, then the other).',
        '- Ratios below 1 are what TDE costs: 0.95 = 5% fewer transactions per second.',
        '',
    ]
    lines += headline(r)
    lines += ['', 'Every run (tps), in the order of the rounds:', '', '```']
    for workload, cells in r['tps'].items():
        for key, values in cells.items():
            wal, am = key.split('/')
            lines.append('%-12s WAL encryption %-3s %-8s %s' % (workload, wal, am, ', '.join('%.1f' % v for v in values)))
    lines += ['```', '', 'Total benchmark wall time: %.1f s. Run with `bash bench/run.sh` (sizes: BENCH_* in '
              'bench/runtime_tde.py).' % r['total_s'], '']
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
