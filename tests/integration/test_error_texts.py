"""Every ERROR/FATAL text the real pg_tde produced goes through the collection's explainer
(plugins/module_utils/_errors.py explain_tde_error): each has an explanation or sits on the
allowlist below with the reason it needs none.

Two sources: the captured real runs in <facts>/observed/*.log (the facts directory is
../shared/pg_tde-facts relative to the checkout, or TDEOPS_PG_TDE_FACTS; under CI=true its
absence is a failure, elsewhere a loud skip), and the server logs of every real pg_tde cluster
this session ran (tests.support.pg.SERVER_LOGS, filled when a cluster is destroyed; that test
runs last, marker tier_last)."""
from __future__ import annotations

import glob
import os
import re

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import explain_tde_error
from tests.support import pg as pg_support

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# An ERROR/FATAL line: psql's "ERROR:  P0002: text" (VERBOSITY verbose), a server log's
# "<time> [pid] ERROR:  text", pgBackRest's "ERROR: [056]: text".
_LINE_RE = re.compile(r'\b(ERROR|FATAL):\s+(?:[0-9A-Z]{5}:\s+)?(.*\S)')

# (pattern, reason): texts that need no explanation from the collection.
ALLOWLIST: list[tuple[str, str]] = [
    # PostgreSQL's own errors that tests provoke on purpose; PostgreSQL's text says it all.
    (r'^relation ".*" does not exist$', 'PostgreSQL: a table that is not there (the observed restore drill '
                                        'reads it before the WAL with it was archived)'),
    (r'^canceling statement due to lock timeout$', 'PostgreSQL: pg_tde_table_encrypt\'s lock_timeout; the '
                                                   'module retries and reports it per table'),
    (r'^invalid value for parameter ".*": ', 'PostgreSQL: a setting value the server rejects (a test gives '
                                             'pg_tde_table_encrypt lock_timeout "soon"); the module tries it '
                                             'before any change and names the option'),
    (r'^terminating connection due to administrator command$', 'PostgreSQL: a session still open while a '
                                                               'test cluster stops'),
    (r'^the database system is (starting up|shutting down|not yet accepting connections)$',
     'PostgreSQL: a connection while a test cluster starts or stops'),
    (r'^could not create any TCP/IP sockets$',
     'PostgreSQL: a start that fails on purpose (listen_addresses the host does not have): pg_restart quotes '
     'it after putting the previous files back (tests/integration/test_pg_restart.py)'),
    (r'^could not extend file ".*": No space left on device$',
     'PostgreSQL: the online method\'s disk-full test fills a small tablespace on purpose; the module '
     'reports it per table and removes its copy'),
    (r'^duplicate key value violates unique constraint ".*"$',
     'PostgreSQL: an application\'s write refused by its own constraint (the online method\'s tests show '
     'constraints stay enforced during the copy)'),
    (r'^insert or update on table ".*" violates foreign key constraint ".*"$',
     'PostgreSQL: as above, a foreign key still enforced after the switch'),
    (r'^could not identify an extended hash function for type \S+$',
     'PostgreSQL: the row checksum probes once per table whether every column type has an extended '
     'hash function (_tables.hash_method) and hashes the row text otherwise'),
    # pgBackRest's own errors (not pg_tde texts; the pgbackrest role checks its version and settings).
    (r'^\[\d{3}\]: ', 'pgBackRest: its own numbered error with its own HINT (facts section 7: Debian 12\'s '
                       'pgBackRest 2.45 cannot handle PostgreSQL 17); the pgbackrest role checks the version'),
]


def facts_dir() -> str | None:
    path = os.environ.get('TDEOPS_PG_TDE_FACTS') or os.path.join(ROOT, '..', 'shared', 'pg_tde-facts')
    path = os.path.abspath(path)
    return path if os.path.isdir(os.path.join(path, 'observed')) else None


def error_texts(text: str) -> list[str]:
    """The message of every ERROR/FATAL line, without SQLSTATE prefixes."""
    return [m.group(2).strip() for m in map(_LINE_RE.search, text.splitlines()) if m]


def allowed(message: str) -> str | None:
    for pattern, reason in ALLOWLIST:
        if re.search(pattern, message):
            return reason
    return None


def unexplained(messages: dict[str, str]) -> list[str]:
    """{message: where} -> the messages with neither an explanation nor an allowlist entry.
    With TDEOPS_ERROR_TEXTS_REPORT=<file> every message and how it was judged is appended there."""
    report = os.environ.get('TDEOPS_ERROR_TEXTS_REPORT')
    if report:
        with open(report, 'a', encoding='utf-8') as fh:
            for msg in sorted(messages):
                how = 'explained' if explain_tde_error(msg) else ('allowlist' if allowed(msg) else 'MISSING')
                fh.write('%-9s %s\n' % (how, msg))
    return sorted('%s    (from %s)' % (msg, where) for msg, where in messages.items()
                  if explain_tde_error(msg) is None and allowed(msg) is None)


def test_allowlist_does_not_hide_pg_tde_texts():
    """The allowlist is for texts that are not pg_tde's: none of pg_tde's own known texts match it."""
    for text in ('key "k" not found in key provider "p"', 'principal key not configured',
                 'SSL error: BIO_do_connect failed', 'cannot delete provider which is currently in use',
                 'pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed.'):
        assert allowed(text) is None and explain_tde_error(text) is not None, text


def test_observed_error_lines_are_explained():
    facts = facts_dir()
    if facts is None:
        reason = ('the pg_tde facts directory is missing: looked for ../shared/pg_tde-facts relative to the '
                  'checkout (%s) and TDEOPS_PG_TDE_FACTS' % ROOT)
        if os.environ.get('CI') == 'true':
            pytest.fail('CI=true: %s' % reason)
        pytest.skip('SKIPPED LOUDLY: %s' % reason)
    messages: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(facts, 'observed', '*.log'))):
        with open(path, encoding='utf-8', errors='replace') as fh:
            for msg in error_texts(fh.read()):
                messages.setdefault(msg, os.path.basename(path))
    assert len(messages) >= 15, 'the observed logs hold the texts of facts section 5: %s' % sorted(messages)
    missing = unexplained(messages)
    assert not missing, 'ERROR/FATAL texts of the real pg_tde with no explanation and no allowlist entry:\n%s' \
        % '\n'.join(missing)


@pytest.mark.tier_last
@pytest.mark.real_pg_tde
def test_tier_server_log_errors_are_explained():
    if not pg_support.SERVER_LOGS:
        pytest.skip('SKIPPED LOUDLY: no real pg_tde cluster ran in this session before this test (run the '
                    'whole integration tier; the clusters\' logs are collected when they are destroyed)')
    messages: dict[str, str] = {}
    for cluster, log in pg_support.SERVER_LOGS:
        for msg in error_texts(log):
            messages.setdefault(msg, cluster)
    missing = unexplained(messages)
    assert not missing, ('ERROR/FATAL lines in the server logs of this tier\'s clusters with no explanation '
                         'and no allowlist entry (%d clusters):\n%s' % (len(pg_support.SERVER_LOGS),
                                                                        '\n'.join(missing)))
