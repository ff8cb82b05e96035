"""kmip_key against a real PyKMIP 0.11 server over TLS with client certificates."""
from __future__ import annotations

import itertools
import uuid

import pytest
from kmip.core import enums

from tests.support.ansible_runner import run_module

_seq = itertools.count(1)


def unique(prefix: str) -> str:
    return '%s-%d-%s' % (prefix, next(_seq), uuid.uuid4().hex[:6])


def conn(server, cn: str) -> dict:
    who = server.client_cert(cn)
    return dict(kmip_host=server.host, kmip_port=server.port, kmip_cert=who.cert, kmip_key=who.key,
                kmip_ca=server.ca, timeout=10)


def visible(server, cn: str, name: str) -> dict[str, str]:
    """uid -> state for the objects `cn` sees under `name` (straight through PyKMIP)."""
    with server.client(cn) as client:
        attr = client.attribute_factory.create_attribute(enums.AttributeType.NAME, name)
        out = {}
        for uid in client.locate(attributes=[attr]):
            _u, attrs = client.get_attributes(uid, ['State'])
            out[uid] = attrs[0].attribute_value.value.name.lower().replace('_', '-')
        return out


def test_lifecycle_check_mode_and_idempotence(kmip_server) -> None:
    cn, name = 'kk-life', unique('life')
    args = dict(conn(kmip_server, cn), name=name)

    r = run_module('kmip_key', dict(args, state='present'), check=True, diff=True)
    assert not r.get('failed'), r.get('msg')
    assert r['changed'] and r['key']['state'] == 'pre-active' and r['operations'] == ['Create AES-128 Name=%s' % name]
    assert r['diff']['before'] == {'name': name, 'state': 'absent'}
    assert visible(kmip_server, cn, name) == {}

    r = run_module('kmip_key', dict(args, state='present'), diff=True)
    assert r['changed'] and r['state'] == 'pre-active'
    assert r['key']['algorithm'] == 'AES' and r['key']['length'] == 128 and r['key']['names'] == [name]
    uid = r['uid']
    assert visible(kmip_server, cn, name) == {uid: 'pre-active'}
    assert 'BEGIN' not in r['_stdout'] and 'key_value' not in r['_stdout']

    r = run_module('kmip_key', dict(args, state='present'))
    assert not r['changed'] and r['uid'] == uid and r['operations'] == []

    r = run_module('kmip_key', dict(args, state='active'), check=True)
    assert r['changed'] and r['state'] == 'active'
    assert visible(kmip_server, cn, name) == {uid: 'pre-active'}
    r = run_module('kmip_key', dict(args, state='active'))
    assert r['changed'] and r['state'] == 'active' and r['operations'] == ['Activate %s' % uid]
    assert not run_module('kmip_key', dict(args, state='active'))['changed']
    assert visible(kmip_server, cn, name) == {uid: 'active'}

    r = run_module('kmip_key', dict(args, state='revoked'))
    assert r['changed'] and r['state'] == 'deactivated'
    assert not run_module('kmip_key', dict(args, state='revoked'))['changed']
    r = run_module('kmip_key', dict(args, state='active'))
    assert r['failed'] and 'active again' in r['msg']

    r = run_module('kmip_key', dict(args, state='absent'), check=True, diff=True)
    assert r['changed'] and r['state'] == 'absent' and r['diff']['after'] == {'name': name, 'state': 'absent'}
    assert visible(kmip_server, cn, name) == {uid: 'deactivated'}
    r = run_module('kmip_key', dict(args, state='absent'))
    assert r['changed'] and r['key'] is None and r['operations'] == ['Destroy %s' % uid]
    assert visible(kmip_server, cn, name) == {}
    assert not run_module('kmip_key', dict(args, state='absent'))['changed']


