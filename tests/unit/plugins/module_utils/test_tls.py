"""Unit tests of _tls: certificate metadata, key match, EKU, expiry, file access, and the
handshake classification against a local TLS server (no KMS)."""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _tls
from tests.support.pki import Pki


@pytest.fixture(scope='module')
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(str(tmp_path_factory.mktemp('tls-pki')))


def test_colon_hex() -> None:
    assert _tls.colon_hex(b'\xab\x01') == 'ab:01'


def test_cert_info_has_metadata_only(pki: Pki) -> None:
    client = pki.issue('info-client', 'db1-postgres', days=10)
    cert = _tls.load_certificate(client.cert)
    info = _tls.cert_info(cert, client.cert)
    assert info['subject'] == 'CN=db1-postgres'
    assert info['issuer'] == 'CN=tdeops test CA'
    assert info['fingerprint_sha256'].replace(':', '') == client.fingerprint_sha256
    assert info['extended_key_usage'] == ['clientAuth']
    assert info['days_left'] in (9, 10)
    assert info['public_key'] == 'RSA 2048'
    assert not info['is_ca']
    assert 'PRIVATE' not in repr(info)


def test_key_match_and_mismatch(pki: Pki) -> None:
    client = pki.issue('match-client', 'a')
    bad = pki.mismatched_key(client)
    cert = _tls.load_certificate(client.cert)
    assert _tls.key_matches(cert, _tls.load_private_key(client.key))
    assert not _tls.key_matches(cert, _tls.load_private_key(bad.key))


def test_eku(pki: Pki) -> None:
    with_client = _tls.load_certificate(pki.issue('eku-ok', 'a').cert)
    no_eku = _tls.load_certificate(pki.issue('eku-none', 'a', eku=None).cert)
    server_only = _tls.load_certificate(pki.without_client_auth('eku-server', 'a').cert)
    assert _tls.eku_problem(with_client) is None
    assert _tls.eku_problem(no_eku) is None
    assert _tls.eku_names(no_eku) is None
    problem = _tls.eku_problem(server_only)
    assert problem is not None and 'clientAuth' in problem and 'serverAuth' in problem


def test_validity_and_warning(pki: Pki) -> None:
    expired = _tls.load_certificate(pki.expired('old', 'a').cert)
    future = _tls.load_certificate(pki.not_yet_valid('future', 'a').cert)
    soon = _tls.load_certificate(pki.issue('soon', 'a', days=5).cert)
    assert 'expired on' in _tls.validity_problem(expired)
    assert 'not valid before' in _tls.validity_problem(future)
    assert _tls.validity_problem(soon) is None
    assert 'in 4 day' in _tls.expiry_warning(soon, 30) or 'in 5 day' in _tls.expiry_warning(soon, 30)
    assert _tls.expiry_warning(soon, 2) is None
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=6)
    assert 'expired' in _tls.validity_problem(soon, now=later)


def test_issued_by(pki: Pki) -> None:
    ca = _tls.load_certificates(pki.default_ca.cert)
    ours = _tls.load_certificate(pki.issue('chain-ours', 'a').cert)
    foreign = _tls.load_certificate(pki.foreign('chain-foreign', 'a').cert)
    assert _tls.issued_by(ours, ca)
    assert not _tls.issued_by(foreign, ca)


def test_load_errors_name_the_file(tmp_path) -> None:
    missing = str(tmp_path / 'nope.crt')
    with pytest.raises(_tls.TlsCheckError, match='nope.crt: the certificate file does not exist'):
        _tls.load_certificates(missing, 'ca', 'certificate')
    garbage = tmp_path / 'garbage.crt'
    garbage.write_text('hello')
    with pytest.raises(_tls.TlsCheckError, match='garbage.crt: .*no PEM certificate'):
        _tls.load_certificates(str(garbage))
    badkey = tmp_path / 'bad.key'
    badkey.write_text('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')
    with pytest.raises(_tls.TlsCheckError, match='bad.key: the client key file is not a PEM private key'):
        _tls.load_private_key(str(badkey))
    with pytest.raises(_tls.TlsCheckError, match='is a directory'):
        _tls.read_file(str(tmp_path), 'x', 'CA')


class _Server:
    """A one-connection-at-a-time TLS server on a free loopback port."""

    def __init__(self, cert: str, key: str, client_ca: str | None = None) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(2)
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    try:
                        tls.recv(1)
                    except OSError:
                        pass
            except (OSError, ssl.SSLError):
                conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def test_handshake_outcomes(pki: Pki) -> None:
    server = pki.server('hs-server', '127.0.0.1', san_dns=('localhost',))
    client = pki.issue('hs-client', 'c')
    srv = _Server(server.cert, server.key, client_ca=pki.default_ca.cert)
    try:
        ok = _tls.tls_handshake('127.0.0.1', srv.port, pki.default_ca.cert, client.cert, client.key, 5)
        assert ok['protocol'].startswith('TLS')
        assert _tls.common_name(ok['server_certificate']) == '127.0.0.1'
        with pytest.raises(_tls.TlsCheckError) as err:
            _tls.tls_handshake('127.0.0.1', srv.port, pki.other_ca.cert, client.cert, client.key, 5)
        assert err.value.check == 'server_chain' and 'does not chain to the CA' in str(err.value)
        with pytest.raises(_tls.TlsCheckError) as err:
            _tls.tls_handshake('127.0.0.1', srv.port, pki.default_ca.cert, client.cert, client.key, 5,
                               server_name='kms.example.com')
        assert err.value.check == 'server_name' and 'kms.example.com' in str(err.value)
        foreign = pki.foreign('hs-foreign', 'c')
        with pytest.raises(_tls.TlsCheckError) as err:
            _tls.tls_handshake('127.0.0.1', srv.port, pki.default_ca.cert, foreign.cert, foreign.key, 5)
        assert err.value.check == 'client_rejected'
    finally:
        srv.close()
    with pytest.raises(_tls.TlsCheckError) as err:
        _tls.tls_handshake('127.0.0.1', srv.port, pki.default_ca.cert, client.cert, client.key, 2)
    assert err.value.check == 'connect'
