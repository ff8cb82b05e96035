"""Shared parts of the benchmarks: a throw-away PostgreSQL 17 cluster with the REAL pg_tde and a
key, levelling the server before a timed run, and the results files.

Never a stand-in: real_pg_tde_cluster() stops with the reason when pg_tde is missing or does not
encrypt (a marker written to a tde_heap table must not appear in its file on disk)."""
from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import shutil
import sys
import time
from typing import Any, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.pg import PgCluster, chown_postgres, pg_available  # noqa: E402

OUT = os.environ.get('BENCH_OUT', os.path.join(ROOT, 'bench', 'results'))

# Production-like: durable commits and full page writes (unlike the test clusters), a realistic
# shared_buffers, room for the WAL of a large rewrite, parallel query at PostgreSQL's defaults.
SETTINGS = {
    'fsync': True, 'synchronous_commit': True, 'full_page_writes': True, 'wal_level': 'replica',
    'shared_buffers': '256MB', 'max_wal_size': '4GB', 'checkpoint_timeout': '30min',
    'maintenance_work_mem': '128MB', 'max_connections': 40,
}
MARKER = 'tdeops-bench-plaintext-marker'


def log(text: str) -> None:
    print('[bench %s] %s' % (time.strftime('%H:%M:%S'), text), flush=True)


def settle(cluster: PgCluster) -> None:
    """Level the field before a timed run (not timed): no dirty buffers, no dirty page cache, no
    checkpoint owed, whoever ran before."""
    cluster.psql('CHECKPOINT')
    os.sync()


def server_version(cluster: PgCluster) -> str:
    return cluster.psql('SELECT version()').split(' on ')[0]


def load_text(cluster: PgCluster) -> str:
    """The parallel query settings in effect (they decide how fast a checksum pass is)."""
    rows = cluster.psql("SELECT string_agg(name || ' ' || setting, ', ' ORDER BY name) FROM pg_settings "
                        "WHERE name IN ('max_parallel_workers_per_gather', 'max_parallel_workers', "
                        "'max_worker_processes', 'max_parallel_maintenance_workers')")
    return rows


class NoRealPgTde(SystemExit):
    pass


def _stop(reason: str) -> None:
    raise NoRealPgTde('benchmark: needs PostgreSQL 17 with the real pg_tde, and %s. Install it (Percona\'s '
                      'packages, or bash ../shared/real-pg_tde/install.sh for the local build) and run again; '
                      'there is no stand-in.' % reason)


def _kmip_provider(base: str, cluster: PgCluster) -> tuple[Any, str]:
    from tests.support.kms import PyKmipServer
    from tests.support.pki import Pki

    server = PyKmipServer(os.path.join(base, 'kmip'), Pki(os.path.join(base, 'pki'))).start()
    issued = server.client_cert('tdeops-bench')
    files = {}
    for name, src in (('cert', issued.cert), ('key', issued.key), ('ca', server.ca)):
        dest = os.path.join(cluster.workdir, 'kmip-%s.pem' % name)
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o600)
        chown_postgres(dest)
        files[name] = dest
    sql = ("SELECT pg_tde_add_global_key_provider_kmip('bench', '%s', %d, '%s', '%s', '%s')"
           % (server.host, server.port, files['cert'], files['key'], files['ca']))
    return server, sql


@contextlib.contextmanager
def real_pg_tde_cluster(base: str, provider: str = 'file', settings: dict[str, Any] | None = None,
                        database: str = 'bench') -> Iterator[tuple[PgCluster, str]]:
    """A started cluster with pg_tde preloaded, a global key provider (file or kmip), a default
    key and a server key (for WAL encryption), and `database` with the extension. Yields
    (cluster, description); stops and removes everything afterwards."""
    missing = pg_available()
    if missing is not None:
        _stop(missing)
    kms = None
    cluster = PgCluster(os.path.join(base, 'pg'), settings=dict(SETTINGS, **(settings or {})))
    try:
        cluster.start()
        cluster.psql('CREATE EXTENSION pg_tde')
        version = cluster.psql('SELECT pg_tde_version()')
        if not version.startswith('pg_tde 2.'):
            _stop('pg_tde 2.x (found %r)' % version)
        if provider == 'kmip':
            kms, add = _kmip_provider(base, cluster)
        elif provider == 'file':
            add = "SELECT pg_tde_add_global_key_provider_file('bench', '%s')" % os.path.join(cluster.workdir, 'bench.keys')
        else:
            raise SystemExit('BENCH_PROVIDER must be file or kmip, not %r' % provider)
        cluster.psql(add)
        cluster.psql("SELECT pg_tde_create_key_using_global_key_provider('bench-default', 'bench');"
                     "SELECT pg_tde_set_default_key_using_global_key_provider('bench-default', 'bench');"
                     "SELECT pg_tde_create_key_using_global_key_provider('bench-server', 'bench');"
                     "SELECT pg_tde_set_server_key_using_global_key_provider('bench-server', 'bench')")
        cluster.create_database(database, extension=True)
        _prove_encryption(cluster, database)
        yield cluster, '%s + %s (real), %s key provider' % (server_version(cluster).split(' - ')[0], version,
                                                            provider)
    finally:
        cluster.destroy()
        if kms is not None:
            kms.stop()


