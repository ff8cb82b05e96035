"""The KMS fixtures work: real PyKMIP and OpenBao servers with TLS, reachable the way pg_tde
reaches them, and refusing what they must refuse."""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import uuid
import warnings
from typing import Callable

import pytest

with warnings.catch_warnings():
    # PyKMIP 0.11 imports trip SQLAlchemy 2 / cryptography deprecation warnings.
    warnings.simplefilter('ignore')
    from kmip import enums
    from kmip.pie import objects
    from kmip.pie.client import ProxyKmipClient
    from kmip.pie.exceptions import KmipOperationFailure

from tests.support.kms import OpenBaoServer, PyKmipServer
from tests.support.pki import Issued, Pki

# PyKMIP 0.11 on Python 3.12 / SQLAlchemy 2: noise that is not ours to fix.
pytestmark = [
    pytest.mark.filterwarnings('ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning'),
    pytest.mark.filterwarnings('ignore::DeprecationWarning:kmip'),
]


def _name(prefix: str) -> str:
    return '%s-%s' % (prefix, uuid.uuid4().hex[:8])


def _locate(client: ProxyKmipClient, name: str) -> list[str]:
    attr = client.attribute_factory.create_attribute(enums.AttributeType.NAME, name)
    return list(client.locate(attributes=[attr]))


def _handshake(server: PyKmipServer, client: Issued) -> None:
    context = server.tls_context(client)
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as tls:
            # PyKMIP finishes the handshake before it judges the certificate (EKU, CN):
            # a refused client sees the connection closed on its first read.
            tls.sendall(b'\x00')
            tls.settimeout(5)
            if tls.recv(1) == b'':
                raise ConnectionResetError('server closed the connection')


def _postgres_can_read(path: str) -> bool:
    if os.geteuid() != 0:
        pytest.skip('needs root to check access as the postgres user')
    proc = subprocess.run(['runuser', '-u', 'postgres', '--', 'cat', path],
                          capture_output=True, check=False)
    return proc.returncode == 0 and len(proc.stdout) > 0


# -- PyKMIP -----------------------------------------------------------------------------------

def test_kmip_create_locate_get_over_tls(kmip_server: PyKmipServer) -> None:
    name = _name('create')
    with kmip_server.client('postgres-test') as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 128, name=name)
        assert _locate(client, name) == [uid]
        key = client.get(uid)
    assert key.cryptographic_algorithm == enums.CryptographicAlgorithm.AES
    assert len(key.value) == 16


def test_kmip_register_like_pg_tde(kmip_server: PyKmipServer) -> None:
    """pg_tde registers a locally generated AES key with a Name, then locates and gets it."""
    name = _name('register')
    material = os.urandom(16)
    key = objects.SymmetricKey(enums.CryptographicAlgorithm.AES, 128, material, name=name)
    with kmip_server.client('postgres-test') as client:
        uid = client.register(key)
        assert _locate(client, name) == [uid]
        assert client.get(uid).value == material


def test_kmip_client_files_readable_by_postgres(kmip_server: PyKmipServer,
                                                kmip_client_files: Issued) -> None:
    assert kmip_client_files.cn == 'postgres-test'
    for path in (kmip_client_files.cert, kmip_client_files.key, kmip_server.ca):
        assert _postgres_can_read(path), path


@pytest.mark.parametrize('case, alert', [
    ('other_ca', 'TLSV1_ALERT_UNKNOWN_CA'),
    ('expired', 'CERTIFICATE_EXPIRED'),
    ('not_yet_valid', 'BAD_CERTIFICATE'),
    # OpenSSL on the server checks the purpose: an EKU without clientAuth fails the handshake.
    ('server_auth_only', 'UNSUPPORTED_CERTIFICATE'),
])
def test_kmip_refuses_bad_client_cert_at_handshake(kmip_server: PyKmipServer, pki: Pki,
                                                   case: str, alert: str) -> None:
    ca = kmip_server.ca_issued
    name = 'kmip-bad-' + case
    bad = {
        'other_ca': lambda: pki.foreign(name, 'postgres-test'),
        'expired': lambda: pki.expired(name, 'postgres-test', ca=ca),
        'not_yet_valid': lambda: pki.not_yet_valid(name, 'postgres-test', ca=ca),
        'server_auth_only': lambda: pki.without_client_auth(name, 'postgres-test', ca=ca),
    }[case]()
    with pytest.raises(ssl.SSLError, match=alert):
        _handshake(kmip_server, bad)
    # The PyKMIP client sees the same TLS error.
    with pytest.raises(ssl.SSLError, match=alert):
        with kmip_server.client(issued=bad) as client:
            client.create(enums.CryptographicAlgorithm.AES, 128, name=_name(case))


