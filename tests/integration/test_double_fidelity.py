"""The pg_tde TEST DOUBLE behaves like the observed real pg_tde 2.2.0, case by case.

Every expectation here comes from /work/shared/pg_tde-facts (README.md and observed/*):
message texts, SQLSTATEs, HINTs, WARNINGs, catalog shapes, settings, rotation semantics and the
start-up FATALs. The double never encrypts: nothing here looks at data on disk.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field

import pytest

from tests.support.pg import ClusterStartError, PgCluster, chown_postgres

FACTS = os.environ.get('TDEOPS_PG_TDE_FACTS', '/work/shared/pg_tde-facts')
OBSERVED = os.path.join(FACTS, 'observed')
HERE = os.path.dirname(os.path.abspath(__file__))


def uniq(prefix: str) -> str:
    return '%s_%s' % (prefix, uuid.uuid4().hex[:8])


# -- a session that keeps WARNINGs and error details ---------------------------------------

@dataclass
class Failure:
    sqlstate: str | None
    message: str
    hint: str | None
    detail: str | None
    context: str | None
    warnings: list[str] = field(default_factory=list)


class Sql:
    """psycopg 3 autocommit session; WARNINGs are collected per statement."""

    def __init__(self, cluster: PgCluster, db: str = 'postgres', **kwargs):
        self.conn = cluster.connect(db, **kwargs)
        self.notices: list[tuple[str, str, str]] = []
        self.conn.add_notice_handler(
            lambda d: self.notices.append((d.severity_nonlocalized, d.message_primary, d.sqlstate)))

    def q(self, sql: str, params=None) -> list[tuple]:
        self.notices.clear()
        cur = self.conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def one(self, sql: str, params=None):
        rows = self.q(sql, params)
        assert len(rows) == 1, rows
        return rows[0]

    def warnings(self) -> list[str]:
        return [m for sev, m, _ in self.notices if sev == 'WARNING']

    def fails(self, sql: str, params=None) -> Failure:
        import psycopg
        self.notices.clear()
        try:
            self.conn.execute(sql, params)
        except psycopg.Error as exc:
            d = exc.diag
            return Failure(d.sqlstate, d.message_primary, d.message_hint, d.message_detail, d.context,
                           self.warnings())
        raise AssertionError('expected an error from: %s' % sql)

    def close(self) -> None:
        self.conn.close()


def lit(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


@pytest.fixture
def sql(pg):
    s = Sql(pg)
    yield s
    s.close()


def postgres_dir(base: str, name: str) -> str:
    path = os.path.join(base, name)
    os.makedirs(path, exist_ok=True)
    chown_postgres(path)
    return path


@pytest.fixture(scope='module')
def keydir(pg):
    """A directory for file keyrings, writable by postgres."""
    path = os.path.join(pg.workdir, 'keyrings')
    os.makedirs(path, exist_ok=True)
    chown_postgres(path)
    return path


# == catalog: functions, ACLs, settings, objects ===========================================

def _observed_signatures() -> dict[str, tuple[str, str]]:
    """functions.txt 'full signatures' table: signature -> (lang, proacl)."""
    text = open(os.path.join(OBSERVED, 'functions.txt')).read()
    part = text.split('-- full signatures')[1].split('-- other objects')[0]
    out = {}
    for line in part.splitlines():
        cols = [c.strip() for c in line.split('|')]
        if len(cols) == 4 and cols[0].startswith('pg_tde'):
            out[cols[0]] = (cols[1], cols[3])
    return out


def test_version_text(sql):
    assert sql.one('SELECT pg_tde_version()')[0] == 'pg_tde 2.2.0 (tdeops test double)'


def test_functions_match_observed_signatures_languages_and_acls(sql):
    observed = _observed_signatures()
    assert len(observed) == 43
    rows = sql.q("""
        SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') RETURNS '
               || pg_get_function_result(p.oid), l.lanname, coalesce(p.proacl::text, '')
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname LIKE 'pg_tde%'""")
    mine = {sig: (lang, acl) for sig, lang, acl in rows}
    assert set(mine) == set(observed)
    for sig, (lang, acl) in observed.items():
        assert mine[sig][0] == lang, sig
        # observed: {postgres=X/postgres} (REVOKE ALL FROM PUBLIC) or no ACL at all
        assert (mine[sig][1] == '') == (acl == ''), (sig, mine[sig][1], acl)
        if acl:
            assert mine[sig][1] == acl


def test_extension_objects(sql):
    assert sql.one("SELECT amtype FROM pg_am WHERE amname = 'tde_heap'")[0] == 't'
    assert sorted(r[0] for r in sql.q("SELECT evtname FROM pg_event_trigger")) == ['pg_tde_ddl_end',
                                                                                      'pg_tde_ddl_start']


def test_settings_match_observed(sql):
    observed = {}
    for line in open(os.path.join(OBSERVED, 'gucs.txt')):
        cols = [c.strip() for c in line.split('|')]
        if len(cols) == 7 and cols[0].startswith('pg_tde.'):
            observed[cols[0]] = cols
    rows = sql.q("""SELECT name, context, vartype, boot_val, coalesce(enumvals::text, ''), short_desc
                    FROM pg_settings WHERE name LIKE 'pg_tde.%' ORDER BY name""")
    assert [r[0] for r in rows] == sorted(observed)
    for name, context, vartype, boot, enumvals, desc in rows:
        o = observed[name]
        assert (context, vartype, boot, enumvals, desc) == (o[2], o[3], o[4], o[5], o[6]), name


def test_enforce_encryption_is_reloadable_and_cipher_is_superuser(sql):
    # facts 3: enforce_encryption needs no restart (superuser context, SET works)
    sql.q('SET pg_tde.enforce_encryption = on')
    assert sql.one('SHOW pg_tde.enforce_encryption')[0] == 'on'
    sql.q('RESET pg_tde.enforce_encryption')
    f = sql.fails('SET pg_tde.cipher = aes_512')
    assert f.sqlstate == '22023'
    f = sql.fails('SET pg_tde.wal_encrypt = on')
    assert f.message == 'parameter "pg_tde.wal_encrypt" cannot be changed without restarting the server'


# == file providers, keys, info (flow-06, flow-01) =========================================

def test_file_provider_flow_06(pg, sql, keydir):
    db = pg.create_database(uniq('appdb'), extension=True)
    s = Sql(pg, db)
    gname, dname = uniq('file_global'), 'file_db'
    gpath, dpath = os.path.join(keydir, gname + '.per'), os.path.join(keydir, db + '.per')
    s.q('SELECT pg_tde_add_global_key_provider_file(%s, %s)', (gname, gpath))
    gkey = uniq('file_gkey')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (gkey, gname))
    s.q('SELECT pg_tde_add_database_key_provider_file(%s, %s)', (dname, dpath))
    s.q("SELECT pg_tde_create_key_using_database_key_provider('db_key_01', 'file_db')")
    s.q("SELECT pg_tde_set_key_using_database_key_provider('db_key_01', 'file_db')")
    name, prov, pid, created = s.one('SELECT * FROM pg_tde_key_info()')
    assert (name, prov, pid) == ('db_key_01', 'file_db', 1)
    assert created is not None
    s.q('SELECT pg_tde_verify_key()')
    rows = s.q('SELECT id, name, type, options::text FROM pg_tde_list_all_database_key_providers()')
    assert rows == [(1, 'file_db', 'file', '{"path" : "%s"}' % dpath)]
    grows = s.q('SELECT id, name, type FROM pg_tde_list_all_global_key_providers()')
    assert all(r[0] < 0 for r in grows) and (gname, 'file') in [(r[1], r[2]) for r in grows]

    s.q('CREATE TABLE t2 (x text) USING tde_heap')
    assert s.one("SELECT pg_tde_is_encrypted('t2')")[0] is True

    f = s.fails("SELECT pg_tde_delete_database_key_provider('file_db')")
    assert f.message == 'cannot delete provider which is currently in use'
    f = s.fails("SELECT pg_tde_add_database_key_provider_file('file_db', %s)", (os.path.join(keydir, 'other.per'),))
    assert (f.message, f.sqlstate) == ('Key provider "file_db" already exists.', '42710')
    f = s.fails("SELECT pg_tde_create_key_using_database_key_provider('db_key_01', 'file_db')")
    assert (f.message, f.sqlstate) == ('cannot create key "db_key_01" because it already exists', '22023')
    f = s.fails("SELECT pg_tde_set_key_using_database_key_provider('no_such_key', 'file_db')")
    assert f.message == 'key "no_such_key" does not exist'
    assert f.hint == 'Use pg_tde_create_key_using_database_key_provider() to create it.'
    f = s.fails('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', ('no_such_key', gname))
    assert (f.message, f.sqlstate) == ('key "no_such_key" does not exist', '22023')
    assert f.hint == 'Use pg_tde_create_key_using_global_key_provider() to create it.'
    f = s.fails("SELECT pg_tde_set_key_using_global_key_provider('key_01', 'no_such_provider')")
    assert f.message == 'key provider "no_such_provider" does not exists'
    # no PL/Python decoration: a C function's plain error, no traceback
    assert f.context is None or 'Traceback' not in f.context

    # switch the database to the global key, then the database provider is free
    s.q('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', (gkey, gname))
    s.q("SELECT pg_tde_delete_database_key_provider('file_db')")
    assert s.one('SELECT key_name, provider_name FROM pg_tde_key_info()') == (gkey, gname)
    f = s.fails('SELECT pg_tde_delete_global_key_provider(%s)', (gname,))
    assert f.message == 'cannot delete provider which is currently in use'
    # the keyring file is plaintext (as pg_tde's): the key name is in it
    assert gkey in open(gpath).read()
    s.close()


def test_key_info_nulls_and_verify_without_key(pg):
    db = pg.create_database(uniq('nokey'), extension=True)
    s = Sql(pg, db)
    assert s.one('SELECT * FROM pg_tde_key_info()') == (None, None, None, None)
    f = s.fails('SELECT pg_tde_verify_key()')
    assert f.message == 'principal key not configured for current database'
    s.close()


def test_provider_ids_and_options_json(pg, sql, keydir):
    db = pg.create_database(uniq('ids'), extension=True)
    s = Sql(pg, db)
    s.q("SELECT pg_tde_add_database_key_provider_file('a', %s)", (os.path.join(keydir, db + 'a'),))
    s.q("SELECT pg_tde_add_database_key_provider('file', 'b', %s)",
        (json.dumps({'path': os.path.join(keydir, db + 'b')}),))
    s.q("SELECT pg_tde_delete_database_key_provider('a')")
    s.q("SELECT pg_tde_add_database_key_provider_file('c', %s)", (os.path.join(keydir, db + 'c'),))
    rows = s.q('SELECT id, name, options FROM pg_tde_list_all_database_key_providers() ORDER BY id')
    assert [(r[0], r[1]) for r in rows] == [(2, 'b'), (3, 'c')]     # ids are not reused
    assert rows[0][2] == {'path': os.path.join(keydir, db + 'b')}   # generic form: as given
    # CREATE EXTENSION again starts from scratch in this database (pg_tde's startup cleanup)
    s.q('DROP EXTENSION pg_tde')
    s.q('CREATE EXTENSION pg_tde')
    assert s.q('SELECT * FROM pg_tde_list_all_database_key_providers()') == []
    s.close()


def test_error_paths_flow_07_generic(pg, sql, keydir):
    f = sql.fails("""SELECT pg_tde_add_database_key_provider('kmip', 'bad_json', '{"host":"127.0.0.1","port":5696}')""")
    assert (f.message, f.sqlstate) == ('missing in the keyring options: host port caPath certPath keyPath', '22023')
    f = sql.fails("SELECT pg_tde_add_database_key_provider('foo', 'bad_type', '{}')")
    assert (f.message, f.sqlstate) == ('Invalid provider type.', '22000')
    f = sql.fails("SELECT pg_tde_add_database_key_provider_kmip('null_ca', '127.0.0.1', 5696, '/x/c.crt', '/x/c.key', NULL)")
    assert (f.message, f.sqlstate) == ('missing in the keyring options: caPath certPath', '22023')
    # directory not writable for postgres: 42501 (flow-07 case 11)
    f = sql.fails("SELECT pg_tde_add_database_key_provider_file('badfile', '/root/nope/keyring.per')")
    assert (f.message, f.sqlstate) == ('Failed to open keyring file /root/nope/keyring.per: Permission denied', '42501')
    assert sql.q("SELECT 1 FROM pg_tde_list_all_database_key_providers() WHERE name = 'badfile'") == []


def test_limits(sql, keydir):
    path = os.path.join(keydir, 'limits.per')
    f = sql.fails('SELECT pg_tde_add_database_key_provider_file(%s, %s)', ('p' * 128, path))
    assert f.message == 'provider name "%s" is too long' % ('p' * 128) and f.sqlstate == '22023'
    assert f.hint == 'Maximum length is 127 bytes.'
    sql.q('SELECT pg_tde_add_database_key_provider_file(%s, %s)', ('p' * 127, path))
    f = sql.fails("SELECT pg_tde_add_database_key_provider('file', 'big', %s)",
                  (json.dumps({'path': '/' + 'x' * 1100}),))
    assert f.message == 'too large provider options, maximum size is 1023 bytes'
    f = sql.fails('SELECT pg_tde_create_key_using_database_key_provider(%s, %s)', ('k' * 256, 'p' * 127))
    assert f.message == 'key name "%s" is too long' % ('k' * 256)
    assert f.hint == 'Maximum length is 255 bytes.'
    sql.q('SELECT pg_tde_create_key_using_database_key_provider(%s, %s)', ('k' * 255, 'p' * 127))
    sql.q('SELECT pg_tde_delete_database_key_provider(%s)', ('p' * 127,))


def test_superuser_requirements(pg, sql):
    role = uniq('app')
    sql.q('CREATE ROLE %s LOGIN' % role)
    s = Sql(pg, 'postgres', user=role)
    f = s.fails("SELECT pg_tde_add_database_key_provider_file('x', '/tmp/x.per')")
    assert f.sqlstate == '42501'
    assert f.message == 'permission denied for function pg_tde_add_database_key_provider'
    for fn in ('pg_tde_key_info()', 'pg_tde_list_all_global_key_providers()', 'pg_tde_verify_key()'):
        f = s.fails('SELECT * FROM %s' % fn)
        assert f.sqlstate == '42501', fn
    # public: pg_tde_is_encrypted, pg_tde_version
    assert s.one('SELECT pg_tde_version()')[0].startswith('pg_tde 2.2.0')
    s.close()
    # granted execute is not enough to change providers
    sql.q('GRANT EXECUTE ON FUNCTION pg_tde_add_database_key_provider(text, text, json) TO %s' % role)
    s = Sql(pg, 'postgres', user=role)
    f = s.fails("SELECT pg_tde_add_database_key_provider_file('x', '/tmp/x.per')")
    assert (f.message, f.sqlstate) == ('must be superuser to modify key providers', '42501')
    s.close()
    sql.q('REVOKE EXECUTE ON FUNCTION pg_tde_add_database_key_provider(text, text, json) FROM %s' % role)
    sql.q('DROP ROLE %s' % role)


# == rotation semantics (flow-01, flow-04) =================================================

def test_rotation_default_key_followers_and_own_keys(pg_cluster_factory, tmp_path):
    c = pg_cluster_factory()
    keys = postgres_dir(c.workdir, 'keys')
    s = Sql(c)
    s.q("SELECT pg_tde_add_global_key_provider_file('kp', %s)", (os.path.join(keys, 'g.per'),))
    for k in ('key_01', 'key_02', 'key_03'):
        s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (k, 'kp'))
    s.q("SELECT pg_tde_set_server_key_using_global_key_provider('key_01', 'kp')")
    s.q("SELECT pg_tde_set_default_key_using_global_key_provider('key_01', 'kp')")
    srv1 = s.one('SELECT * FROM pg_tde_server_key_info()')
    dflt1 = s.one('SELECT * FROM pg_tde_default_key_info()')
    assert srv1[:3] == ('key_01', 'kp', -1) and dflt1[:3] == ('key_01', 'kp', -1)
    assert srv1[3] != dflt1[3]
    # flow-01: the database has no key of its own before its first encrypted object
    assert s.one('SELECT * FROM pg_tde_key_info()') == (None, None, None, None)
    f = s.fails('SELECT pg_tde_verify_key()')
    assert f.message == 'principal key not configured for current database'
    s.q('SELECT pg_tde_verify_server_key()')
    s.q('SELECT pg_tde_verify_default_key()')
    # flow-02: the first tde_heap table makes the database use the default key
    s.q('CREATE TABLE secret_tbl (id int PRIMARY KEY, payload text) USING tde_heap')
    assert s.one('SELECT * FROM pg_tde_key_info()') == dflt1
    s.q('SELECT pg_tde_verify_key()')

    other = c.create_database('own', extension=True)
    o = Sql(c, other)
    o.q("SELECT pg_tde_set_key_using_global_key_provider('key_03', 'kp')")
    own = o.one('SELECT * FROM pg_tde_key_info()')

    # flow-04: a new default key; databases on the default follow with its creation time
    s.q("SELECT pg_tde_set_default_key_using_global_key_provider('key_02', 'kp')")
    dflt2 = s.one('SELECT * FROM pg_tde_default_key_info()')
    assert dflt2[0] == 'key_02' and dflt2[3] > dflt1[3]
    assert s.one('SELECT * FROM pg_tde_key_info()') == dflt2
    assert o.one('SELECT * FROM pg_tde_key_info()') == own          # own key: unchanged
    # the server key was the old default key (same name and provider): it follows too (pg_tde)
    assert s.one('SELECT * FROM pg_tde_server_key_info()') == dflt2

    # a set_* with the key already set is another rotation (new key_creation_time)
    s.q("SELECT pg_tde_set_key_using_global_key_provider('key_02', 'kp')")
    again = s.one('SELECT * FROM pg_tde_key_info()')
    assert again[:3] == dflt2[:3] and again[3] > dflt2[3]
    s.q("SELECT pg_tde_set_server_key_using_global_key_provider('key_02', 'kp')")
    assert s.one('SELECT * FROM pg_tde_server_key_info()')[3] > dflt2[3]

    # a new database picks up the default key at its first encrypted table (flow-04)
    appdb = c.create_database('appdb', extension=True)
    a = Sql(c, appdb)
    a.q('CREATE TABLE t (x text) USING tde_heap')
    assert a.one('SELECT * FROM pg_tde_key_info()') == dflt2

    # delete_key: encrypted tables and the key differs from the default: back to the default
    o.q('CREATE TABLE enc (x int) USING tde_heap')
    o.q('SELECT pg_tde_delete_key()')
    assert o.one('SELECT * FROM pg_tde_key_info()') == dflt2
    f = o.fails('SELECT pg_tde_delete_key()')
    assert (f.message, f.sqlstate) == ('cannot delete principal key', '55006')
    assert f.detail == 'There are encrypted tables in the database.'
    f = s.fails('SELECT pg_tde_delete_default_key()')
    assert f.message == 'cannot delete default principal key'
    assert f.hint.startswith('There are encrypted tables in the database with id: ')

    # state survives a restart (files under $PGDATA/pg_tde)
    for x in (s, o, a):
        x.close()
    c.restart()
    s = Sql(c)
    assert s.one('SELECT key_name, provider_id FROM pg_tde_key_info()') == ('key_02', -1)
    assert s.one('SELECT key_name FROM pg_tde_default_key_info()') == ('key_02',)
    assert sorted(os.listdir(c.pg_tde_dir))[:1] == ['.lock']
    s.close()


def test_change_provider_refused_when_keys_differ(pg_cluster_factory):
    c = pg_cluster_factory()
    keys = postgres_dir(c.workdir, 'keys')
    s = Sql(c)
    p1, p2 = os.path.join(keys, 'one.per'), os.path.join(keys, 'two.per')
    s.q("SELECT pg_tde_add_global_key_provider_file('kp', %s)", (p1,))
    s.q("SELECT pg_tde_create_key_using_global_key_provider('k1', 'kp')")
    s.q("SELECT pg_tde_set_key_using_global_key_provider('k1', 'kp')")
    s.q("SELECT pg_tde_change_global_key_provider_file('kp', %s)", (p1,))      # same settings: fine
    f = s.fails("SELECT pg_tde_change_global_key_provider_file('kp', %s)", (p2,))   # empty keyring
    assert (f.message, f.sqlstate) == ('key "k1" used by database "postgres" not found in modified key provider "kp"', 'P0002')
    # a keyring with a different key under the same name
    s.q("SELECT pg_tde_add_global_key_provider_file('kp2', %s)", (p2,))
    s.q("SELECT pg_tde_create_key_using_global_key_provider('k1', 'kp2')")
    f = s.fails("SELECT pg_tde_change_global_key_provider_file('kp', %s)", (p2,))
    assert f.message == 'key "k1" from modified key provider "kp" does not match existing key used by database "postgres"'
    # a copy of the keyring works
    p3 = os.path.join(keys, 'three.per')
    shutil.copy(p1, p3)
    chown_postgres(p3)
    s.q("SELECT pg_tde_change_global_key_provider_file('kp', %s)", (p3,))
    assert s.one("SELECT options->>'path' FROM pg_tde_list_all_global_key_providers() WHERE name = 'kp'")[0] == p3
    f = s.fails("SELECT pg_tde_change_global_key_provider_file('nope', %s)", (p3,))
    assert f.message == 'key provider "nope" does not exists'
    s.close()


# == tde_heap, pg_tde_is_encrypted, enforce_encryption (flow-02, flow-04, flow-15) ============

@pytest.fixture(scope='module')
def pg_with_default_key(pg):
    path = os.path.join(pg.workdir, 'default-keyring')
    os.makedirs(path, exist_ok=True)
    chown_postgres(path)
    pg.psql("SELECT pg_tde_add_global_key_provider_file('dflt_fp', '%s/k.per')" % path)
    pg.psql("SELECT pg_tde_create_key_using_global_key_provider('dflt_key', 'dflt_fp')")
    pg.psql("SELECT pg_tde_set_default_key_using_global_key_provider('dflt_key', 'dflt_fp')")
    return pg


def test_is_encrypted_flow_15(pg_with_default_key):
    db = pg_with_default_key.create_database(uniq('rel'), extension=True)
    s = Sql(pg_with_default_key, db)
    s.q('CREATE TABLE rw (id int PRIMARY KEY, v text) USING tde_heap')
    s.q("INSERT INTO rw SELECT g, 'REWRITE_MARKER_' || g FROM generate_series(1, 100) g")
    s.q('CREATE INDEX rw_v ON rw(v)')
    enc = "SELECT pg_tde_is_encrypted('rw'), pg_tde_is_encrypted('rw_pkey'), pg_tde_is_encrypted('rw_v')"
    assert s.one(enc) == (True, True, True)
    for op in ('VACUUM FULL rw', 'CLUSTER rw USING rw_pkey', 'REINDEX INDEX CONCURRENTLY rw_v',
               'ALTER TABLE rw ALTER COLUMN v TYPE varchar(100)', 'TRUNCATE rw'):
        s.q(op)
        assert s.one(enc) == (True, True, True), op
    s.q("CREATE TABLE big_toast (id int, doc text) USING tde_heap")
    s.q("INSERT INTO big_toast SELECT 1, repeat('TOAST_MARKER_', 5000)")
    toast = ("SELECT pg_tde_is_encrypted(c.reltoastrelid::regclass), pg_tde_is_encrypted(i.indexrelid::regclass) "
             "FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid WHERE c.relname = 'big_toast'")
    assert s.one(toast) == (True, True)
    s.q('CREATE TEMP TABLE tmp_enc (x text) USING tde_heap')
    assert s.one("SELECT pg_tde_is_encrypted('tmp_enc')")[0] is True
    s.q('CREATE SEQUENCE s1')
    assert s.one("SELECT pg_tde_is_encrypted('s1')")[0] is False
    s.q('CREATE MATERIALIZED VIEW mv USING tde_heap AS SELECT * FROM rw')
    s.q('REFRESH MATERIALIZED VIEW mv')
    assert s.one("SELECT pg_tde_is_encrypted('mv')")[0] is True
    s.q('CREATE VIEW v AS SELECT 1')
    assert s.one("SELECT pg_tde_is_encrypted('v')")[0] is None
    s.q('SET default_table_access_method = tde_heap')
    s.q('CREATE TABLE part (id int, v text) PARTITION BY RANGE (id)')
    s.q('CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100)')
    assert s.one("SELECT pg_tde_is_encrypted('part'), pg_tde_is_encrypted('part_1')") == (None, True)
    s.q('RESET default_table_access_method')
    # plain heap stays plain; SET ACCESS METHOD converts (flow-04)
    s.q('CREATE TABLE plain_tbl (id int PRIMARY KEY, payload text) USING heap')
    s.q("INSERT INTO plain_tbl VALUES (1, 'x')")
    assert s.one("SELECT pg_tde_is_encrypted('plain_tbl'), pg_tde_is_encrypted('plain_tbl_pkey')") == (False, False)
    s.q('ALTER TABLE plain_tbl SET ACCESS METHOD tde_heap')
    assert s.one("SELECT pg_tde_is_encrypted('plain_tbl'), pg_tde_is_encrypted('plain_tbl_pkey')") == (True, True)
    assert s.one("SELECT count(*) FROM plain_tbl")[0] == 1
    s.close()


def test_enforce_encryption_flow_02(pg_with_default_key):
    db = pg_with_default_key.create_database(uniq('enf'), extension=True)
    s = Sql(pg_with_default_key, db)
    msg = 'pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed.'
    s.q('CREATE TABLE was_plain (id int) USING heap')
    s.q('SET pg_tde.enforce_encryption = on')
    for stmt in ('CREATE TABLE plain_tbl (id int, payload text) USING heap',
                 'CREATE TABLE plain_tbl_default (id int, payload text)',
                 'CREATE TABLE ctas AS SELECT 1 AS x',
                 'SELECT 1 AS x INTO sel_into',
                 'CREATE MATERIALIZED VIEW mv AS SELECT 1 AS x',
                 'ALTER TABLE was_plain ADD COLUMN y int'):
        f = s.fails(stmt)
        assert f.message == msg, stmt
    s.q('CREATE TABLE secret_tbl (id int PRIMARY KEY, payload text) USING tde_heap')
    s.q('CREATE TABLE ctas_enc USING tde_heap AS SELECT 1 AS x')
    s.q('CREATE MATERIALIZED VIEW mv_enc USING tde_heap AS SELECT 1 AS x')
    s.q('ALTER TABLE was_plain SET ACCESS METHOD tde_heap')
    f = s.fails('ALTER TABLE was_plain SET ACCESS METHOD heap')
    assert f.message == msg
    s.q('SET default_table_access_method = tde_heap')
    s.q('CREATE TABLE by_default (id int)')
    assert s.one("SELECT pg_tde_is_encrypted('by_default')")[0] is True
    s.q('SET pg_tde.enforce_encryption = off')
    s.q('CREATE TABLE plain_ok (id int) USING heap')
    s.close()


def test_tde_heap_without_any_key(pg_cluster_factory):
    c = pg_cluster_factory()
    s = Sql(c)
    f = s.fails('CREATE TABLE t (x int) USING tde_heap')
    assert f.message == 'principal key not configured'
    assert f.hint == 'create one using pg_tde_set_key before using encrypted tables'
    s.q('CREATE TABLE plain (x int)')
    s.close()


# == start-up behaviour (flow-13, flow-09, flow-11) ========================================

def test_create_extension_without_preload_is_fatal(pg_cluster_factory):
    c = pg_cluster_factory(preload=(), extension=False)
    proc = c.psql_result('CREATE EXTENSION pg_tde')
    assert proc.returncode != 0
    assert 'FATAL:  pg_tde can only be loaded at server startup. Restart required.' in proc.stderr
    assert c.psql('SELECT 1') == '1'      # the postmaster survives, as with pg_tde


def test_wal_encrypt_without_server_key_does_not_start(pg_cluster_factory):
    c = pg_cluster_factory()
    c.set_conf(**{'pg_tde.wal_encrypt': 'on'})
    c.stop()
    with pytest.raises(ClusterStartError) as err:
        c.start()
    assert err.value.fatal.splitlines() == [
        'FATAL:  principal key not configured',
        'HINT:  Use pg_tde_set_server_key_using_global_key_provider() to configure one.']
    c.set_conf(**{'pg_tde.wal_encrypt': None})
    c.start()
    assert c.psql('SHOW pg_tde.wal_encrypt') == 'off'


def test_wal_encrypt_with_file_server_key(pg_cluster_factory):
    c = pg_cluster_factory()
    keys = postgres_dir(c.workdir, 'keys')
    ring = os.path.join(keys, 'srv.per')
    c.psql("SELECT pg_tde_add_global_key_provider_file('fp', '%s')" % ring)
    c.psql("SELECT pg_tde_create_key_using_global_key_provider('srv', 'fp')")
    c.psql("SELECT pg_tde_set_server_key_using_global_key_provider('srv', 'fp')")
    c.set_conf(**{'pg_tde.wal_encrypt': 'on'})
    c.restart()
    assert c.psql("SELECT setting, pending_restart FROM pg_settings WHERE name = 'pg_tde.wal_encrypt'") == 'on|f'
    c.stop()
    os.rename(ring, ring + '.gone')
    with pytest.raises(ClusterStartError) as err:
        c.start()
    assert err.value.fatal.splitlines()[-1] == 'FATAL:  key "srv" not found in key provider "fp"'
    os.rename(ring + '.gone', ring)
    c.start()


# == KMIP (flow-01, flow-07, flow-08, flow-09, flow-11, facts 6) ===========================

def _kmip_add(s: Sql, name: str, server, files, scope: str = 'global', port: int | None = None,
              cert: str | None = None, key: str | None = None, ca: str | None = None) -> None:
    s.q('SELECT pg_tde_add_%s_key_provider_kmip(%%s, %%s, %%s, %%s, %%s, %%s)' % scope,
        (name, server.host, port or server.port, cert or files.cert, key or files.key, ca or server.ca))


def _kmip_objects(server, cn: str, key_name: str) -> list:
    from kmip.core import enums
    from kmip.core.factories.attributes import AttributeFactory
    with server.client(cn) as client:
        ids = client.locate(attributes=[AttributeFactory().create_attribute(enums.AttributeType.NAME, key_name)])
        return [client.get(uid) for uid in ids]


def test_kmip_provider_and_keys_on_pykmip(pg, kmip_server, kmip_client_files, pki):
    s = Sql(pg)
    prov = uniq('kms')
    _kmip_add(s, prov, kmip_server, kmip_client_files)
    row = s.one('SELECT id, type, options::text FROM pg_tde_list_all_global_key_providers() WHERE name = %s', (prov,))
    assert row[0] < 0 and row[1] == 'kmip'
    assert row[2] == ('{"host" : "%s", "port" : %d, "certPath" : "%s", "keyPath" : "%s", "caPath" : "%s"}'
                      % (kmip_server.host, kmip_server.port, kmip_client_files.cert, kmip_client_files.key,
                         kmip_server.ca))
    k128, k256 = uniq('key128'), uniq('key256')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (k128, prov))
    s.q('SET pg_tde.cipher = aes_256')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (k256, prov))
    s.q('RESET pg_tde.cipher')
    # really registered on the PyKMIP server, visible to the same client identity only
    objs = _kmip_objects(kmip_server, kmip_client_files.cn, k128)
    assert len(objs) == 1 and len(objs[0].value) == 16
    assert len(_kmip_objects(kmip_server, kmip_client_files.cn, k256)[0].value) == 32
    assert _kmip_objects(kmip_server, uniq('someone-else'), k128) == []

    f = s.fails('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (k128, prov))
    assert f.message == 'cannot create key "%s" because it already exists' % k128
    db = pg.create_database(uniq('kmipdb'), extension=True)
    d = Sql(pg, db)
    d.q('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', (k128, prov))
    d.q('SELECT pg_tde_verify_key()')
    assert d.one('SELECT key_name, provider_name FROM pg_tde_key_info()') == (k128, prov)
    f = d.fails('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', ('nope' + k128, prov))
    assert (f.message, f.sqlstate) == ('key "nope%s" does not exist' % k128, '22023')
    f = s.fails('SELECT pg_tde_delete_global_key_provider(%s)', (prov,))
    assert f.message == 'cannot delete provider which is currently in use'

    # two objects with the same Name on the server: pg_tde's lookup fails
    from kmip.core import enums
    from kmip.pie import objects
    dup = uniq('dup')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (dup, prov))
    with kmip_server.client(kmip_client_files.cn) as client:
        client.register(objects.SymmetricKey(enums.CryptographicAlgorithm.AES, 128, os.urandom(16), name=dup))
    f = d.fails('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', (dup, prov))
    assert f.warnings == ['KMIP server contains multiple results for key, ignoring']
    assert f.message == 'failed to retrieve principal key "%s" from key provider "%s"' % (dup, prov)
    d.close()
    s.close()


def test_kmip_tls_error_paths_flow_07(pg, sql, kmip_server, kmip_client_files, pki):
    good = kmip_client_files
    cases = [
        (dict(cert='/nonexistent/client.crt'), 'SSL error: Loading the client certificate failed'),
        (dict(key='/nonexistent/client.key'), 'SSL error: Loading the client key failed'),
        (dict(ca='/nonexistent/ca.crt'), 'SSL error: Loading the CA certificate failed'),
        (dict(key=pki.mismatched_key(good).key), 'SSL error: Loading the client key failed'),
        (dict(port=1), 'SSL error: BIO_do_connect failed'),
    ]
    rogue = pki.foreign(uniq('rogue'), 'rogue-client')
    cases.append((dict(cert=rogue.cert, key=rogue.key), 'SSL error: BIO_do_connect failed'))
    for kw, message in cases:
        name = uniq('bad')
        f = sql.fails('SELECT pg_tde_add_database_key_provider_kmip(%s, %s, %s, %s, %s, %s)',
                      (name, kmip_server.host, kw.get('port', kmip_server.port), kw.get('cert', good.cert),
                       kw.get('key', good.key), kw.get('ca', kmip_server.ca)))
        assert (f.message, f.sqlstate) == (message, 'XX000'), kw
    # not verified: an unrelated CA (case 5) and a client certificate without EKU (case 7)
    _kmip_add(sql, uniq('bad5_wrong_ca'), kmip_server, good, scope='database', ca=pki.other_ca.cert)
    noeku = pki.issue(uniq('noeku'), 'noeku-client', ca=kmip_server.ca_issued, eku=None)
    _kmip_add(sql, uniq('bad7_noeku'), kmip_server, good, scope='database', cert=noeku.cert, key=noeku.key)
    sql.q('SELECT pg_tde_add_database_key_provider_kmip(%s, %s, %s, %s, %s, %s)',
          (uniq('ok_localhost'), 'localhost', kmip_server.port, good.cert, good.key, kmip_server.ca))


def test_kmip_down_running_and_startup_flow_08_09_11(pg_cluster_factory, make_kmip_server, pki):
    kms = make_kmip_server()
    files = kms.client_cert('postgres-test')
    c = pg_cluster_factory()
    s = Sql(c)
    _kmip_add(s, 'kms_provider', kms, files)
    s.q("SELECT pg_tde_create_key_using_global_key_provider('key_02', 'kms_provider')")
    s.q("SELECT pg_tde_set_server_key_using_global_key_provider('key_02', 'kms_provider')")
    s.q("SELECT pg_tde_set_default_key_using_global_key_provider('key_02', 'kms_provider')")
    s.q('CREATE TABLE secret_tbl (x int) USING tde_heap')
    s.close()
    c.set_conf(**{'pg_tde.wal_encrypt': 'on'})
    c.restart()
    s = Sql(c)
    s.q('SELECT pg_tde_verify_server_key()')
    info = s.one('SELECT * FROM pg_tde_key_info()')

    kms.stop()
    # flow-08: still running, keys cached
    assert s.one('SELECT count(*) FROM secret_tbl')[0] == 0
    for fn in ('pg_tde_verify_key', 'pg_tde_verify_server_key'):
        f = s.fails('SELECT %s()' % fn)
        assert f.warnings == ['SSL error: BIO_do_connect failed']
        assert (f.message, f.sqlstate) == ('key "key_02" not found in key provider "kms_provider"', 'P0002')
    s.q('CREATE TABLE created_while_kms_down_2 (x int) USING tde_heap')
    f = s.fails("SELECT pg_tde_create_key_using_global_key_provider('key_04', 'kms_provider')")
    assert f.warnings == ['SSL error: BIO_do_connect failed']
    assert (f.message, f.sqlstate) == ('SSL error: BIO_do_connect failed', 'XX000')
    f = s.fails("SELECT pg_tde_set_key_using_global_key_provider('key_03', 'kms_provider')")
    assert f.warnings == ['SSL error: BIO_do_connect failed']
    assert (f.message, f.sqlstate) == ('key "key_03" does not exist', '22023')
    assert f.hint == 'Use pg_tde_create_key_using_global_key_provider() to create it.'
    assert s.one('SELECT * FROM pg_tde_key_info()') == info
    s.close()

    # flow-09: KMS down at start with WAL encryption
    c.stop()
    with pytest.raises(ClusterStartError) as err:
        c.start()
    assert err.value.fatal.splitlines() == ['WARNING:  SSL error: BIO_do_connect failed',
                                            'FATAL:  key "key_02" not found in key provider "kms_provider"']
    # facts 3: without WAL encryption the server starts, reads of encrypted tables fail
    c.set_conf(**{'pg_tde.wal_encrypt': None})
    c.start()
    s = Sql(c)
    assert s.one('SELECT count(*) FROM pg_class')[0] > 0
    f = s.fails('SELECT count(*) FROM secret_tbl')
    assert f.warnings == ['SSL error: BIO_do_connect failed']
    assert (f.message, f.sqlstate) == ('key "key_02" not found in key provider "kms_provider"', 'P0002')
    s.close()
    c.stop()
    c.set_conf(**{'pg_tde.wal_encrypt': 'on'})
    kms.start()
    c.start()
    s = Sql(c)
    assert s.one('SELECT count(*) FROM secret_tbl')[0] == 0
    s.close()
    c.stop()

    # flow-11: the provider repointed offline at a missing client certificate
    state_path = os.path.join(c.pg_tde_dir, '1664.json')
    state = json.load(open(state_path))
    good_options = state['providers'][0]['options']
    opts = json.loads(good_options)
    opts['certPath'] = '/nonexistent/client.crt'
    state['providers'][0]['options'] = json.dumps(opts)
    json.dump(state, open(state_path, 'w'))
    with pytest.raises(ClusterStartError) as err:
        c.start()
    assert err.value.fatal.splitlines() == ['WARNING:  SSL error: Loading the client certificate failed',
                                            'FATAL:  key "key_02" not found in key provider "kms_provider"']
    state['providers'][0]['options'] = good_options
    json.dump(state, open(state_path, 'w'))
    c.start()
    assert c.psql('SELECT key_name FROM pg_tde_server_key_info()') == 'key_02'


# == Vault / OpenBao (facts 2, 5) ==========================================================

def test_vault_provider_and_key_in_openbao(pg, openbao):
    s = Sql(pg)
    prov = uniq('vault')
    s.q('SELECT pg_tde_add_global_key_provider_vault_v2(%s, %s, %s, %s, %s)',
        (prov, openbao.url, openbao.mount, openbao.token_path, openbao.ca))
    assert s.warnings() == []
    opts = s.one('SELECT options FROM pg_tde_list_all_global_key_providers() WHERE name = %s', (prov,))[0]
    assert opts == {'url': openbao.url, 'mountPath': openbao.mount, 'tokenPath': openbao.token_path,
                    'caPath': openbao.ca}
    key = uniq('vkey')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (key, prov))
    status, doc = openbao.request('GET', '%s/data/%s' % (openbao.mount, key))
    assert status == 200 and len(base64.b64decode(doc['data']['data']['key'])) == 16
    f = s.fails('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (key, prov))
    assert f.message == 'cannot create key "%s" because it already exists' % key
    db = pg.create_database(uniq('vaultdb'), extension=True)
    d = Sql(pg, db)
    d.q('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', (key, prov))
    d.q('SELECT pg_tde_verify_key()')
    # the 6-argument overload with a namespace is accepted (OpenBao dev: root namespace)
    d.q('SELECT pg_tde_add_database_key_provider_vault_v2(%s, %s, %s, %s, %s, %s)',
        ('vns', openbao.url, openbao.mount, openbao.token_path, openbao.ca, None))
    d.close()

    # unreachable URL
    f = s.fails('SELECT pg_tde_add_global_key_provider_vault_v2(%s, %s, %s, %s, %s)',
                ('vdown', 'https://127.0.0.1:1', openbao.mount, openbao.token_path, openbao.ca))
    assert f.message == 'HTTP(S) request to keyring provider "vdown" failed'
    # a KV version 1 mount: pg_tde 2.2 only warns
    kv1 = uniq('vkv1')
    s.q('SELECT pg_tde_add_global_key_provider_vault_v2(%s, %s, %s, %s, %s)',
        (kv1, openbao.url, openbao.kv1_mount, openbao.kv1_token_path, openbao.ca))
    assert s.warnings() == ['vault mount at "%s" has unsupported Key/Value engine version "1"' % openbao.kv1_mount]
    # changing the provider to the KV v1 mount would lose the key in use: refused
    f = s.fails('SELECT pg_tde_change_global_key_provider_vault_v2(%s, %s, %s, %s, %s)',
                (prov, openbao.url, openbao.kv1_mount, openbao.kv1_token_path, openbao.ca))
    assert f.message == 'key "%s" used by database "%s" not found in modified key provider "%s"' % (key, db, prov)
    assert f.sqlstate == 'P0002'
    s.close()


def test_vault_server_key_at_startup(pg_cluster_factory, openbao):
    c = pg_cluster_factory()
    s = Sql(c)
    s.q('SELECT pg_tde_add_global_key_provider_vault_v2(%s, %s, %s, %s, %s)',
        ('vault_srv', openbao.url, openbao.mount, openbao.token_path, openbao.ca))
    key = uniq('vsrv')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (key, 'vault_srv'))
    s.q('SELECT pg_tde_set_server_key_using_global_key_provider(%s, %s)', (key, 'vault_srv'))
    s.close()
    c.set_conf(**{'pg_tde.wal_encrypt': 'on'})
    c.restart()
    c.stop()
    state_path = os.path.join(c.pg_tde_dir, '1664.json')
    state = json.load(open(state_path))
    good = state['providers'][0]['options']
    opts = json.loads(good)
    opts['url'] = 'https://127.0.0.1:1'
    state['providers'][0]['options'] = json.dumps(opts)
    json.dump(state, open(state_path, 'w'))
    with pytest.raises(ClusterStartError) as err:
        c.start()
    assert err.value.fatal.splitlines() == ['WARNING:  HTTP(S) request to keyring provider "vault_srv" failed',
                                            'FATAL:  key "%s" not found in key provider "vault_srv"' % key]
    state['providers'][0]['options'] = good
    json.dump(state, open(state_path, 'w'))
    c.start()


def test_key_destroyed_on_kms_flow_10_and_other_identity(pg, kmip_server, kmip_client_files):
    s = Sql(pg)
    prov = uniq('kms10')
    _kmip_add(s, prov, kmip_server, kmip_client_files)
    key = uniq('key_03')
    s.q('SELECT pg_tde_create_key_using_global_key_provider(%s, %s)', (key, prov))
    db = pg.create_database(uniq('flow10'), extension=True)
    d = Sql(pg, db)
    d.q('SELECT pg_tde_set_key_using_global_key_provider(%s, %s)', (key, prov))
    # the collection's kmip_key module sees the key with the same client identity
    other = kmip_server.client_cert(uniq('other-cn'))
    f = s.fails('SELECT pg_tde_change_global_key_provider_kmip(%s, %s, %s, %s, %s, %s)',
                (prov, kmip_server.host, kmip_server.port, other.cert, other.key, kmip_server.ca))
    assert f.message == 'key "%s" used by database "%s" not found in modified key provider "%s"' % (key, db, prov)
    # destroyed on the KMS (pg_tde never activates keys: pre-active keys can be destroyed)
    from kmip.core import enums
    from kmip.core.factories.attributes import AttributeFactory
    with kmip_server.client(kmip_client_files.cn) as client:
        for uid in client.locate(attributes=[AttributeFactory().create_attribute(enums.AttributeType.NAME, key)]):
            client.destroy(uid)
    f = d.fails('SELECT pg_tde_verify_key()')
    assert (f.message, f.sqlstate) == ('key "%s" not found in key provider "%s"' % (key, prov), 'P0002')
    assert f.warnings == []
    d.close()
    s.close()


def test_inherit_global_providers_off_and_default_key_deletion(pg_cluster_factory):
    c = pg_cluster_factory()
    keys = postgres_dir(c.workdir, 'keys')
    s = Sql(c)
    s.q("SELECT pg_tde_add_global_key_provider_file('gp', %s)", (os.path.join(keys, 'g.per'),))
    s.q("SELECT pg_tde_create_key_using_global_key_provider('dk', 'gp')")
    s.q("SELECT pg_tde_set_default_key_using_global_key_provider('dk', 'gp')")
    s.q('SET pg_tde.inherit_global_providers = off')
    f = s.fails("SELECT pg_tde_set_key_using_global_key_provider('dk', 'gp')")
    assert f.message == 'usage of global key providers is disabled'
    assert f.hint == 'Set "pg_tde.inherit_global_providers = on" in postgresql.conf.'
    s.q('RESET pg_tde.inherit_global_providers')
    s.q('SELECT pg_tde_delete_default_key()')
    assert s.one('SELECT * FROM pg_tde_default_key_info()') == (None, None, None, None)
    f = s.fails('SELECT pg_tde_delete_default_key()')
    assert f.message == 'default principal key is not set'
    f = s.fails('SELECT pg_tde_verify_default_key()')
    assert f.message == 'principal key not configured for current database'
    s.q("SELECT pg_tde_delete_global_key_provider('gp')")
    s.close()
