"""On-disk proof on throw-away PostgreSQL 17 clusters with the REAL pg_tde: a marker string
is absent (after CHECKPOINT) from every file where pg_tde encrypts it and present in the same
place without encryption (the control), as in observed/flow-03-ondisk-grep.log and
flow-12-pgbackrest.log.

- relation files: a table, its indexes, its TOAST table and TOAST index, moved to tde_heap by
  pg_tde_table_encrypt (and back);
- temp tables, encrypted when created USING tde_heap or with default_table_access_method tde_heap;
- WAL segments with pg_tde.wal_encrypt = on (present with it off: tde_heap rows are plaintext
  in WAL without WAL encryption);
- archived WAL and the pgBackRest repository: archived through pg_tde_archive_decrypt into an
  encrypted repository (repo1-cipher-type=aes-256-cbc) and, as the control, an unencrypted one;
  then a restore through pg_tde_restore_encrypt replays the WAL.

The principal keys are on the real PyKMIP server (kmip_server fixture)."""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
import uuid
from typing import Iterator

import pytest

from tests.support.ansible_runner import run_module
from tests.support.pg import PgCluster, pgbackrest_binary
from tests.support.pgbackrest import PgBackRest

pytestmark = [pytest.mark.slow]


def uid(prefix: str) -> str:
    return '%s_%s' % (prefix, uuid.uuid4().hex[:8])


def marker(label: str) -> str:
    return 'TDEOPS_%s_%s' % (label, uuid.uuid4().hex[:10].upper())


def hits(paths, text: str) -> int:
    """Occurrences of text in the files (a relation's path also covers its segments .1, .2...)."""
    needle = text.encode()
    count = 0
    for path in paths:
        for name in [path] + sorted(glob.glob(path + '.[0-9]*')):
            try:
                with open(name, 'rb') as fh:
                    count += fh.read().count(needle)
            except (FileNotFoundError, IsADirectoryError):
                continue
    return count


def wal_segments(cluster: PgCluster) -> list[str]:
    return [p for p in glob.glob(os.path.join(cluster.datadir, 'pg_wal', '0*')) if os.path.isfile(p)]


def relation_files(conn, datadir: str, table: str) -> dict[str, str]:
    """{relation: main fork path} for the table, its indexes, its TOAST table and TOAST index."""
    rows = conn.execute(
        "WITH t AS (SELECT oid, reltoastrelid FROM pg_class WHERE oid = %s::regclass) "
        "SELECT c.oid::regclass::text, pg_relation_filepath(c.oid) FROM t JOIN pg_class c "
        "ON c.oid = t.oid OR c.oid = t.reltoastrelid OR c.oid IN (SELECT indexrelid FROM pg_index "
        "WHERE indrelid = t.oid OR (t.reltoastrelid <> 0 AND indrelid = t.reltoastrelid))",
        [table]).fetchall()
    return {rel: os.path.join(datadir, path) for rel, path in rows}


def kmip_provider(cluster: PgCluster, kmip_server, kmip_client_files, key: str) -> str:
    """A global KMIP provider on the PyKMIP server and `key` as default and server key, through the
    collection's modules."""
    name = uid('kms')
    res = run_module('pg_tde_provider', dict(cluster.login_args(), name=name, type='kmip',
                                             kmip_host=kmip_server.host, kmip_port=kmip_server.port,
                                             kmip_cert=kmip_client_files.cert, kmip_key=kmip_client_files.key,
                                             kmip_ca=kmip_server.ca))
    assert res['changed'], res.get('msg')
    res = run_module('pg_tde_key', dict(cluster.login_args(), name=key, provider=name,
                                        targets=['server', 'default']))
    assert res['changed'] and res['principal_keys']['server']['key_name'] == key, res.get('msg')
    return name


