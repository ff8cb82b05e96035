"""Throw-away PKI for tests, the lab and molecule: CAs, server and client certificates,
plus the broken certificates the negative tests need.

Keys are RSA 2048: PyKMIP serves only the TLS 1.2 ECDHE-RSA suites pg_tde uses (facts §6).
Files land in one directory as <name>.crt / <name>.key; certificates are 0644, leaf keys 0640
with group `postgres` (or owned by `owner`) so a PostgreSQL server running as `postgres` can read
them; CA keys are 0600. The directory itself is made 0755; its parents must be traversable too.

CLI: python -m tests.support.pki --out DIR --server-name NAME [--server-ip IP ...] --client-cn CN
"""
from __future__ import annotations

import argparse
import datetime as dt
import grp
import ipaddress
import os
import pwd
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

_EKU = {
    'clientAuth': ExtendedKeyUsageOID.CLIENT_AUTH,
    'serverAuth': ExtendedKeyUsageOID.SERVER_AUTH,
    'codeSigning': ExtendedKeyUsageOID.CODE_SIGNING,
    'emailProtection': ExtendedKeyUsageOID.EMAIL_PROTECTION,
}
_READER_GROUP = 'postgres'
# Backdate a little so a certificate issued now is valid for servers with a slightly late clock.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """One certificate and its key on disk."""

    name: str
    cn: str
    cert: str  # PEM certificate path
    key: str  # PEM private key path (unencrypted)
    fingerprint_sha256: str  # lowercase hex, no separators
    is_ca: bool = False

    @property
    def fingerprint_sha256_colons(self) -> str:
        """The fingerprint as community.crypto and the collection's modules print it (ab:cd:...)."""
        fp = self.fingerprint_sha256
        return ':'.join(fp[i:i + 2] for i in range(0, len(fp), 2))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _eku_oid(name: str) -> ObjectIdentifier:
    if name in _EKU:
        return _EKU[name]
    if name and name[0].isdigit():
        return ObjectIdentifier(name)
    raise ValueError('unknown extended key usage %r (use one of %s or a dotted OID)'
                     % (name, ', '.join(sorted(_EKU))))


def _load_cert(path: str) -> x509.Certificate:
    with open(path, 'rb') as fh:
        return x509.load_pem_x509_certificate(fh.read())


