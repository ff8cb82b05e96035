# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cross-checks of a pg_tde configuration (providers, principal keys, extension databases)
that an argument spec cannot make, as pure functions: config_problems(config, server) returns
every problem, each naming the variable path the user set (configure_providers[0].type), what is
wrong and the fix. `server` is what the module read from the running server (read-only); a part
it could not read is None with the reason, and the checks that need it say so instead of
guessing. Used by tdeops.pg_tde.pg_tde_config_check, which the configure role runs first.

The roles declare their provider and database-key lists with `elements: raw` so that these checks,
not the argument-spec engine (which names no index), answer for every entry: the choices, required
options and types of the roles' nested options are checked here too."""
from __future__ import annotations

import difflib
import json
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    KEY_NAME_MAX_BYTES,
    PROVIDER_NAME_MAX_BYTES,
    PROVIDER_OPTIONS_MAX_BYTES,
    desired_provider_options,
)

PROVIDER_TYPE_CHOICES = ('kmip', 'vault_v2', 'file')
# Options each provider type needs, and the ones it accepts besides (pg_tde_provider's options).
PROVIDER_REQUIRED = {
    'kmip': ('kmip_host', 'kmip_cert', 'kmip_key', 'kmip_ca'),
    'vault_v2': ('vault_url', 'vault_token_path'),
    'file': ('file_path',),
}
PROVIDER_OPTIONAL = {
    'kmip': ('kmip_port',),
    'vault_v2': ('vault_mount_path', 'vault_ca_path', 'vault_namespace'),
    'file': (),
}
PROVIDER_COMMON = ('name', 'type', 'scope', 'database', 'state')
SERVER_KEY_OPTIONS = ('name', 'provider', 'create', 'provider_scope')
DATABASE_KEY_OPTIONS = ('name', 'provider', 'provider_scope', 'databases', 'create')
SCOPES = ('global', 'database')
PROVIDER_STATES = ('present', 'absent')
# Options of a provider that hold one value (a string or path); kmip_port is an integer.
PROVIDER_SCALARS = tuple(o for o in PROVIDER_COMMON + sum(PROVIDER_REQUIRED.values(), ()) +
                         sum(PROVIDER_OPTIONAL.values(), ()) if o != 'kmip_port')


class Problem:
    """One refusal: the variable path, what is wrong, what to do."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix

    def as_dict(self) -> dict[str, str]:
        return {'path': self.path, 'problem': self.problem, 'fix': self.fix}

    def __str__(self) -> str:
        return '%s: %s Fix: %s' % (self.path, self.problem, self.fix)

    def __repr__(self) -> str:
        return 'Problem(%r)' % str(self)


def _bytes(value: Any) -> int:
    return len(str(value).encode('utf-8'))


def _closest(value: Any, choices: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return ' (did you mean "%s"?)' % match[0] if match else ''


def _one_of(value: Any, choices: tuple[str, ...]) -> str:
    return 'set it to one of %s%s.' % (', '.join(choices), _closest(value, choices))


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_value(value: Any) -> str:
    """'is "x".', or 'is empty.' for None and '' (a YAML key without a value)."""
    return 'is empty.' if _is_blank(value) else 'is "%s".' % value


def _not_scalar(value: Any) -> str:
    """'a list' / 'a dictionary' when `value` is not one value, else ''."""
    if isinstance(value, dict):
        return 'a dictionary'
    if isinstance(value, (list, tuple, set)):
        return 'a list'
    return ''


def _port(value: Any) -> int | None:
    """The port as Ansible's int type reads it (an int, digits, a whole float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _is_boolean(value: Any) -> bool:
    """What Ansible's bool type accepts: true/false, yes/no, on/off, 1/0, ..."""
    if isinstance(value, bool):
        return True
    if not isinstance(value, (str, int, float)):
        return False
    try:
        boolean(value, strict=True)
    except TypeError:
        return False
    return True


