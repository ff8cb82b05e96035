"""On-disk proof against a REAL pg_tde server (the double never encrypts): a table holding a
marker string is encrypted by pg_tde_table_encrypt, and after CHECKPOINT the marker is absent
from the relation files of the table, its indexes, its TOAST table and TOAST index, as in
observed/flow-03-ondisk-grep.log. Then the way back: decrypted, the marker is on disk again.

Needs TDEOPS_REAL_PG_TDE (libpq conninfo of a superuser on a real pg_tde server whose
database has a principal key, reachable from here) and TDEOPS_REAL_PGDATA (its data
directory, readable from here: the test runs on the database host)."""
from __future__ import annotations

import os
import uuid
import warnings

import pytest

from tests.support.ansible_runner import run_module

CONNINFO = os.environ.get('TDEOPS_REAL_PG_TDE')
PGDATA = os.environ.get('TDEOPS_REAL_PGDATA')
REASON = ('SKIPPED LOUDLY: no real pg_tde server: set TDEOPS_REAL_PG_TDE to the libpq conninfo of a real '
          'pg_tde server (superuser, database with a principal key) and TDEOPS_REAL_PGDATA to its data '
          'directory to prove on-disk encryption; the pg_tde test double never encrypts.')

pytestmark = [pytest.mark.real_pg_tde]


@pytest.fixture(scope='module')
def real():
    if not CONNINFO or not PGDATA:
        warnings.warn(REASON)
        print('\n' + REASON)
        pytest.skip(REASON)
    psycopg = pytest.importorskip('psycopg')
    conn = psycopg.connect(CONNINFO, autocommit=True)
    yield conn
    conn.close()


def login_args(conn) -> dict:
    info = conn.info
    args = {'login_user': info.user, 'login_db': info.dbname, 'login_port': info.port}
    host = info.host
    if host.startswith('/'):
        args['login_unix_socket'] = host
    else:
        args['login_host'] = host
    if info.password:
        args['login_password'] = info.password
    return args


def relation_files(conn, table: str) -> dict[str, str]:
    """{relation: absolute path of its main fork} for the table, its indexes, TOAST and TOAST index."""
    rows = conn.execute(
        "WITH t AS (SELECT oid, reltoastrelid FROM pg_class WHERE oid = %s::regclass) "
        "SELECT c.oid::regclass::text, pg_relation_filepath(c.oid) FROM t JOIN pg_class c "
        "ON c.oid = t.oid OR c.oid = t.reltoastrelid OR c.oid IN (SELECT indexrelid FROM pg_index "
        "WHERE indrelid = t.oid OR (t.reltoastrelid <> 0 AND indrelid = t.reltoastrelid))",
        [table]).fetchall()
    return {rel: os.path.join(PGDATA, path) for rel, path in rows}


def hits(path: str, marker: bytes) -> int:
    """Occurrences of marker in the relation's segments (path, path.1, ...)."""
    count = 0
    seg = 0
    while True:
        name = path if seg == 0 else '%s.%d' % (path, seg)
        if not os.path.exists(name):
            return count
        with open(name, 'rb') as fh:
            count += fh.read().count(marker)
        seg += 1


def test_marker_absent_from_relation_files_after_encryption(real):
    table = 'tdeops_ondisk_%s' % uuid.uuid4().hex[:8]
    marker = 'TDEOPS_ONDISK_MARKER_%s' % uuid.uuid4().hex[:8]
    real.execute("SET pg_tde.enforce_encryption = off")
    real.execute('CREATE TABLE public.%s (id int PRIMARY KEY, payload text, doc text) USING heap' % table)
    try:
        real.execute("INSERT INTO public.%s SELECT g, '%s_' || g, CASE WHEN g = 1 THEN repeat('%s', 500) END "
                     "FROM generate_series(1, 200) g" % (table, marker, marker))
        real.execute('CREATE INDEX ON public.%s (payload)' % table)
        real.execute('CHECKPOINT')
        before = relation_files(real, 'public.%s' % table)
        assert sum(hits(p, marker.encode()) for p in before.values()) > 0, \
            'the marker should be on disk while the table is heap: %s' % before

        res = run_module('pg_tde_table_encrypt', dict(login_args(real), tables=['public.%s' % table]))
        assert not res.get('failed'), res.get('msg')
        assert res['tables'][0]['verified'] is True and res['tables'][0]['checksum_match'] is True
        real.execute('CHECKPOINT')
        after = relation_files(real, 'public.%s' % table)
        assert len(after) >= 4          # table, pkey, payload index, TOAST, TOAST index
        found = {rel: hits(p, marker.encode()) for rel, p in after.items()}
        assert all(n == 0 for n in found.values()), 'plaintext marker on disk after encryption: %s' % found
        assert real.execute('SELECT count(*) FROM public.%s WHERE payload LIKE %%s' % table,
                            ['%s_%%' % marker]).fetchone()[0] == 200

        back = run_module('pg_tde_table_encrypt', dict(login_args(real), tables=['public.%s' % table],
                                                       state='decrypted'))
        if back.get('failed') and 'pg_tde.enforce_encryption is on' in back.get('msg', ''):
            # the server enforces encryption: the module refused before changing anything
            assert back['changed'] is False
            return
        assert not back.get('failed'), back.get('msg')
        real.execute('CHECKPOINT')
        plain = relation_files(real, 'public.%s' % table)
        assert sum(hits(p, marker.encode()) for p in plain.values()) > 0
    finally:
        real.execute('DROP TABLE IF EXISTS public.%s' % table)
