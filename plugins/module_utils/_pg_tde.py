# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pg_tde SQL API as the modules use it: readiness checks, versions, limits, providers
(options, statements, listing), principal keys (read, verify, set, create) and the databases
that can hold a key. Statements that change state are built here and run by the module that
owns the state through PgSession.execute(). Decisions about keys are in _keys.py, error texts
in _errors.py, files in _files.py, Vault in _vault.py."""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import pg_error_text

if TYPE_CHECKING:
    from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import PgSession

# pg_tde's limits (facts, section 2): provider name < 128 bytes, options JSON < 1024 bytes,
# key name <= 255 bytes.
PROVIDER_NAME_MAX_BYTES = 127
PROVIDER_OPTIONS_MAX_BYTES = 1023
KEY_NAME_MAX_BYTES = 255

# The three kinds of principal key and the pg_tde functions that read and verify each.
KEY_KINDS = ('server', 'default', 'database')
KEY_INFO_FUNCTION = {
    'server': 'pg_tde_server_key_info',
    'default': 'pg_tde_default_key_info',
    'database': 'pg_tde_key_info',
}
VERIFY_FUNCTION = {
    'server': 'pg_tde_verify_server_key',
    'default': 'pg_tde_verify_default_key',
    'database': 'pg_tde_verify_key',
}
SCOPES = ('global', 'database')

_VERSION_RE = re.compile(r'pg_tde\s+(\d+)\.(\d+)(?:\.(\d+))?')


def parse_tde_version(text: str | None) -> tuple[int, int, int] | None:
    """'pg_tde 2.2.0' -> (2, 2, 0); None when the text names no version."""
    if not text:
        return None
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def split_guc_list(value: str | None) -> list[str]:
    """Split a list setting such as shared_preload_libraries (quotes and blanks removed)."""
    if not value:
        return []
    return [item.strip().strip('"').strip() for item in value.split(',') if item.strip().strip('"').strip()]


def preloaded_libraries(session: PgSession) -> list[str]:
    row = session.query_one("SELECT current_setting('shared_preload_libraries') AS v")
    return split_guc_list(row['v'] if row else '')


def is_preloaded(session: PgSession) -> bool:
    return 'pg_tde' in preloaded_libraries(session)


def extension_version(session: PgSession) -> str | None:
    row = session.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_tde'")
    return row['extversion'] if row else None


def tde_version_text(session: PgSession) -> str | None:
    if extension_version(session) is None:
        return None
    row = session.query_one('SELECT pg_tde_version() AS v')
    return row['v'] if row else None


def server_version_num(session: PgSession) -> int:
    row = session.query_one("SELECT current_setting('server_version_num')::int AS v")
    return int(row['v'])


def not_preloaded_message(libraries: list[str]) -> str:
    return ('pg_tde is not loaded: shared_preload_libraries is "%s". Add pg_tde to '
            'shared_preload_libraries and restart PostgreSQL (the tdeops.pg_tde.configure role '
            'merges it and restarts safely).' % ','.join(libraries))


def no_extension_message(database: str) -> str:
    return ('The pg_tde extension does not exist in database "%s". Run CREATE EXTENSION pg_tde '
            'there as a superuser (configure role: configure_extension_databases).' % database)


def require_pg_tde(module, session) -> dict[str, Any]:
    """Fail with what to do when pg_tde is not usable in the session's database;
    return {'version': (2, 2, 0), 'version_text': 'pg_tde 2.2.0'} otherwise."""
    libraries = preloaded_libraries(session)
    if 'pg_tde' not in libraries:
        module.fail_json(msg=not_preloaded_message(libraries))
    text = tde_version_text(session)
    if text is None:
        module.fail_json(msg=no_extension_message(session.database))
    return {'version': parse_tde_version(text), 'version_text': text}


def parse_options(options: Any) -> dict[str, Any]:
    """Provider options arrive as json (already a dict with psycopg) or text."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return options
    return json.loads(options)