def _prove_encryption(cluster: PgCluster, database: str) -> None:
    """A marker in a tde_heap table must not be in its file on disk, and must be in a heap one."""
    found = {}
    for am in ('heap', 'tde_heap'):
        table = 'bench_marker_%s' % am
        cluster.psql("CREATE TABLE %s (t text) USING %s; INSERT INTO %s SELECT '%s' FROM generate_series(1, 50)"
                     % (table, am, table, MARKER), db=database)
        cluster.psql('CHECKPOINT')
        path = os.path.join(cluster.datadir, cluster.psql("SELECT pg_relation_filepath('%s')" % table, db=database))
        with open(path, 'rb') as fh:
            found[am] = MARKER.encode() in fh.read()
        cluster.psql('DROP TABLE %s' % table, db=database)
    if not found['heap'] or found['tde_heap']:
        _stop('tables that are really encrypted on disk (marker in heap file: %s, in tde_heap file: %s)'
              % (found['heap'], found['tde_heap']))


def write_results(name: str, report: dict[str, Any], text: str) -> None:
    """bench/results/<date>-<name>.md (kept), <name>.md and <name>.json (the latest of this
    benchmark), then bench/results/latest.md from the latest of every benchmark."""
    os.makedirs(OUT, exist_ok=True)
    day = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    for path, content in ((os.path.join(OUT, '%s-%s.md' % (day, name)), text),
                          (os.path.join(OUT, '%s.md' % name), text),
                          (os.path.join(OUT, '%s.json' % name), json.dumps(report, indent=1) + '\n')):
        with open(path + '.tmp', 'w') as fh:
            fh.write(content)
        os.replace(path + '.tmp', path)
    write_latest()


def write_latest() -> None:
    """latest.md: the headline table of each benchmark's latest run, from its JSON."""
    from bench import runtime_tde, table_encrypt

    parts = ['# Benchmarks, latest results', '',
             'Run on demand with `bash bench/run.sh` (`make bench`), never as timed tests. Each section comes '
             'from the latest run of one benchmark; the full results (settings, every round, spread) are in '
             'the file it names, and dated copies in this directory.', '']
    for name, module, title in (('table_encrypt', table_encrypt, 'Encrypting existing tables: pg_tde_table_encrypt '
                                 'against a raw ALTER TABLE'),
                                ('runtime_tde', runtime_tde, 'What TDE costs at run time: pgbench TPS')):
        path = os.path.join(OUT, '%s.json' % name)
        parts += ['## %s' % title, '']
        if not os.path.exists(path):
            parts += ['Not run yet (`python bench/%s.py`).' % name, '']
            continue
        with open(path) as fh:
            report = json.load(fh)
        parts += ['%s, %s; load average %.2f / %.2f / %.2f at the start, %.2f / %.2f / %.2f at the end '
                  '(%d CPUs). Full results: [%s.md](%s.md).'
                  % (report['date'], report['flavour'], *report['load_start'], *report['load_end'], report['cpus'],
                     name, name), '']
        parts += module.headline(report)
        parts += ['']
    others = [n for n in ('online', 'fleet', 'noop_site') if os.path.exists(os.path.join(OUT, '%s.md' % n))]
    if others:
        parts += ['## Other benchmarks', '', 'Run by name (`bash bench/run.sh NAME`); their latest results: %s.'
                  % ', '.join('[%s.md](%s.md)' % (n, n) for n in others), '']
    with open(os.path.join(OUT, 'latest.md.tmp'), 'w') as fh:
        fh.write('\n'.join(parts))
    os.replace(os.path.join(OUT, 'latest.md.tmp'), os.path.join(OUT, 'latest.md'))
    for stale in glob.glob(os.path.join(OUT, '*.tmp')):
        os.unlink(stale)
