#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: kms_preflight
short_description: Check KMS client material and the KMS server before pg_tde uses them
version_added: 1.0.0
description:
  - Run this on the database host before a pg_tde key provider is added or changed, and after
    certificate files are rotated. pg_tde itself does not verify the KMIP server certificate
    against the CA and does not check the client certificate's extended key usage; a wrong CA
    or a misissued certificate otherwise goes unnoticed until a restart or a key rotation fails.
  - For O(type=kmip) it checks that the CA, client certificate and key files exist, are readable
    and parse; that the key belongs to the certificate; that the client certificate allows
    clientAuth when it has an extended key usage extension; that no certificate has expired or
    is not yet valid; and it makes a real TLS handshake to O(kmip_host):O(kmip_port) with the
    client certificate and full verification (chain to O(kmip_ca), host name, validity).
  - For O(type=vault_v2) it checks the CA file, the token file (exists, readable, and the token
    as pg_tde reads it, from the start of the file up to the first blank, is not empty), a
    verified TLS handshake with the Vault/OpenBao server and optionally the token itself
    (O(vault_check_token)).
  - Each failing check fails the module with a message naming the file and the problem. All
    checks run; the message lists every failure. Warnings are given for certificates that expire
    within O(expiry_warning_days).
  - Never changes anything (C(changed) is always false); never returns key bytes or tokens.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.kmip
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_kms
attributes:
  check_mode:
    support: full
    description: Runs the same read-only checks in check mode.
  diff_mode:
    support: full
    description: With O(compare_to), before/after show the metadata of the live and the checked files.