def list_providers(session: PgSession, scope: str) -> list[dict[str, Any]]:
    """Providers of one scope: [{'id', 'name', 'type', 'options': dict}], ordered by id."""
    if scope not in SCOPES:
        raise ValueError('scope must be one of %s' % ', '.join(SCOPES))
    rows = session.query(
        'SELECT id, name, type, options FROM pg_tde_list_all_%s_key_providers() ORDER BY abs(id)' % scope)
    return [{'id': r['id'], 'name': r['name'], 'type': r['type'], 'options': parse_options(r['options'])}
            for r in rows]


# ---------------------------------------------------------------------------------------------
# Providers: option normalisation, comparison and the typed SQL functions
# ---------------------------------------------------------------------------------------------

# Module type name -> the type name pg_tde uses in list_all and the generic functions.
PROVIDER_TYPES = {'kmip': 'kmip', 'vault_v2': 'vault-v2', 'file': 'file'}

# pg_tde's JSON option keys per type (observed/functions.txt and the 2.1 vault overload).
PROVIDER_OPTION_KEYS = {
    'kmip': ('host', 'port', 'certPath', 'keyPath', 'caPath'),
    'vault_v2': ('url', 'mountPath', 'tokenPath', 'caPath', 'namespace'),
    'file': ('path',),
}

# Option keys that name files PostgreSQL reads (shown as paths, never their content).
PROVIDER_FILE_KEYS = {
    'kmip': ('certPath', 'keyPath', 'caPath'),
    'vault_v2': ('tokenPath', 'caPath'),
    'file': ('path',),
}

# Module option names for each pg_tde option key (for messages that name what to fix).
OPTION_PARAM = {
    'kmip': {'host': 'kmip_host', 'port': 'kmip_port', 'certPath': 'kmip_cert', 'keyPath': 'kmip_key',
             'caPath': 'kmip_ca'},
    'vault_v2': {'url': 'vault_url', 'mountPath': 'vault_mount_path', 'tokenPath': 'vault_token_path',
                 'caPath': 'vault_ca_path', 'namespace': 'vault_namespace'},
    'file': {'path': 'file_path'},
}

_SECRET_KEY_RE = re.compile(r'(token|secret|password|passwd|credential|private)', re.I)
REDACTED = '********'


def normalize_provider_type(value: str | None) -> str | None:
    """'vault-v2' / 'vault_v2' / 'VAULT-V2' -> 'vault_v2'; None stays None."""
    if value is None:
        return None
    v = str(value).strip().lower().replace('-', '_')
    return v


def normalize_options(ptype: str | None, options: Any) -> dict[str, Any]:
    """Provider options as comparable data: parsed JSON, null values dropped, the KMIP port an
    int. Key order does not matter (dicts compare unordered)."""
    opts = parse_options(options)
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None:
            continue
        if key == 'port':
            try:
                value = int(value)
            except (TypeError, ValueError):
                pass
        out[key] = value
    return out


def desired_provider_options(params: dict[str, Any]) -> dict[str, Any]:
    """The pg_tde option JSON (keys as in list_all) that the module options describe."""
    ptype = params['type']
    if ptype == 'kmip':
        opts: dict[str, Any] = {
            'host': params.get('kmip_host'), 'port': params.get('kmip_port'),
            'certPath': params.get('kmip_cert'), 'keyPath': params.get('kmip_key'),
            'caPath': params.get('kmip_ca'),
        }
    elif ptype == 'vault_v2':
        opts = {
            'url': params.get('vault_url'), 'mountPath': params.get('vault_mount_path'),
            'tokenPath': params.get('vault_token_path'), 'caPath': params.get('vault_ca_path'),
            'namespace': params.get('vault_namespace'),
        }
    elif ptype == 'file':
        opts = {'path': params.get('file_path')}
    else:
        raise ValueError('unknown provider type %r' % ptype)
    return normalize_options(ptype, opts)