def test_active_key_is_revoked_before_destroy_and_prekey_revoke(kmip_server) -> None:
    cn = 'kk-absent'
    args = dict(conn(kmip_server, cn), name=unique('act'))
    uid = run_module('kmip_key', dict(args, state='active', length=256))['uid']
    r = run_module('kmip_key', dict(args, state='absent'))
    assert r['changed'] and r['operations'] == ['Revoke %s (cessation_of_operation)' % uid, 'Destroy %s' % uid]
    # A pre-active key revoked for key compromise goes straight to compromised.
    args = dict(conn(kmip_server, cn), name=unique('pre'))
    run_module('kmip_key', dict(args, state='present'))
    r = run_module('kmip_key', dict(args, state='revoked', revocation_reason='key_compromise'))
    assert r['changed'] and r['state'] == 'compromised' and len(r['operations']) == 1
    r = run_module('kmip_key', dict(args, state='absent'))
    assert r['changed'] and r['state'] == 'absent'


def test_length_mismatch_is_an_error(kmip_server) -> None:
    args = dict(conn(kmip_server, 'kk-len'), name=unique('len'))
    run_module('kmip_key', dict(args, state='present', length=256))
    r = run_module('kmip_key', dict(args, state='present'))
    assert r['failed'] and '256 bits long, not 128' in r['msg'] and not r['changed']


def test_duplicates_fail_with_every_uid_and_uid_option_cleans_up(kmip_server) -> None:
    cn, name = 'kk-dup', unique('dup')
    with kmip_server.client(cn) as client:
        first = client.create(enums.CryptographicAlgorithm.AES, 128, name=name)
        second = client.create(enums.CryptographicAlgorithm.AES, 128, name=name)
    args = dict(conn(kmip_server, cn), name=name)
    for state in ('present', 'absent', 'revoked'):
        r = run_module('kmip_key', dict(args, state=state))
        assert r['failed'] and not r['changed']
        assert '2 objects' in r['msg'] and first in r['msg'] and second in r['msg']
        assert sorted(r['uids']) == sorted([first, second])
    assert visible(kmip_server, cn, name) == {first: 'pre-active', second: 'pre-active'}

    r = run_module('kmip_key', dict(args, state='absent', uid=second))
    assert r['changed'] and r['operations'] == ['Destroy %s' % second]
    r = run_module('kmip_key', dict(args, state='present'))
    assert not r['changed'] and r['uid'] == first
    r = run_module('kmip_key', dict(args, state='absent', uid='999999'))
    assert r['failed'] and 'No object with uid 999999' in r['msg']


def test_identity_separation(kmip_server) -> None:
    name = unique('ident')
    a = dict(conn(kmip_server, 'kk-owner-a'), name=name)
    b = dict(conn(kmip_server, 'kk-owner-b'), name=name)
    uid_a = run_module('kmip_key', dict(a, state='present'))['uid']
    # B does not see A's key: nothing to remove, and present would create B's own key.
    r = run_module('kmip_key', dict(b, state='absent'))
    assert not r.get('failed') and not r['changed'] and r['key'] is None
    r = run_module('kmip_key', dict(b, state='present'), check=True)
    assert r['changed'] and r['operations'] == ['Create AES-128 Name=%s' % name]
    r = run_module('kmip_key', dict(b, state='revoked'))
    assert r['failed'] and 'identity' in r['msg']
    assert visible(kmip_server, 'kk-owner-a', name) == {uid_a: 'pre-active'}
    assert visible(kmip_server, 'kk-owner-b', name) == {}


def test_connection_errors_are_clear(kmip_server, pki) -> None:
    args = dict(conn(kmip_server, 'kk-err'), name=unique('err'))
    r = run_module('kmip_key', dict(args, kmip_cert='/nonexistent/client.crt'))
    assert r['failed'] and '/nonexistent/client.crt: the client certificate (kmip_cert) file does not exist' in r['msg']
    foreign = pki.foreign('kk-foreign', 'kk-err')
    r = run_module('kmip_key', dict(args, kmip_cert=foreign.cert, kmip_key=foreign.key))
    assert r['failed'] and ('Cannot open a KMIP connection' in r['msg'] or 'failed on' in r['msg'])
    r = run_module('kmip_key', {'name': 'x', 'kmip_host': '127.0.0.1'})
    assert r['failed'] and 'kmip_cert, kmip_key, kmip_ca' in r['msg']


