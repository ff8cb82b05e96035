# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pg_tde SQL API as the modules use it: readiness checks, versions, key and
provider read-outs. Statements that change state belong to the module that owns
the state (providers, keys, tables) and go through PgSession.execute()."""
from __future__ import annotations

import json
import re
from typing import Any

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


def preloaded_libraries(session) -> list[str]:
    row = session.query_one("SELECT current_setting('shared_preload_libraries') AS v")
    return split_guc_list(row['v'] if row else '')


def is_preloaded(session) -> bool:
    return 'pg_tde' in preloaded_libraries(session)


def extension_version(session) -> str | None:
    row = session.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_tde'")
    return row['extversion'] if row else None


def tde_version_text(session) -> str | None:
    if extension_version(session) is None:
        return None
    row = session.query_one('SELECT pg_tde_version() AS v')
    return row['v'] if row else None


def server_version_num(session) -> int:
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


def key_info(session, kind: str) -> dict[str, Any] | None:
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


def parse_options(options: Any) -> dict[str, Any]:
    """Provider options arrive as json (already a dict with psycopg) or text."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return options
    return json.loads(options)


def list_providers(session, scope: str) -> list[dict[str, Any]]:
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
    elif isinstance(provider.get('id'), int):
        out['scope'] = 'global' if provider['id'] < 0 else 'database'
    return out