options:
  type:
    description:
      - The kind of KMS, as the pg_tde provider type.
    type: str
    choices: [ kmip, vault_v2 ]
    default: kmip
  server_name:
    description:
      - Host name to verify the server certificate against, when it differs from the address
        connected to (O(kmip_host) or the host of O(vault_url)). pg_tde does not check the name at
        all; by default the module checks the name the provider uses.
    type: str
  expiry_warning_days:
    description:
      - Warn when a certificate (CA, client, server) expires within this many days.
    type: int
    default: 30
  readable_by:
    description:
      - OS user that must be able to read every file (the PostgreSQL server user), judged by
        owner, group and mode of the files and their directories. Unset skips this check.
    type: str
  vault_url:
    description:
      - URL of the Vault or OpenBao server, as given to the pg_tde vault_v2 provider. Required
        with O(type=vault_v2).
    type: str
  vault_ca_path:
    description:
      - CA certificate that issued the Vault server certificate (the provider's C(vault_ca_path)).
        Unset means the system trust store.
    type: path
  vault_token_path:
    description:
      - File whose first line is the token (the provider's C(vault_token_path)). Required with
        O(type=vault_v2). The token is never returned.
    type: path
  vault_mount_path:
    description:
      - KV version 2 mount of the provider (the bare mount, for example V(secret)). With
        O(vault_check_token), the module makes the reads pg_tde makes when the provider is added,
        C(GET /v1/sys/mounts/<mount>) (must be KV version 2) and a list of C(<mount>/metadata).
    type: str
  vault_namespace:
    description:
      - Vault Enterprise / OpenBao namespace for the token lookup.
    type: str
  vault_check_token:
    description:
      - Use the token. Checks O(vault_mount_path) as described there, then calls
        C(auth/token/lookup-self) for its TTL (a warning when it ends within O(expiry_warning_days)).
        A token without the default policy may not look itself up; that is only reported when the
        mount checks passed.
    type: bool
    default: false
  compare_to:
    description:
      - Paths of the files currently in use, to compare with the files checked (for example the
        live files while the checked ones are a staged copy). Keys are option names
        (V(kmip_cert), V(kmip_key), V(kmip_ca), V(vault_ca_path), V(vault_token_path)), values are paths.
      - The result has RV(differences) and, in diff mode, a diff of the certificate metadata
        (subjects, fingerprints, expiry) and of the public key fingerprints; a token only shows
        whether it differs.
    type: dict
requirements:
  - cryptography on the host that runs the module (the database host)
seealso:
  - module: tdeops.pg_tde.kmip_key
  - module: tdeops.pg_tde.pg_tde_provider
notes:
  - "The handshake uses the Python ssl module with TLS 1.2 or later, like pg_tde's OpenSSL client.
    A KMS that rejects the client certificate is reported as such (pg_tde only says
    C(SSL error: BIO_do_connect failed))."
'''

EXAMPLES = r'''
- name: Check the KMIP client material and the KMS before pg_tde uses it
  tdeops.pg_tde.kms_preflight:
    type: kmip
    kmip_host: kms.example.com
    kmip_port: 5696
    kmip_cert: /etc/pg_tde/kmip-client.crt
    kmip_key: /etc/pg_tde/kmip-client.key
    kmip_ca: /etc/pg_tde/kmip-ca.crt
    readable_by: postgres
  become: true

- name: Check a Vault provider's files and token
  tdeops.pg_tde.kms_preflight:
    type: vault_v2
    vault_url: https://vault.example.com:8200
    vault_ca_path: /etc/pg_tde/vault-ca.crt
    vault_token_path: /etc/pg_tde/vault-token
    vault_mount_path: secret
    vault_check_token: true
    readable_by: postgres
  become: true
'''

RETURN = r'''
checks:
  description: Every check run, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the check, for example C(client_key_match), C(server_chain), C(tls_handshake).
      type: str
    result:
      description: V(ok), V(warning), V(failed) or V(skipped).
      type: str
    detail:
      description: What was found.
      type: str
  sample:
    - { name: client_eku, result: ok, detail: "extended key usage: clientAuth" }
certificates:
  description: Metadata of the certificates seen, by role (V(ca), V(client), V(server)). Never key material.
  returned: always
  type: dict
  sample:
    client:
      path: /etc/pg_tde/kmip-client.crt
      subject: CN=postgres-db1
      issuer: CN=Example KMS CA
      not_after: "2027-11-23T19:00:00Z"
      days_left: 364
      fingerprint_sha256: "3f:9a:..."
      public_key: RSA 2048
      public_key_fingerprint_sha256: "aa:01:..."
      extended_key_usage: [ clientAuth ]
      subject_alt_names: []
      serial_number: 5f1c
      is_ca: false
      not_before: "2026-11-23T19:00:00Z"
warnings_count:
  description: Number of checks that ended in a warning.
  returned: always
  type: int
differences:
  description: With O(compare_to), the options whose file differs from the live one.
  returned: when O(compare_to) is set
  type: list
  elements: str
  sample: [ kmip_cert, kmip_key ]
check_id:
  description:
    - What this check looked at when it passed - type, endpoint, client files and O(readable_by) in one
      string; the C(tdeops.pg_tde.kms_unchecked) filter skips providers with the same values.
  returned: when every check passed
  type: str
  sample: kmip|kms.example.com|5696|/etc/pg_tde/kmip-ca.crt|/etc/pg_tde/kmip-client.crt|/etc/pg_tde/kmip-client.key|postgres
tls:
  description: Protocol and cipher of the verified handshake.
  returned: when the handshake succeeded
  type: dict
  sample: { protocol: TLSv1.2, cipher: ECDHE-RSA-AES256-SHA384 }
'''

import hashlib
import os
from typing import Any
from urllib.parse import urlparse

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _tls
from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import KMIP_CLIENT_KEY_FAILED
from ansible_collections.tdeops.pg_tde.plugins.module_utils._files import file_access_problems, loose_secret_mode
from ansible_collections.tdeops.pg_tde.plugins.module_utils._kmip import kmip_argument_spec, missing_connection_options
from ansible_collections.tdeops.pg_tde.plugins.module_utils._kms_check import check_id
from ansible_collections.tdeops.pg_tde.plugins.module_utils._vault import (
    VaultCheckError,
    check_kv2_mount,
    read_token_file,
    vault_get,
)


class Report:
    """The list of checks and the failures among them."""

    def __init__(self) -> None:
        self.checks: list[dict[str, str]] = []
        self.failures: list[str] = []
        self.warnings: list[str] = []

    def ok(self, name: str, detail: str) -> None:
        self.checks.append({'name': name, 'result': 'ok', 'detail': detail})

    def warn(self, name: str, detail: str) -> None:
        self.checks.append({'name': name, 'result': 'warning', 'detail': detail})
        self.warnings.append(detail)

    def fail(self, name: str, detail: str) -> None:
        self.checks.append({'name': name, 'result': 'failed', 'detail': detail})
        self.failures.append(detail)

    def skip(self, name: str, detail: str) -> None:
        self.checks.append({'name': name, 'result': 'skipped', 'detail': detail})

    def failed(self, name: str) -> bool:
        return any(c['name'] == name and c['result'] == 'failed' for c in self.checks)


def check_cert_validity(report: Report, role: str, cert: Any, path: str, warning_days: int) -> None:
    label = {'ca': 'CA certificate', 'client': 'client certificate', 'server': 'server certificate'}[role]
    problem = _tls.validity_problem(cert)
    where = path if role != 'server' else 'the KMS server certificate (%s)' % path
    if problem:
        report.fail('%s_expiry' % role, '%s: the %s %s.' % (where, label, problem))
        return
    warning = _tls.expiry_warning(cert, warning_days)
    if warning:
        report.warn('%s_expiry' % role, '%s: the %s %s.' % (where, label, warning))
    else:
        report.ok('%s_expiry' % role, '%s valid until %s' % (label, _tls.iso(_tls._not_after(cert))))


def load_ca(report: Report, path: str | None, certificates: dict[str, Any], warning_days: int) -> list:
    if not path:
        return []
    try:
        cas = _tls.load_certificates(path, 'ca_file', 'CA certificate')
    except _tls.TlsCheckError as exc:
        report.fail('ca_file', str(exc))
        return []
    report.ok('ca_file', '%s: %d certificate(s)' % (path, len(cas)))
    certificates['ca'] = _tls.cert_info(cas[0], path)
    if not any(_tls.is_ca(c) for c in cas):
        report.warn('ca_file', '%s: the CA file holds no certificate marked as a CA (basicConstraints '
                               'CA:TRUE); is it the server certificate instead of its CA?' % path)
    for ca in cas:
        check_cert_validity(report, 'ca', ca, path, warning_days)
    return cas


def check_files_access(report: Report, paths: list[str | None], user: str | None, secrets: list[str]) -> None:
    if not user:
        report.skip('file_access', 'readable_by not set')
        return
    problems: list[str] = []
    for path in paths:
        if path and os.path.exists(path):
            problems += file_access_problems(path, user)
    if problems:
        report.fail('file_access', 'PostgreSQL (OS user %s) cannot read its files: %s.' % (user, '; '.join(problems)))
    else:
        report.ok('file_access', 'readable by %s' % user)
    for path in secrets:
        loose = loose_secret_mode(path) if path else None
        if loose:
            report.warn('secret_file_mode', loose)


def kmip_checks(module: AnsibleModule, report: Report, certificates: dict[str, Any], result: dict[str, Any]) -> None:
    p = module.params
    days = p['expiry_warning_days']
    cas = load_ca(report, p['kmip_ca'], certificates, days)
    cert = key = None
    try:
        cert = _tls.load_certificate(p['kmip_cert'], 'client_certificate', 'client certificate')
        certificates['client'] = _tls.cert_info(cert, p['kmip_cert'])
        report.ok('client_certificate', '%s: %s' % (p['kmip_cert'], certificates['client']['subject']))
    except _tls.TlsCheckError as exc:
        report.fail('client_certificate', str(exc))
    try:
        key = _tls.load_private_key(p['kmip_key'])
        report.ok('client_key', '%s: %s' % (p['kmip_key'], _tls.key_description(key.public_key())))
    except _tls.TlsCheckError as exc:
        report.fail('client_key', str(exc))
    if cert is not None and key is not None:
        if _tls.key_matches(cert, key):
            report.ok('client_key_match', 'the key belongs to the certificate')
        else:
            report.fail('client_key_match', '%s: the client key does not belong to the client certificate %s '
                                            '(public key sha256 of the key %s, of the certificate %s). pg_tde '
                                            'would fail with "%s".'
                        % (p['kmip_key'], p['kmip_cert'], _tls.public_key_fingerprint(key.public_key()),
                           _tls.public_key_fingerprint(cert.public_key()), KMIP_CLIENT_KEY_FAILED))
    if cert is not None:
        eku = _tls.eku_problem(cert, 'clientAuth')
        if eku:
            report.fail('client_eku', '%s: the client certificate cannot be used for TLS client authentication: '
                                      '%s. pg_tde does not check this; KMS servers refuse it. Issue it with '
                                      'extendedKeyUsage clientAuth.' % (p['kmip_cert'], eku))
        else:
            names = _tls.eku_names(cert)
            report.ok('client_eku', 'extended key usage: %s' % (', '.join(names) if names is not None else 'none (any use)'))
        check_cert_validity(report, 'client', cert, p['kmip_cert'], days)
        if cas:
            if _tls.issued_by(cert, cas):
                report.ok('client_chain', 'issued by %s' % _tls.name_text(cert.issuer))
            else:
                report.warn('client_chain', '%s: the client certificate (issuer "%s") is not issued by the CA in %s. '
                                            'That is fine only when the KMS trusts the client CA separately.'
                            % (p['kmip_cert'], _tls.name_text(cert.issuer), p['kmip_ca']))
    file_failures = [c for c in ('ca_file', 'client_certificate', 'client_key', 'client_key_match') if report.failed(c)]
    check_files_access(report, [p['kmip_ca'], p['kmip_cert'], p['kmip_key']], p['readable_by'], [p['kmip_key']])
    if file_failures:
        report.skip('tls_handshake', 'skipped: the files above must be fixed first')
        return
    handshake(report, certificates, result, p['kmip_host'], p['kmip_port'], p['kmip_ca'],
              p['kmip_cert'], p['kmip_key'], p['timeout'], p['server_name'], days)


def handshake(report: Report, certificates: dict[str, Any], result: dict[str, Any], host: str, port: int,
              ca: str | None, cert: str | None, key: str | None, timeout: int, server_name: str | None,
              days: int) -> bool:
    try:
        tls = _tls.tls_handshake(host, port, ca, cert, key, timeout, server_name)
    except _tls.TlsCheckError as exc:
        report.fail(exc.check, str(exc))
        return False
    server = tls['server_certificate']
    where = '%s:%s' % (host, port)
    certificates['server'] = _tls.cert_info(server, where)
    report.ok('server_chain', 'the server certificate of %s chains to %s' % (where, ca or 'the system trust store'))
    report.ok('server_name', 'the server certificate matches "%s"' % (server_name or host))
    check_cert_validity(report, 'server', server, where, days)
    with_cert = ' and the client certificate' if cert else ''
    report.ok('tls_handshake', '%s with %s%s' % (tls['protocol'], tls['cipher'], with_cert))
    result['tls'] = {'protocol': tls['protocol'], 'cipher': tls['cipher']}
    return True


def read_token(report: Report, path: str) -> str | None:
    """The token as pg_tde reads it (the start of the file up to the first blank)."""
    try:
        token, ignored = read_token_file(path)
    except VaultCheckError as exc:
        report.fail('token_file', str(exc))
        return None
    detail = '%s: token on the first line (%d characters)' % (path, len(token))
    if ignored:
        report.warn('token_file', '%s; pg_tde ignores everything after the token' % detail)
    else:
        report.ok('token_file', detail)
    return token


def vault_checks(module: AnsibleModule, report: Report, certificates: dict[str, Any], result: dict[str, Any]) -> None:
    p = module.params
    days = p['expiry_warning_days']
    url = p['vault_url']
    parsed = urlparse(url)
    if parsed.scheme not in ('http', 'https') or not parsed.hostname:
        report.fail('vault_url', 'vault_url "%s" is not an http(s) URL.' % url)
        return
    load_ca(report, p['vault_ca_path'], certificates, days)
    token = read_token(report, p['vault_token_path'])
    check_files_access(report, [p['vault_ca_path'], p['vault_token_path']], p['readable_by'], [p['vault_token_path']])
    tls_ok = True
    if parsed.scheme == 'http':
        report.warn('tls_handshake', '%s uses plain HTTP: the token travels unencrypted.' % url)
    elif report.failed('ca_file'):
        report.skip('tls_handshake', 'skipped: fix the CA file first')
        tls_ok = False
    else:
        tls_ok = handshake(report, certificates, result, parsed.hostname, parsed.port or 443,
                           p['vault_ca_path'], None, None, p['timeout'], p['server_name'], days)
    if not p['vault_check_token']:
        report.skip('token_lookup', 'vault_check_token is false')
        return
    if token is None or not tls_ok:
        report.skip('token_lookup', 'skipped: fix the token file and TLS first')
        return
    mount = (p['vault_mount_path'] or '').strip('/')
    mount_ok = check_mount(report, url, mount, token, p) if mount else False
    if mount and not mount_ok:
        report.skip('token_lookup', 'skipped: the mount check failed')
        return
    try:
        status, body = vault_get(url, 'auth/token/lookup-self', token, p['vault_ca_path'],
                                 p['timeout'], p['vault_namespace'])
    except (OSError, ValueError) as exc:
        report.fail('token_lookup', 'Token lookup at %s failed: %s.' % (url, exc))
        return
    if status != 200:
        if mount_ok:
            report.skip('token_lookup', 'the token may not look itself up (no default policy); its TTL is unknown')
            return
        report.fail('token_lookup', '%s: the token in %s is invalid or expired, or may not look itself up '
                                    '(lookup-self answered HTTP %d). Set vault_mount_path to check the '
                                    'access pg_tde needs instead.' % (url, p['vault_token_path'], status))
        return
    data = body.get('data') or {}
    ttl = int(data.get('ttl') or 0)
    detail = 'token valid; policies %s; ttl %s' % (', '.join(data.get('policies') or []) or 'none',
                                                   '%ss' % ttl if ttl else 'none (does not expire)')
    if ttl and ttl < p['expiry_warning_days'] * 86400:
        report.warn('token_lookup', '%s: the token in %s expires in %d day(s).'
                    % (url, p['vault_token_path'], ttl // 86400))
    else:
        report.ok('token_lookup', detail)


def check_mount(report: Report, url: str, mount: str, token: str, p: dict[str, Any]) -> bool:
    """The reads pg_tde makes when a vault_v2 provider is added (_vault.check_kv2_mount)."""
    try:
        check_kv2_mount(url, mount, token, p['vault_token_path'], p['vault_ca_path'], p['vault_namespace'],
                        p['timeout'])
    except VaultCheckError as exc:
        report.fail('vault_mount', str(exc))
        return False
    report.ok('vault_mount', 'mount %s is KV version 2, readable and listable with the token' % mount)
    return True


def file_view(option: str, path: str | None) -> dict[str, Any] | None:
    """Metadata of one file for the diff: certificates by subject, fingerprint and expiry, keys
    by public key fingerprint, tokens by a digest of the token pg_tde reads that is only
    compared, never returned."""
    if not path or not os.path.isfile(path):
        return None
    try:
        if option in ('kmip_cert', 'kmip_ca', 'vault_ca_path'):
            info = _tls.cert_info(_tls.load_certificates(path)[0], path)
            return {k: info[k] for k in ('path', 'subject', 'issuer', 'not_after', 'fingerprint_sha256')}
        if option == 'kmip_key':
            return _tls.private_key_info(_tls.load_private_key(path), path)
        token = read_token_file(path)[0]
        return {'path': path, '_digest': hashlib.sha256(token.encode('utf-8')).hexdigest()}
    except (_tls.TlsCheckError, VaultCheckError, OSError):
        return {'path': path, 'unreadable': True}


def _strip(view: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if view is None else {k: v for k, v in view.items() if k != 'path'}


def compare(module: AnsibleModule, result: dict[str, Any]) -> None:
    """Live files (compare_to) against the checked ones. The diff shows the checked file's
    metadata under the live path, where it is about to land."""
    targets = module.params['compare_to'] or {}
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    differences: list[str] = []
    for option in sorted(targets):
        if option not in ('kmip_cert', 'kmip_key', 'kmip_ca', 'vault_ca_path', 'vault_token_path'):
            module.fail_json(msg='compare_to: unknown key %s (use kmip_cert, kmip_key, kmip_ca, vault_ca_path, '
                                 'vault_token_path).' % option)
        live = targets[option]
        old = file_view(option, live)
        new = file_view(option, module.params.get(option))
        same = old is not None and new is not None and _strip(old) == _strip(new)
        if not same:
            differences.append(option)
        if option == 'vault_token_path':
            # A token is shown only as present / different, never as content or hash.
            old = None if old is None else {'path': live, 'token': 'present'}
            new = None if new is None else {'path': live, 'token': 'present' if same else 'present, different token'}
        elif new is not None:
            new = dict(new, path=live)
        before[option] = old if old is not None else 'absent'
        after[option] = new if new is not None else 'absent'
    result['differences'] = differences
    if module._diff:
        result['diff'] = {'before': before, 'after': after}


def main() -> None:
    argument_spec = kmip_argument_spec()
    argument_spec.update(
        type=dict(type='str', default='kmip', choices=['kmip', 'vault_v2']),
        server_name=dict(type='str'),
        expiry_warning_days=dict(type='int', default=30),
        readable_by=dict(type='str'),
        vault_url=dict(type='str'),
        vault_ca_path=dict(type='path'),
        vault_token_path=dict(type='path', no_log=False),
        vault_mount_path=dict(type='str'),
        vault_namespace=dict(type='str'),
        vault_check_token=dict(type='bool', default=False),
        compare_to=dict(type='dict'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('type', 'vault_v2', ('vault_url', 'vault_token_path'))])
    if _tls.CRYPTOGRAPHY_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=_tls.CRYPTOGRAPHY_IMPORT_ERROR)
    p = module.params
    if p['type'] == 'kmip':
        missing = missing_connection_options(p)
        if missing:
            module.fail_json(msg='type=kmip needs %s (the same values as the pg_tde KMIP provider).' % ', '.join(missing))
    report = Report()
    certificates: dict[str, Any] = {}
    result: dict[str, Any] = {'changed': False}
    if p['type'] == 'kmip':
        kmip_checks(module, report, certificates, result)
    else:
        vault_checks(module, report, certificates, result)
    if p['compare_to']:
        compare(module, result)
    for warning in report.warnings:
        module.warn(warning)
    result.update(checks=report.checks, certificates=certificates, warnings_count=len(report.warnings))
    if report.failures:
        if len(report.failures) == 1:
            msg = report.failures[0]
        else:
            listing = ' '.join('(%d) %s' % (i + 1, f) for i, f in enumerate(report.failures))
            msg = '%d checks failed: %s' % (len(report.failures), listing)
        module.fail_json(msg=msg, **result)
    result['check_id'] = check_id(p, p['readable_by'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