# ---------------------------------------------------------------------------------------------
# relation files and temp tables: one cluster with the default key on KMIP
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def kmip_pg(pg, kmip_server, kmip_client_files):
    kmip_provider(pg, kmip_server, kmip_client_files, uid('ondisk'))
    return pg


def test_relation_files_of_table_indexes_and_toast(kmip_pg):
    pg = kmip_pg
    table = 'public.%s' % uid('ondisk')
    mark = marker('REL')
    with pg.connect() as conn:
        conn.execute('CREATE TABLE %s (id int PRIMARY KEY, payload text, doc text) USING heap' % table)
        # doc of row 1 goes to the TOAST table uncompressed
        conn.execute('ALTER TABLE %s ALTER COLUMN doc SET STORAGE EXTERNAL' % table)
        conn.execute("INSERT INTO %s SELECT g, '%s_' || g, CASE WHEN g = 1 THEN "
                     "(SELECT string_agg('%s' || md5(i::text), '') FROM generate_series(1, 300) i) END "
                     "FROM generate_series(1, 200) g" % (table, mark, mark))
        conn.execute('CREATE INDEX ON %s (payload)' % table)
        conn.execute('CHECKPOINT')
        before = relation_files(conn, pg.datadir, table)
        assert len(before) == 5, before     # table, pkey, payload index, TOAST, TOAST index
        plain = {rel: hits([p], mark) for rel, p in before.items()}
        holders = [rel for rel in plain if not rel.endswith(('_pkey', '_index'))]  # not the int keys
        assert len(holders) == 3 and all(plain[rel] > 0 for rel in holders), \
            'the control: the marker is on disk in table, index and TOAST while the table is heap: %s' % plain

        res = run_module('pg_tde_table_encrypt', dict(pg.login_args(), tables=[table]))
        assert not res.get('failed'), res.get('msg')
        assert res['tables'][0]['verified'] is True and res['tables'][0]['checksum_match'] is True
        conn.execute('CHECKPOINT')
        after = relation_files(conn, pg.datadir, table)
        assert len(after) == 5 and set(after.values()).isdisjoint(before.values()), 'rewritten: new files'
        found = {rel: hits([p], mark) for rel, p in after.items()}
        assert all(n == 0 for n in found.values()), 'plaintext marker on disk after encryption: %s' % found
        assert all(conn.execute('SELECT pg_tde_is_encrypted(%s::regclass)', [rel]).fetchone()[0]
                   for rel in after)
        assert conn.execute('SELECT count(*) FROM %s WHERE payload LIKE %%s' % table,
                            ['%s_%%' % mark]).fetchone()[0] == 200

        back = run_module('pg_tde_table_encrypt', dict(pg.login_args(), tables=[table], state='decrypted'))
        assert not back.get('failed'), back.get('msg')
        conn.execute('CHECKPOINT')
        again = relation_files(conn, pg.datadir, table)
        assert hits(again.values(), mark) > 0, 'decrypted: the marker is on disk again'


def test_table_created_using_tde_heap(kmip_pg):
    pg = kmip_pg
    enc, ctl = uid('born_enc'), uid('born_plain')
    mark = marker('BORN')
    with pg.connect() as conn:
        for name, am in ((enc, 'tde_heap'), (ctl, 'heap')):
            conn.execute('CREATE TABLE %s (id int PRIMARY KEY, v text) USING %s' % (name, am))
            conn.execute("INSERT INTO %s SELECT g, '%s_' || g FROM generate_series(1, 500) g" % (name, mark))
        conn.execute('CHECKPOINT')
        assert hits(relation_files(conn, pg.datadir, enc).values(), mark) == 0
        assert hits(relation_files(conn, pg.datadir, ctl).values(), mark) > 0