def provider_value_problems(values: dict[str, Any], ptype: str | None) -> list[tuple[str, str, str]]:
    """(option, problem, fix) for the values of one provider, with pg_tde_provider's option names
    (absent or None = unset, defaults applied here): the name limit, and for `ptype` the KMIP
    port, the Vault URL and mount, and the size of the options pg_tde stores. option '' is the
    provider as a whole. Shared by pg_tde_provider and pg_tde_config_check."""
    out: list[tuple[str, str, str]] = []
    name = values.get('name')
    if name is not None and _bytes(name) > PROVIDER_NAME_MAX_BYTES:
        out.append(('name', 'is %d bytes long; pg_tde allows provider names shorter than 128 bytes.' % _bytes(name),
                    'use a name of at most %d bytes.' % PROVIDER_NAME_MAX_BYTES))
    if ptype not in PROVIDER_TYPE_CHOICES:
        return out
    params = dict(values, type=ptype)
    if params.get('kmip_port') is None:
        params['kmip_port'] = 5696
    params['vault_mount_path'] = str(params.get('vault_mount_path') or 'secret').strip('/')
    if ptype == 'kmip':
        port = _port(params['kmip_port'])
        if port is None or not 0 < port < 65536:
            out.append(('kmip_port', 'is "%s".' % params['kmip_port'],
                        'use a port number between 1 and 65535 (default 5696).'))
            params['kmip_port'] = 5696
    if ptype == 'vault_v2':
        url = params.get('vault_url')
        if not _is_blank(url) and not str(url).startswith(('http://', 'https://')):
            out.append(('vault_url', 'is "%s" and does not start with https:// or http://.' % url,
                        'write the full URL, for example https://vault.example.com:8200.'))
        mount = params['vault_mount_path']
        if values.get('vault_mount_path') is not None and not str(values['vault_mount_path']).strip('/'):
            out.append(('vault_mount_path', 'is empty.', 'set the bare KV mount, for example secret (the default).'))
        elif mount == 'data' or mount.endswith('/data') or '/data/' in mount:
            out.append(('vault_mount_path', 'is the API path "%s", not the KV mount.' % mount,
                        'use the bare KV mount (a KV version 2 engine), for example secret (not secret/data).'))
    size = _bytes(json.dumps(desired_provider_options(params)))
    if size > PROVIDER_OPTIONS_MAX_BYTES:
        out.append(('', "its options are %d bytes as JSON, over pg_tde's 1024-byte limit." % size,
                    'use shorter paths, host names or URLs.'))
    return out


