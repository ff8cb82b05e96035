"""pg_tde_key through real ansible against PostgreSQL 17 with the real pg_tde and real KMS servers."""
from __future__ import annotations

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
    path = tempfile.mkdtemp(prefix='tdeops-key-', dir='/tmp')
    os.chmod(path, 0o755)
    chown_postgres(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def args(pg, db=None, **kw):
    out = dict(pg.login_args(db))
    out.update(kw)
    return out


def key_name(pg, func: str, db: str = 'postgres') -> str:
    return pg.psql('SELECT key_name FROM %s()' % func, db)


def file_provider(pg, keydir, scope='global', db=None) -> str:
    name = uid('fp')
    res = run_module('pg_tde_provider', args(pg, name=name, scope=scope, database=db, type='file',
                                             file_path=os.path.join(keydir, name + '.per')))
    assert res['changed'], res.get('msg')
    return name


@pytest.fixture(scope='module')
def gprov(pg, keydir):
    return file_provider(pg, keydir)


def test_server_and_default_key_check_set_idempotent_rotate(pg, keydir, gprov):
    k1 = uid('k1')
    task = args(pg, name=k1, provider=gprov, targets=['server', 'default'])

    # pg_tde makes the first default key the server key too (no server key yet): one set only
    res = run_module('pg_tde_key', task, check=True)
    assert res['changed'] and not res.get('failed'), res.get('msg')
    assert res['executed_queries'] == [
        "SELECT pg_tde_create_key_using_global_key_provider('%s'::text, '%s'::text)" % (k1, gprov),
        "SELECT pg_tde_set_default_key_using_global_key_provider('%s'::text, '%s'::text)" % (k1, gprov),
    ]
    assert res['created'] == [{'key': k1, 'provider': gprov, 'provider_scope': 'global', 'database': None}]
    planned = [(s['target'], s['old_key'], s['followed_default']) for s in res['set']]
    assert planned == [('default', None, False), ('server', None, True)]
    assert key_name(pg, 'pg_tde_server_key_info') == '' and key_name(pg, 'pg_tde_default_key_info') == ''

    res = run_module('pg_tde_key', task)
    assert res['changed'] and not res.get('failed'), res.get('msg')
    assert res['rotated'] == []
    assert [(s['target'], s['old_key'], s['followed_default']) for s in res['set']] == planned, \
        'check mode must plan what the real run does'
    assert not any(q.startswith('SELECT pg_tde_set_server') for q in res['executed_queries'])
    assert res['principal_keys']['server']['key_name'] == k1 and res['principal_keys']['default']['key_name'] == k1
    assert 'keys' not in res, 'one name for the keys: principal_keys'
    assert res['principal_keys']['server']['provider_scope'] == 'global'
    assert key_name(pg, 'pg_tde_server_key_info') == k1
    created = pg.psql('SELECT key_creation_time FROM pg_tde_server_key_info()')

    res = run_module('pg_tde_key', task)
    assert not res['changed'] and res['executed_queries'] == [] and res['created'] == []
    assert pg.psql('SELECT key_creation_time FROM pg_tde_server_key_info()') == created, \
        'an unchanged key must not be set again (a set is a rotation)'

    # rotation: a database that uses the default key follows it
    appdb = pg.create_database(uid('app'), extension=True)
    pg.psql('CREATE TABLE t (x text) USING tde_heap', appdb)
    assert key_name(pg, 'pg_tde_key_info', appdb) == k1
    k2 = uid('k2')
    res = run_module('pg_tde_key', dict(task, name=k2), check=True)
    assert res['changed']
    assert {(r['target'], r['database'], r['old_key'], r['new_key'], r['followed_default'])
            for r in res['rotated']} >= {('default', None, k1, k2, False), ('server', None, k1, k2, True),
                                         (('database', appdb, k1, k2, True))}
    assert key_name(pg, 'pg_tde_default_key_info') == k1

    res = run_module('pg_tde_key', dict(task, name=k2))
    assert res['changed'], res.get('msg')
    followed = {(r['target'], r['database']) for r in res['rotated'] if r['followed_default']}
    assert ('database', appdb) in followed and ('server', None) in followed
    assert not any(q.startswith('SELECT pg_tde_set_server') for q in res['executed_queries']), \
        'the server key followed the default key: no second set'
    assert key_name(pg, 'pg_tde_default_key_info') == k2 and key_name(pg, 'pg_tde_server_key_info') == k2
    assert key_name(pg, 'pg_tde_key_info', appdb) == k2
    res = run_module('pg_tde_key', dict(task, name=k2))
    assert not res['changed']


def test_database_target_with_global_provider(pg, keydir, gprov):
    dbs = [pg.create_database(uid('d'), extension=True) for _n in range(2)]
    k = uid('dbk')
    task = args(pg, name=k, provider=gprov, targets=['database'], databases=dbs)
    res = run_module('pg_tde_key', task)
    assert res['changed'], res.get('msg')
    assert sorted(s['database'] for s in res['set']) == sorted(dbs)
    for db in dbs:
        assert res['principal_keys']['databases'][db]['key_name'] == k
        assert key_name(pg, 'pg_tde_key_info', db) == k
    assert len([q for q in res['executed_queries'] if 'create_key' in q]) == 1
    assert not run_module('pg_tde_key', task)['changed']

    # rotate one database only
    k2 = uid('dbk2')
    res = run_module('pg_tde_key', dict(task, name=k2, databases=[dbs[0]]))
    assert res['rotated'] == [{'target': 'database', 'database': dbs[0], 'old_key': k, 'new_key': k2,
                               'followed_default': False}]
    assert key_name(pg, 'pg_tde_key_info', dbs[1]) == k


def test_database_scope_provider_and_login_db_default(pg, keydir):
    db = pg.create_database(uid('local'), extension=True)
    prov = file_provider(pg, keydir, 'database', db)
    k = uid('lk')
    res = run_module('pg_tde_key', args(pg, db, name=k, provider=prov, provider_scope='database',
                                        targets=['database']))
    assert res['changed'], res.get('msg')
    assert 'pg_tde_create_key_using_database_key_provider' in res['executed_queries'][0]
    assert 'pg_tde_set_key_using_database_key_provider' in res['executed_queries'][1]
    info = res['principal_keys']['databases'][db]
    assert info['key_name'] == k and info['provider_scope'] == 'database' and info['provider_id'] > 0

    # server/default keys need a global provider: said before anything runs
    res = run_module('pg_tde_key', args(pg, db, name=uid('x'), provider=prov, provider_scope='database',
                                        targets=['server']))
    assert res['failed'] and 'server key needs a global key provider' in res['msg']

    # the provider name exists in db only
    res = run_module('pg_tde_key', args(pg, name=uid('x'), provider=prov, provider_scope='database',
                                        targets=['database']))
    assert res['failed'] and 'does not exist in database "postgres"' in res['msg']


def test_create_only_and_already_exists(pg, gprov):
    k = uid('only')
    task = args(pg, name=k, provider=gprov)
    res = run_module('pg_tde_key', task)
    assert res['changed'] and res['created'][0]['key'] == k, res.get('msg')
    res = run_module('pg_tde_key', task)
    assert not res['changed'] and res['created'] == [] and res['executed_queries'] == [], \
        '"already exists" means the key is there'
    # a key that exists but is not in place: set without a new create
    res = run_module('pg_tde_key', dict(task, targets=['database'], databases=[
        pg.create_database(uid('late'), extension=True)]))
    assert res['changed'] and res['created'] == [] and len(res['set']) == 1, res.get('msg')


def test_errors_passed_on(pg, gprov):
    res = run_module('pg_tde_key', args(pg, name=uid('nokey'), provider=gprov, create=False,
                                        targets=['database'], databases=[pg.create_database(uid('e'), True)]))
    assert res['failed'] and 'does not exist' in res['msg']
    assert 'HINT: Use pg_tde_create_key_using_global_key_provider() to create it.' in res['msg']
    assert 'create: true' in res['msg']

    res = run_module('pg_tde_key', args(pg, name=uid('x'), provider='no_such_provider', targets=['server']))
    assert res['failed'] and 'Key provider "no_such_provider" does not exist in the global scope' in res['msg']

    db = pg.create_database(uid('noext'))
    res = run_module('pg_tde_key', args(pg, name=uid('x'), provider=gprov, targets=['database'], databases=[db]))
    assert res['failed'] and 'extension does not exist in database "%s"' % db in res['msg']

    res = run_module('pg_tde_key', args(pg, name=uid('x'), targets=['server'], state='absent'))
    assert res['failed'] and 'no function that removes the server key' in res['msg']


def test_kmip_database_key(pg, kmip_server, kmip_client_files):
    prov = uid('kms')
    res = run_module('pg_tde_provider', args(pg, name=prov, type='kmip', kmip_host=kmip_server.host,
                                             kmip_port=kmip_server.port, kmip_cert=kmip_client_files.cert,
                                             kmip_key=kmip_client_files.key, kmip_ca=kmip_server.ca))
    assert res['changed'], res.get('msg')
    db = pg.create_database(uid('kdb'), extension=True)
    k = uid('kmipkey')
    task = args(pg, name=k, provider=prov, targets=['database'], databases=[db])
    res = run_module('pg_tde_key', task)
    assert res['changed'] and res['created'] and res['principal_keys']['databases'][db]['key_name'] == k, res.get('msg')
    assert not run_module('pg_tde_key', task)['changed']


def test_absent_database_and_default(pg, keydir):
    # own cluster: the default key must not disturb the other tests
    prov = file_provider(pg, keydir)
    db = pg.create_database(uid('del'), extension=True)
    k = uid('del')
    assert run_module('pg_tde_key', args(pg, name=k, provider=prov, targets=['database'],
                                         databases=[db]))['changed']
    task = args(pg, name=k, targets=['database'], databases=[db], state='absent')
    res = run_module('pg_tde_key', task, check=True)
    assert res['changed'] and res['executed_queries'] == ['SELECT pg_tde_delete_key()']
    assert key_name(pg, 'pg_tde_key_info', db) == k
    res = run_module('pg_tde_key', task)
    assert res['changed'] and res['deleted'] == [{'target': 'database', 'database': db, 'key': k,
                                                  'followed_default': False}]
    assert res['principal_keys']['databases'][db] is None
    assert not run_module('pg_tde_key', task)['changed']
    # a different key in place is not touched
    res = run_module('pg_tde_key', dict(task, name=uid('other')))
    assert not res['changed']


def test_delete_default_key_refused_while_used(pg_cluster_factory, keydir):
    pg = pg_cluster_factory()
    prov = file_provider(pg, keydir)
    k = uid('dflt')
    task = args(pg, name=k, provider=prov, targets=['default'])
    planned = run_module('pg_tde_key', task, check=True)
    res = run_module('pg_tde_key', task)
    assert res['changed'], res.get('msg')
    # no server key yet: pg_tde makes the default key the server key too, and the module says so
    assert [(s['target'], s['followed_default']) for s in res['set']] == [('default', False), ('server', True)]
    assert [(s['target'], s['followed_default']) for s in planned['set']] == [('default', False), ('server', True)]
    assert key_name(pg, 'pg_tde_server_key_info') == k and res['principal_keys']['server']['key_name'] == k
    db = pg.create_database(uid('usesdefault'), extension=True)
    pg.psql('CREATE TABLE t (x text) USING tde_heap', db)
    res = run_module('pg_tde_key', args(pg, name=k, targets=['default'], state='absent'))
    assert res['failed'] and 'Deleting the default key "%s" failed' % k in res['msg']
    assert 'cannot delete default principal key' in res['msg']
    assert db in res['msg']
    assert key_name(pg, 'pg_tde_default_key_info') == k


def test_deleting_the_default_key_takes_the_server_key_along(pg_cluster_factory, keydir):
    """Real pg_tde: pg_tde_delete_default_key() also removes a server key that is the default key
    (no WAL encryption keys use it); the module says so in check mode and in the run."""
    pg = pg_cluster_factory()
    prov = file_provider(pg, keydir)
    k = uid('gone')
    assert run_module('pg_tde_key', args(pg, name=k, provider=prov, targets=['default']))['changed']
    assert key_name(pg, 'pg_tde_server_key_info') == k
    task = args(pg, name=k, targets=['default'], state='absent')
    planned = run_module('pg_tde_key', task, check=True)
    res = run_module('pg_tde_key', task)
    assert res['changed'] and not res.get('failed'), res.get('msg')
    assert res['deleted'] == planned['deleted'] == [
        {'target': 'default', 'database': None, 'key': k, 'followed_default': False},
        {'target': 'server', 'database': None, 'key': k, 'followed_default': True}]
    assert res['executed_queries'] == ['SELECT pg_tde_delete_default_key()']
    assert key_name(pg, 'pg_tde_server_key_info') == '' and res['principal_keys']['server'] is None
    assert not run_module('pg_tde_key', task)['changed']


def test_key_destroyed_on_the_kms(pg_cluster_factory, kmip_server, kmip_client_files):
    """facts §5: a key destroyed on the KMS -> `key "K" not found in key provider "P"`."""
    from kmip.core import enums

    pg = pg_cluster_factory()
    prov = uid('kmsd')
    res = run_module('pg_tde_provider', args(pg, name=prov, type='kmip', kmip_host=kmip_server.host,
                                             kmip_port=kmip_server.port, kmip_cert=kmip_client_files.cert,
                                             kmip_key=kmip_client_files.key, kmip_ca=kmip_server.ca))
    assert res['changed'], res.get('msg')
    k = uid('doomed')
    res = run_module('pg_tde_key', args(pg, name=k, provider=prov, targets=['database']))
    assert res['changed'], res.get('msg')
    with kmip_server.client('postgres-test') as client:
        attr = client.attribute_factory.create_attribute(enums.AttributeType.NAME, k)
        for kid in client.locate(attributes=[attr]):
            client.destroy(kid)
    pg.restart()  # drop pg_tde's key cache: the next use fetches the key from the KMS

    res = run_module('pg_tde_info', dict(pg.login_args(), include_relations=False))
    assert not res.get('failed'), res.get('msg')
    # the real pg_tde fetches the key from the KMS to show it: the module reports why it cannot
    info = res['pg_tde']['principal_keys']['databases']['postgres']
    assert info and 'key "%s" not found in key provider "%s"' % (k, prov) in info['error'], info
    assert any('Could not read the key of database "postgres"' in w for w in res.get('warnings', []))

    res = run_module('pg_tde_key', args(pg, name=uid('next'), provider=prov, targets=['database']))
    assert res['failed'] and 'key "%s" not found in key provider "%s"' % (k, prov) in res['msg']
    assert 'destroyed' in res['msg']


def test_keep_rotated_keeps_keys_rotated_earlier(pg_cluster_factory, keydir):
    """Real pg_tde: with keep_rotated (the configure role without configure_rotate_keys), keys
    rotated to another name stay in place, with a warning; a database on the default key and a
    missing key still get the configured one; without keep_rotated the configured name wins."""
    pg = pg_cluster_factory()
    prov = file_provider(pg, keydir)
    own, ondef = (pg.create_database(uid('d'), extension=True) for _n in range(2))
    first, rotated = uid('first'), uid('rotated')
    assert run_module('pg_tde_key', args(pg, name=first, provider=prov, targets=['server', 'default']))['changed']
    assert run_module('pg_tde_key', args(pg, name=rotated, provider=prov, targets=['server', 'default']))['changed']
    own_key = uid('own')     # a key of its own (a name other than the default key's)
    assert run_module('pg_tde_key', args(pg, own, name=own_key, provider=prov, targets=['database'],
                                         databases=[own]))['changed']

    for targets in (['server'], ['default']):
        task = args(pg, name=first, provider=prov, targets=targets, keep_rotated=True)
        planned = run_module('pg_tde_key', task, check=True)
        res = run_module('pg_tde_key', task)
        assert not res['changed'] and not planned['changed'], res.get('msg')
        assert res['executed_queries'] == [] and res['created'] == []
        assert res['kept'] == [{'target': targets[0], 'database': None, 'key': rotated}]
        assert any('Kept keys rotated earlier' in w for w in res.get('warnings', []))
    assert key_name(pg, 'pg_tde_server_key_info') == rotated
    assert key_name(pg, 'pg_tde_default_key_info') == rotated

    # own keeps its rotated key; ondef (on the default key) gets the configured database key
    dbk = uid('dbk')
    task = args(pg, own, name=dbk, provider=prov, targets=['database'], databases=[own, ondef], keep_rotated=True)
    res = run_module('pg_tde_key', task)
    assert res['changed'], res.get('msg')
    assert res['kept'] == [{'target': 'database', 'database': own, 'key': own_key}]
    assert [s['database'] for s in res['set']] == [ondef]
    assert key_name(pg, 'pg_tde_key_info', own) == own_key
    assert key_name(pg, 'pg_tde_key_info', ondef) == dbk
    assert not run_module('pg_tde_key', task)['changed']

    # configure_rotate_keys: the configured name replaces the rotated one
    res = run_module('pg_tde_key', args(pg, name=first, provider=prov, targets=['server']))
    assert res['changed'] and res['rotated'][0]['old_key'] == rotated
    assert key_name(pg, 'pg_tde_server_key_info') == first
