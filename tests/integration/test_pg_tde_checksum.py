"""pg_tde_checksum on the real pg_tde: the same checksum as pg_tde_table_encrypt's
(_tables.checksum_statement), the encryption state, a restored copy compares equal."""
from __future__ import annotations

import pytest

from tests.support.ansible_runner import run_module

pytestmark = pytest.mark.slow


def test_checksums_and_encryption_state(pg_cluster_factory, kmip_server, kmip_client_files):
    cluster = pg_cluster_factory()
    login = cluster.login_args()
    assert run_module('pg_tde_provider', dict(login, name='kms', type='kmip', kmip_host=kmip_server.host,
                                              kmip_port=kmip_server.port, kmip_cert=kmip_client_files.cert,
                                              kmip_key=kmip_client_files.key, kmip_ca=kmip_server.ca))['changed']
    assert run_module('pg_tde_key', dict(login, name='cks-%d' % cluster.port, provider='kms',
                                         targets=['server', 'default']))['changed']
    cluster.psql('CREATE TABLE enc (id int PRIMARY KEY, doc text) USING tde_heap; '
                 "INSERT INTO enc SELECT g, md5(g::text) FROM generate_series(1, 300) g; "
                 'CREATE TABLE "Mixed Case" (v int) USING tde_heap; INSERT INTO "Mixed Case" VALUES (1), (2); '
                 'CREATE TABLE plain (v int) USING heap; INSERT INTO plain VALUES (7)')
    res = run_module('pg_tde_checksum', login, check=True)
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is False
    by = {t['table']: t for t in res['tables']}
    assert set(by) == {'public.enc', 'public.Mixed Case'}
    assert by['public.enc']['rows'] == 300 and by['public.enc']['encrypted'] is True
    # the checksum is the one of _tables.checksum_statement (what pg_tde_table_encrypt verifies with)
    expect = cluster.psql("SELECT count(*) || ' ' || coalesce(sum(hash_record_extended(r.*, 0)), 0)::text "
                          "FROM ONLY public.enc r").strip().splitlines()[-1].strip()
    assert expect == '%(rows)s %(hash_sum)s' % by['public.enc'] and by['public.enc']['checksum_method'] == 'record'

    res = run_module('pg_tde_checksum', dict(login, encrypted_only=False))
    assert {t['table'] for t in res['tables']} == {'public.enc', 'public.Mixed Case', 'public.plain'}
    assert next(t for t in res['tables'] if t['table'] == 'public.plain')['encrypted'] is False

    res = run_module('pg_tde_checksum', dict(login, tables=[{'database': 'postgres', 'table': '"Mixed Case"'}]))
    assert [t['rows'] for t in res['tables']] == [2]
    res = run_module('pg_tde_checksum', dict(login, tables=[{'database': 'postgres', 'table': 'public.nope'}]))
    assert res['failed'] and 'public.nope does not exist in database postgres' in res['msg']
    res = run_module('pg_tde_checksum', dict(login, tables=[{'db': 'postgres'}]))
    assert res['failed'] and 'tables[0] must be {database, table}' in res['msg']
