"""The throw-away PKI makes exactly the certificates the KMS and TLS tests rely on."""
from __future__ import annotations

import datetime as dt
import grp
import os
import pathlib
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.pki import Issued, Pki

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cert(issued: Issued) -> x509.Certificate:
    with open(issued.cert, 'rb') as fh:
        return x509.load_pem_x509_certificate(fh.read())


def _public_der(issued: Issued) -> bytes:
    with open(issued.key, 'rb') as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_public_der(issued: Issued) -> bytes:
    return _cert(issued).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _eku(issued: Issued) -> list[x509.ObjectIdentifier] | None:
    try:
        eku = _cert(issued).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return list(eku)


@pytest.fixture(scope='module')
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp('pki') / 'p'))


def test_client_cert_chains_to_default_ca(pki: Pki) -> None:
    client = pki.issue('client', 'postgres-test')
    _cert(client).verify_directly_issued_by(_cert(pki.default_ca))
    assert _eku(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _public_der(client) == _cert_public_der(client)
    assert client.cn == 'postgres-test'
    assert client.fingerprint_sha256 == _cert(client).fingerprint(hashes.SHA256()).hex()
    assert len(client.fingerprint_sha256_colons.split(':')) == 32


def test_ca_by_name_is_stable(pki: Pki) -> None:
    assert pki.ca() == pki.default_ca
    assert pki.other_ca == pki.ca('other-ca')
    assert pki.ca('third').cn == 'tdeops test CA third'
    assert pki.other_ca.fingerprint_sha256 != pki.default_ca.fingerprint_sha256
    assert pki.default_ca.is_ca


def test_issue_refuses_a_leaf_as_ca(pki: Pki) -> None:
    leaf = pki.issue('leaf', 'x')
    with pytest.raises(ValueError, match='not a CA'):
        pki.issue('under-leaf', 'y', ca=leaf)


def test_file_modes(pki: Pki) -> None:
    client = pki.issue('modes', 'modes')
    assert stat.S_IMODE(os.stat(pki.directory).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(client.cert).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(client.key).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(pki.default_ca.key).st_mode) == 0o600
    if os.geteuid() == 0:
        assert os.stat(client.key).st_gid == grp.getgrnam('postgres').gr_gid


def test_eku_variants(pki: Pki) -> None:
    assert _eku(pki.issue('no-eku', 'x', eku=None)) is None
    assert _eku(pki.without_client_auth('srv-only', 'x')) == [ExtendedKeyUsageOID.SERVER_AUTH]
    with pytest.raises(ValueError, match='unknown extended key usage'):
        pki.issue('bad-eku', 'x', eku=('clientauth',))


def test_server_and_wrong_host_sans(pki: Pki) -> None:
    server = pki.server('srv', '127.0.0.1', san_dns=('localhost',))
    san = _cert(server).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ['127.0.0.1']
    assert san.get_values_for_type(x509.DNSName) == ['localhost']
    wrong = pki.wrong_host('srv-wrong')
    san = _cert(wrong).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ['wrong-host.invalid']
    assert san.get_values_for_type(x509.IPAddress) == []


def test_validity_windows(pki: Pki) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    expired = _cert(pki.expired('expired', 'x'))
    assert expired.not_valid_after_utc < now
    future = _cert(pki.not_yet_valid('future', 'x'))
    assert future.not_valid_before_utc > now


def test_foreign_is_not_signed_by_default_ca(pki: Pki) -> None:
    foreign = _cert(pki.foreign('foreign', 'x'))
    assert foreign.issuer != _cert(pki.default_ca).subject
    foreign.verify_directly_issued_by(_cert(pki.other_ca))
    with pytest.raises(Exception):
        foreign.verify_directly_issued_by(_cert(pki.default_ca))


def test_mismatched_and_reused_keys(pki: Pki) -> None:
    client = pki.issue('orig', 'x')
    broken = pki.mismatched_key(client)
    assert broken.cert == client.cert and broken.key != client.key
    assert _public_der(broken) != _cert_public_der(broken)
    renewed = pki.issue('renewed', 'x', key=client)
    assert renewed.key == client.key
    assert _cert_public_der(renewed) == _public_der(client)
    assert renewed.fingerprint_sha256 != client.fingerprint_sha256


def test_cli_writes_six_files(tmp_path: pathlib.Path) -> None:
    out = tmp_path / 'lab'
    proc = subprocess.run([sys.executable, '-m', 'tests.support.pki', '--out', str(out),
                           '--server-name', 'kms.lab', '--server-ip', '10.0.0.5',
                           '--client-cn', 'postgres'], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert 'client' in proc.stdout
    assert sorted(os.listdir(out)) == ['ca.crt', 'ca.key', 'client.crt', 'client.key',
                                       'server.crt', 'server.key']
