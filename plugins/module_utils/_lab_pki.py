# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Whether the lab PKI (tdeops.pg_tde.lab_kms, LAB AND TEST ONLY) is already what its
community.crypto tasks would leave (module lab_pki_check): every key an RSA key of the wanted
size, every certificate issued for that key with exactly the request the role makes (subject,
basic constraints, key usage, extended key usage, subject alternative names in their order),
signed by the lab CA, valid for longer than the renewal margin, and the files' modes. Any doubt
is a problem: the role then runs its community.crypto tasks, which decide what to issue again."""
from __future__ import annotations

import datetime
import os
import stat
from typing import Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils._tls import _not_after, _not_before, key_matches

# The module reports a missing cryptography (missing_required_lib) before it calls anything here.
try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import ExtensionOID, NameOID
except ImportError:
    HAS_CRYPTOGRAPHY = False
else:
    HAS_CRYPTOGRAPHY = True

# What pki_cert.yml asks for, per kind: key usage flags set, extended key usage (dotted OIDs).
KEY_USAGE = {
    'ca': {'key_cert_sign', 'crl_sign'},
    'client': {'digital_signature', 'key_encipherment'},
    'server': {'digital_signature', 'key_encipherment'},
}
EXTENDED_KEY_USAGE = {'ca': None, 'client': ['1.3.6.1.5.5.7.3.2'], 'server': ['1.3.6.1.5.5.7.3.1']}
USAGE_FLAGS = ('digital_signature', 'content_commitment', 'key_encipherment', 'data_encipherment', 'key_agreement',
               'key_cert_sign', 'crl_sign')
# Identifiers community.crypto adds or leaves as it likes: not part of the request (dotted OIDs:
# subjectKeyIdentifier, authorityKeyIdentifier).
IGNORED_EXTENSIONS = {'2.5.29.14', '2.5.29.35'}
KEY_MODE, CERT_MODE, DIR_MODE = 0o600, 0o644, 0o700


def _mode_problem(path: str, want: int) -> str | None:
    got = stat.S_IMODE(os.stat(path).st_mode)
    return None if got == want else '%s has mode %04o, not %04o' % (path, got, want)


def _key_usage(cert: Any) -> set[str] | None:
    try:
        ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return None
    flags = set()
    for flag in USAGE_FLAGS:
        if getattr(ku, flag):
            flags.add(flag)
    return flags


def _ext(cert: Any, oid: Any) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def wanted_names(cn: str, sans: list[str]) -> list[str]:
    """The request's subject alternative names as the certificate lists them: the given entries
    (DNS:name, IP:address), or DNS:<cn> where none are given (openssl_csr_pipe's
    use_common_name_for_san, on by default)."""
    return [s.strip() for s in sans] if sans else ['DNS:' + cn]


def cert_names(cert: Any) -> list[str]:
    ext = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if ext is None:
        return []
    names = []
    for name in ext.value:
        if isinstance(name, x509.DNSName):
            names.append('DNS:' + name.value)
        elif isinstance(name, x509.IPAddress):
            names.append('IP:' + str(name.value))
        else:
            names.append('OTHER:' + str(name.value))
    return names


def request_problems(cert: Any, cn: str, kind: str, sans: list[str]) -> list[str]:
    """How the certificate differs from the request pki_cert.yml makes (pure)."""
    problems = []
    subject = [(a.oid, a.value) for a in cert.subject]
    if subject != [(NameOID.COMMON_NAME, cn)]:
        problems.append('subject is %s, not CN=%s' % (cert.subject.rfc4514_string(), cn))
    bc = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if bc is None or not bc.critical or bc.value.ca != (kind == 'ca') or bc.value.path_length is not None:
        problems.append('basic constraints are not CA:%s (critical)' % ('TRUE' if kind == 'ca' else 'FALSE'))
    ku = _ext(cert, ExtensionOID.KEY_USAGE)
    if ku is None or not ku.critical or _key_usage(cert) != KEY_USAGE[kind]:
        problems.append('key usage is not %s (critical)' % ', '.join(sorted(KEY_USAGE[kind])))
    eku = _ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    want_eku = EXTENDED_KEY_USAGE[kind]
    got_eku = None if eku is None else [oid.dotted_string for oid in eku.value]
    if got_eku != want_eku:
        problems.append('extended key usage differs from the request')
    want_names = wanted_names(cn, sans)
    if cert_names(cert) != want_names:
        problems.append('subject alternative names are %s, not %s' % (cert_names(cert) or 'none', want_names))
    allowed = {ExtensionOID.BASIC_CONSTRAINTS.dotted_string, ExtensionOID.KEY_USAGE.dotted_string,
               ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string} | IGNORED_EXTENSIONS
    allowed |= {ExtensionOID.EXTENDED_KEY_USAGE.dotted_string} if want_eku else set()
    extra = [e.oid.dotted_string for e in cert.extensions if e.oid.dotted_string not in allowed]
    if extra:
        problems.append('extensions the request does not have: %s' % ', '.join(extra))
    return problems


def validity_problem(cert: Any, renew_days: int, now: datetime.datetime) -> str | None:
    not_after, not_before = _not_after(cert), _not_before(cert)
    if not_after - now <= datetime.timedelta(days=renew_days):
        return 'it expires %s, within the renewal margin of %d days' % (not_after.isoformat(), renew_days)
    if not_before > now:
        return 'it is not valid before %s' % not_before.isoformat()
    return None


def signed_by(cert: Any, issuer: Any) -> bool:
    """The lab CA's RSA signature verified (on every cryptography version, unlike
    _tls.issued_by, which falls back to names before cryptography 40)."""
    if cert.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or cert.signature_hash_algorithm is None:
        return False
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    except InvalidSignature:
        return False
    return True


def _load(pki_dir: str, name: str, key_size: int, problems: list[str]) -> tuple[Any, Any]:
    key_path, cert_path = os.path.join(pki_dir, name + '.key'), os.path.join(pki_dir, name + '.crt')
    for path in (key_path, cert_path):
        if not os.path.isfile(path):
            problems.append('%s: missing' % path)
            return None, None
    for path, mode in ((key_path, KEY_MODE), (cert_path, CERT_MODE)):
        problem = _mode_problem(path, mode)
        if problem:
            problems.append(problem)
    try:
        with open(key_path, 'rb') as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
        with open(cert_path, 'rb') as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
    except (ValueError, TypeError, OSError) as exc:
        problems.append('%s: cannot be read (%s)' % (name, exc))
        return None, None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != key_size:
        problems.append('%s: the key is not an RSA key of %d bits' % (key_path, key_size))
    if not key_matches(cert, key):
        problems.append('%s: the certificate is not for the key %s' % (cert_path, key_path))
    return key, cert


def pki_problems(pki_dir: str, certs: list[dict[str, Any]], key_size: int, renew_days: int,
                 now: datetime.datetime | None = None) -> list[str]:
    """Everything that keeps the lab PKI from being what the role's tasks would leave; [] when
    it is. `certs`: {name, cn, kind: ca|client|server, sans} with exactly one ca."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    problems: list[str] = []
    if not os.path.isdir(pki_dir):
        return ['%s: missing' % pki_dir]
    problem = _mode_problem(pki_dir, DIR_MODE)
    if problem:
        problems.append(problem)
    loaded = {}
    for spec in certs:
        _key, cert = _load(pki_dir, spec['name'], key_size, problems)
        if cert is not None:
            loaded[spec['name']] = (spec, cert)
    ca = next((cert for spec, cert in loaded.values() if spec['kind'] == 'ca'), None)
    for name, (spec, cert) in loaded.items():
        problems += ['%s: %s' % (name, p) for p in request_problems(cert, spec['cn'], spec['kind'], spec.get('sans') or [])]
        problem = validity_problem(cert, renew_days, now)
        if problem:
            problems.append('%s: %s' % (name, problem))
        if ca is None or not signed_by(cert, ca):
            problems.append('%s: not signed by the lab CA' % name)
    return problems