def provider_differences(current: dict[str, Any] | None, desired_type: str,
                         desired_options: dict[str, Any]) -> list[str]:
    """What differs between a listed provider and the wanted one: ['type', 'host', ...].
    Empty when they are equal; ['missing'] when there is no such provider."""
    if current is None:
        return ['missing']
    diffs: list[str] = []
    cur_type = normalize_provider_type(current.get('type'))
    if cur_type != desired_type:
        diffs.append('type')
    cur_opts = normalize_options(cur_type, current.get('options'))
    for key in sorted(set(cur_opts) | set(desired_options)):
        if cur_opts.get(key) != desired_options.get(key):
            diffs.append(key)
    return diffs


def provider_action(current: dict[str, Any] | None, desired_type: str,
                    desired_options: dict[str, Any], state: str = 'present') -> str:
    """'add', 'change', 'delete' or 'none'."""
    if state == 'absent':
        return 'delete' if current is not None else 'none'
    diffs = provider_differences(current, desired_type, desired_options)
    if diffs == ['missing']:
        return 'add'
    return 'change' if diffs else 'none'


def provider_statement(action: str, scope: str, ptype: str, name: str,
                       options: dict[str, Any]) -> tuple[str, list[Any]]:
    """The typed pg_tde call for add/change/delete: (sql with %s placeholders, params).

    The 6-argument vault_v2 overload (pg_tde 2.1+) is used only when a namespace is given,
    so the module works on pg_tde 2.0 too."""
    if scope not in SCOPES:
        raise ValueError('scope must be one of %s' % ', '.join(SCOPES))
    if action == 'delete':
        return 'SELECT pg_tde_delete_%s_key_provider(%%s::text)' % scope, [name]
    if action not in ('add', 'change'):
        raise ValueError('action must be add, change or delete')
    func = 'pg_tde_%s_%s_key_provider_%s' % (action, scope, ptype)
    if ptype == 'kmip':
        args = '%s::text, %s::text, %s::int, %s::text, %s::text, %s::text'
        params = [name, options.get('host'), options.get('port'), options.get('certPath'),
                  options.get('keyPath'), options.get('caPath')]
    elif ptype == 'vault_v2':
        args = '%s::text, %s::text, %s::text, %s::text, %s::text'
        params = [name, options.get('url'), options.get('mountPath'), options.get('tokenPath'),
                  options.get('caPath')]
        if options.get('namespace'):
            args += ', %s::text'
            params.append(options['namespace'])
    elif ptype == 'file':
        args = '%s::text, %s::text'
        params = [name, options.get('path')]
    else:
        raise ValueError('unknown provider type %r' % ptype)
    return 'SELECT %s(%s)' % (func, args), params


def redact_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Provider options safe to show: paths, URLs, hosts and ports stay; any value under a
    key that looks like a secret (a token or password given inline, for example through the
    generic JSON form) is replaced. Keys ending in 'Path'/'path' name files and stay."""
    out: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key.lower().endswith('path') or not _SECRET_KEY_RE.search(key):
            out[key] = value
        else:
            out[key] = REDACTED
    return out


def public_provider(provider: dict[str, Any] | None, scope: str | None = None) -> dict[str, Any] | None:
    """A provider as the modules return it: {id, name, type, scope, options} with the type in the
    modules' spelling (vault_v2) and redacted options."""
    if provider is None:
        return None
    out = {
        'id': provider.get('id'),
        'name': provider.get('name'),
        'type': normalize_provider_type(provider.get('type')),
        'options': redact_options(normalize_options(provider.get('type'), provider.get('options'))),
    }
    if scope is not None:
        out['scope'] = scope
    elif provider_scope_of(provider.get('id')) is not None:
        out['scope'] = provider_scope_of(provider.get('id'))
    return out


