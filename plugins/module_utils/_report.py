# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compliance report's decisions: encryption coverage, key ages, KMS and file checks,
hardening and backup state judged against a policy, per host and for the fleet.

Pure functions on plain data (what pg_tde_info returns and what _report_host gathers), so that
every decision is unit-tested. The document they build is described by docs/report.md and
docs/report.schema.json (SCHEMA_VERSION); change both together."""
from __future__ import annotations

import datetime as dt
from typing import Any

SCHEMA_VERSION = '1.0'

SEVERITIES = ('violation', 'warning', 'info')
STATUS_ORDER = ('pass', 'warn', 'fail', 'error')
KINDS = ('table', 'index', 'toast', 'materialized view')

NOT_ENCRYPTABLE_NOTE = (
    'pg_tde never encrypts sequences and pg_statistic (the planner keeps sample values of encrypted '
    'columns there in plaintext), nor temporary files, server logs and the catalogs: they are listed '
    'for information and never counted as coverage gaps.')

DEFAULT_POLICY: dict[str, Any] = {
    'max_key_age_days': 365,
    'key_age_warning_days': 30,
    'cert_expiry_warning_days': 30,
    'require_wal_encryption': True,
    'require_enforcement': False,
    'require_full_coverage': True,
    'allow_file_provider': False,
    # required | reported | auto (required where the role is used: site_hardening / site_pgbackrest)
    'hardening': 'auto',
    'backup': 'auto',
    'backup_max_age_hours': 48,
    # unencrypted relations listed per database (the largest first); the counts are always complete
    'gap_list_limit': 20,
}

POLICY_CHOICES = {'hardening': ('required', 'reported', 'auto'), 'backup': ('required', 'reported', 'auto')}
POLICY_BOOLS = ('require_wal_encryption', 'require_enforcement', 'require_full_coverage', 'allow_file_provider')
POLICY_NUMBERS = ('max_key_age_days', 'key_age_warning_days', 'cert_expiry_warning_days', 'backup_max_age_hours',
                  'gap_list_limit')

SECRET_ROLES = ('client key', 'token', 'keyring')


# ---------------------------------------------------------------------------------------------
# policy
# ---------------------------------------------------------------------------------------------

def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', 'yes', 'on', '1'):
        return True
    if text in ('false', 'no', 'off', '0'):
        return False
    return None


def policy_problems(policy: dict[str, Any] | None) -> list[str]:
    """What is wrong with a user's policy (names the key under report_policy)."""
    problems: list[str] = []
    for key, value in (policy or {}).items():
        if key not in DEFAULT_POLICY:
            problems.append('report_policy.%s is not a policy setting (known: %s)' % (key, ', '.join(sorted(DEFAULT_POLICY))))
        elif key in POLICY_BOOLS and _as_bool(value) is None:
            problems.append('report_policy.%s must be true or false, not %r' % (key, value))
        elif key in POLICY_NUMBERS:
            try:
                if float(value) < 0:
                    raise ValueError
            except (TypeError, ValueError):
                problems.append('report_policy.%s must be a number >= 0, not %r' % (key, value))
        elif key in POLICY_CHOICES and value not in POLICY_CHOICES[key]:
            problems.append('report_policy.%s must be one of %s, not %r' % (key, ', '.join(POLICY_CHOICES[key]), value))
    return problems


