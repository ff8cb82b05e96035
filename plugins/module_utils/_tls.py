# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Certificate checks for KMS client material: loading with clear errors, metadata and
fingerprints, key/certificate match, EKU, expiry, and a real TLS handshake with verification
on. Whether the PostgreSQL OS user can read the files is _files.py's concern.

pg_tde itself neither verifies the KMIP server certificate against the CA nor checks the
client EKU (pg_tde facts section 2 and 6): these checks are what stands in for that.
Nothing here ever returns or logs private key bytes or tokens."""
from __future__ import annotations

import datetime as dt
import os
import socket
import ssl
import traceback
from typing import Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import KMIP_CONNECT_FAILED

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:
    x509 = None  # type: ignore[assignment]
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    CRYPTOGRAPHY_IMPORT_ERROR = None


class TlsCheckError(Exception):
    """A check failed. `check` names the check, `path` the file concerned (if any)."""

    def __init__(self, check: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.check = check
        self.path = path


# --- formatting ------------------------------------------------------------------------------


def colon_hex(data: bytes) -> str:
    """b'\\xab\\xcd' -> 'ab:cd' (the format of community.crypto's fingerprints)."""
    return ':'.join('%02x' % b for b in data)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _not_after(cert: Any) -> dt.datetime:
    value = getattr(cert, 'not_valid_after_utc', None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_after.replace(tzinfo=dt.timezone.utc)
    return value


def _not_before(cert: Any) -> dt.datetime:
    value = getattr(cert, 'not_valid_before_utc', None)
    if value is None:
        value = cert.not_valid_before.replace(tzinfo=dt.timezone.utc)
    return value


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def name_text(name: Any) -> str:
    return name.rfc4514_string()


def common_name(cert: Any) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def eku_names(cert: Any) -> list[str] | None:
    """Extended key usages by short name, or None when the extension is absent."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return None
    names = []
    for oid in ext.value:
        names.append(oid._name if getattr(oid, '_name', 'Unknown OID') != 'Unknown OID' else oid.dotted_string)
    return names


def san_names(cert: Any) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    out = ['DNS:%s' % v for v in ext.value.get_values_for_type(x509.DNSName)]
    out += ['IP:%s' % v for v in ext.value.get_values_for_type(x509.IPAddress)]
    return out


def is_ca(cert: Any) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def public_key_fingerprint(public_key: Any) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return colon_hex(digest.finalize())


def key_description(public_key: Any) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return 'RSA %d' % public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return 'EC %s' % public_key.curve.name
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return 'Ed25519'
    if isinstance(public_key, ed448.Ed448PublicKey):
        return 'Ed448'
    if isinstance(public_key, dsa.DSAPublicKey):
        return 'DSA %d' % public_key.key_size
    return type(public_key).__name__


def cert_info(cert: Any, path: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Metadata of a certificate: what diffs and reports show (never key material)."""
    now = now or utcnow()
    not_after = _not_after(cert)
    info: dict[str, Any] = {
        'subject': name_text(cert.subject),
        'issuer': name_text(cert.issuer),
        'serial_number': '%x' % cert.serial_number,
        'not_before': iso(_not_before(cert)),
        'not_after': iso(not_after),
        'days_left': (not_after - now).days,
        'fingerprint_sha256': colon_hex(cert.fingerprint(hashes.SHA256())),
        'public_key': key_description(cert.public_key()),
        'public_key_fingerprint_sha256': public_key_fingerprint(cert.public_key()),
        'subject_alt_names': san_names(cert),
        'extended_key_usage': eku_names(cert),
        'is_ca': is_ca(cert),
    }
    if path is not None:
        info['path'] = path
    return info


# --- files -----------------------------------------------------------------------------------


def read_file(path: str, check: str, what: str) -> bytes:
    """Bytes of `path`, or TlsCheckError naming the file and what is wrong with it."""
    if not path:
        raise TlsCheckError(check, 'No path given for the %s.' % what)
    if not os.path.exists(path):
        raise TlsCheckError(check, '%s: the %s file does not exist.' % (path, what), path)
    if os.path.isdir(path):
        raise TlsCheckError(check, '%s: the %s path is a directory, not a file.' % (path, what), path)
    try:
        with open(path, 'rb') as fh:
            return fh.read()
    except OSError as exc:
        raise TlsCheckError(check, '%s: cannot read the %s file: %s.' % (path, what, exc.strerror or exc), path)


def load_certificates(path: str, check: str = 'ca', what: str = 'certificate') -> list:
    """Every PEM certificate in `path` (a bundle is fine), at least one."""
    data = read_file(path, check, what)
    if b'-----BEGIN' not in data:
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise TlsCheckError(check, '%s: the %s file holds no PEM certificate.' % (path, what), path)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except AttributeError:  # cryptography < 39
        certs = []
        marker = b'-----END CERTIFICATE-----'
        for chunk in data.split(marker)[:-1]:
            certs.append(x509.load_pem_x509_certificate(chunk + marker))
    except ValueError as exc:
        raise TlsCheckError(check, '%s: the %s file is not a valid PEM certificate: %s.' % (path, what, exc), path)
    if not certs:
        raise TlsCheckError(check, '%s: the %s file holds no PEM certificate.' % (path, what), path)
    return certs


def load_certificate(path: str, check: str = 'client_certificate', what: str = 'client certificate') -> Any:
    return load_certificates(path, check, what)[0]


def load_private_key(path: str, check: str = 'client_key') -> Any:
    data = read_file(path, check, 'client key')
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsCheckError(check, '%s: the client key is encrypted with a passphrase; pg_tde '
                                   'needs an unencrypted key file (keep it 0600, owned by the '
                                   'PostgreSQL user).' % path, path)
    except (ValueError, Exception) as exc:  # unsupported algorithm, not PEM
        raise TlsCheckError(check, '%s: the client key file is not a PEM private key (%s).'
                            % (path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__), path)


def private_key_info(key: Any, path: str | None = None) -> dict[str, Any]:
    """Public facts about a private key: type, size and the public key fingerprint."""
    info = {'public_key': key_description(key.public_key()),
            'public_key_fingerprint_sha256': public_key_fingerprint(key.public_key())}
    if path is not None:
        info['path'] = path
    return info


# --- decisions (pure) ------------------------------------------------------------------------


def key_matches(cert: Any, key: Any) -> bool:
    return public_key_fingerprint(cert.public_key()) == public_key_fingerprint(key.public_key())


def eku_problem(cert: Any, purpose: str = 'clientAuth') -> str | None:
    """None when the certificate may be used for `purpose` (no EKU extension, or one that
    lists it or anyExtendedKeyUsage); otherwise a sentence saying what it lists instead."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return None
    wanted = ExtendedKeyUsageOID.CLIENT_AUTH if purpose == 'clientAuth' else ExtendedKeyUsageOID.SERVER_AUTH
    oids = list(ext.value)
    if wanted in oids or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in oids:
        return None
    return ('it has an extended key usage extension without %s (it lists: %s)'
            % (purpose, ', '.join(eku_names(cert) or []) or 'nothing'))


def validity_problem(cert: Any, now: dt.datetime | None = None) -> str | None:
    """'expired on ...' / 'not valid before ...' / None."""
    now = now or utcnow()
    if _not_after(cert) < now:
        return 'expired on %s' % iso(_not_after(cert))
    if _not_before(cert) > now:
        return 'is not valid before %s' % iso(_not_before(cert))
    return None


def expiry_warning(cert: Any, warning_days: int, now: dt.datetime | None = None) -> str | None:
    """A sentence when the certificate expires within `warning_days` (but has not yet)."""
    now = now or utcnow()
    left = _not_after(cert) - now
    if dt.timedelta(0) <= left < dt.timedelta(days=warning_days):
        return 'expires on %s, in %d day(s) (warning threshold %d days)' % (
            iso(_not_after(cert)), left.days, warning_days)
    return None


def issued_by(cert: Any, ca_certs: list) -> bool:
    """True when one of `ca_certs` signed `cert` (signature check, names must match)."""
    for ca in ca_certs:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except AttributeError:  # cryptography < 40: names match is the best we can say
            return True
        except Exception:
            continue
    return False


# --- the TLS handshake -----------------------------------------------------------------------


def _peer_certificate(host: str, port: int, timeout: float, client_cert: str | None,
                      client_key: str | None) -> Any:
    """The server's leaf certificate, fetched with verification off (only for reporting)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        try:
            ctx.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError):
            pass
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return x509.load_der_x509_certificate(der) if der else None


def classify_verify_error(exc: ssl.SSLCertVerificationError) -> str:
    """The check that failed for an OpenSSL verify error."""
    code = getattr(exc, 'verify_code', None)
    if code in (62, 64):  # hostname / IP address mismatch
        return 'server_name'
    if code in (9, 10):  # not yet valid / expired
        return 'server_expiry'
    return 'server_chain'


def tls_handshake(host: str, port: int, ca_path: str, client_cert: str | None = None,
                  client_key: str | None = None, timeout: float = 10.0,
                  server_name: str | None = None) -> dict[str, Any]:
    """Connect with full verification (chain to `ca_path`, host name, validity) and the
    client certificate; return {'protocol', 'cipher', 'server_certificate': x509}.

    Raises TlsCheckError with check 'connect', 'server_chain', 'server_name', 'server_expiry'
    or 'client_rejected'. The peer certificate is fetched again without verification for the
    error message when verification fails."""
    name = server_name or host
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED on
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=ca_path)
    except (OSError, ssl.SSLError) as exc:
        raise TlsCheckError('ca', '%s: cannot load the CA file: %s.' % (ca_path, exc), ca_path)
    if client_cert:
        try:
            ctx.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsCheckError('client_key_match', '%s / %s: cannot load the client certificate '
                                'and key: %s.' % (client_cert, client_key, exc), client_key)
    where = '%s:%s' % (host, port)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TlsCheckError('connect', 'Cannot connect to %s: %s. Check the host, the port and '
                            'firewalls between this host and the KMS.' % (where, exc.strerror or exc))
    try:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
            result = {'protocol': tls.version(), 'cipher': (tls.cipher() or [None])[0],
                      'server_certificate': x509.load_der_x509_certificate(der)}
            if client_cert:
                # TLS 1.3 servers reject a client certificate after the handshake: read once.
                tls.settimeout(0.3)
                try:
                    tls.recv(1)
                except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                    pass
                except ssl.SSLError as exc:
                    raise _client_rejected(where, exc)
                except OSError:
                    pass
            return result
    except ssl.SSLCertVerificationError as exc:
        check = classify_verify_error(exc)
        peer = _peer_certificate(host, port, timeout, client_cert, client_key)
        about = ''
        if peer is not None:
            about = (' The server presents subject "%s", issuer "%s", SAN [%s], valid until %s.'
                     % (name_text(peer.subject), name_text(peer.issuer), ', '.join(san_names(peer)),
                        iso(_not_after(peer))))
        reason = getattr(exc, 'verify_message', None) or str(exc)
        if check == 'server_name':
            msg = ('The KMS server certificate of %s does not match the host name "%s": %s.%s '
                   'Connect with a name or address listed in its subject alternative names.'
                   % (where, name, reason, about))
        elif check == 'server_expiry':
            msg = 'The KMS server certificate of %s is not valid now: %s.%s' % (where, reason, about)
        else:
            msg = ('The KMS server certificate of %s does not chain to the CA in %s: %s.%s pg_tde '
                   'does not check this itself; set the CA file to the CA that issued the '
                   'server certificate.' % (where, ca_path, reason, about))
        raise TlsCheckError(check, msg, ca_path if check == 'server_chain' else None)
    except ssl.SSLError as exc:
        raise _client_rejected(where, exc)
    except (socket.timeout, TimeoutError):
        raise TlsCheckError('connect', 'Timed out during the TLS handshake with %s after %ss.' % (where, timeout))
    except OSError as exc:
        raise TlsCheckError('connect', 'TLS handshake with %s failed: %s.' % (where, exc))
    finally:
        try:
            raw.close()
        except OSError:
            pass


def _client_rejected(where: str, exc: ssl.SSLError) -> TlsCheckError:
    reason = getattr(exc, 'reason', None) or str(exc)
    lowered = str(reason).lower()
    if any(word in lowered for word in ('unknown_ca', 'unknown ca', 'certificate', 'bad_certificate',
                                        'handshake_failure', 'access_denied', 'unsupported')):
        return TlsCheckError('client_rejected', 'The KMS at %s refused the TLS handshake (%s): it '
                             'does not accept the client certificate (not issued by a CA it trusts, '
                             'wrong key usage, or no common cipher). pg_tde would report only '
                             '"%s".' % (where, reason, KMIP_CONNECT_FAILED))
    return TlsCheckError('connect', 'TLS handshake with %s failed: %s.' % (where, reason))
