# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the compliance report reads on a database host besides PostgreSQL: owner and mode of
the KMS client material, a verified TLS handshake with the KMS (the same _tls code as
kms_preflight), the client certificate's expiry, core dump and swap state, and pgBackRest's
view of the stanza. Read-only; every reader returns data, never raises for a missing file."""
from __future__ import annotations

import grp
import json
import os
import pwd
import stat
from typing import Any
from urllib.parse import urlparse

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _tls


def _name(getter, ident: int) -> str:
    try:
        return getter(ident)[0]
    except KeyError:
        return str(ident)


def file_state(path: str) -> dict[str, Any]:
    """Owner, group and mode of a file and whether its directory is writable by others."""
    out: dict[str, Any] = {'path': path, 'exists': False}
    try:
        st = os.stat(path)
    except OSError as exc:
        out['detail'] = exc.strerror or str(exc)
        return out
    out.update(exists=True, owner=_name(pwd.getpwuid, st.st_uid), group=_name(grp.getgrgid, st.st_gid),
               mode='%04o' % stat.S_IMODE(st.st_mode))
    try:
        dst = os.stat(os.path.dirname(os.path.abspath(path)))
        out['directory_mode'] = '%04o' % stat.S_IMODE(dst.st_mode)
        # sticky directories (/tmp) are writable but nobody may replace another user's file
        out['directory_writable_by_others'] = bool(dst.st_mode & 0o022) and not dst.st_mode & stat.S_ISVTX
    except OSError:
        out['directory_writable_by_others'] = False
    return out


def client_certificate(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        info = _tls.cert_info(_tls.load_certificate(path), path)
    except _tls.TlsCheckError as exc:
        return {'path': path, 'error': str(exc)}
    return {k: info[k] for k in ('path', 'subject', 'issuer', 'not_after', 'days_left', 'fingerprint_sha256')}


def kms_check(ptype: str, options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """A verified TLS handshake with the KMS of a kmip or vault_v2 provider (chain to the
    provider's CA, host name, validity; with the client certificate for KMIP)."""
    if ptype == 'kmip':
        host, port = options.get('host'), int(options.get('port') or 5696)
        cert, key, ca = options.get('certPath'), options.get('keyPath'), options.get('caPath')
        address = '%s:%s' % (host, port)
    else:
        url = urlparse(options.get('url') or '')
        host, port = url.hostname, url.port or (443 if url.scheme == 'https' else 80)
        cert = key = None
        ca = options.get('caPath')
        address = options.get('url')
    out: dict[str, Any] = {'type': ptype, 'address': address, 'reachable': False,
                           'server_certificate_verified': False, 'tls': None, 'detail': None,
                           'server_certificate': None, 'client_certificate': client_certificate(cert)}
    if ptype == 'vault_v2' and url.scheme != 'https':
        out['detail'] = '%s is plain HTTP: the token travels unencrypted' % address
        out['reachable'] = _tcp_reachable(host, port, timeout)
        return out
    if not ca:
        out['detail'] = 'no CA file in the provider: the server certificate is checked against the system trust store by pg_tde only'
        out['reachable'] = _tcp_reachable(host, port, timeout)
        return out
    try:
        tls = _tls.tls_handshake(host, port, ca, cert, key, timeout)
    except _tls.TlsCheckError as exc:
        out['detail'] = str(exc)
        # the KMS answered when the handshake got as far as its certificate or its verdict
        out['reachable'] = exc.check in ('server_chain', 'server_name', 'server_expiry', 'client_rejected')
        out['failed_check'] = exc.check
        return out
    except Exception as exc:  # noqa: BLE001 - a report never fails on one provider
        out['detail'] = 'TLS check failed: %s' % exc
        return out
    server = _tls.cert_info(tls['server_certificate'], address)
    out.update(reachable=True, server_certificate_verified=True, tls='%s %s' % (tls['protocol'], tls['cipher']),
               detail='verified: chain to %s, host name %s' % (ca, host),
               server_certificate={k: server[k] for k in ('subject', 'issuer', 'not_after', 'days_left')})
    return out


def _tcp_reachable(host: str | None, port: int, timeout: float) -> bool:
    import socket
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read(path: str) -> str | None:
    try:
        with open(path, 'r', encoding='utf-8', errors='replace') as fh:
            return fh.read()
    except OSError:
        return None


def in_container() -> bool:
    if os.path.exists('/run/.containerenv') or os.path.exists('/.dockerenv'):
        return True
    return bool((_read('/run/systemd/container') or '').strip())


def postmaster_limits(data_directory: str | None) -> list[str] | None:
    """[soft, hard] of the running postmaster's core file size limit, as /proc shows them."""
    if not data_directory:
        return None
    pid_text = _read(os.path.join(data_directory, 'postmaster.pid'))
    if not pid_text:
        return None
    pid = pid_text.splitlines()[0].strip()
    limits = _read('/proc/%s/limits' % pid) or ''
    for line in limits.splitlines():
        if line.startswith('Max core file size'):
            parts = line[len('Max core file size'):].split()
            return parts[:2] if len(parts) >= 2 else None
    return None


def swap_state() -> dict[str, Any]:
    """Active swap devices and those that are not dm-crypt (zram is memory, not disk)."""
    lines = (_read('/proc/swaps') or '').splitlines()[1:]
    active = [ln.split()[0] for ln in lines if ln.split()]
    crypt: set[str] = set()
    try:
        names = os.listdir('/sys/block')
    except OSError:
        names = []
    for dev in names:
        if not dev.startswith('dm-'):
            continue
        uuid = (_read('/sys/block/%s/dm/uuid' % dev) or '').strip()
        if uuid.startswith('CRYPT-'):
            crypt.add('/dev/%s' % dev)
            name = (_read('/sys/block/%s/dm/name' % dev) or '').strip()
            if name:
                crypt.add('/dev/mapper/%s' % name)
    plaintext = [d for d in active if d not in crypt and '/zram' not in d]
    return {'swaps': active, 'plaintext_swaps': plaintext}


def hardening_state(data_directory: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        'container': in_container(),
        'core_pattern': (_read('/proc/sys/kernel/core_pattern') or '').strip() or None,
        'suid_dumpable': (_read('/proc/sys/fs/suid_dumpable') or '').strip() or None,
        'postmaster_core_limit': postmaster_limits(data_directory),
    }
    out.update(swap_state())
    if out['postmaster_core_limit'] is None:
        out['error'] = 'the limits of the postmaster could not be read (postmaster.pid in %s)' % data_directory
    return out


def backup_state(run_command, stanza: str, config: str) -> dict[str, Any]:
    """`pgbackrest info --output=json` of one stanza (through the repository host when the
    configuration names one). run_command is AnsibleModule.run_command (argv -> rc, out, err)."""
    out: dict[str, Any] = {'stanza': stanza, 'configured': False, 'info': None, 'error': None}
    exe = None
    for directory in os.environ.get('PATH', '/usr/bin:/bin').split(os.pathsep) + ['/usr/bin', '/usr/local/bin']:
        candidate = os.path.join(directory, 'pgbackrest')
        if os.access(candidate, os.X_OK):
            exe = candidate
            break
    if exe is None:
        out['error'] = 'pgbackrest is not installed'
        return out
    if not os.path.exists(config):
        out['error'] = '%s does not exist' % config
        return out
    out['configured'] = True
    try:
        rc, stdout, stderr = run_command([exe, '--config=%s' % config, '--stanza=%s' % stanza, '--output=json', 'info'])
    except OSError as exc:
        out['error'] = str(exc)
        return out
    if rc != 0:
        lines = (stderr or stdout or '').strip().splitlines()
        out['error'] = lines[-1] if lines else 'pgbackrest info ended with exit code %d' % rc
        return out
    try:
        stanzas = json.loads(stdout or '[]')
    except ValueError as exc:
        out['error'] = 'unreadable output of pgbackrest info: %s' % exc
        return out
    match = [s for s in stanzas if s.get('name') == stanza]
    if not match:
        out['error'] = 'stanza %s not in pgbackrest info' % stanza
        return out
    info = match[0]
    out['info'] = {
        'status': info.get('status'),
        'cipher': info.get('cipher'),
        'backup': [{'label': b.get('label'), 'type': b.get('type'), 'timestamp': b.get('timestamp'),
                    'error': b.get('error')} for b in info.get('backup') or []],
    }
    return out
