"""pg_tde_provider through real ansible against PostgreSQL 17 with the real pg_tde, a real
PyKMIP server and a real OpenBao server."""
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
    """A directory PostgreSQL (the postgres OS user) may write keyring files into."""
    path = tempfile.mkdtemp(prefix='tdeops-prov-', dir='/tmp')
    os.chmod(path, 0o755)
    chown_postgres(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def providers(pg, scope: str = 'global', db: str = 'postgres') -> dict[str, dict]:
    out = pg.psql("SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'type', type, "
                  "'options', options)), '[]') FROM pg_tde_list_all_%s_key_providers()" % scope, db)
    return {p['name']: p for p in json.loads(out)}


def prov(pg, db: str | None = None, **kw):
    args = dict(pg.login_args(db))
    args.update(kw)
    return args


def test_file_provider_check_add_idempotent_change_delete(pg, keydir):
    name = uid('file')
    path = os.path.join(keydir, name + '.per')
    args = prov(pg, name=name, type='file', file_path=path)

    res = run_module('pg_tde_provider', args, check=True, diff=True)
    assert not res.get('failed'), res.get('msg')
    assert res['changed'] and res['operation'] == 'add'
    assert res['executed_queries'] == [
        "SELECT pg_tde_add_global_key_provider_file('%s'::text, '%s'::text)" % (name, path)]
    assert res['diff']['before'] == {} and res['diff']['after']['options'] == {'path': path}
    assert name not in providers(pg), 'check mode must not add the provider'

    res = run_module('pg_tde_provider', args, diff=True)
    assert res['changed'] and res['operation'] == 'add', res.get('msg')
    assert res['provider']['name'] == name and res['provider']['id'] < 0
    assert res['provider']['type'] == 'file' and res['provider']['scope'] == 'global'
    assert providers(pg)[name]['options'] == {'path': path}

    res = run_module('pg_tde_provider', args, diff=True)
    assert not res['changed'] and res['operation'] == 'none' and res['executed_queries'] == []

    new_path = os.path.join(keydir, name + '-2.per')
    res = run_module('pg_tde_provider', dict(args, file_path=new_path), check=True, diff=True)
    assert res['changed'] and res['operation'] == 'change' and res['differences'] == ['path']
    assert res['diff']['before']['options'] == {'path': path}
    assert res['diff']['after']['options'] == {'path': new_path}
    assert 'pg_tde_change_global_key_provider_file' in res['executed_queries'][0]
    assert providers(pg)[name]['options'] == {'path': path}

    res = run_module('pg_tde_provider', dict(args, file_path=new_path))
    assert res['changed'] and providers(pg)[name]['options'] == {'path': new_path}

    absent = prov(pg, name=name, state='absent')
    res = run_module('pg_tde_provider', absent, check=True, diff=True)
    assert res['changed'] and res['operation'] == 'delete'
    assert res['executed_queries'] == ["SELECT pg_tde_delete_global_key_provider('%s'::text)" % name]
    assert res['diff']['after'] == {} and name in providers(pg)
    res = run_module('pg_tde_provider', absent)
    assert res['changed'] and name not in providers(pg)
    res = run_module('pg_tde_provider', absent)
    assert not res['changed'] and res['executed_queries'] == []


def test_database_scope_file_provider(pg, keydir):
    db = pg.create_database(uid('provdb'), extension=True)
    name = uid('dbfile')
    path = os.path.join(keydir, name + '.per')
    args = prov(pg, name=name, scope='database', database=db, type='file', file_path=path)
    res = run_module('pg_tde_provider', args, diff=True)
    assert res['changed'], res.get('msg')
    assert res['provider']['id'] > 0 and res['provider']['scope'] == 'database'
    assert res['diff']['after']['database'] == db
    assert 'pg_tde_add_database_key_provider_file' in res['executed_queries'][0]
    assert name in providers(pg, 'database', db)
    assert name not in providers(pg, 'database', 'postgres')
    assert name not in providers(pg)
    res = run_module('pg_tde_provider', args)
    assert not res['changed']

    # database defaults to login_db
    res = run_module('pg_tde_provider', dict(args, database=None, login_db=db))
    assert not res['changed'], res.get('msg')


def test_database_without_extension_is_named(pg, keydir):
    db = pg.create_database(uid('noext'))
    res = run_module('pg_tde_provider', prov(pg, name='x', scope='database', database=db, type='file',
                                             file_path=os.path.join(keydir, 'x.per')))
    assert res['failed'] and 'extension does not exist in database "%s"' % db in res['msg']


def test_file_checks_before_any_call(pg, keydir):
    res = run_module('pg_tde_provider', prov(pg, name=uid('f'), type='file', file_path='/nonexistent/dir/k.per'))
    assert res['failed']
    assert 'file_path /nonexistent/dir/k.per does not exist (directory /nonexistent is missing)' in res['msg']
    assert 'PostgreSQL OS user "postgres"' in res['msg']
    assert res.get('executed_queries') in (None, [])

    root_only = tempfile.mkdtemp(prefix='tdeops-rootonly-', dir='/tmp')
    os.chmod(root_only, 0o700)
    try:
        res = run_module('pg_tde_provider', prov(pg, name=uid('f'), type='file',
                                                 file_path=os.path.join(root_only, 'k.per')))
        assert res['failed'] and 'not searchable' in res['msg'] and root_only in res['msg']
    finally:
        shutil.rmtree(root_only)


def test_kmip_provider_add_idempotent_change_ca(pg, kmip_server, kmip_client_files, keydir):
    name = uid('kmip')
    args = prov(pg, name=name, type='kmip', kmip_host=kmip_server.host, kmip_port=kmip_server.port,
                kmip_cert=kmip_client_files.cert, kmip_key=kmip_client_files.key, kmip_ca=kmip_server.ca)
    res = run_module('pg_tde_provider', args, diff=True)
    assert res['changed'], res.get('msg')
    assert res['provider']['options'] == {
        'host': kmip_server.host, 'port': kmip_server.port, 'certPath': kmip_client_files.cert,
        'keyPath': kmip_client_files.key, 'caPath': kmip_server.ca}
    assert 'pg_tde_add_global_key_provider_kmip' in res['executed_queries'][0]
    res = run_module('pg_tde_provider', args)
    assert not res['changed'] and res['executed_queries'] == []

    # the same CA at another path: a change in place, the key still fetchable
    ca_copy = os.path.join(keydir, name + '-ca.crt')
    shutil.copy(kmip_server.ca, ca_copy)
    os.chmod(ca_copy, 0o644)
    res = run_module('pg_tde_provider', dict(args, kmip_ca=ca_copy), diff=True)
    assert res['changed'] and res['operation'] == 'change' and res['differences'] == ['caPath'], res.get('msg')
    assert res['diff']['before']['options']['caPath'] == kmip_server.ca
    assert res['diff']['after']['options']['caPath'] == ca_copy
    res = run_module('pg_tde_provider', prov(pg, name=name, state='absent'))
    assert res['changed']


def test_kmip_errors(pg, kmip_server, kmip_client_files, keydir, pki):
    base = prov(pg, type='kmip', kmip_host=kmip_server.host, kmip_port=kmip_server.port,
                kmip_cert=kmip_client_files.cert, kmip_key=kmip_client_files.key, kmip_ca=kmip_server.ca)

    # a missing file: refused by the module, named, nothing run
    res = run_module('pg_tde_provider', dict(base, name=uid('k'), kmip_cert='/nonexistent/client.crt'))
    assert res['failed'] and 'kmip_cert /nonexistent/client.crt does not exist' in res['msg']

    res = run_module('pg_tde_provider', dict(base, name=uid('k'), kmip_ca='/nonexistent/ca.crt'))
    assert res['failed'] and 'kmip_ca /nonexistent/ca.crt does not exist' in res['msg']

    # a file the postgres OS user cannot read
    secret = os.path.join(keydir, uid('rootkey') + '.key')
    shutil.copy(kmip_client_files.key, secret)
    os.chown(secret, 0, 0)
    os.chmod(secret, 0o600)
    res = run_module('pg_tde_provider', dict(base, name=uid('k'), kmip_key=secret))
    assert res['failed'] and 'kmip_key %s is not readable for the user' % secret in res['msg']
    assert '"postgres"' in res['msg']

    # nothing listens: pg_tde's text and what it can mean
    name = uid('k')
    res = run_module('pg_tde_provider', dict(base, name=name, kmip_port=1))
    assert res['failed'] and 'SSL error: BIO_do_connect failed' in res['msg']
    assert 'three causes' in res['msg']
    assert name not in providers(pg)

    # a key that does not belong to the certificate
    other = pki.issue(uid('other'), 'other-client', eku=('clientAuth',))
    other_key = os.path.join(keydir, uid('other') + '.key')
    shutil.copy(other.key, other_key)
    os.chmod(other_key, 0o644)
    res = run_module('pg_tde_provider', dict(base, name=uid('k'), kmip_key=other_key))
    assert res['failed'] and 'SSL error: Loading the client key failed' in res['msg']
    assert 'does not match the client certificate' in res['msg']

    # a client certificate the KMS does not trust: the same pg_tde text as a KMS that is down
    foreign = pki.foreign(uid('foreign'), 'foreign-client')
    fcert, fkey = os.path.join(keydir, uid('f') + '.crt'), os.path.join(keydir, uid('f') + '.key')
    shutil.copy(foreign.cert, fcert)
    shutil.copy(foreign.key, fkey)
    os.chmod(fcert, 0o644)
    os.chmod(fkey, 0o644)
    res = run_module('pg_tde_provider', dict(base, name=uid('k'), kmip_cert=fcert, kmip_key=fkey))
    assert res['failed'] and 'SSL error: BIO_do_connect failed' in res['msg']
    assert 'does not trust the client certificate' in res['msg']

    # a required option missing: ansible's own argument check
    res = run_module('pg_tde_provider', {k: v for k, v in dict(base, name=uid('k')).items() if k != 'kmip_ca'})
    assert res['failed'] and 'kmip_ca' in res['msg']


def test_vault_provider(pg, openbao):
    name = uid('vault')
    args = prov(pg, name=name, type='vault_v2', vault_url=openbao.url, vault_mount_path=openbao.mount,
                vault_token_path=openbao.token_path, vault_ca_path=openbao.ca)
    res = run_module('pg_tde_provider', args, check=True, diff=True)
    assert res['changed'] and not res.get('failed'), res.get('msg')
    assert name not in providers(pg)
    res = run_module('pg_tde_provider', args, diff=True)
    assert res['changed'], res.get('msg')
    assert res['provider']['type'] == 'vault_v2'
    assert res['provider']['options'] == {'url': openbao.url, 'mountPath': openbao.mount,
                                          'tokenPath': openbao.token_path, 'caPath': openbao.ca}
    assert len(res['executed_queries']) == 1 and res['executed_queries'][0].count("'::text") + \
        res['executed_queries'][0].count("::text") >= 5
    token = open(openbao.token_path, encoding='utf-8').readline().strip()
    assert token not in res['_stdout'] and token not in json.dumps(res['diff'])
    res = run_module('pg_tde_provider', dict(args, vault_mount_path='/%s/' % openbao.mount))
    assert not res['changed'], 'slashes around the mount are not a difference'
    res = run_module('pg_tde_provider', prov(pg, name=name, state='absent'))
    assert res['changed']


def test_vault_refusals(pg, openbao, keydir):
    base = prov(pg, type='vault_v2', vault_url=openbao.url, vault_token_path=openbao.token_path,
                vault_ca_path=openbao.ca)
    # KV version 1: pg_tde 2.1.2+ only warns, the module refuses
    res = run_module('pg_tde_provider', dict(base, name=uid('v1'), vault_mount_path=openbao.kv1_mount,
                                             vault_token_path=openbao.kv1_token_path))
    assert res['failed'] and 'KV version 1' in res['msg'] and 'kv-v2' in res['msg']

    # the API path instead of the mount
    res = run_module('pg_tde_provider', dict(base, name=uid('v'), vault_mount_path='secret/data'))
    assert res['failed'] and 'bare KV mount' in res['msg']

    # a token without the rights on sys/mounts/<mount>
    bad = os.path.join(keydir, uid('badtoken'))
    with open(bad, 'w', encoding='utf-8') as fh:
        fh.write(openbao.kv1_token + '\n')
    os.chmod(bad, 0o644)
    res = run_module('pg_tde_provider', dict(base, name=uid('v'), vault_mount_path=openbao.mount,
                                             vault_token_path=bad))
    assert res['failed'] and 'HTTP 403' in res['msg'] and 'sys/mounts/%s' % openbao.mount in res['msg']
    assert openbao.kv1_token not in res['_stdout']

    # unreachable Vault
    res = run_module('pg_tde_provider', dict(base, name=uid('v'), vault_url='https://127.0.0.1:1'))
    assert res['failed'] and 'Cannot reach Vault at https://127.0.0.1:1' in res['msg']

    # a missing token file
    res = run_module('pg_tde_provider', dict(base, name=uid('v'), vault_token_path='/nonexistent/token'))
    assert res['failed'] and 'vault_token_path /nonexistent/token does not exist' in res['msg']


def test_vault_mount_and_token_as_pg_tde_reads_them(pg, openbao, keydir):
    """One rule for the mount (type kv with version 2) and the token (the start of the file up
    to the first blank), as the real pg_tde 2.2.0 applies them."""
    generic = uid('gen')
    openbao.api('POST', 'sys/mounts/%s' % generic, {'type': 'generic'})
    root = openbao.write_token_file(os.path.join(keydir, uid('root')), openbao.root_token)
    base = prov(pg, type='vault_v2', vault_url=openbao.url, vault_ca_path=openbao.ca, vault_token_path=root)

    # a generic mount is always KV version 1: pg_tde refuses it, so does the module, before the call
    res = run_module('pg_tde_provider', dict(base, name=uid('g'), vault_mount_path=generic))
    assert res['failed'] and 'always KV version 1' in res['msg'] and 'kv-v2' in res['msg'], res['msg']
    assert not res.get('executed_queries')
    direct = pg.psql_result("SELECT pg_tde_add_global_key_provider_vault_v2('%s', '%s', '%s', '%s', '%s')"
                            % (uid('g'), openbao.url, generic, root, openbao.ca))
    assert direct.returncode != 0 and 'unsupported engine type "generic"' in direct.stderr

    # a token file that starts with a blank line: pg_tde sends an empty token
    blank = os.path.join(keydir, uid('blank'))
    with open(blank, 'w', encoding='utf-8') as fh:
        fh.write('\n' + openbao.token + '\n')
    os.chmod(blank, 0o644)
    res = run_module('pg_tde_provider', dict(base, name=uid('b'), vault_mount_path=openbao.mount,
                                             vault_token_path=blank))
    assert res['failed'] and 'starts with a blank' in res['msg'] and openbao.token not in res['_stdout']

    # text after the token is ignored by pg_tde, and by the module
    extra = os.path.join(keydir, uid('extra'))
    with open(extra, 'w', encoding='utf-8') as fh:
        fh.write(openbao.token + ' comment\nsecond line\n')
    os.chmod(extra, 0o644)
    name = uid('e')
    res = run_module('pg_tde_provider', dict(base, name=name, vault_mount_path=openbao.mount, vault_token_path=extra))
    assert res['changed'] and not res.get('failed'), res.get('msg')
    assert run_module('pg_tde_provider', prov(pg, name=name, state='absent'))['changed']


def test_vault_namespace_uses_six_argument_function_in_check_mode(pg, openbao):
    args = prov(pg, name=uid('vns'), type='vault_v2', vault_url=openbao.url, vault_token_path=openbao.token_path,
                vault_ca_path=openbao.ca, vault_namespace='team1')
    res = run_module('pg_tde_provider', args, check=True)
    # OpenBao dev mode has no namespace team1: the mount check reports that clearly, or (when
    # namespaces are not enforced) the statement uses the 6-argument overload.
    if res.get('failed'):
        assert 'Vault' in res['msg']
    else:
        assert res['executed_queries'][0].count('::text') == 6


def test_delete_refused_while_keys_use_provider(pg, keydir):
    gname, dname = uid('gfile'), uid('dfile')
    db = pg.create_database(uid('usedb'), extension=True)
    res = run_module('pg_tde_provider', prov(pg, name=gname, type='file', file_path=os.path.join(keydir, gname)))
    assert res['changed'], res.get('msg')
    res = run_module('pg_tde_provider', prov(pg, name=dname, scope='database', database=db, type='file',
                                             file_path=os.path.join(keydir, dname)))
    assert res['changed'], res.get('msg')
    gkey, dkey = uid('gk'), uid('dk')
    # the global provider is used by a key of another database than login_db
    pg.psql("SELECT pg_tde_create_key_using_global_key_provider('%s', '%s')" % (gkey, gname), db)
    pg.psql("SELECT pg_tde_set_key_using_global_key_provider('%s', '%s')" % (gkey, gname), db)

    res = run_module('pg_tde_provider', prov(pg, name=gname, state='absent'), check=True)
    assert res['failed'] and 'key "%s" of database "%s"' % (gkey, db) in res['msg']
    assert 'currently in use' in res['msg'] and 'pg_tde_key' in res['msg']
    assert gname in providers(pg)

    pg.psql("SELECT pg_tde_create_key_using_database_key_provider('%s', '%s')" % (dkey, dname), db)
    pg.psql("SELECT pg_tde_set_key_using_database_key_provider('%s', '%s')" % (dkey, dname), db)
    res = run_module('pg_tde_provider', prov(pg, name=dname, scope='database', database=db, state='absent'))
    assert res['failed'] and 'key "%s" of database "%s"' % (dkey, db) in res['msg']
    # the global one is free now
    res = run_module('pg_tde_provider', prov(pg, name=gname, state='absent'))
    assert res['changed'], res.get('msg')


def _db_provider_with_key(pg, keydir, db):
    name, key = uid('chg'), uid('ck')
    args = prov(pg, name=name, scope='database', database=db, type='file',
                file_path=os.path.join(keydir, name + '.per'))
    assert run_module('pg_tde_provider', args)['changed']
    pg.psql("SELECT pg_tde_create_key_using_database_key_provider('%s', '%s')" % (key, name), db)
    pg.psql("SELECT pg_tde_set_key_using_database_key_provider('%s', '%s')" % (key, name), db)
    return name, key, args


def test_change_refused_when_keys_not_fetchable(pg_cluster_factory, keydir):
    # a cluster of its own: database provider ids of other tests' databases would collide
    pg = pg_cluster_factory()
    db = pg.create_database(uid('chgdb'), extension=True)
    name, key, args = _db_provider_with_key(pg, keydir, db)
    res = run_module('pg_tde_provider', dict(args, file_path=os.path.join(keydir, name + '-empty.per')))
    assert res['failed'], 'pg_tde must refuse a change that loses the key in use'
    assert 'Changing of file key provider "%s"' % name in res['msg']
    assert 'key "%s" used by database "%s" not found in modified key provider "%s"' % (key, db, name) in res['msg']
    assert 'fetchable' in res['msg'] and 'new id' not in res['msg']
    assert providers(pg, 'database', db)[name]['options']['path'] == os.path.join(keydir, name + '.per')


def test_change_of_database_provider_checks_same_id_in_other_databases(pg_cluster_factory, keydir):
    """Real pg_tde 2.2: database provider ids restart at 1 in every database, and a change of a
    database provider is checked against the keys of EVERY database that use that id."""
    pg = pg_cluster_factory()
    db_a = pg.create_database(uid('a'), extension=True)
    db_b = pg.create_database(uid('b'), extension=True)
    _name_a, key_a, _ = _db_provider_with_key(pg, keydir, db_a)
    name_b = uid('pb')
    args = prov(pg, name=name_b, scope='database', database=db_b, type='file',
                file_path=os.path.join(keydir, name_b + '.per'))
    assert run_module('pg_tde_provider', args)['changed']
    assert providers(pg, 'database', db_b)[name_b]['id'] == 1
    moved = dict(args, file_path=os.path.join(keydir, name_b + '-moved.per'))

    planned = run_module('pg_tde_provider', moved, check=True)
    assert planned['changed'] and planned['operation'] == 'change'
    warned = ' '.join(planned.get('warnings', []))
    assert 'key "%s" of database "%s"' % (key_a, db_a) in warned and 'new id' in warned

    res = run_module('pg_tde_provider', moved)
    assert res['failed'], 'database %s has no key: only the other database\'s key can block it' % db_b
    assert 'key "%s" used by database "%s" not found in modified key provider "%s"' % (key_a, db_a, name_b) \
        in res['msg']
    assert 'provider under a new name' in res['msg']
    assert providers(pg, 'database', db_b)[name_b]['options']['path'] == args['file_path']
    # the way around it: a provider under a new name gets a new id
    res = run_module('pg_tde_provider', dict(moved, name=uid('pb2')))
    assert res['changed'] and res['provider']['id'] == 2, res.get('msg')


def test_type_change_in_place(pg, keydir, openbao):
    name = uid('tc')
    args = prov(pg, name=name, type='file', file_path=os.path.join(keydir, name + '.per'))
    assert run_module('pg_tde_provider', args)['changed']
    res = run_module('pg_tde_provider', prov(pg, name=name, type='vault_v2', vault_url=openbao.url,
                                             vault_token_path=openbao.token_path, vault_ca_path=openbao.ca),
                     diff=True)
    assert res['changed'] and res['operation'] == 'change', res.get('msg')
    assert res['differences'][0] == 'type'
    assert 'pg_tde_change_global_key_provider_vault_v2' in res['executed_queries'][0]
    assert res['diff']['before']['type'] == 'file' and res['diff']['after']['type'] == 'vault_v2'
    assert providers(pg)[name]['type'] == 'vault-v2'
    run_module('pg_tde_provider', prov(pg, name=name, state='absent'))
