"""pytest fixtures for PostgreSQL 17 clusters with the REAL pg_tde (tests/support/pg.py).

Public fixtures:
  pg_bin              session   PostgreSQL 17's bin directory; skips LOUDLY (with what to install)
                                when the real pg_tde is not installed. Every test that uses it is
                                marked real_pg_tde (tests/conftest.py): under CI=true such a skip
                                is a failure.
  pg_cluster_factory  function  factory: pg_cluster_factory(preload=('pg_tde',), settings=None,
                                start=True, extension=True, name=None) -> PgCluster, started, with
                                CREATE EXTENSION pg_tde in `postgres` when preloaded and extension
                                is true; every cluster it made is stopped and removed at test end
  pg                  module    one started cluster per test module, pg_tde preloaded and
                                CREATE EXTENSION pg_tde done in `postgres`; stopped and removed
                                after the module. Tests sharing it must use unique provider/key
                                names and leave it running.

Clusters live under /tmp/tdeops-pg-* (0755, so `postgres` can traverse it), removed unless
TDEOPS_KEEP_TMP is set. Their server logs are kept in tests.support.pg.SERVER_LOGS.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping

import pytest

from tests.support.pg import PG_BIN, PgCluster, pg_available

_counter = itertools.count(1)


def _base_dir(prefix: str) -> str:
    base = tempfile.mkdtemp(prefix=prefix, dir='/tmp')
    os.chmod(base, 0o755)
    return base


def _cleanup(base: str) -> None:
    if not os.environ.get('TDEOPS_KEEP_TMP'):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope='session')
def pg_bin() -> str:
    missing = pg_available()
    if missing:
        pytest.skip('SKIPPED LOUDLY: %s' % missing)
    return PG_BIN


def _make(base: str, preload: tuple[str, ...], settings: Mapping[str, Any] | None, start: bool,
          extension: bool, name: str | None) -> PgCluster:
    cluster = PgCluster(os.path.join(base, name or 'pg%d' % next(_counter)), preload=preload,
                        settings=settings)
    if start:
        cluster.start()
        if extension and 'pg_tde' in preload:
            cluster.psql('CREATE EXTENSION pg_tde')
    return cluster


@pytest.fixture
def pg_cluster_factory(pg_bin: str) -> Iterator[Callable[..., PgCluster]]:
    base = _base_dir('tdeops-pg-')
    made: list[PgCluster] = []

    def factory(preload: tuple[str, ...] = ('pg_tde',), settings: Mapping[str, Any] | None = None,
                start: bool = True, extension: bool = True, name: str | None = None) -> PgCluster:
        cluster = _make(base, tuple(preload), settings, start, extension, name)
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        try:
            cluster.destroy()
        except Exception:       # noqa: BLE001 - clean up the others anyway
            pass
    _cleanup(base)


@pytest.fixture(scope='module')
def pg(pg_bin: str) -> Iterator[PgCluster]:
    base = _base_dir('tdeops-pgm-')
    cluster = _make(base, ('pg_tde',), None, True, True, 'pg')
    try:
        yield cluster
    finally:
        try:
            cluster.destroy()
        finally:
            _cleanup(base)