def test_kmip_client_rejects_mismatched_key(kmip_server: PyKmipServer, pki: Pki) -> None:
    """Caught locally before any connection: the key does not belong to the certificate."""
    broken = pki.mismatched_key(kmip_server.client_cert('postgres-test'))
    with pytest.raises(ssl.SSLError, match='KEY_VALUES_MISMATCH'):
        kmip_server.tls_context(broken)


def _refused_after_handshake(server: PyKmipServer, client_cert: Issued) -> None:
    with pytest.raises(KmipOperationFailure) as failure:
        with server.client(issued=client_cert) as client:
            client.create(enums.CryptographicAlgorithm.AES, 128, name=_name('refused'))
    assert failure.value.reason == enums.ResultReason.AUTHENTICATION_NOT_SUCCESSFUL


def test_kmip_refuses_client_without_eku_extension(kmip_server: PyKmipServer, pki: Pki) -> None:
    """Observed with PyKMIP 0.11: a client certificate without any EKU extension passes TLS,
    then PyKMIP refuses every request ('The extended key usage extension is missing from the
    client certificate.' in its log)."""
    plain = pki.issue('kmip-no-eku', 'postgres-test', ca=kmip_server.ca_issued, eku=None)
    _refused_after_handshake(kmip_server, plain)


def test_kmip_keys_visible_only_to_owner_cn(kmip_server: PyKmipServer) -> None:
    """Observed: a key registered by CN 'alice' is invisible to CN 'bob': Locate by name finds
    nothing and Get by id fails with Permission Denied; 'alice' still sees it."""
    name = _name('owned')
    with kmip_server.client('alice') as alice:
        uid = alice.create(enums.CryptographicAlgorithm.AES, 128, name=name)
    with kmip_server.client('bob') as bob:
        assert _locate(bob, name) == []
        with pytest.raises(KmipOperationFailure) as failure:
            bob.get(uid)
    assert failure.value.reason == enums.ResultReason.PERMISSION_DENIED
    with kmip_server.client('alice') as alice:
        assert _locate(alice, name) == [uid]


def test_kmip_restart_keeps_port_and_keys(
        make_kmip_server: Callable[[], PyKmipServer]) -> None:
    """A stopped server comes back on the same port with its keys (sqlite file)."""
    server = make_kmip_server()
    name = _name('persist')
    with server.client('postgres-test') as client:
        uid = client.create(enums.CryptographicAlgorithm.AES, 128, name=name)
    port = server.port
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection((server.host, port), timeout=2).close()
    server.start()
    assert server.port == port
    with server.client('postgres-test') as client:
        assert _locate(client, name) == [uid]


def test_kmip_usable_by_real_pg_tde(pg, kmip_server: PyKmipServer, kmip_client_files: Issued) -> None:
    """pg_tde itself (as the `postgres` OS user, with the fixture's client files) registers a key
    on the PyKMIP server; the same client identity finds it, another identity does not."""
    name = _name('pgtde-key')
    provider = _name('kmip-prov')
    pg.psql("SELECT pg_tde_add_global_key_provider_kmip('%s', '%s', %d, '%s', '%s', '%s');"
            "SELECT pg_tde_create_key_using_global_key_provider('%s', '%s');"
            % (provider, kmip_server.host, kmip_server.port, kmip_client_files.cert,
               kmip_client_files.key, kmip_server.ca, name, provider))
    with kmip_server.client('postgres-test') as client:
        uids = _locate(client, name)
        assert len(uids) == 1
        key = client.get(uids[0])
        assert key.cryptographic_algorithm == enums.CryptographicAlgorithm.AES
        assert key.cryptographic_length == 128      # pg_tde.cipher = aes_128 (default)
    with kmip_server.client('someone-else') as other:
        assert _locate(other, name) == [], 'keys belong to the client certificate\'s CN'


# -- OpenBao ----------------------------------------------------------------------------------

_AS_POSTGRES_VAULT = r"""
import json, ssl, sys, urllib.request
url, mount, token_path, ca, name = sys.argv[1:]
with open(token_path) as fh:
    token = fh.readline().strip()
ctx = ssl.create_default_context(cafile=ca)
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + '/v1/' + path, data=data, method=method,
                                 headers={'X-Vault-Token': token})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return json.loads(resp.read() or b'{}')
assert call('GET', 'sys/mounts/' + mount)['data']['options']['version'] == '2'
call('POST', mount + '/data/' + name, {'data': {'key': 'a2V5'}})
# After the write: LIST on an empty KV mount answers 404.
assert name in call('GET', mount + '/metadata/?list=true')['data']['keys']
assert call('GET', mount + '/data/' + name)['data']['data'] == {'key': 'a2V5'}
print('ok')
"""


