"""Unit tests of kmip_key's decisions (module_utils/_kmip and the module's helpers): no server."""
from __future__ import annotations

import os

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _kmip
from ansible_collections.tdeops.pg_tde.plugins.modules import kmip_key


def key(state: str | None, length: int = 128, uid: str = '7', algorithm: str = 'AES') -> dict:
    return {'uid': uid, 'state': state, 'algorithm': algorithm, 'length': length, 'names': ['k'],
            'object_type': 'symmetric_key'}


@pytest.mark.parametrize('current,state,reason,ops', [
    (None, 'present', 'cessation_of_operation', ['create']),
    (key('pre-active'), 'present', 'cessation_of_operation', []),
    (key('deactivated'), 'present', 'cessation_of_operation', []),
    (key('destroyed'), 'present', 'cessation_of_operation', ['create']),
    (None, 'active', 'cessation_of_operation', ['create', 'activate']),
    (key('pre-active'), 'active', 'cessation_of_operation', ['activate']),
    (key('active'), 'active', 'cessation_of_operation', []),
    (key('active'), 'revoked', 'cessation_of_operation', ['revoke']),
    (key('pre-active'), 'revoked', 'superseded', ['activate', 'revoke']),
    (key('pre-active'), 'revoked', 'key_compromise', ['revoke']),
    (key('deactivated'), 'revoked', 'cessation_of_operation', []),
    (key('deactivated'), 'revoked', 'key_compromise', ['revoke']),
    (key('compromised'), 'revoked', 'key_compromise', []),
    (None, 'absent', 'cessation_of_operation', []),
    (key('destroyed'), 'absent', 'cessation_of_operation', []),
    (key('pre-active'), 'absent', 'cessation_of_operation', ['destroy']),
    (key('active'), 'absent', 'cessation_of_operation', ['revoke', 'destroy']),
    (key('compromised'), 'absent', 'cessation_of_operation', ['destroy']),
])
def test_plan(current, state, reason, ops) -> None:
    assert _kmip.plan(current, state, 128, reason) == ops


def test_plan_refuses_impossible() -> None:
    with pytest.raises(_kmip.KmipError, match='cannot.*active again|does not allow'):
        _kmip.plan(key('deactivated'), 'active', 128)
    with pytest.raises(_kmip.KmipError, match='no key to revoke'):
        _kmip.plan(None, 'revoked', 128)


def test_state_after() -> None:
    assert _kmip.state_after(None, ['create'], 'x') == 'pre-active'
    assert _kmip.state_after(key('pre-active'), ['activate', 'revoke'], 'superseded') == 'deactivated'
    assert _kmip.state_after(key('pre-active'), ['revoke'], 'key_compromise') == 'compromised'
    assert _kmip.state_after(key('active'), ['revoke', 'destroy'], 'x') is None


def test_attribute_problem() -> None:
    assert _kmip.attribute_problem(None, 128) is None
    assert _kmip.attribute_problem(key('active'), 128) is None
    assert '256 bits long, not 128' in _kmip.attribute_problem(key('active', 256), 128)
    assert 'not AES' in _kmip.attribute_problem(key('active', algorithm='TRIPLE_DES'), 128)
    assert _kmip.attribute_problem(key('destroyed', 256), 128) is None


def test_duplicates_message_names_every_uid() -> None:
    msg = _kmip.duplicates_message('k', [key('pre-active', uid='3'), key('active', uid='9')])
    assert '2 objects' in msg and '3 (pre-active)' in msg and '9 (active)' in msg and 'uid' in msg


def test_state_name() -> None:
    class E:
        name = 'DESTROYED_COMPROMISED'
    assert _kmip.state_name(E()) == 'destroyed-compromised'


def test_describe_attributes_from_pykmip_objects() -> None:
    pytest.importorskip('kmip')
    from kmip.core import enums
    from kmip.core.factories.attributes import AttributeFactory

    f = AttributeFactory()
    attrs = [f.create_attribute(enums.AttributeType.NAME, 'k'),
             f.create_attribute(enums.AttributeType.STATE, enums.State.PRE_ACTIVE),
             f.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_ALGORITHM, enums.CryptographicAlgorithm.AES),
             f.create_attribute(enums.AttributeType.CRYPTOGRAPHIC_LENGTH, 128),
             f.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.SYMMETRIC_KEY)]
    assert _kmip.describe_attributes('5', attrs) == {
        'uid': '5', 'object_type': 'symmetric_key', 'state': 'pre-active', 'algorithm': 'AES',
        'length': 128, 'names': ['k']}


def test_connection_refuses_missing_files(tmp_path) -> None:
    pytest.importorskip('kmip')
    with pytest.raises(_kmip.KmipError, match='nope.crt: the client certificate'):
        _kmip.KmipConnection('127.0.0.1', 5696, str(tmp_path / 'nope.crt'), 'k', 'c')


def test_client_ignores_system_config(tmp_path) -> None:
    pytest.importorskip('kmip')
    for name in ('c.crt', 'c.key', 'ca.crt'):
        (tmp_path / name).write_text('x')
    conn = _kmip.KmipConnection('kms.example', 5697, str(tmp_path / 'c.crt'), str(tmp_path / 'c.key'),
                                str(tmp_path / 'ca.crt'), timeout=3)
    proxy = conn.client.proxy
    assert (proxy.host, proxy.port, proxy.timeout) == ('kms.example', 5697, 3)
    assert proxy.certfile.endswith('c.crt') and proxy.ca_certs.endswith('ca.crt')


def test_missing_connection_options() -> None:
    assert _kmip.missing_connection_options({'kmip_host': 'h', 'kmip_cert': None}) == [
        'kmip_cert', 'kmip_key', 'kmip_ca']


def test_protection_message() -> None:
    msg = kmip_key.protection_message('k', [
        {'kind': 'server', 'database': None, 'key_name': 'k', 'provider_name': 'kms'},
        {'kind': 'database', 'database': 'app', 'key_name': 'k', 'provider_name': 'kms'}])
    assert 'server key (provider kms)' in msg and 'database key of database "app"' in msg


def test_argument_spec_has_no_secret_leak() -> None:
    spec = _kmip.kmip_argument_spec()
    assert spec['kmip_key']['type'] == 'path'
    assert spec['kmip_port']['default'] == 5696
    assert os.devnull  # the client is built with config_file=os.devnull (see test above)