class _Checker:
    def __init__(self, config: dict[str, Any], server: dict[str, Any], prefix: str, user_var: str) -> None:
        self.cfg = config
        self.user_var = user_var
        self.server = server
        self.prefix = prefix
        self.problems: list[Problem] = []
        self.ext_dbs = list(config.get('extension_databases') or [])
        if config.get('extension_template1'):
            self.ext_dbs.append('template1')

    def var(self, name: str) -> str:
        return self.prefix + name

    def add(self, path: str, problem: str, fix: str) -> None:
        self.problems.append(Problem(path, problem, fix))

    # --- what the server has (None: not known, with the reason) ------------------------------

    def server_databases(self) -> list[str] | None:
        return self.server.get('databases')

    def extension_in(self, db: str) -> bool | None:
        return (self.server.get('extension') or {}).get(db)

    def server_providers(self, where: str) -> dict[str, str] | None:
        """Providers on the server in 'global' or database `where`: {name: type}; None if unknown."""
        return (self.server.get('providers') or {}).get(where)

    def why_unknown(self, what: str) -> str:
        return (self.server.get('why') or {}).get(what) or self.server.get('unreachable') or 'not read'

    # --- checks -----------------------------------------------------------------------------

    def check_names(self) -> None:
        login_db = self.cfg.get('login_db')
        if login_db and login_db not in self.ext_dbs:
            self.add(self.var('login_db'),
                     'database "%s" is not one of %s (%s): global providers, the server key and the default '
                     'key are managed through it, so it needs the extension.'
                     % (login_db, self.var('extension_databases'), ', '.join(self.ext_dbs) or 'empty'),
                     'add "%s" to %s, or set %s to one of them.'
                     % (login_db, self.var('extension_databases'), self.var('login_db')))
        databases = self.server_databases()
        if databases is None:
            return
        for i, db in enumerate(self.cfg.get('extension_databases') or []):
            if db not in databases:
                self.add('%s[%d]' % (self.var('extension_databases'), i),
                         'database "%s" does not exist on the server (or does not allow connections).' % db,
                         'create it first (community.postgresql.postgresql_db) or remove it from %s.'
                         % self.var('extension_databases'))

    def check_providers(self) -> None:
        seen: dict[tuple[str, str], int] = {}
        for i, prov in enumerate(self.cfg.get('providers') or []):
            path = '%s[%d]' % (self.var('providers'), i)
            if not isinstance(prov, dict):
                self.add(path, 'must be a dictionary (name, type, ...), got %r.' % (prov,),
                         'write the provider as a dictionary with the options of tdeops.pg_tde.pg_tde_provider.')
                continue
            if not self._scalars(path, prov, PROVIDER_SCALARS):
                continue
            name = prov.get('name')
            if _is_blank(name):
                self.add(path + '.name', 'is missing: every provider needs a name.', 'add name: <provider name>.')
            else:
                for option, problem, fix in provider_value_problems({'name': name}, None):
                    self.add('%s.%s' % (path, option), problem, fix)
            scope = prov.get('scope', 'global')
            if scope not in SCOPES:
                self.add(path + '.scope', _is_value(scope), _one_of(scope, SCOPES))
                scope = None
            where = 'global'
            if scope == 'database':
                where = prov.get('database')
                if _is_blank(where):
                    self.add(path + '.database', 'is missing: a provider with scope database belongs to one database.',
                             'add database: <name>, or use scope: global.')
                    where = None
                else:
                    self._check_extension_db(path + '.database', where, 'its provider')
            elif scope == 'global' and prov.get('database'):
                self.add(path + '.database', 'is set on a global provider (it serves every database).',
                         'remove database, or set scope: database.')
            if not _is_blank(name) and where:
                key = (where, name)
                if key in seen:
                    self.add(path + '.name', 'provider "%s" is declared twice in the %s (also %s[%d]).'
                             % (name, 'global scope' if where == 'global' else 'database "%s"' % where,
                                self.var('providers'), seen[key]),
                             'keep one entry per provider name and scope.')
                else:
                    seen[key] = i
            state = prov.get('state', 'present')
            if state not in PROVIDER_STATES:
                self.add(path + '.state', _is_value(state), _one_of(state, PROVIDER_STATES))
            self._check_provider_type(path, prov, state)

    def _check_provider_type(self, path: str, prov: dict[str, Any], state: str) -> None:
        ptype = prov.get('type')
        allowed = set(PROVIDER_COMMON)
        for names in list(PROVIDER_REQUIRED.values()) + list(PROVIDER_OPTIONAL.values()):
            allowed.update(names)
        unknown = sorted(k for k in prov if k not in allowed)
        for key in unknown:
            self.add('%s.%s' % (path, key), 'is not an option of a key provider%s.' % _closest(key, sorted(allowed)),
                     'remove it or correct the spelling; options are %s.' % ', '.join(sorted(allowed)))
        if _is_blank(ptype):
            if state != 'absent':
                self.add(path + '.type', 'is missing.', _one_of('', PROVIDER_TYPE_CHOICES))
            return
        if ptype not in PROVIDER_TYPE_CHOICES:
            self.add(path + '.type', 'is "%s", which is not a pg_tde provider type.' % ptype,
                     _one_of(ptype, PROVIDER_TYPE_CHOICES))
            return
        if 'kmip_port' in prov and prov['kmip_port'] is None and ptype == 'kmip':
            self.add(path + '.kmip_port', 'is empty.', 'remove it (the default is 5696) or set the port number.')
        if state == 'absent':
            return
        for key in PROVIDER_REQUIRED[ptype]:
            if _is_blank(prov.get(key)):
                self.add('%s.%s' % (path, key), 'is missing: a %s provider needs %s.'
                         % (ptype, ', '.join(PROVIDER_REQUIRED[ptype])), 'add %s.' % key)
        own = set(PROVIDER_REQUIRED[ptype]) | set(PROVIDER_OPTIONAL[ptype])
        for other, names in list(PROVIDER_REQUIRED.items()) + list(PROVIDER_OPTIONAL.items()):
            for key in names:
                if other != ptype and key not in own and key in prov:
                    self.add('%s.%s' % (path, key), 'belongs to a %s provider, not to this %s provider.' % (other, ptype),
                             'remove it, or set type: %s.' % other)
        values = {k: prov.get(k) for k in own}
        for option, problem, fix in provider_value_problems(values, ptype):
            self.add('%s.%s' % (path, option) if option else path, problem, fix)

    def _scalars(self, path: str, entry: dict[str, Any], options: tuple[str, ...]) -> bool:
        """Each of `options` in `entry` holds one value; False (each named) when one does not."""
        ok = True
        for key in options:
            kind = _not_scalar(entry.get(key))
            if kind:
                self.add('%s.%s' % (path, key), 'is %s; it takes one value.' % kind,
                         'write a single %s.' % ('name' if key in ('name', 'provider', 'database') else 'value'))
                ok = False
        return ok

    def _check_extension_db(self, path: str, db: str, who: str) -> None:
        """`db` must have pg_tde now or get it in this run (extension_databases)."""
        databases = self.server_databases()
        if databases is not None and db not in databases:
            self.add(path, 'database "%s" does not exist on the server (or does not allow connections).' % db,
                     'create it first (community.postgresql.postgresql_db), or correct the name.')
            return
        if db in self.ext_dbs or not self.server:
            return
        has = self.extension_in(db)
        if has:
            return
        if has is None:
            self.add(path, 'database "%s" is not in %s and whether it already has the pg_tde extension could not '
                     'be read (%s).' % (db, self.var('extension_databases'), self.why_unknown('extension ' + db)),
                     'add "%s" to %s.' % (db, self.var('extension_databases')))
            return
        self.add(path, 'database "%s" does not have the pg_tde extension and is not in %s, so %s could not be set '
                 'there.' % (db, self.var('extension_databases'), who),
                 'add "%s" to %s.' % (db, self.var('extension_databases')))

    def _declared(self, name: str, where: str) -> dict[str, Any] | None:
        """The provider declared in this run under `name` in 'global' or database `where`."""
        for prov in self.cfg.get('providers') or []:
            if not isinstance(prov, dict) or prov.get('name') != name:
                continue
            scope = prov.get('scope', 'global')
            if where == 'global' and scope == 'global':
                return prov
            if where != 'global' and scope == 'database' and prov.get('database') == where:
                return prov
        return None

    def _check_provider_exists(self, path: str, name: str, where: str, key_path: str) -> None:
        scope_text = 'global scope' if where == 'global' else 'database "%s"' % where
        declared = self._declared(name, where)
        if declared is not None:
            if declared.get('state', 'present') == 'absent':
                self.add(path, 'provider "%s" is declared with state: absent in %s, yet %s uses it.'
                         % (name, self.var('providers'), key_path),
                         'keep the provider (state: present) or move the key to another provider.')
            return
        if not self.server:
            return      # inputs alone (read_server=false): what the server has is not known
        on_server = self.server_providers(where)
        if on_server is not None and name in on_server:
            return
        hint = ''
        if where == 'global' and any(isinstance(p, dict) and p.get('name') == name and p.get('scope') == 'database'
                                     for p in self.cfg.get('providers') or []):
            hint = ' A provider "%s" is declared with scope: database; this key needs a global one.' % name
        elif where != 'global' and (self._declared(name, 'global') or name in (self.server_providers('global') or {})):
            hint = ' There is a global provider "%s": set provider_scope: global to use it.' % name
        if on_server is None:
            self.add(path, 'provider "%s" is not declared in %s for the %s, and the providers on the server could not '
                     'be read (%s), so it cannot be checked.%s'
                     % (name, self.var('providers'), scope_text, self.why_unknown('providers ' + where), hint),
                     'declare the provider in %s, or let the module read the providers (see the reason).'
                     % self.var('providers'))
            return
        self.add(path, 'provider "%s" does not exist in the %s on the server and is not declared in %s.%s'
                 % (name, scope_text, self.var('providers'), hint),
                 'add it to %s (scope: %s%s) or correct the name; providers there: %s.'
                 % (self.var('providers'), 'global' if where == 'global' else 'database',
                    '' if where == 'global' else ', database: %s' % where,
                    ', '.join(sorted(on_server)) or 'none'))

    def _check_key_fields(self, path: str, key: dict[str, Any], allowed: tuple[str, ...]) -> bool:
        ok = self._scalars(path, key, ('name', 'provider', 'provider_scope'))
        if not ok:
            return False
        for extra in sorted(k for k in key if k not in allowed):
            self.add('%s.%s' % (path, extra), 'is not an option of this key.',
                     'remove it or correct the spelling; options are %s.' % ', '.join(allowed))
        for field in ('name', 'provider'):
            if _is_blank(key.get(field)):
                what = 'key' if field == 'name' else 'provider'
                self.add('%s.%s' % (path, field), 'is missing.', 'add %s: <%s name>.' % (field, what))
                ok = False
        name = key.get('name')
        if not _is_blank(name) and _bytes(name) > KEY_NAME_MAX_BYTES:
            self.add(path + '.name', 'is %d bytes long; pg_tde allows key names of at most %d bytes.'
                     % (_bytes(name), KEY_NAME_MAX_BYTES), 'use a shorter key name.')
            ok = False
        if 'create' in key and not _is_boolean(key['create']):
            self.add(path + '.create', _is_value(key['create']), 'set true or false.')
        return ok

    def check_global_keys(self) -> None:
        for var, kind in (('server_key', 'server (WAL) key'), ('default_key', 'default key')):
            key = self.cfg.get(var)
            path = self.var(var)
            if not key:
                continue
            if not isinstance(key, dict):
                self.add(path, 'must be a dictionary {name, provider}, got %r.' % (key,), 'write {name: ..., provider: ...}.')
                continue
            if not self._check_key_fields(path, key, SERVER_KEY_OPTIONS):
                continue
            scope = key.get('provider_scope', 'global')
            if scope != 'global':
                self.add(path + '.provider_scope', 'is "%s": the %s can only use a global provider.' % (scope, kind),
                         'remove provider_scope (or set global) and use a global provider.')
                continue
            self._check_provider_exists(path + '.provider', key['provider'], 'global', path)
        server_key = self.cfg.get('server_key') or {}
        if self.cfg.get('wal_encrypt') and (not isinstance(server_key, dict) or _is_blank(server_key.get('name'))):
            self.add(self.var('wal_encrypt'), 'is on but %s has no name: the server would not start without a '
                     'server key ("principal key not configured").' % self.var('server_key'),
                     'set %s: {name: ..., provider: <global provider>}, or leave %s off.'
                     % (self.var('server_key'), self.var('wal_encrypt')))

    def check_database_keys(self) -> None:
        owner: dict[str, str] = {}
        for i, key in enumerate(self.cfg.get('database_keys') or []):
            path = '%s[%d]' % (self.var('database_keys'), i)
            if not isinstance(key, dict):
                self.add(path, 'must be a dictionary {name, provider, databases}, got %r.' % (key,),
                         'write {name: ..., provider: ..., databases: [...]}.')
                continue
            fields_ok = self._check_key_fields(path, key, DATABASE_KEY_OPTIONS)
            databases = key.get('databases')
            if isinstance(databases, str):
                databases = [databases]
                self.add(path + '.databases', 'is a string; it must be a list of database names.',
                         'write databases: [%s].' % key['databases'])
                continue
            if not databases:
                self.add(path + '.databases', 'is missing or empty.', 'list the databases that get this key.')
                continue
            if not isinstance(databases, list):
                self.add(path + '.databases', 'is %r; it must be a list of database names.' % (databases,),
                         'write databases: [<database>, ...].')
                continue
            scope = key.get('provider_scope', 'global')
            if scope not in SCOPES:
                self.add(path + '.provider_scope', _is_value(scope), _one_of(scope, SCOPES))
                continue
            for j, db in enumerate(databases):
                db_path = '%s.databases[%d]' % (path, j)
                if _is_blank(db) or _not_scalar(db) or isinstance(db, bool):
                    self.add(db_path, 'is %r, not a database name.' % (db,), 'write the database name.')
                    continue
                db = str(db)
                if db in owner:
                    self.add(db_path, 'database "%s" already gets the key of %s; a database has one key.'
                             % (db, owner[db]), 'keep the database in one entry only.')
                    continue
                owner[db] = path
                self._check_extension_db(db_path, db, 'its key')
                if fields_ok and scope == 'database':
                    self._check_provider_exists(path + '.provider', key['provider'], db, path)
            if fields_ok and scope == 'global':
                self._check_provider_exists(path + '.provider', key['provider'], 'global', path)

    def check_server(self) -> None:
        if self.server.get('superuser') is False:
            self.add(self.user_var,
                     'PostgreSQL role "%s" is not a superuser: CREATE EXTENSION, key provider changes and global '
                     'keys need one.' % self.server.get('user'),
                     'connect as a superuser (normally postgres).')