def test_openbao_usable_by_postgres(openbao: OpenBaoServer) -> None:
    """The calls pg_tde makes, as the `postgres` OS user with the token file and CA."""
    with open(openbao.token_path, encoding='utf-8') as fh:
        assert fh.readline().strip() == openbao.token
    assert openbao.token != openbao.root_token
    if os.geteuid() != 0:
        pytest.skip('needs root to run as the postgres user')
    proc = subprocess.run(
        ['runuser', '-u', 'postgres', '--', '/usr/bin/python3', '-c', _AS_POSTGRES_VAULT,
         openbao.url, openbao.mount, openbao.token_path, openbao.ca, _name('as-postgres')],
        capture_output=True, text=True, check=False, cwd='/', timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith('ok'), proc.stderr[-2000:]


def test_openbao_limited_token_has_only_the_pg_tde_policy(openbao: OpenBaoServer) -> None:
    info = openbao.api('POST', 'auth/token/lookup', {'token': openbao.token})['data']
    assert info['policies'] == ['pg_tde']
    # Not even the default policy: the token cannot look itself up.
    assert openbao.request('GET', 'auth/token/lookup-self', token=openbao.token)[0] == 403


def test_openbao_kv2_write_read_with_limited_token(openbao: OpenBaoServer) -> None:
    path = '%s/data/%s' % (openbao.mount, _name('key'))
    openbao.api('POST', path, {'data': {'key': 'c2VjcmV0'}}, token=openbao.token)
    doc = openbao.api('GET', path, token=openbao.token)
    assert doc['data']['data'] == {'key': 'c2VjcmV0'}
    # pg_tde lists the metadata at provider add; the policy must allow it.
    status, _ = openbao.request('GET', '%s/metadata/?list=true' % openbao.mount,
                                token=openbao.token)
    assert status == 200


def test_openbao_limited_token_cannot_overwrite(openbao: OpenBaoServer) -> None:
    """create,read without update: an existing key cannot be replaced through this token."""
    path = '%s/data/%s' % (openbao.mount, _name('once'))
    openbao.api('POST', path, {'data': {'key': 'first'}}, token=openbao.token)
    status, _ = openbao.request('POST', path, {'data': {'key': 'second'}}, token=openbao.token)
    assert status == 403


def test_openbao_limited_token_denied_outside_policy(openbao: OpenBaoServer) -> None:
    for method, path, body in (
            ('POST', '%s/outside' % openbao.kv1_mount, {'key': 'x'}),
            ('GET', 'sys/mounts/%s' % openbao.kv1_mount, None),
            ('PUT', 'sys/policies/acl/escalate', {'policy': 'path "*" {}'}),
            ('DELETE', '%s/metadata/anything' % openbao.mount, None)):
        status, doc = openbao.request(method, path, body, token=openbao.token)
        assert status == 403, (method, path, doc)


def test_openbao_sys_mounts_secret_is_kv2(openbao: OpenBaoServer) -> None:
    doc = openbao.api('GET', 'sys/mounts/%s' % openbao.mount, token=openbao.token)
    assert doc['data']['type'] == 'kv'
    assert doc['data']['options']['version'] == '2'


def test_openbao_kv1_mount_is_version_1(openbao: OpenBaoServer) -> None:
    """What pg_tde sees with the kv1 token: the mount is readable and reports version 1."""
    doc = openbao.api('GET', 'sys/mounts/%s' % openbao.kv1_mount, token=openbao.kv1_token)
    assert doc['data']['type'] == 'kv'
    assert doc['data']['options']['version'] == '1'
    with open(openbao.kv1_token_path, encoding='utf-8') as fh:
        assert fh.readline().strip() == openbao.kv1_token
    assert _postgres_can_read(openbao.kv1_token_path)


def test_openbao_tls_uses_its_own_ca(openbao: OpenBaoServer) -> None:
    """The server certificate verifies against `ca` for 127.0.0.1, and not without it."""
    with socket.create_connection((openbao.host, openbao.port), timeout=5) as raw:
        with openbao.ssl_context().wrap_socket(raw, server_hostname=openbao.host):
            pass
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection((openbao.host, openbao.port), timeout=5) as raw:
            with ssl.create_default_context().wrap_socket(raw, server_hostname=openbao.host):
                pass


def test_openbao_restart_keeps_port_and_rewrites_token(
        make_openbao: Callable[[], OpenBaoServer]) -> None:
    """In-memory dev server: after a restart the port is the same, the token file holds a new
    working token and `ca` the new CA."""
    server = make_openbao()
    port, old_token = server.port, server.token
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection((server.host, port), timeout=2).close()
    server.start()
    assert server.port == port
    assert server.token != old_token
    with open(server.token_path, encoding='utf-8') as fh:
        assert fh.readline().strip() == server.token
    assert server.api('GET', 'sys/mounts/secret', token=server.token)['data']['type'] == 'kv'