def find_provider(providers: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for provider in providers:
        if provider.get('name') == name:
            return provider
    return None


def has_vault_namespace_overload(session: PgSession) -> bool:
    """pg_tde 2.1+ has the 6-argument vault_v2 functions (namespace); 2.0 does not."""
    row = session.query_one(
        "SELECT count(*) AS n FROM pg_proc WHERE proname = 'pg_tde_add_global_key_provider_vault_v2' "
        "AND pronargs = 6")
    return bool(row and row['n'])


def provider_scope_of(provider_id: Any) -> str | None:
    """Global provider ids are negative, database provider ids positive."""
    if not isinstance(provider_id, int):
        return None
    return 'global' if provider_id < 0 else 'database'


# ---------------------------------------------------------------------------------------------
# Principal keys: read, verify, set, create
# ---------------------------------------------------------------------------------------------

def key_info(session: PgSession, kind: str) -> dict[str, Any] | None:
    """The principal key of kind server/default/database, or None when none is set."""
    func = KEY_INFO_FUNCTION[kind]
    row = session.query_one(
        'SELECT key_name, provider_name, provider_id, key_creation_time FROM %s()' % func)
    if not row or row.get('key_name') is None:
        return None
    created = row.get('key_creation_time')
    return {
        'key_name': row['key_name'],
        'provider_name': row['provider_name'],
        'provider_id': row['provider_id'],
        'key_creation_time': created.isoformat() if hasattr(created, 'isoformat') else created,
    }


def try_key_info(session: PgSession, kind: str) -> tuple[dict[str, Any] | None, str | None]:
    """key_info() that does not raise: (info, None) or (None, pg_tde's error text). Reading a
    key that is not cached makes pg_tde fetch it from the KMS, which can fail."""
    try:
        info = key_info(session, kind)
    except Exception as exc:  # psycopg.Error; the text goes to the user
        return None, pg_error_text(exc)
    if info is not None:
        info['provider_scope'] = provider_scope_of(info.get('provider_id'))
    return info, None


def verify_key(session: PgSession, kind: str) -> None:
    """Fetch the key of kind server/default/database back through its provider; raises
    pg_tde's error when that fails (the verify functions return nothing)."""
    session.query('SELECT %s()' % VERIFY_FUNCTION[kind])


def set_key_statement(target: str, provider_scope: str) -> str:
    """The set_* function for a target; server and default keys need a global provider."""
    if target == 'server':
        return 'SELECT pg_tde_set_server_key_using_global_key_provider(%s::text, %s::text)'
    if target == 'default':
        return 'SELECT pg_tde_set_default_key_using_global_key_provider(%s::text, %s::text)'
    if target == 'database':
        return 'SELECT pg_tde_set_key_using_%s_key_provider(%%s::text, %%s::text)' % provider_scope
    raise ValueError('unknown key target %r' % target)


def create_key_statement(provider_scope: str) -> str:
    if provider_scope not in SCOPES:
        raise ValueError('scope must be one of %s' % ', '.join(SCOPES))
    return 'SELECT pg_tde_create_key_using_%s_key_provider(%%s::text, %%s::text)' % provider_scope


# ---------------------------------------------------------------------------------------------
# Databases
# ---------------------------------------------------------------------------------------------

def connectable_databases(session: PgSession) -> list[str]:
    """Every database that can hold a principal key: all that allow connections, in name order.

    The rule is datallowconn, not the name. Keys are per database and template1 is a database
    like any other for pg_tde (observed, pg_tde 2.2.0): it can carry the extension, a key of its
    own and encrypted tables, and CREATE DATABASE (WAL_LOG) re-encrypts those tables for the new
    database, so its key must be read, reported and protected like the others. A new database
    does not inherit template1's key. template0 is left out because it never allows connections
    (datallowconn = false): no extension or key can be set there."""
    rows = session.query("SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
    return [r['datname'] for r in rows]


def has_extension(session: PgSession) -> bool:
    return extension_version(session) is not None