def test_temp_tables(kmip_pg):
    """Temp tables live in local buffers: a small temp_buffers makes the backend write them out
    while the session (and the table) still exist."""
    pg = kmip_pg
    mark = {am: marker('TEMP_%s' % am.upper()) for am in ('tde_heap', 'heap', 'default')}
    with pg.connect() as conn:
        conn.execute("SET temp_buffers = '800kB'")
        for am in ('tde_heap', 'heap'):
            conn.execute('CREATE TEMP TABLE tmp_%s (id int, v text) USING %s' % (am, am))
        conn.execute('SET default_table_access_method = tde_heap')
        conn.execute('CREATE TEMP TABLE tmp_default (id int, v text)')
        files = {}
        for am in ('tde_heap', 'heap', 'default'):
            conn.execute("INSERT INTO tmp_%s SELECT g, '%s_' || g FROM generate_series(1, 40000) g" % (am, mark[am]))
            path = conn.execute("SELECT pg_relation_filepath('tmp_%s')" % am).fetchone()[0]
            files[am] = os.path.join(pg.datadir, path)
            assert os.path.basename(path).startswith('t'), 'a temp relation file: %s' % path
            assert os.path.getsize(files[am]) > 1024 * 1024, 'written out past temp_buffers'
        encrypted = {am: conn.execute("SELECT pg_tde_is_encrypted('tmp_%s')" % am).fetchone()[0] for am in files}
        assert encrypted == {'tde_heap': True, 'heap': False, 'default': True}
        assert hits([files['heap']], mark['heap']) > 0, 'the control: a heap temp table is plaintext'
        assert hits([files['tde_heap']], mark['tde_heap']) == 0
        assert hits([files['default']], mark['default']) == 0


def test_wal_without_wal_encryption_holds_plaintext(kmip_pg):
    """The control for the WAL tests: pg_tde.wal_encrypt is off here, and even a tde_heap row is
    plaintext in WAL."""
    pg = kmip_pg
    assert pg.psql('SHOW pg_tde.wal_encrypt') == 'off'
    mark = marker('WALOFF')
    name = uid('walctl')
    pg.psql("CREATE TABLE %s (v text) USING tde_heap; INSERT INTO %s SELECT '%s_' || g FROM "
            "generate_series(1, 100) g; CHECKPOINT" % (name, name, mark))
    assert pg.psql("SELECT pg_tde_is_encrypted('%s')" % name) == 't'
    assert hits(wal_segments(pg), mark) >= 100


# ---------------------------------------------------------------------------------------------
# WAL encryption, archive and pgBackRest: one cluster with the server key on KMIP,
# pg_tde.wal_encrypt = on, archiving through pg_tde_archive_decrypt
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def wal_pg(pg_bin, kmip_server, kmip_client_files) -> Iterator[tuple[PgCluster, PgBackRest]]:
    if pgbackrest_binary() is None:
        pytest.skip('SKIPPED LOUDLY: no pgBackRest 2.50+ (the real pg_tde bundle installs 2.59.1)')
    base = tempfile.mkdtemp(prefix='tdeops-walenc-', dir='/tmp')
    os.chmod(base, 0o755)
    cluster = PgCluster(os.path.join(base, 'pg'))
    try:
        cluster.start()
        cluster.psql('CREATE EXTENSION pg_tde')
        kmip_provider(cluster, kmip_server, kmip_client_files, uid('walkey'))
        br = PgBackRest(os.path.join(base, 'pgbackrest'), cluster, cipher_pass=uuid.uuid4().hex,
                        plain_repo=True)
        cluster.set_conf(**br.archive_settings())
        cluster.set_conf(**{'pg_tde.wal_encrypt': 'on'})
        cluster.restart()
        assert cluster.psql('SHOW pg_tde.wal_encrypt') == 'on'
        br.run('stanza-create')
        yield cluster, br
    finally:
        cluster.destroy()
        if not os.environ.get('TDEOPS_KEEP_TMP'):
            shutil.rmtree(base, ignore_errors=True)