def test_protect_from_pg(pg, kmip_server) -> None:
    """With the real pg_tde: a key in use as the server key is not destroyed."""
    who = kmip_server.client_cert('postgres-test')
    name = unique('inuse')
    login = pg.login_args('postgres')
    sql = ("SELECT pg_tde_add_global_key_provider_kmip('kk-prov-{n}', '{h}', {p}, '{c}', '{k}', '{ca}');"
           "SELECT pg_tde_create_key_using_global_key_provider('{n}', 'kk-prov-{n}');"
           "SELECT pg_tde_set_server_key_using_global_key_provider('{n}', 'kk-prov-{n}');").format(
        n=name, h=kmip_server.host, p=kmip_server.port, c=who.cert, k=who.key, ca=kmip_server.ca)
    pg.psql(sql)
    args = dict(conn(kmip_server, 'postgres-test'), name=name, state='absent', protect_from_pg=login)
    r = run_module('kmip_key', args, check=True)
    assert r['failed'] and 'still uses it as server key' in r['msg'] and not r['changed']
    assert run_module('kmip_key', dict(args, name=unique('free'))).get('failed') is not True

    # a database key of another database than login_db, in use by an encrypted table
    db = 'kkdb_%s' % uuid.uuid4().hex[:8]
    pg.create_database(db, extension=True)
    dbkey = unique('dbkey')
    pg.psql("SELECT pg_tde_create_key_using_global_key_provider('{k}', 'kk-prov-{n}');"
            "SELECT pg_tde_set_key_using_global_key_provider('{k}', 'kk-prov-{n}');"
            "CREATE TABLE t (x text) USING tde_heap".format(k=dbkey, n=name), db)
    r = run_module('kmip_key', dict(args, name=dbkey))
    assert r['failed'] and 'database key of database "%s"' % db in r['msg'] and not r['changed']
    with kmip_server.client('postgres-test') as client:
        attr = client.attribute_factory.create_attribute(enums.AttributeType.NAME, dbkey)
        assert len(list(client.locate(attributes=[attr]))) == 1, 'the key must still be on the KMS'
    assert pg.psql('SELECT pg_tde_is_encrypted(\'t\')', db) == 't'


def test_template1_key_is_protected_and_reported(pg_cluster_factory, kmip_server) -> None:
    """One rule for "every database": template1 can carry the extension and a key of its own
    (real pg_tde 2.2.0), so kmip_key's protect_from_pg refuses to destroy it and pg_tde_info and
    pg_tde_key read it. A fresh cluster: the extension in template1 reaches every new database."""
    pg = pg_cluster_factory()
    who = kmip_server.client_cert('postgres-test')
    prov, key = unique('t1-prov'), unique('t1-key')
    pg.psql('CREATE EXTENSION pg_tde', 'template1')
    pg.psql("SELECT pg_tde_add_global_key_provider_kmip('{p}', '{h}', {port}, '{c}', '{k}', '{ca}')".format(
        p=prov, h=kmip_server.host, port=kmip_server.port, c=who.cert, k=who.key, ca=kmip_server.ca))
    pg.psql("SELECT pg_tde_create_key_using_global_key_provider('{k}', '{p}');"
            "SELECT pg_tde_set_key_using_global_key_provider('{k}', '{p}')".format(k=key, p=prov), 'template1')
    login = pg.login_args('postgres')

    r = run_module('kmip_key', dict(conn(kmip_server, 'postgres-test'), name=key, state='absent',
                                    protect_from_pg=login), check=True)
    assert r['failed'] and 'database key of database "template1"' in r['msg'] and not r['changed'], r.get('msg')
    assert r['keys_in_use'] == [{'kind': 'database', 'database': 'template1', 'key_name': key,
                                 'provider_name': prov}]

    tde = run_module('pg_tde_info', dict(login, include_relations=False))['pg_tde']
    assert tde['principal_keys']['databases']['template1']['key_name'] == key
    assert 'template0' not in tde['databases'], 'template0 accepts no connections'

    res = run_module('pg_tde_key', dict(login, name=key, provider=prov, targets=['database'],
                                        databases=['template1']))
    assert not res['changed'] and res['principal_keys']['databases']['template1']['key_name'] == key, res
