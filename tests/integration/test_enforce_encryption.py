"""Applications under pg_tde.enforce_encryption on the real pg_tde (server side; the configure role
sets default_table_access_method): with the default access method tde_heap a plain
`CREATE TABLE t (id int)` works and is encrypted, with the default left at heap it is refused
with pg_tde's own text (facts section 4)."""
from __future__ import annotations

import os

import pytest

from tests.support.pg import PsqlError, chown_postgres

REFUSED = 'pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed.'


@pytest.fixture
def enforced(pg_cluster_factory):
    pg = pg_cluster_factory()
    keys = os.path.join(pg.workdir, 'keys')
    os.makedirs(keys)
    chown_postgres(keys)
    pg.psql("SELECT pg_tde_add_global_key_provider_file('fp', '%s/fp.per');"
            "SELECT pg_tde_create_key_using_global_key_provider('k1', 'fp');"
            "SELECT pg_tde_set_default_key_using_global_key_provider('k1', 'fp');" % keys)
    return pg


def refusal(pg, sql: str) -> str:
    with pytest.raises(PsqlError) as err:
        pg.psql(sql)
    return err.value.stderr


def test_plain_create_table_with_default_tde_heap(enforced):
    pg = enforced
    pg.set_conf(**{'pg_tde.enforce_encryption': 'on', 'default_table_access_method': 'tde_heap'})
    pg.reload()     # enforce_encryption needs no restart (facts section 8)
    assert pg.psql('SHOW pg_tde.enforce_encryption') == 'on'
    assert pg.psql('SHOW default_table_access_method') == 'tde_heap'
    pg.psql('CREATE TABLE t (id int)')
    pg.psql('INSERT INTO t SELECT generate_series(1, 10)')
    assert pg.psql("SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = 't'::regclass") \
        == 'tde_heap'
    assert pg.psql("SELECT pg_tde_is_encrypted('t')") == 't'
    # what an application cannot do under enforcement, even with the right default
    assert REFUSED in refusal(pg, 'CREATE TABLE u (id int) USING heap')
    assert REFUSED in refusal(pg, 'ALTER TABLE t SET ACCESS METHOD heap')


def test_plain_create_table_refused_with_default_heap(enforced):
    pg = enforced
    pg.set_conf(**{'pg_tde.enforce_encryption': 'on'})
    pg.reload()
    assert pg.psql('SHOW default_table_access_method') == 'heap'
    stderr = refusal(pg, 'CREATE TABLE t (id int)')
    assert 'ERROR:  %s' % REFUSED in stderr, stderr
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 't'") == '0'
    pg.psql('CREATE TABLE t (id int) USING tde_heap')
    assert pg.psql("SELECT pg_tde_is_encrypted('t')") == 't'
