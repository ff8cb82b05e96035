"""pg_tde_info through real ansible: with the real pg_tde, and on a server without pg_tde."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid

import pytest

from tests.support.ansible_runner import run_module
from tests.support.pg import chown_postgres

pytestmark = pytest.mark.slow


def uid(prefix: str) -> str:
    return '%s_%s' % (prefix, uuid.uuid4().hex[:8])


@pytest.fixture(scope='module')
def keydir():
    path = tempfile.mkdtemp(prefix='tdeops-info-', dir='/tmp')
    os.chmod(path, 0o755)
    chown_postgres(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_full_report(pg, keydir, openbao):
    login = pg.login_args()
    fprov, vprov, dprov = uid('gfile'), uid('vault'), uid('dfile')
    appdb = pg.create_database(uid('app'), extension=True)
    plain = pg.create_database(uid('plain'))
    assert run_module('pg_tde_provider', dict(login, name=fprov, type='file',
                                              file_path=os.path.join(keydir, fprov)))['changed']
    res = run_module('pg_tde_provider', dict(login, name=vprov, type='vault_v2', vault_url=openbao.url,
                                             vault_token_path=openbao.token_path, vault_ca_path=openbao.ca))
    assert res['changed'], res.get('msg')
    assert run_module('pg_tde_provider', dict(login, name=dprov, scope='database', database=appdb, type='file',
                                              file_path=os.path.join(keydir, dprov)))['changed']
    skey, akey = uid('srv'), uid('app')
    assert run_module('pg_tde_key', dict(login, name=skey, provider=fprov, targets=['server', 'default']))['changed']
    assert run_module('pg_tde_key', dict(login, name=akey, provider=dprov, provider_scope='database',
                                         targets=['database'], databases=[appdb]))['changed']
    pg.psql("CREATE TABLE enc (id int PRIMARY KEY, doc text) USING tde_heap; "
            "CREATE TABLE clear (id int) USING heap; "
            "CREATE MATERIALIZED VIEW mv USING tde_heap AS SELECT * FROM enc", appdb)

    res = run_module('pg_tde_info', login, check=True)
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] is False
    tde = res['pg_tde']
    assert tde['version'] == '2.2.0' and tde['version_text'] == 'pg_tde 2.2.0'
    assert tde['preloaded'] is True and 'pg_tde' in tde['shared_preload_libraries']
    names = {s['name']: s for s in tde['settings']}
    assert {'pg_tde.wal_encrypt', 'pg_tde.enforce_encryption', 'shared_preload_libraries'} <= set(names)
    assert names['pg_tde.wal_encrypt']['context'] == 'postmaster'
    assert tde['wal_encryption'] == {'setting': 'off', 'pending_restart': False, 'server_key_set': True}

    globals_ = {p['name']: p for p in tde['providers']['global']}
    assert globals_[fprov]['type'] == 'file' and globals_[fprov]['scope'] == 'global'
    assert globals_[vprov]['options']['tokenPath'] == openbao.token_path
    assert [p['name'] for p in tde['providers']['databases'][appdb]] == [dprov]
    assert plain not in tde['providers']['databases']

    assert tde['principal_keys']['server']['key_name'] == skey and tde['principal_keys']['default']['key_name'] == skey
    assert 'keys' not in tde, 'one name for the keys: principal_keys'
    app_key = tde['principal_keys']['databases'][appdb]
    assert app_key['key_name'] == akey and app_key['provider_scope'] == 'database'
    assert app_key['same_as_default'] is False

    app = tde['databases'][appdb]
    assert app['extension'] is True and app['extension_version']
    enc = {(r['name'], r['kind']) for r in app['encrypted']}
    assert {('public.enc', 'table'), ('public.enc_pkey', 'index'), ('public.mv', 'materialized view')} <= enc
    assert any(item[1] == 'toast' for item in enc)
    assert ('public.clear', 'table') in {(r['name'], r['kind']) for r in app['unencrypted']}
    assert tde['databases'][plain] == {'extension': False, 'extension_version': None, 'encrypted': [],
                                       'unencrypted': [], 'default_table_access_method': 'heap',
                                       'enforce_encryption': 'off', 'not_encryptable': {'sequences': 0}}
    assert 'template0' not in tde['databases'] and 'template1' in tde['databases']

    token = open(openbao.token_path, encoding='utf-8').readline().strip()
    assert token not in res['_stdout'] and token not in json.dumps(res)

    # a subset, without relations
    res = run_module('pg_tde_info', dict(login, databases=[appdb], include_relations=False))
    assert list(res['pg_tde']['databases']) == [appdb]
    assert 'encrypted' not in res['pg_tde']['databases'][appdb]


def test_pending_restart_is_reported(pg_cluster_factory):
    pg = pg_cluster_factory()
    pg.psql('ALTER SYSTEM SET pg_tde.wal_encrypt = on')
    pg.reload()
    res = run_module('pg_tde_info', dict(pg.login_args(), include_relations=False))
    wal = res['pg_tde']['wal_encryption']
    assert wal == {'setting': 'off', 'pending_restart': True, 'server_key_set': False}, res.get('msg')


def test_server_without_pg_tde(pg_cluster_factory):
    pg = pg_cluster_factory(preload=())
    pg.psql('CREATE TABLE t (x int)')
    res = run_module('pg_tde_info', pg.login_args())
    assert not res.get('failed'), res.get('msg')
    tde = res['pg_tde']
    assert tde['preloaded'] is False and tde['version'] is None and tde['version_text'] is None
    assert tde['wal_encryption']['server_key_set'] is False
    assert tde['providers'] == {'global': [], 'databases': {}}
    assert tde['principal_keys'] == {'server': None, 'default': None, 'databases': {}}
    pgdb = tde['databases']['postgres']
    assert pgdb['extension'] is False and pgdb['encrypted'] == []
    assert {'name': 'public.t', 'kind': 'table'} in pgdb['unencrypted']
