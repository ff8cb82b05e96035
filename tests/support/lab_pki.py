"""A lab PKI like the one tdeops.pg_tde.lab_kms issues (CA, client, server with names), made with
cryptography for the tests of lab_pki_check (unit and integration), with knobs to make it wrong."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _lab_pki as p

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)
SANS = ['DNS:kms1', 'DNS:localhost', 'IP:10.0.0.2', 'IP:127.0.0.1']
KEYS: dict[int, list] = {}


def rsa_key(size: int = 2048, index: int = 0):
    """Keys are slow to make: a few per size, shared by the tests."""
    keys = KEYS.setdefault(size, [])
    while len(keys) <= index:
        keys.append(rsa.generate_private_key(public_exponent=65537, key_size=size))
    return keys[index]


def names(sans: list[str]) -> list:
    return [x509.DNSName(s[4:]) if s.startswith('DNS:') else x509.IPAddress(ipaddress.ip_address(s[3:])) for s in sans]


def issue(cn, kind, key, ca_key=None, ca_cert=None, sans=None, days=365, key_usage=None, extra=False):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(ca_cert.subject if ca_cert else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=kind == 'ca', path_length=None), critical=True))
    ku = key_usage or p.KEY_USAGE[kind]
    b = b.add_extension(x509.KeyUsage(**{f: f in ku for f in p.USAGE_FLAGS}, encipher_only=False, decipher_only=False),
                        critical=True)
    if kind != 'ca':
        eku = ExtendedKeyUsageOID.CLIENT_AUTH if kind == 'client' else ExtendedKeyUsageOID.SERVER_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    b = b.add_extension(x509.SubjectAlternativeName(names(sans if sans is not None else ['DNS:' + cn])), critical=False)
    if extra:
        b = b.add_extension(x509.OCSPNoCheck(), critical=False)
    return b.sign(ca_key or key, hashes.SHA256())


def write(pki, name, key, cert, key_mode=0o600, cert_mode=0o644):
    kp, cp = os.path.join(pki, name + '.key'), os.path.join(pki, name + '.crt')
    with open(kp, 'wb') as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                   serialization.NoEncryption()))
    with open(cp, 'wb') as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(kp, key_mode)
    os.chmod(cp, cert_mode)


CERTS = [{'name': 'ca', 'cn': 'lab CA', 'kind': 'ca'}, {'name': 'pg_tde', 'cn': 'pg_tde', 'kind': 'client'},
         {'name': 'server-kms1', 'cn': 'kms1', 'kind': 'server', 'sans': SANS}]


def make_pki(d: str) -> tuple:
    """The fresh lab PKI of CERTS in directory d (mode 0700); returns (d, ca_key, ca_cert)."""
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o700)
    ca_key = rsa_key(index=0)
    ca = issue('lab CA', 'ca', ca_key)
    write(d, 'ca', ca_key, ca)
    write(d, 'pg_tde', rsa_key(index=1), issue('pg_tde', 'client', rsa_key(index=1), ca_key, ca))
    write(d, 'server-kms1', rsa_key(index=2), issue('kms1', 'server', rsa_key(index=2), ca_key, ca, sans=SANS))
    return d, ca_key, ca