def _load_key(path: str) -> rsa.RSAPrivateKey:
    with open(path, 'rb') as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError('%s: only RSA keys are used by this PKI' % path)
    return key


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Pki:
    """A directory of throw-away CAs and certificates. Names are file names: issuing a leaf
    under an existing name replaces its files, so tests sharing a Pki use distinct names.

    `owner`: user name that should own every file (e.g. 'postgres'); by default files stay
    owned by the caller and keys get group `postgres` when that group exists."""

    def __init__(self, directory: str, *, owner: str | None = None) -> None:
        self.directory = os.path.abspath(directory)
        self.owner = owner
        os.makedirs(self.directory, exist_ok=True)
        os.chmod(self.directory, 0o755)
        self._cas: dict[str, Issued] = {}

    # -- files ------------------------------------------------------------------------------

    def path(self, filename: str) -> str:
        return os.path.join(self.directory, filename)

    def _ids(self) -> tuple[int, int]:
        """uid/gid for new files; -1 leaves a value unchanged."""
        uid = gid = -1
        if self.owner:
            pw = pwd.getpwnam(self.owner)
            uid, gid = pw.pw_uid, pw.pw_gid
        else:
            try:
                gid = grp.getgrnam(_READER_GROUP).gr_gid
            except KeyError:
                pass
        if os.geteuid() != 0:
            # Only root may give files away; a non-root caller keeps its own ids.
            uid = -1
            if gid != -1 and gid not in os.getgroups():
                gid = -1
        return uid, gid

    def _write(self, path: str, data: bytes, mode: int) -> None:
        # Write under a private mode first, then open up: a key is never world-readable.
        tmp = path + '.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        uid, gid = self._ids()
        if uid != -1 or gid != -1:
            os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def _write_key(self, name: str, key: rsa.RSAPrivateKey, mode: int = 0o640) -> str:
        path = self.path(name + '.key')
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        self._write(path, pem, mode)
        return path

    def _write_cert(self, name: str, cert: x509.Certificate) -> str:
        path = self.path(name + '.crt')
        self._write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return path

    def _issued(self, name: str, cn: str, cert: x509.Certificate, key_path: str,
                is_ca: bool = False) -> Issued:
        return Issued(name=name, cn=cn, cert=self._write_cert(name, cert), key=key_path,
                      fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(), is_ca=is_ca)

    # -- CAs ----------------------------------------------------------------------------------

    def ca(self, name: str = 'ca', cn: str | None = None, *, days: int = 3650) -> Issued:
        """A self-signed root CA; the one named 'ca' is the default issuer of `issue()`.
        Asking again for an existing name returns that CA: certificates already issued under
        it stay valid (a shared session Pki must not swap CAs under other tests).
        cn defaults to 'tdeops test CA' (+ the name for other CAs: distinct subjects)."""
        if name in self._cas:
            return self._cas[name]
        if cn is None:
            cn = 'tdeops test CA' if name == 'ca' else 'tdeops test CA %s' % name
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _BACKDATE)
                .not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(ski, critical=False)
                .sign(key, hashes.SHA256()))
        # Nothing but this PKI signs with a CA key: no group read.
        issued = self._issued(name, cn, cert, self._write_key(name, key, 0o600), is_ca=True)
        self._cas[name] = issued
        return issued

    @property
    def default_ca(self) -> Issued:
        return self.ca()

    # -- leaf certificates --------------------------------------------------------------------

    def issue(self, name: str, cn: str, *, ca: Issued | None = None,
              eku: Sequence[str] | None = ('clientAuth',),
              san_dns: Iterable[str] = (), san_ip: Iterable[str] = (),
              days: int = 365, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, key: Issued | None = None) -> Issued:
        """Issue a leaf certificate signed by `ca` (default: this Pki's 'ca').

        eku=None leaves the extendedKeyUsage extension out; key=<Issued> reuses that key
        (e.g. a renewal with the same key). Times are timezone-aware UTC datetimes."""
        issuer = ca or self.default_ca
        if not issuer.is_ca:
            raise ValueError('%s is not a CA: pass an Issued from Pki.ca()' % issuer.name)
        ca_cert = _load_cert(issuer.cert)
        ca_key = _load_key(issuer.key)
        if key is not None:
            private = _load_key(key.key)
        else:
            private = _new_key()
        now = _now()
        start = not_before or (now - _BACKDATE)
        end = not_after or (start + dt.timedelta(days=days))
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                   .issuer_name(ca_cert.subject)
                   .public_key(private.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start)
                   .not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False, key_encipherment=True,
                       data_encipherment=False, key_agreement=False, key_cert_sign=False,
                       crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if eku is not None:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([_eku_oid(u) for u in eku]), critical=False)
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in san_dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in san_ip]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        key_path = key.key if key is not None else self._write_key(name, private)
        return self._issued(name, cn, cert, key_path)

    def server(self, name: str, host: str, *, ca: Issued | None = None,
               san_dns: Iterable[str] = (), san_ip: Iterable[str] = (),
               days: int = 365) -> Issued:
        """A TLS server certificate for `host` (CN and SAN; an IP address goes in as IP SAN)."""
        dns, ips = list(san_dns), list(san_ip)
        try:
            ipaddress.ip_address(host)
            ips.insert(0, host)
        except ValueError:
            dns.insert(0, host)
        return self.issue(name, host, ca=ca, eku=('serverAuth',), san_dns=dns, san_ip=ips,
                          days=days)

    # -- the bad cases ------------------------------------------------------------------------

    def expired(self, name: str, cn: str, *, ca: Issued | None = None,
                eku: Sequence[str] | None = ('clientAuth',)) -> Issued:
        """Valid from 30 days ago until yesterday."""
        now = _now()
        return self.issue(name, cn, ca=ca, eku=eku, not_before=now - dt.timedelta(days=30),
                          not_after=now - dt.timedelta(days=1))

    def not_yet_valid(self, name: str, cn: str, *, ca: Issued | None = None,
                      eku: Sequence[str] | None = ('clientAuth',)) -> Issued:
        """Valid from tomorrow for 30 days."""
        start = _now() + dt.timedelta(days=1)
        return self.issue(name, cn, ca=ca, eku=eku, not_before=start,
                          not_after=start + dt.timedelta(days=30))

    @property
    def other_ca(self) -> Issued:
        """A second, unrelated CA (created on first use) for 'signed by another CA' cases."""
        return self.ca('other-ca', 'tdeops unrelated CA')

    def foreign(self, name: str, cn: str, *, eku: Sequence[str] | None = ('clientAuth',)) -> Issued:
        """A certificate signed by `other_ca`, i.e. not trusted by the default CA."""
        return self.issue(name, cn, ca=self.other_ca, eku=eku)

    def without_client_auth(self, name: str, cn: str, *, ca: Issued | None = None) -> Issued:
        """Has an EKU extension, but only serverAuth: refused as a client certificate."""
        return self.issue(name, cn, ca=ca, eku=('serverAuth',))

    def mismatched_key(self, issued: Issued) -> Issued:
        """`issued`'s certificate paired with a fresh key that does not belong to it."""
        name = issued.name + '-mismatched'
        key_path = self._write_key(name, _new_key())
        return Issued(name=name, cn=issued.cn, cert=issued.cert, key=key_path,
                      fingerprint_sha256=issued.fingerprint_sha256, is_ca=issued.is_ca)

    def wrong_host(self, name: str, *, ca: Issued | None = None,
                   host: str = 'wrong-host.invalid') -> Issued:
        """A server certificate valid only for `host`: use it where clients connect to another
        name or address to get a host name mismatch."""
        return self.issue(name, host, ca=ca, eku=('serverAuth',), san_dns=(host,))


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m tests.support.pki',
        description='Write a throw-away CA, a server and a client certificate '
                    '(ca.crt ca.key server.crt server.key client.crt client.key).')
    parser.add_argument('--out', required=True, help='output directory (created)')
    parser.add_argument('--server-name', required=True, help='server DNS name (CN and SAN)')
    parser.add_argument('--server-ip', action='append', default=[],
                        help='extra IP SAN for the server certificate (repeatable)')
    parser.add_argument('--client-cn', required=True, help='client identity (CN)')
    parser.add_argument('--owner', help='user that should own the files (needs root)')
    parser.add_argument('--days', type=int, default=365, help='leaf validity (default 365)')
    opts = parser.parse_args(argv)
    pki = Pki(opts.out, owner=opts.owner)
    ca = pki.ca()
    server = pki.server('server', opts.server_name, ca=ca, san_ip=opts.server_ip, days=opts.days)
    client = pki.issue('client', opts.client_cn, ca=ca, days=opts.days)
    for item in (ca, server, client):
        print('%-7s %s sha256=%s' % (item.name, item.cert, item.fingerprint_sha256))
    return 0


if __name__ == '__main__':
    sys.exit(_cli())
