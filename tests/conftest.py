"""Shared pytest set-up: the collection is importable as ansible_collections.tdeops.pg_tde; the
real pg_tde tier is marked, strict under CI=true and counted."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Fixtures for the real servers: KMS (PyKMIP, OpenBao, throw-away PKI) and PostgreSQL 17 with
# the real pg_tde.
pytest_plugins = ['tests.support.fixtures_kms', 'tests.support.fixtures_pg']

# Fixtures that start PostgreSQL with the real pg_tde: a test that uses one is a real-tier test.
REAL_PG_TDE_FIXTURES = frozenset({'pg_bin', 'pg', 'pg_cluster_factory'})


def in_ci() -> bool:
    return os.environ.get('CI') == 'true'


def pytest_collection_modifyitems(config, items) -> None:
    """Mark real-tier tests; run the tests marked tier_last after all others (they read what
    the others left, such as the server logs of their clusters)."""
    for item in items:
        if REAL_PG_TDE_FIXTURES & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.real_pg_tde)
    items.sort(key=lambda item: item.get_closest_marker('tier_last') is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a real_pg_tde test that skips is a failure: CI must run the real tier."""
    outcome = yield
    report = outcome.get_result()
    real = item.get_closest_marker('real_pg_tde') is not None
    report.user_properties.append(('real_pg_tde', real))
    if real and in_ci() and report.skipped and not hasattr(report, 'wasxfail'):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = 'failed'
        report.longrepr = ('CI=true: the real pg_tde tier must run, but this test skipped: %s' % reason)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """How many tests ran against the real pg_tde (and how many of them skipped)."""
    ran = skipped = 0
    for kind in ('passed', 'failed', 'error', 'skipped'):
        for report in terminalreporter.stats.get(kind, []):
            if not dict(getattr(report, 'user_properties', ())).get('real_pg_tde'):
                continue
            if kind == 'skipped' and report.when in ('setup', 'call'):
                skipped += 1
            elif report.when == 'call':
                ran += 1
    if ran or skipped:
        terminalreporter.write_line('real pg_tde tier: %d test(s) ran against PostgreSQL 17 with the real '
                                    'pg_tde, %d skipped%s' % (ran, skipped,
                                                              ' (SKIPPED LOUDLY, see -rs)' if skipped else ''))