def find_provider(providers: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for provider in providers:
        if provider.get('name') == name:
            return provider
    return None


def has_vault_namespace_overload(session) -> bool:
    """pg_tde 2.1+ has the 6-argument vault_v2 functions (namespace); 2.0 does not."""
    row = session.query_one(
        "SELECT count(*) AS n FROM pg_proc WHERE proname = 'pg_tde_add_global_key_provider_vault_v2' "
        "AND pronargs = 6")
    return bool(row and row['n'])


# ---------------------------------------------------------------------------------------------
# Keys: comparison, who uses what, rotation planning
# ---------------------------------------------------------------------------------------------

def provider_scope_of(provider_id: Any) -> str | None:
    """Global provider ids are negative, database provider ids positive."""
    if not isinstance(provider_id, int):
        return None
    return 'global' if provider_id < 0 else 'database'


def same_key(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """pg_tde's own notion of 'the same principal key': same name and same provider id. A
    database whose key is the same as the default key follows the default key on rotation."""
    return (a is not None and b is not None and a.get('key_name') == b.get('key_name')
            and a.get('provider_id') == b.get('provider_id'))


def key_matches(info: dict[str, Any] | None, name: str, provider: str | None,
                provider_scope: str | None) -> bool:
    """Is the key in place (a key_info dict) the wanted key on the wanted provider?"""
    if info is None or info.get('key_name') != name:
        return False
    if provider is not None and info.get('provider_name') != provider:
        return False
    if provider_scope is not None and provider_scope_of(info.get('provider_id')) not in (None, provider_scope):
        return False
    return True


def try_key_info(session, kind: str) -> tuple[dict[str, Any] | None, str | None]:
    """key_info() that does not raise: (info, None) or (None, pg_tde's error text). Reading a
    key that is not cached makes pg_tde fetch it from the KMS, which can fail."""
    from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import pg_error_text
    try:
        info = key_info(session, kind)
    except Exception as exc:  # psycopg.Error; the text goes to the user
        return None, pg_error_text(exc)
    if info is not None:
        info['provider_scope'] = provider_scope_of(info.get('provider_id'))
    return info, None


def plan_key_targets(current: dict[str, Any], name: str, provider: str, provider_scope: str,
                     targets: list[str], databases: list[str]) -> list[dict[str, Any]]:
    """Which set_* calls make the wanted key the key in place, in the order they must run.

    current: {'server': info|None, 'default': info|None, 'databases': {db: info|None}}.
    Returns [{'target', 'database', 'old_key', 'new_key', 'followed_default'}]. The default
    key runs first: pg_tde moves every key that is the same as the old default key (same
    name and provider) to the new default key, so those need no call of their own; they are
    listed with followed_default=True and no statement.

    pg_tde 2.2 also makes a new default key the server key when no server key is set yet
    (observed: pg_tde_set_default_key_using_global_key_provider() on a cluster without a server
    key fills pg_tde_server_key_info() as well), so that server key is a follower too."""
    plan: list[dict[str, Any]] = []
    old_default = current.get('default')
    default_changes = 'default' in targets and not key_matches(old_default, name, provider, provider_scope)

    def follows(info: dict[str, Any] | None) -> bool:
        return default_changes and old_default is not None and same_key(info, old_default)

    if default_changes:
        plan.append({'target': 'default', 'database': None,
                     'old_key': old_default.get('key_name') if old_default else None,
                     'new_key': name, 'followed_default': False})
    server = current.get('server')
    if follows(server) or (default_changes and server is None):
        plan.append({'target': 'server', 'database': None,
                     'old_key': server.get('key_name') if server else None,
                     'new_key': name, 'followed_default': True})
    elif 'server' in targets and not key_matches(server, name, provider, provider_scope):
        plan.append({'target': 'server', 'database': None,
                     'old_key': server.get('key_name') if server else None,
                     'new_key': name, 'followed_default': False})
    db_infos = current.get('databases') or {}
    seen: set[str] = set()
    for db in list(databases) + sorted(db_infos):
        if db in seen:
            continue
        seen.add(db)
        info = db_infos.get(db)
        if follows(info):
            plan.append({'target': 'database', 'database': db, 'old_key': info.get('key_name'),
                         'new_key': name, 'followed_default': True})
        elif 'database' in targets and db in databases and not key_matches(info, name, provider, provider_scope):
            plan.append({'target': 'database', 'database': db,
                         'old_key': info.get('key_name') if info else None,
                         'new_key': name, 'followed_default': False})
    return plan


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


_ALREADY_EXISTS_RE = re.compile(r'cannot create key "(.*)" because it already exists')


def is_key_already_exists(text: str | None) -> bool:
    return bool(text and _ALREADY_EXISTS_RE.search(text))


def provider_users(provider_id: int, server: dict[str, Any] | None, default: dict[str, Any] | None,
                   databases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Who uses a provider, as pg_tde decides it before a delete: the server key, the default
    key and any database key whose provider id is this one. ['server key "k1"', ...]."""
    users: list[str] = []
    if server is not None and server.get('provider_id') == provider_id:
        users.append('server key "%s"' % server.get('key_name'))
    if default is not None and default.get('provider_id') == provider_id:
        users.append('default key "%s"' % default.get('key_name'))
    for db in sorted(databases):
        info = databases[db]
        if info is not None and info.get('provider_id') == provider_id:
            users.append('key "%s" of database "%s"' % (info.get('key_name'), db))
    return users


def same_id_keys_elsewhere(provider_id: Any, database: str,
                           databases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Keys of OTHER databases that pg_tde 2.2 checks when a database provider is changed.

    Database provider ids start at 1 in every database, and pg_tde's change check looks for
    keys by provider id in every database (observed: changing provider "pb" (id 1) of database
    b fails with 'key "ka" used by database "a" not found in modified key provider "pb"' when
    database a has key "ka" on its own provider with id 1). ['key "ka" of database "a"', ...]."""
    if not isinstance(provider_id, int) or provider_id <= 0:
        return []
    return ['key "%s" of database "%s"' % (info.get('key_name'), db)
            for db, info in sorted(databases.items())
            if db != database and info is not None and info.get('provider_id') == provider_id]


_OTHER_DB_KEY_RE = re.compile(r'key "(.*)" used by database "(.*)" not found in modified key provider "(.*)"')


def other_database_in_change_error(text: str | None, database: str) -> tuple[str, str] | None:
    """(key, database) when pg_tde refused a change of a provider because of a key of a database
    other than `database` (the provider id collision above), else None."""
    m = _OTHER_DB_KEY_RE.search(text or '')
    if not m or m.group(2) == database:
        return None
    return m.group(1), m.group(2)


def databases_on_default(default: dict[str, Any] | None,
                         databases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Databases whose key is the default key (same name and provider)."""
    return sorted(db for db, info in databases.items() if same_key(info, default))


# ---------------------------------------------------------------------------------------------
# pg_tde's error texts -> what they mean and what to do (the text itself is always passed on)
# ---------------------------------------------------------------------------------------------

_EXPLANATIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r'BIO_do_connect failed'),
     'pg_tde could not open a TLS connection to the KMIP server. pg_tde uses this same text for '
     'three causes: the KMS is down or not reachable from the database host, the host or port is '
     'wrong, or the KMS does not trust the client certificate (signed by a CA it does not accept).'),
    (re.compile(r'Loading the client certificate failed'),
     'PostgreSQL could not load the client certificate (kmip_cert): the file is missing, not '
     'readable by the PostgreSQL OS user, or not a PEM certificate.'),
    (re.compile(r'Loading the client key failed'),
     'PostgreSQL could not load the client key (kmip_key): the file is missing, not readable by '
     'the PostgreSQL OS user, not a PEM key, or it does not match the client certificate.'),
    (re.compile(r'Loading the CA certificate failed'),
     'PostgreSQL could not load the CA certificate (kmip_ca): the file is missing, not readable by '
     'the PostgreSQL OS user, or not a PEM certificate.'),
    (re.compile(r'HTTP\(S\) request to keyring provider'),
     'pg_tde could not talk to Vault/OpenBao: check vault_url from the database host, that '
     'vault_ca_path signs the server certificate, and that the token in vault_token_path is valid.'),
    (re.compile(r'cannot delete provider which is currently in use'),
     'A principal key (server, default or a database key) still uses this provider. Rotate those '
     'keys to another provider (tdeops.pg_tde.pg_tde_key) before deleting it.'),
    (re.compile(r'(used as server key|used by database|does not match existing)'),
     'pg_tde changes a provider only when every key in use is still fetchable, and identical, '
     'through the new settings. The new settings reach a different KMS, identity or keyring that '
     'does not hold those keys: point them at the KMS that holds the keys, or rotate the keys to '
     'another provider first.'),
    (re.compile(r'key provider "(.*)" does not exists'),
     'The key provider does not exist in this scope: add it with tdeops.pg_tde.pg_tde_provider '
     '(check provider_scope: global providers and database providers are separate).'),
    (re.compile(r'key "(.*)" does not exist'),
     'The key does not exist on the provider: create it (pg_tde_key create: true) or check the '
     'key name.'),
    (re.compile(r'not found in key provider'),
     'pg_tde could not fetch the key from its provider: the KMS is unreachable, or the key was '
     'deleted/destroyed there, or the provider now points elsewhere.'),
    (re.compile(r'principal key not configured for'),
     'No principal key is set for this target: set one with tdeops.pg_tde.pg_tde_key.'),
    (re.compile(r'principal key not configured'),
     'No principal key is set where pg_tde needs one. At server start with pg_tde.wal_encrypt = on '
     '(FATAL) it is the server key: set it (tdeops.pg_tde.pg_tde_key, targets: [server]) before WAL '
     'encryption is turned on, or turn pg_tde.wal_encrypt off to start. For an encrypted table it is '
     'the key of the database or the default key (targets: [database] or [default]).'),
    (re.compile(r'cannot delete (default )?principal key'),
     'pg_tde keeps a key that encrypted data still needs: the default key while a database that uses it '
     'has encrypted tables or the WAL uses it as the server key, a database key while the database has '
     'encrypted tables and no default key to fall back to (the HINT/DETAIL names which). Give those '
     'databases a key of their own or a new default key first (tdeops.pg_tde.pg_tde_key).'),
    (re.compile(r'default principal key is not set|principal key does not exists for the database'),
     'There is no such key to delete (pg_tde_key state: absent finds nothing in place).'),
    (re.compile(r'only the tde_heap access method is allowed'),
     'pg_tde.enforce_encryption is on (server, database or role): only tde_heap tables may be created or '
     'converted. Create tables USING tde_heap, or set default_table_access_method = tde_heap so that a '
     'plain CREATE TABLE is encrypted; a deliberate plaintext table needs enforcement off for that '
     'session or database (superuser).'),
    (re.compile(r'Failed to open keyring file'),
     'The PostgreSQL OS user cannot open the file keyring (file_path): its directory must exist and be '
     'writable, and the file readable and writable, for that user. A failed add can leave an empty '
     'keyring file behind.'),
    (re.compile(r'Invalid provider type'),
     'The generic pg_tde_add/change_*_key_provider() form knows the types file, vault-v2 and kmip only '
     '(pg_tde_provider type: file, vault_v2, kmip).'),
    (re.compile(r'cannot create key "(.*)" because it already exists'),
     'A key of this name is already on the provider: set it (tdeops.pg_tde.pg_tde_key treats it as '
     'present), or choose a new name for a rotation. On a KMIP server names must be unique.'),
    (re.compile(r'already exists\.'),
     'A provider of this name already exists in this scope.'),
    (re.compile(r'must be superuser'),
     'Provider changes and operations on global key providers need a superuser: set login_user.'),
    (re.compile(r'usage of global key providers is disabled'),
     'pg_tde.inherit_global_providers is off: global providers cannot be used in databases.'),
    (re.compile(r'can only be loaded at server startup'),
     'pg_tde is not in shared_preload_libraries: add it and restart PostgreSQL.'),
    (re.compile(r'missing in the keyring options'),
     'A required provider option is empty.'),
]


def explain_tde_error(text: str | None) -> str | None:
    """What a pg_tde error means and what to do, or None when there is nothing to add."""
    if not text:
        return None
    for pattern, explanation in _EXPLANATIONS:
        if pattern.search(text):
            return explanation
    return None


def tde_failure_message(action: str, text: str, extra: str | None = None) -> str:
    """'<action> failed: <pg_tde text>. <explanation> <extra>'."""
    msg = '%s failed: %s' % (action, text.rstrip('.') + '.')
    explanation = explain_tde_error(text)
    if explanation:
        msg += ' ' + explanation
    if extra:
        msg += ' ' + extra
    return msg


# ---------------------------------------------------------------------------------------------
# Databases and files on the database host
# ---------------------------------------------------------------------------------------------

def connectable_databases(session) -> list[str]:
    """Every database that allows connections, template0 excluded, in name order."""
    rows = session.query(
        "SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template0' ORDER BY datname")
    return [r['datname'] for r in rows]


def has_extension(session) -> bool:
    return extension_version(session) is not None


def _allowed(st, uid: int, gids: list[int], owner_bit: int, group_bit: int, other_bit: int) -> bool:
    """The kernel's owner / group / other rule (root may do anything)."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid in gids:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def _dir_walk_problem(directory: str, uid: int, gids: list[int], st_fn) -> str | None:
    """Every directory from / down to directory must exist and be searchable."""
    import os
    import stat as stat_mod
    current = '/'
    for part in [p for p in directory.split('/') if p]:
        current = os.path.join(current, part)
        try:
            st = st_fn(current)
        except FileNotFoundError:
            return 'does not exist (directory %s is missing)' % current
        except OSError as exc:
            return 'cannot be checked: %s' % exc
        if not stat_mod.S_ISDIR(st.st_mode):
            return 'does not exist (%s is not a directory)' % current
        if not _allowed(st, uid, gids, stat_mod.S_IXUSR, stat_mod.S_IXGRP, stat_mod.S_IXOTH):
            return 'is not reachable: directory %s is not searchable for the user' % current
    return None


def path_access_problem(path: str | None, uid: int, gids: list[int], need_write: bool = False,
                        stat_func=None) -> str | None:
    """Why the OS user uid (with groups gids) cannot read (and write) path, or None when it can.

    Walks the directories (search permission) and checks the file's mode bits the way the
    kernel does for owner / group / other (root may do anything, but the file must exist).
    ACLs are not evaluated. Problems of a missing file start with 'does not exist'."""
    import os
    import stat as stat_mod
    if not path:
        return 'is empty'
    if not os.path.isabs(path):
        return 'is not an absolute path'
    st_fn = stat_func or os.stat
    problem = _dir_walk_problem(os.path.dirname(path), uid, gids, st_fn)
    if problem:
        return problem
    try:
        st = st_fn(path)
    except FileNotFoundError:
        return 'does not exist'
    except OSError as exc:
        return 'cannot be checked: %s' % exc
    if stat_mod.S_ISDIR(st.st_mode):
        return 'is a directory, not a file'
    if not _allowed(st, uid, gids, stat_mod.S_IRUSR, stat_mod.S_IRGRP, stat_mod.S_IROTH):
        return 'is not readable for the user (mode %s, owner uid %d)' % (oct(st.st_mode & 0o777), st.st_uid)
    if need_write and not _allowed(st, uid, gids, stat_mod.S_IWUSR, stat_mod.S_IWGRP, stat_mod.S_IWOTH):
        return 'is not writable for the user (mode %s, owner uid %d)' % (oct(st.st_mode & 0o777), st.st_uid)
    return None


def dir_write_problem(path: str, uid: int, gids: list[int], stat_func=None) -> str | None:
    """For a file that pg_tde will create: its directory must exist, be searchable and writable."""
    import os
    import stat as stat_mod
    st_fn = stat_func or os.stat
    directory = os.path.dirname(path) or '/'
    problem = _dir_walk_problem(directory, uid, gids, st_fn)
    if problem:
        return problem
    st = st_fn(directory)
    if not _allowed(st, uid, gids, stat_mod.S_IWUSR, stat_mod.S_IWGRP, stat_mod.S_IWOTH):
        return 'cannot be created: directory %s is not writable for the user' % directory
    return None


def server_os_identity(session) -> dict[str, Any] | None:
    """The OS user that runs PostgreSQL, from the owner of its data directory, when the data
    directory is on this host: {'user', 'uid', 'gids', 'data_directory'}; None otherwise (the
    module does not run on the database host, or the role may not read data_directory)."""
    import os
    import pwd
    try:
        row = session.query_one("SELECT current_setting('data_directory') AS d")
    except Exception:
        return None
    datadir = row['d'] if row else None
    if not datadir or not os.path.isdir(datadir):
        return None
    uid = os.stat(datadir).st_uid
    try:
        pw = pwd.getpwuid(uid)
        gids = sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid)))
        name = pw.pw_name
    except KeyError:
        gids = [os.stat(datadir).st_gid]
        name = str(uid)
    return {'user': name, 'uid': uid, 'gids': gids, 'data_directory': datadir}


def kv_mount_problem(mount: str, answer: dict[str, Any]) -> str | None:
    """From Vault's answer to GET /v1/sys/mounts/<mount>: why the mount is not a KV version 2
    secrets engine, or None when it is."""
    data = answer.get('data') if isinstance(answer.get('data'), dict) else answer
    mtype = data.get('type')
    options = data.get('options') or {}
    version = str(options.get('version') or '1')
    if mtype not in ('kv', 'generic'):
        return 'mount "%s" is a "%s" secrets engine, not KV version 2' % (mount, mtype)
    if version != '2':
        return 'mount "%s" is KV version %s; pg_tde needs KV version 2' % (mount, version)
    return None