def test_wal_segments_encrypted(wal_pg):
    cluster, _br = wal_pg
    mark = marker('WALON')
    name = uid('walenc')
    # a heap table: only WAL encryption can keep these rows out of pg_wal in plaintext
    cluster.psql("CREATE TABLE %s (v text) USING heap; INSERT INTO %s SELECT '%s_' || g FROM "
                 "generate_series(1, 100) g; CHECKPOINT" % (name, name, mark))
    assert wal_segments(cluster)
    assert hits(wal_segments(cluster), mark) == 0
    res = run_module('pg_tde_info', dict(cluster.login_args(), include_relations=False))
    assert res['pg_tde']['wal_encryption'] == {'setting': 'on', 'pending_restart': False, 'server_key_set': True}
    with cluster.connect() as conn:
        files = relation_files(conn, cluster.datadir, name)
    assert hits(files.values(), mark) > 0, 'the control: the heap table itself is plaintext'


def wait_archived(cluster: PgCluster, timeout: float = 60) -> None:
    """pg_switch_wal() and wait until the segment it closed is archived."""
    seg = cluster.psql('SELECT pg_walfile_name(pg_switch_wal())')
    deadline = time.monotonic() + timeout
    failed = ''
    while time.monotonic() < deadline:
        done = cluster.psql('SELECT last_archived_wal FROM pg_stat_archiver')
        if done and done >= seg:
            return
        failed = cluster.psql('SELECT last_failed_wal FROM pg_stat_archiver')
        time.sleep(0.3)
    raise AssertionError('segment %s not archived in %ss (last failed: %s)\n%s'
                         % (seg, timeout, failed, cluster.log_tail(30)))


def test_archive_repository_and_restore(wal_pg, tmp_path):
    cluster, br = wal_pg
    before, after = marker('BACKUP'), marker('REPLAY')
    table = uid('br')
    cluster.psql("CREATE TABLE %s (v text) USING tde_heap; INSERT INTO %s SELECT '%s_' || g FROM "
                 "generate_series(1, 100) g" % (table, table, before))
    br.run('check')
    br.run('backup', '--type=full', '--repo=1')
    # after the backup: only the archived WAL brings these back
    cluster.psql("INSERT INTO %s SELECT '%s_' || g FROM generate_series(1, 50) g" % (table, after))
    wait_archived(cluster)
    assert hits(wal_segments(cluster), after) == 0

    encrypted, control = br.repository_files(1), br.repository_files(2)
    assert any('/archive/' in p for p in encrypted) and any('/backup/' in p for p in encrypted)
    assert hits(control, before) > 0 and hits(control, after) > 0, \
        'the control: pg_tde_archive_decrypt hands pgBackRest plaintext WAL; without a cipher it stays so'
    assert hits(encrypted, before) == 0 and hits(encrypted, after) == 0, \
        'repo1-cipher-type=aes-256-cbc: no plaintext in the repository'

    restored = PgCluster(str(tmp_path / 'restored'), initdb=False, settings={'pg_tde.wal_encrypt': 'on'})
    try:
        br.restore(restored)
        restored.start()
        deadline = time.monotonic() + 60
        while restored.psql('SELECT pg_is_in_recovery()') == 't' and time.monotonic() < deadline:
            time.sleep(0.3)
        assert restored.psql('SELECT pg_is_in_recovery()') == 'f', restored.log_tail()
        counts = restored.psql("SELECT count(*) FILTER (WHERE v LIKE '%s%%') || ',' || count(*) FILTER "
                               "(WHERE v LIKE '%s%%') FROM %s" % (before, after, table))
        assert counts == '100,50', 'rows of the backup and of the replayed WAL: %s\n%s' % (
            counts, restored.log_tail())
        assert 'restored log file' in restored.log_text()
        assert restored.psql("SELECT pg_tde_is_encrypted('%s')" % table) == 't'
        restored.psql('CHECKPOINT')
        assert hits(wal_segments(restored), after) == 0, 'pg_tde_restore_encrypt re-encrypts restored WAL'
    finally:
        restored.destroy()