def effective_policy(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults with the user's settings on top, typed. Call policy_problems() first."""
    out = dict(DEFAULT_POLICY)
    for key, value in (policy or {}).items():
        if key in POLICY_BOOLS:
            out[key] = bool(_as_bool(value))
        elif key in POLICY_NUMBERS:
            out[key] = int(value) if float(value) == int(float(value)) else float(value)
        else:
            out[key] = value
    return out


def role_applies(setting: str, role_used: bool) -> bool:
    """hardening/backup: required -> judged; reported -> shown only; auto -> judged where the role is used."""
    if setting == 'required':
        return True
    if setting == 'reported':
        return False
    return bool(role_used)


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def parse_time(value: Any) -> dt.datetime | None:
    """ISO 8601 text (as pg_tde_info and pgBackRest give it) or a datetime -> aware datetime."""
    if value is None or value == '':
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif isinstance(value, (int, float)):
        stamp = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    else:
        text = str(value).strip().replace(' ', 'T', 1)
        if text.endswith('Z'):
            text = text[:-1] + '+00:00'
        # PostgreSQL prints +00 (no minutes): Python before 3.11 wants +00:00
        if len(text) > 3 and text[-3] in '+-' and text[-2:].isdigit() and ':' not in text[-3:]:
            text += ':00'
        try:
            stamp = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp


def age_days(created: Any, now: dt.datetime) -> float | None:
    stamp = parse_time(created)
    if stamp is None:
        return None
    return round((now - stamp).total_seconds() / 86400.0, 1)


def percent(part: int, total: int) -> float | None:
    if total <= 0:
        return None
    return round(100.0 * part / total, 2)


def finding(fid: str, severity: str, message: str, subject: str | None = None) -> dict[str, Any]:
    return {'id': fid, 'severity': severity, 'subject': subject, 'message': message}


def status_of(findings: list[dict[str, Any]], error: str | None = None) -> str:
    if error:
        return 'error'
    severities = {f['severity'] for f in findings}
    if 'violation' in severities:
        return 'fail'
    if 'warning' in severities:
        return 'warn'
    return 'pass'


def worst(statuses: list[str]) -> str:
    if not statuses:
        return 'pass'
    return max(statuses, key=STATUS_ORDER.index)


def human_bytes(num: int | float | None) -> str:
    if num is None:
        return '-'
    value = float(num)
    for unit in ('B', 'kB', 'MB', 'GB', 'TB'):
        if abs(value) < 1024 or unit == 'TB':
            return ('%d %s' % (value, unit)) if unit == 'B' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return '%d B' % num


# ---------------------------------------------------------------------------------------------
# coverage
# ---------------------------------------------------------------------------------------------

def _empty_counts() -> dict[str, dict[str, int]]:
    return {'encrypted': {'count': 0, 'bytes': 0}, 'unencrypted': {'count': 0, 'bytes': 0}}


def database_coverage(entry: dict[str, Any], gap_limit: int) -> dict[str, Any]:
    """Counts and bytes per kind, totals and the largest gaps of one database (pg_tde_info entry)."""
    kinds = {kind: _empty_counts() for kind in KINDS}
    for side in ('encrypted', 'unencrypted'):
        for rel in entry.get(side) or []:
            bucket = kinds.setdefault(rel.get('kind') or 'table', _empty_counts())[side]
            bucket['count'] += 1
            bucket['bytes'] += int(rel.get('bytes') or 0)
    totals = {
        'encrypted_count': sum(k['encrypted']['count'] for k in kinds.values()),
        'unencrypted_count': sum(k['unencrypted']['count'] for k in kinds.values()),
        'encrypted_bytes': sum(k['encrypted']['bytes'] for k in kinds.values()),
        'unencrypted_bytes': sum(k['unencrypted']['bytes'] for k in kinds.values()),
    }
    totals['percent_bytes'] = percent(totals['encrypted_bytes'], totals['encrypted_bytes'] + totals['unencrypted_bytes'])
    totals['percent_relations'] = percent(totals['encrypted_count'],
                                          totals['encrypted_count'] + totals['unencrypted_count'])
    gaps = sorted(({'name': r.get('name'), 'kind': r.get('kind'), 'bytes': int(r.get('bytes') or 0)}
                   for r in entry.get('unencrypted') or []), key=lambda g: (-g['bytes'], g['name'] or ''))
    return {'kinds': kinds, 'totals': totals, 'gaps': gaps[:max(0, int(gap_limit))],
            'gaps_not_listed': max(0, len(gaps) - max(0, int(gap_limit)))}


def sum_totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ('encrypted_count', 'unencrypted_count', 'encrypted_bytes', 'unencrypted_bytes')
    out = {k: sum(int(i.get(k) or 0) for i in items) for k in keys}
    out['percent_bytes'] = percent(out['encrypted_bytes'], out['encrypted_bytes'] + out['unencrypted_bytes'])
    out['percent_relations'] = percent(out['encrypted_count'], out['encrypted_count'] + out['unencrypted_count'])
    return out


def coverage_section(info: dict[str, Any], policy: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per database coverage and the findings about it."""
    findings: list[dict[str, Any]] = []
    databases = []
    gap_severity = 'violation' if policy['require_full_coverage'] else 'warning'
    enforce_required = policy['require_enforcement']
    for name in sorted(info.get('databases') or {}):
        entry = info['databases'][name] or {}
        cov = database_coverage(entry, policy['gap_list_limit'])
        db = {
            'name': name,
            'extension': bool(entry.get('extension')),
            'default_table_access_method': entry.get('default_table_access_method'),
            'enforce_encryption': entry.get('enforce_encryption'),
            'kinds': cov['kinds'],
            'totals': cov['totals'],
            'gaps': cov['gaps'],
            'gaps_not_listed': cov['gaps_not_listed'],
            'not_encryptable': {'sequences': int((entry.get('not_encryptable') or {}).get('sequences') or 0),
                                'pg_statistic': True},
            'error': entry.get('error'),
        }
        databases.append(db)
        if entry.get('error'):
            findings.append(finding('relations_unreadable', 'violation',
                                    'The relations of database %s could not be listed: %s' % (name, entry['error']), name))
        unenc = cov['totals']['unencrypted_count']
        if unenc:
            findings.append(finding(
                'unencrypted_relations', gap_severity,
                '%d relation(s) in database %s are not encrypted (%s): %s%s. Encrypt them with '
                'playbooks/encrypt_tables.yml (pg_tde_table_encrypt).'
                % (unenc, name, human_bytes(cov['totals']['unencrypted_bytes']),
                   ', '.join('%s (%s)' % (g['name'], g['kind']) for g in cov['gaps'][:5]),
                   ' and more' if unenc > 5 else ''), name))
        if not db['extension'] and name not in ('template1',):
            findings.append(finding('extension_missing', 'warning' if enforce_required else 'info',
                                    'Database %s has no pg_tde extension: tables created there cannot be encrypted.'
                                    % name, name))
    # Settings per database; template1's do not reach new databases (CREATE DATABASE does not copy
    # them), so it is left out. One finding per setting, naming the databases.
    judged = [d for d in databases if d['extension'] and d['name'] != 'template1']
    off = [d['name'] for d in judged if str(d['enforce_encryption'] or '').lower() != 'on']
    if off:
        findings.append(finding(
            'enforcement_off', 'violation' if enforce_required else 'info',
            'pg_tde.enforce_encryption is off in database(s) %s: new tables may be created unencrypted.'
            % ', '.join(off), ', '.join(off)))
    for enforced in (True, False):
        names = [d['name'] for d in judged if d['default_table_access_method'] != 'tde_heap'
                 and (str(d['enforce_encryption'] or '').lower() == 'on') == enforced]
        if names:
            findings.append(finding(
                'default_access_method_not_tde_heap', 'warning' if enforced else 'info',
                'default_table_access_method is not tde_heap in database(s) %s: CREATE TABLE without USING tde_heap %s.'
                % (', '.join(names), 'is refused while enforce_encryption is on' if enforced
                   else 'creates an unencrypted table'), ', '.join(names)))
    return databases, findings


# ---------------------------------------------------------------------------------------------
# WAL, keys, providers
# ---------------------------------------------------------------------------------------------

def wal_section(info: dict[str, Any], policy: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    wal = info.get('wal_encryption') or {}
    setting = wal.get('setting')
    on = str(setting or '').lower() == 'on'
    out = {'setting': setting, 'on': on, 'pending_restart': bool(wal.get('pending_restart')),
           'server_key_set': bool(wal.get('server_key_set'))}
    findings = []
    if not on:
        findings.append(finding('wal_encryption_off', 'violation' if policy['require_wal_encryption'] else 'info',
                                'pg_tde.wal_encrypt is %s: WAL (and with it every change to encrypted tables) is '
                                'written in plaintext.' % (setting or 'not available'), 'wal'))
    if out['pending_restart']:
        findings.append(finding('wal_encryption_pending_restart', 'warning',
                                'pg_tde.wal_encrypt was changed and waits for a restart.', 'wal'))
    if on and not out['server_key_set']:
        findings.append(finding('server_key_missing', 'violation',
                                'WAL encryption is on but the server key cannot be read.', 'wal'))
    return out, findings


def _provider_index(info: dict[str, Any]) -> dict[tuple[str | None, Any], dict[str, Any]]:
    """(database or None for global, provider id) -> public provider."""
    index: dict[tuple[str | None, Any], dict[str, Any]] = {}
    providers = info.get('providers') or {}
    for prov in providers.get('global') or []:
        index[(None, prov.get('id'))] = prov
    for db, provs in (providers.get('databases') or {}).items():
        for prov in provs or []:
            index[(db, prov.get('id'))] = prov
    return index


def _key_provider(index, key: dict[str, Any], database: str | None) -> dict[str, Any] | None:
    pid = key.get('provider_id')
    if isinstance(pid, int) and pid < 0:
        return index.get((None, pid))
    return index.get((database, pid))


def keys_section(info: dict[str, Any], policy: dict[str, Any], now: dt.datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set]:
    """Every principal key with its provider and age; findings; the providers in use
    ((database or None, provider id))."""
    keys_in = info.get('principal_keys') or {}
    index = _provider_index(info)
    used: set = set()
    keys: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    judged: set = set()
    max_age = policy['max_key_age_days']
    warn_days = policy['key_age_warning_days']

    entries: list[tuple[str, str | None, dict[str, Any] | None]] = [
        ('server', None, keys_in.get('server')), ('default', None, keys_in.get('default'))]
    for db in sorted(keys_in.get('databases') or {}):
        entries.append(('database', db, (keys_in.get('databases') or {}).get(db)))

    for target, database, key in entries:
        if key is None:
            continue
        subject = target if target != 'database' else 'database %s' % database
        if key.get('error'):
            keys.append({'target': target, 'database': database, 'key_name': None, 'provider_name': None,
                         'provider_type': None, 'created': None, 'age_days': None, 'follows_default': False,
                         'status': 'error', 'error': key['error']})
            findings.append(finding('key_unreadable', 'violation',
                                    'The %s key cannot be read: %s' % (subject, key['error']), subject))
            continue
        prov = _key_provider(index, key, database)
        if prov is not None:
            used.add((None if (key.get('provider_id') or 0) < 0 else database, prov.get('id')))
        follows = target == 'database' and bool(key.get('same_as_default'))
        age = age_days(key.get('key_creation_time'), now)
        status = 'ok'
        identity = (key.get('key_name'), key.get('provider_id'), None if (key.get('provider_id') or 0) < 0 else database)
        if age is not None and age > max_age:
            status = 'violation'
        elif age is not None and age > max_age - warn_days:
            status = 'warning'
        keys.append({'target': target, 'database': database, 'key_name': key.get('key_name'),
                     'provider_name': key.get('provider_name'),
                     'provider_type': (prov or {}).get('type'), 'created': key.get('key_creation_time'),
                     'age_days': age, 'follows_default': follows, 'status': status, 'error': None})
        if identity in judged or follows:
            continue
        judged.add(identity)
        if status == 'violation':
            findings.append(finding('key_too_old', 'violation',
                                    'Principal key %s (%s) is %.0f days old; the policy allows %s. Rotate it '
                                    '(playbooks/rotate_keys.yml).' % (key.get('key_name'), subject, age, max_age), subject))
        elif status == 'warning':
            findings.append(finding('key_age_near_limit', 'warning',
                                    'Principal key %s (%s) is %.0f days old and reaches the maximum of %s days within '
                                    '%s days.' % (key.get('key_name'), subject, age, max_age, warn_days), subject))
    return keys, findings, used


def provider_address(prov: dict[str, Any]) -> str | None:
    opts = prov.get('options') or {}
    if prov.get('type') == 'kmip':
        return '%s:%s' % (opts.get('host'), opts.get('port') or 5696)
    if prov.get('type') == 'vault_v2':
        return opts.get('url')
    if prov.get('type') == 'file':
        return opts.get('path')
    return None


def provider_files(prov: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, path) of every file a provider points at."""
    opts = prov.get('options') or {}
    roles = {'kmip': (('certPath', 'client certificate'), ('keyPath', 'client key'), ('caPath', 'CA')),
             'vault_v2': (('tokenPath', 'token'), ('caPath', 'CA')),
             'file': (('path', 'keyring'),)}.get(prov.get('type') or '', ())
    return [(role, opts[key]) for key, role in roles if isinstance(opts.get(key), str) and opts.get(key)]


def file_findings(files: list[dict[str, Any]], server_user: str | None, subject: str) -> list[dict[str, Any]]:
    """Judge owner and mode of the KMS client material (as gathered by _report_host.file_state)."""
    out = []
    for f in files:
        path, role = f.get('path'), f.get('role')
        if not f.get('exists'):
            out.append(finding('kms_file_missing', 'violation', '%s %s does not exist.' % (role, path), subject))
            continue
        mode = int(str(f.get('mode') or '0'), 8)
        owner = f.get('owner')
        if owner not in (server_user, 'root') and server_user is not None:
            out.append(finding('kms_file_owner', 'violation',
                               '%s %s is owned by %s (not %s or root): that user can replace it.'
                               % (role, path, owner, server_user), subject))
        if role in SECRET_ROLES:
            if mode & 0o007:
                out.append(finding('kms_file_mode', 'violation',
                                   '%s %s has mode %04o: other users can %s it (use 0600).'
                                   % (role, path, mode, 'read' if mode & 0o004 else 'reach'), subject))
            elif mode & 0o070:
                out.append(finding('kms_file_mode', 'warning',
                                   '%s %s has mode %04o: its group can read it (0600 is enough for pg_tde).'
                                   % (role, path, mode), subject))
        elif mode & 0o022:
            out.append(finding('kms_file_mode', 'violation',
                               '%s %s has mode %04o: others can change it.' % (role, path, mode), subject))
        if f.get('directory_writable_by_others'):
            out.append(finding('kms_file_mode', 'violation',
                               'The directory of %s %s is writable by group or others: they can replace it.'
                               % (role, path), subject))
    return out


def providers_section(info: dict[str, Any], used: set, kms: dict[str, Any], files: dict[str, Any],
                      server_user: str | None, policy: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Providers with their kind, KMS check and client material. `kms` maps address -> the
    check gathered on the host (_report_host.kms_check), `files` path -> file_state."""
    findings: list[dict[str, Any]] = []
    out = []
    providers = info.get('providers') or {}
    listed: list[tuple[str | None, dict[str, Any]]] = [(None, p) for p in providers.get('global') or []]
    for db in sorted(providers.get('databases') or {}):
        listed += [(db, p) for p in providers['databases'][db] or []]
    for database, prov in listed:
        in_use = (database if (prov.get('id') or 0) > 0 else None, prov.get('id')) in used
        ptype = prov.get('type')
        subject = 'provider %s%s' % (prov.get('name'), ' (database %s)' % database if database else '')
        address = provider_address(prov)
        check = kms.get(kms_key(prov)) if ptype in ('kmip', 'vault_v2') else None
        pfiles = [dict(files.get(path) or {'path': path, 'exists': False}, role=role)
                  for role, path in provider_files(prov)]
        entry = {'name': prov.get('name'), 'scope': 'global' if database is None else 'database',
                 'database': database, 'type': ptype, 'address': address, 'in_use': in_use,
                 'production_ready': ptype in ('kmip', 'vault_v2'), 'kms': check, 'files': pfiles}
        out.append(entry)
        if ptype == 'file':
            sev = ('warning' if policy['allow_file_provider'] else 'violation') if in_use else 'warning'
            findings.append(finding('file_provider', sev,
                                    '%s is a file keyring (%s): keys lie in plaintext on the database host - for '
                                    'tests and labs only, not for production%s.'
                                    % (subject, address, '' if in_use else ' (no key uses it)'), subject))
        if check is not None:
            findings += kms_findings(check, subject, in_use, policy)
        findings += file_findings(pfiles, server_user, subject)
    return out, findings


def kms_key(prov: dict[str, Any]) -> str:
    """The identity of a KMS check: address plus the client material used."""
    opts = prov.get('options') or {}
    return '|'.join(str(x) for x in (prov.get('type'), provider_address(prov), opts.get('certPath'),
                                     opts.get('keyPath'), opts.get('caPath')))


def kms_findings(check: dict[str, Any], subject: str, in_use: bool, policy: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    sev = 'violation' if in_use else 'warning'
    if not check.get('reachable'):
        out.append(finding('kms_unreachable', sev, '%s: the KMS at %s cannot be reached: %s'
                           % (subject, check.get('address'), check.get('detail')), subject))
    elif not check.get('server_certificate_verified'):
        out.append(finding('kms_certificate_unverified', sev, '%s: the KMS server certificate of %s is not verified: %s'
                           % (subject, check.get('address'), check.get('detail')), subject))
    client = check.get('client_certificate') or {}
    days = client.get('days_left')
    if isinstance(days, int):
        if days < 0:
            out.append(finding('client_certificate_expired', 'violation',
                               '%s: the client certificate %s expired on %s.'
                               % (subject, client.get('path'), client.get('not_after')), subject))
        elif days <= policy['cert_expiry_warning_days']:
            out.append(finding('client_certificate_expiring', 'warning',
                               '%s: the client certificate %s expires in %d day(s) (%s); renew it with the same CN '
                               '(docs/kms.md).' % (subject, client.get('path'), days, client.get('not_after')), subject))
    if client.get('error'):
        out.append(finding('client_certificate_unreadable', 'violation',
                           '%s: %s' % (subject, client['error']), subject))
    return out


# ---------------------------------------------------------------------------------------------
# hardening and backup
# ---------------------------------------------------------------------------------------------

def hardening_section(state: dict[str, Any] | None, applies: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = state or {}
    container = bool(state.get('container'))
    findings = []
    core_pattern = state.get('core_pattern')
    suid = state.get('suid_dumpable')
    limit = state.get('postmaster_core_limit')  # [soft, hard] as text, or None
    kernel_ok = core_pattern is not None and str(core_pattern).startswith('|/bin/false') and str(suid) == '0'
    limit_ok = isinstance(limit, list) and len(limit) == 2 and limit[0] == '0' and limit[1] == '0'
    core_status = 'ok' if limit_ok and kernel_ok else ('not_applicable' if limit_ok and container else 'fail')
    plaintext = list(state.get('plaintext_swaps') or [])
    swap_status = 'ok' if not plaintext else ('not_applicable' if container else 'fail')
    out = {'applies': applies, 'container': container,
           'core_dumps': {'status': core_status, 'core_pattern': core_pattern, 'suid_dumpable': suid,
                          'postmaster_core_limit': limit},
           'swap': {'status': swap_status, 'active': list(state.get('swaps') or []), 'plaintext': plaintext},
           'error': state.get('error')}
    sev = 'violation' if applies else 'info'
    if state.get('error'):
        findings.append(finding('hardening_unreadable', sev, 'The hardening state could not be read: %s'
                                % state['error'], 'hardening'))
        return out, findings
    if core_status == 'fail':
        findings.append(finding('core_dumps_enabled', sev,
                                'A crashing backend can write its memory (with the decrypted keys) to disk: postmaster '
                                'core limit %s, kernel.core_pattern %r, fs.suid_dumpable %s (role tdeops.pg_tde.hardening).'
                                % ('/'.join(limit) if isinstance(limit, list) else 'unknown', core_pattern, suid),
                                'hardening'))
    elif core_status == 'not_applicable':
        findings.append(finding('core_dumps_host_kernel', 'info',
                                'Container: kernel.core_pattern %r and fs.suid_dumpable %s belong to the host kernel; '
                                'set them there.' % (core_pattern, suid), 'hardening'))
    if swap_status == 'fail':
        findings.append(finding('swap_plaintext', sev, 'Swap in plaintext is active (%s): swapped-out pages of PostgreSQL '
                                'hold decrypted data and keys.' % ', '.join(plaintext), 'hardening'))
    elif swap_status == 'not_applicable':
        findings.append(finding('swap_host_kernel', 'info', 'Container: the active swap (%s) belongs to the host; '
                                'encrypt it there.' % ', '.join(plaintext), 'hardening'))
    return out, findings


def _backup_time(backup: dict[str, Any]) -> Any:
    stamp = (backup.get('timestamp') or {}).get('stop')
    return stamp


def backup_section(state: dict[str, Any] | None, applies: bool, policy: dict[str, Any],
                   now: dt.datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """From `pgbackrest info --output=json` (one stanza) and pg_stat_archiver."""
    state = state or {}
    findings: list[dict[str, Any]] = []
    sev = 'violation' if applies else 'info'
    stanza = state.get('stanza')
    info = state.get('info') or {}
    backups = [b for b in info.get('backup') or [] if not b.get('error')]
    last = backups[-1] if backups else None
    last_time = parse_time(_backup_time(last)) if last else None
    age_hours = round((now - last_time).total_seconds() / 3600.0, 1) if last_time else None
    status = info.get('status') or {}
    cipher = info.get('cipher')
    archiver = state.get('archiver') or {}
    failed_at = parse_time(archiver.get('last_failed_time'))
    archived_at = parse_time(archiver.get('last_archived_time'))
    failing = failed_at is not None and (archived_at is None or failed_at > archived_at)
    out = {
        'applies': applies, 'stanza': stanza, 'configured': bool(state.get('configured')),
        'status': status.get('message'), 'status_code': status.get('code'), 'cipher': cipher,
        'backups': len(backups),
        'last_backup': ({'label': last.get('label'), 'type': last.get('type'),
                         'stopped_at': last_time.isoformat() if last_time else None, 'age_hours': age_hours}
                        if last else None),
        'archiver': {'archived_count': archiver.get('archived_count'), 'failed_count': archiver.get('failed_count'),
                     'last_archived_wal': archiver.get('last_archived_wal'),
                     'last_archived_time': archived_at.isoformat() if archived_at else None,
                     'last_failed_wal': archiver.get('last_failed_wal'),
                     'last_failed_time': failed_at.isoformat() if failed_at else None,
                     'archive_mode': archiver.get('archive_mode'), 'failing': failing},
        'error': state.get('error'),
    }
    subject = 'backup'
    if not state.get('configured'):
        if applies:
            findings.append(finding('backup_not_configured', 'violation',
                                    'No pgBackRest configuration on this host (%s): role tdeops.pg_tde.pgbackrest.'
                                    % (state.get('error') or 'none found'), subject))
        return out, findings
    if state.get('error'):
        findings.append(finding('backup_info_failed', sev, 'pgbackrest info failed for stanza %s: %s'
                                % (stanza, state['error']), subject))
    elif not backups:
        findings.append(finding('backup_missing', sev, 'Stanza %s has no backup.' % stanza, subject))
    elif age_hours is not None and age_hours > policy['backup_max_age_hours']:
        findings.append(finding('backup_too_old', sev, 'The last backup of stanza %s (%s) is %.1f hours old; the policy '
                                'allows %s.' % (stanza, last.get('label'), float(age_hours), policy['backup_max_age_hours']),
                                subject))
    if backups and status and status.get('code') not in (0, None) and not state.get('error'):
        findings.append(finding('backup_status', sev, 'pgBackRest reports stanza %s: %s (code %s).'
                                % (stanza, status.get('message'), status.get('code')), subject))
    if cipher == 'none':
        findings.append(finding('backup_repository_plaintext', sev,
                                'The repository of stanza %s is not encrypted: archived WAL is decrypted by '
                                'pg_tde_archive_decrypt and lies there in plaintext.' % stanza, subject))
    if failing:
        findings.append(finding('archive_failing', sev, 'WAL archiving fails: the last attempt (%s, %s) failed after '
                                'the last success (%s).' % (archiver.get('last_failed_wal'), out['archiver']['last_failed_time'],
                                                            out['archiver']['last_archived_time'] or 'never'), subject))
    elif int(archiver.get('failed_count') or 0) > 0:
        findings.append(finding('archive_failures_seen', 'info', '%s archive failure(s) since the statistics were reset, '
                                'the last at %s; archiving works again since.'
                                % (archiver.get('failed_count'), out['archiver']['last_failed_time']), subject))
    return out, findings


# ---------------------------------------------------------------------------------------------
# one host, the fleet
# ---------------------------------------------------------------------------------------------

def evaluate_host(host: str, info: dict[str, Any] | None, facts: dict[str, Any] | None,
                  policy: dict[str, Any], now: dt.datetime, roles: dict[str, bool] | None = None,
                  error: str | None = None) -> dict[str, Any]:
    """The host section of the report. `info` is pg_tde_info's pg_tde (with sizes), `facts`
    what _report_host gathered, `roles` {'hardening': used, 'backup': used}."""
    roles = roles or {}
    facts = facts or {}
    report: dict[str, Any] = {'host': host, 'status': 'error', 'error': error, 'findings': [],
                              'server': None, 'wal_encryption': None, 'databases': [], 'coverage': None,
                              'keys': [], 'providers': [], 'hardening': None, 'backup': None}
    if error or info is None:
        report['error'] = error or 'no pg_tde_info result'
        report['findings'] = [finding('host_not_reported', 'violation', 'No report from this host: %s' % report['error'],
                                      host)]
        return report
    findings: list[dict[str, Any]] = []
    report['server'] = {'postgresql_version': facts.get('server_version'),
                        'pg_tde_version': info.get('version'), 'preloaded': bool(info.get('preloaded')),
                        'data_directory': facts.get('data_directory'), 'os_user': facts.get('os_user')}
    if not info.get('preloaded'):
        findings.append(finding('pg_tde_not_loaded', 'violation',
                                'pg_tde is not in shared_preload_libraries: nothing on this server can be encrypted.',
                                'server'))
    report['wal_encryption'], wal_f = wal_section(info, policy)
    report['databases'], cov_f = coverage_section(info, policy)
    report['coverage'] = sum_totals([d['totals'] for d in report['databases']])
    report['keys'], key_f, used = keys_section(info, policy, now)
    report['providers'], prov_f = providers_section(info, used, facts.get('kms') or {}, facts.get('files') or {},
                                                    facts.get('os_user'), policy)
    hard_applies = role_applies(policy['hardening'], roles.get('hardening', False))
    report['hardening'], hard_f = hardening_section(facts.get('hardening'), hard_applies)
    backup_applies = role_applies(policy['backup'], roles.get('backup', False))
    report['backup'], back_f = backup_section(facts.get('backup'), backup_applies, policy, now)
    findings += wal_f + cov_f + key_f + prov_f + hard_f + back_f
    order = {s: i for i, s in enumerate(SEVERITIES)}
    report['findings'] = sorted(findings, key=lambda f: order[f['severity']])
    report['status'] = status_of(report['findings'])
    return report


def count_findings(findings: list[dict[str, Any]]) -> dict[str, int]:
    return {s: sum(1 for f in findings if f['severity'] == s) for s in SEVERITIES}


def fleet_report(hosts: list[dict[str, Any]], policy: dict[str, Any], now: dt.datetime,
                 generator: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole document from the host sections (one per host of the play, unreachable hosts
    included as error sections)."""
    hosts = sorted(hosts, key=lambda h: h['host'])
    all_findings = [f for h in hosts for f in h['findings']]
    counts = count_findings(all_findings)
    statuses = [h['status'] for h in hosts]
    keys = [k for h in hosts for k in h.get('keys') or [] if k.get('age_days') is not None]
    wal = [h['wal_encryption'] for h in hosts if h.get('wal_encryption')]
    summary = {
        'status': worst(statuses),
        'hosts': len(hosts),
        'hosts_by_status': {s: statuses.count(s) for s in STATUS_ORDER},
        'findings': counts,
        'coverage': sum_totals([h['coverage'] for h in hosts if h.get('coverage')]),
        'wal_encryption_on': sum(1 for w in wal if w['on']),
        'wal_encryption_off': sum(1 for w in wal if not w['on']),
        'oldest_key_days': max((k['age_days'] for k in keys), default=None),
        'file_providers_in_use': sum(1 for h in hosts for p in h.get('providers') or []
                                     if p['type'] == 'file' and p['in_use']),
        'findings_by_id': {},
    }
    for f in all_findings:
        if f['severity'] != 'info':
            summary['findings_by_id'][f['id']] = summary['findings_by_id'].get(f['id'], 0) + 1
    return {
        'schema_version': SCHEMA_VERSION,
        'generated_at': now.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace('+00:00', 'Z'),
        'generator': generator or {'name': 'tdeops.pg_tde.report'},
        'policy': policy,
        'notes': [NOT_ENCRYPTABLE_NOTE],
        'summary': summary,
        'hosts': hosts,
    }


def gate(report: dict[str, Any], fail_on: str) -> list[str]:
    """Messages for the findings that make the play fail: fail_on none | violation | warning.
    Hosts without a report count as violations."""
    if fail_on == 'none':
        return []
    severities = ('violation',) if fail_on == 'violation' else ('violation', 'warning')
    return ['%s: [%s] %s' % (h['host'], f['id'], f['message'])
            for h in report['hosts'] for f in h['findings'] if f['severity'] in severities]