def config_problems(config: dict[str, Any], server: dict[str, Any] | None = None,
                    prefix: str = '', user_var: str = 'login_user') -> list[Problem]:
    """Every problem of a pg_tde configuration. config: providers, server_key, default_key,
    database_keys, extension_databases, extension_template1, login_db, wal_encrypt. server: what
    was read (databases, extension {db: bool|None}, providers {'global'|db: {name: type}|None},
    superuser, user, why {what: reason}, unreachable); {} checks the inputs alone."""
    checker = _Checker(config, server or {}, prefix, user_var)
    checker.check_server()
    checker.check_names()
    checker.check_providers()
    checker.check_global_keys()
    checker.check_database_keys()
    # One message per path and text (a provider used by several keys is named once).
    out: list[Problem] = []
    seen: set[str] = set()
    for problem in checker.problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            out.append(problem)
    return out


def problems_message(problems: list[Problem], prefix_note: str = '') -> str:
    """One message for the user: how many, each with path, problem and fix, and that nothing changed."""
    lines = ['%d problem%s in the pg_tde variables%s; nothing was changed:'
             % (len(problems), '' if len(problems) == 1 else 's', prefix_note)]
    lines += ['(%d) %s' % (n, p) for n, p in enumerate(problems, 1)]
    return ' '.join(lines)
