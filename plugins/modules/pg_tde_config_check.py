#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_config_check
short_description: Check a whole pg_tde configuration (providers, keys, extension databases) before any change
version_added: 1.0.0
description:
  - Cross-checks the key providers, the server, default and database keys and the databases that
    get the pg_tde extension, the way the C(tdeops.pg_tde.configure) role would apply them, and
    fails before anything is changed. The configure role runs it as its first task.
  - Checks the provider type and the options each type needs and accepts, pg_tde's limits
    (provider name shorter than 128 bytes, key name at most 255 bytes, provider options shorter
    than 1024 bytes as JSON), that every provider a key uses is declared in O(providers) in the
    right scope or already exists on the server, that the server and default keys use a global
    provider, that every database that gets a key (or a database provider) has the extension or
    gets it in this run (O(extension_databases)), that O(login_db) is one of them, that the
    databases exist, that O(wal_encrypt) has a server key, and that the login role is a superuser.
  - Every problem names the variable path (for example C(configure_providers[0].type) with
    O(var_prefix=configure_)), what is wrong and the fix; all of them are reported at once.
  - Also checks the values of each entry of O(providers) and O(database_keys) (choices, required
    options, integers, booleans, unknown options). The roles declare their provider and key lists
    with C(elements=raw), so that this module, not the argument-spec engine (which names no
    index), answers for every entry.
  - Reads the server only (C(pg_database), C(pg_extension), C(pg_roles) and the pg_tde provider
    lists where pg_tde is loaded). What it cannot read (no connection to a database, a permission
    error, pg_tde not loaded yet) is named with the reason; a check that needs it then fails with
    that reason instead of guessing.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
options:
  providers:
    description:
      - Key providers as the configure role takes them (C(configure_providers)), each with the
        options of M(tdeops.pg_tde.pg_tde_provider).
    type: list
    elements: raw
    default: []
  server_key:
    description: The server (WAL) key, C({name, provider[, create]}); empty for none.
    type: raw
    default: {}
  default_key:
    description: The default key, C({name, provider[, create]}); empty for none.
    type: raw
    default: {}
  database_keys:
    description: Keys of single databases, C({name, provider, provider_scope, databases[, create]}).
    type: list
    elements: raw
    default: []
  extension_databases:
    description: Databases that get the pg_tde extension in this run.
    type: list
    elements: str
    default: [postgres]
  extension_template1:
    description: template1 gets the extension in this run too.
    type: bool
    default: false
  wal_encrypt:
    description: WAL encryption is to be switched on (needs O(server_key)).
    type: bool
    default: false
  var_prefix:
    description:
      - Prefix of the variable names in messages; the configure role passes C(configure_), so a
        problem reads C(configure_providers[0].type).
    type: str
    default: ''
  login_user_var:
    description: The variable that sets O(login_user), named when the role is not a superuser.
    type: str
    default: login_user
  unreachable_fix:
    description:
      - What to do when the server cannot be reached, added to the message (the configure role says
        that it works on a running server and which C(pg_layout_*) variables to check).
    type: str
    default: ''
  read_server:
    description:
      - Read the server to check what already exists. false checks the inputs alone, for roles
        that run before the server does (a provider a key uses that is not declared in
        O(providers) is then not checked, and the databases are not looked at).
    type: bool
    default: true
notes:
  - O(login_db) is the database global providers, the server key and the default key are managed
    through (C(configure_login_db) in the role).
  - Changes nothing, so it runs in check mode as in a normal run.
seealso:
  - module: tdeops.pg_tde.pg_tde_provider
  - module: tdeops.pg_tde.pg_tde_key
'''

EXAMPLES = r'''
- name: Refuse a configuration pg_tde would refuse half-way
  tdeops.pg_tde.pg_tde_config_check:
    providers: "{{ configure_providers }}"
    server_key: "{{ configure_server_key }}"
    default_key: "{{ configure_default_key }}"
    database_keys: "{{ configure_database_keys }}"
    extension_databases: "{{ configure_extension_databases }}"
    wal_encrypt: "{{ configure_wal_encrypt }}"
    var_prefix: configure_
    login_db: postgres
  become: true
  become_user: postgres
'''

RETURN = r'''
problems:
  description: Every problem found, each with the variable path, what is wrong and the fix (empty when none).
  returned: always
  type: list
  elements: dict
  sample:
    - path: configure_providers[0].type
      problem: is "kmpi", which is not a pg_tde provider type.
      fix: set it to one of kmip, vault_v2, file (did you mean "kmip"?).
server:
  description:
    - What was read from the server. A part that could not be read is null and its reason is in C(why).
  returned: always
  type: dict
  sample:
    user: postgres
    superuser: true
    preloaded: true
    databases: [appdb, postgres, template1]
    extension: {postgres: true, appdb: false}
    providers: {global: {kms: kmip}}
    why: {}
'''

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._config_check import (
    config_problems,
    problems_message,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    PgSession,
    conninfo_kwargs,
    ensure_psycopg,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import pg_error_text
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    list_providers,
    split_guc_list,
)

try:
    import psycopg
    from psycopg.rows import dict_row
except ImportError:  # ensure_psycopg() reports it
    psycopg = None  # type: ignore[assignment]
    dict_row = None  # type: ignore[assignment]


class ServerReader:
    """Read-only views of the server; every failure is kept as a reason, never raised."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.sessions: dict[str, PgSession | None] = {}
        self.why: dict[str, str] = {}
        self.user = module.params['login_user']

    def session(self, db: str) -> PgSession | None:
        if db not in self.sessions:
            kw = conninfo_kwargs(self.module.params, db)
            try:
                conn = psycopg.connect(autocommit=True, row_factory=dict_row, **kw)
                self.sessions[db] = PgSession(self.module, conn, db)
            except psycopg.Error as exc:
                self.why['connect ' + db] = ('cannot connect to database "%s" as "%s": %s'
                                             % (db, kw['user'], pg_error_text(exc)))
                self.sessions[db] = None
        return self.sessions[db]

    def close(self) -> None:
        for session in self.sessions.values():
            if session is not None:
                session.close()

    def read(self, login_db: str, wanted_dbs: list[str], provider_dbs: list[str]) -> dict[str, Any]:
        server: dict[str, Any] = {'user': self.user, 'superuser': None, 'preloaded': None, 'databases': None,
                                  'extension': {}, 'providers': {}, 'why': self.why}
        main = self.session(login_db)
        if main is None:
            server['unreachable'] = self.why['connect ' + login_db]
            return server
        try:
            row = main.query_one('SELECT current_user AS u, rolsuper FROM pg_roles WHERE rolname = current_user')
            server['user'], server['superuser'] = row['u'], bool(row['rolsuper'])
            server['databases'] = [r['datname'] for r in
                                   main.query('SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname')]
        except psycopg.Error as exc:
            server['unreachable'] = 'cannot read the catalogs as "%s": %s' % (self.user, pg_error_text(exc))
            return server
        try:
            server['preloaded'] = 'pg_tde' in split_guc_list(
                main.query_one("SELECT current_setting('shared_preload_libraries') AS v")['v'])
        except psycopg.Error as exc:   # needs pg_read_all_settings; the session stays usable
            self.why['preload'] = ('PostgreSQL role "%s" may not read shared_preload_libraries (%s), so whether '
                                   'pg_tde is loaded is not known' % (server['user'], pg_error_text(exc)))
        for db in dict.fromkeys([login_db] + wanted_dbs + provider_dbs):
            if db in server['databases']:
                server['extension'][db] = self._has_extension(db)
        server['providers']['global'] = self._providers(server, login_db, 'global', 'global')
        for db in dict.fromkeys(provider_dbs):
            server['providers'][db] = self._providers(server, db, 'database', db)
        return server

    def _has_extension(self, db: str) -> bool | None:
        session = self.session(db)
        if session is None:
            self.why['extension ' + db] = self.why['connect ' + db]
            return None
        try:
            return session.query_one("SELECT count(*) AS n FROM pg_extension WHERE extname = 'pg_tde'")['n'] > 0
        except psycopg.Error as exc:
            self.why['extension ' + db] = 'cannot read pg_extension in "%s": %s' % (db, pg_error_text(exc))
            return None

    def _providers(self, server: dict[str, Any], db: str, scope: str, what: str) -> dict[str, str] | None:
        key = 'providers ' + what
        if server['preloaded'] is None:
            self.why[key] = self.why.get('preload', 'whether pg_tde is loaded is not known')
            return None
        if not server['preloaded']:
            self.why[key] = ('pg_tde is not loaded yet (not in shared_preload_libraries), so no provider can be '
                             'listed; on a server without pg_tde there are none')
            return None
        if server['extension'].get(db) is not True:
            self.why[key] = ('the pg_tde extension is not in database "%s" (yet), where the %s providers are listed'
                             % (db, scope) if server['extension'].get(db) is False
                             else self.why.get('extension ' + db, 'database "%s" was not read' % db))
            return None
        try:
            return {p['name']: p['type'] for p in list_providers(self.session(db), scope)}
        except psycopg.Error as exc:
            text = pg_error_text(exc)
            if 'permission denied' in text or '42501' in text:
                self.why[key] = ('PostgreSQL role "%s" lacks the privilege to list the %s key providers (%s); '
                                 'connect as a superuser to check them' % (server['user'], scope, text))
            else:
                self.why[key] = 'listing the %s key providers in "%s" failed: %s' % (scope, db, text)
            return None


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        providers=dict(type='list', elements='raw', default=[]),
        server_key=dict(type='raw', default={}, no_log=False),
        default_key=dict(type='raw', default={}, no_log=False),
        database_keys=dict(type='list', elements='raw', default=[], no_log=False),
        extension_databases=dict(type='list', elements='str', default=['postgres']),
        extension_template1=dict(type='bool', default=False),
        wal_encrypt=dict(type='bool', default=False),
        var_prefix=dict(type='str', default=''),
        login_user_var=dict(type='str', default='login_user'),
        read_server=dict(type='bool', default=True),
        unreachable_fix=dict(type='str', default=''),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    config = {k: params[k] for k in ('providers', 'server_key', 'default_key', 'database_keys',
                                     'extension_databases', 'extension_template1', 'wal_encrypt')}
    config['login_db'] = params['login_db']

    server: dict[str, Any] = {}
    if params['read_server']:
        ensure_psycopg(module)
        reader = ServerReader(module)
        try:
            server = reader.read(params['login_db'], key_databases(config), provider_databases(config))
        finally:
            reader.close()
        if server.get('unreachable'):
            fix = params['unreachable_fix'] or (
                'Check login_user, login_unix_socket, login_port and login_db (the configure role uses pg_layout_user, '
                'pg_layout_socket_dir, pg_layout_port and %slogin_db).' % params['var_prefix'])
            module.fail_json(msg='Cannot check the pg_tde variables against the server: %s. %s Nothing was changed.'
                                 % (server['unreachable'], fix.rstrip()),
                             problems=[], server=server)

    problems = config_problems(config, server, params['var_prefix'], params['login_user_var'])
    result = {'changed': False, 'problems': [p.as_dict() for p in problems], 'server': server}
    if problems:
        module.fail_json(msg=problems_message(problems), **result)
    # Say what could not be seen (a permission, a connection); "not there yet" is no news.
    for what, why in sorted((server.get('why') or {}).items()):
        if not why.startswith(('pg_tde is not loaded', 'the pg_tde extension is not in')):
            module.warn('Could not read %s: %s.' % (what, why))
    module.exit_json(**result)


def key_databases(config: dict[str, Any]) -> list[str]:
    """The databases whose extension matters: those of database keys and database providers."""
    out: list[str] = []
    for key in config.get('database_keys') or []:
        if isinstance(key, dict) and isinstance(key.get('databases'), list):
            out.extend(str(db) for db in key['databases'])
    for prov in config.get('providers') or []:
        if isinstance(prov, dict) and prov.get('scope') == 'database' and prov.get('database'):
            out.append(str(prov['database']))
    return list(dict.fromkeys(out + list(config.get('extension_databases') or [])))


def provider_databases(config: dict[str, Any]) -> list[str]:
    """Databases whose own providers a key uses (provider_scope: database)."""
    out: list[str] = []
    for key in config.get('database_keys') or []:
        if isinstance(key, dict) and key.get('provider_scope') == 'database' and isinstance(key.get('databases'), list):
            out.extend(str(db) for db in key['databases'])
    return list(dict.fromkeys(out))


if __name__ == '__main__':
    main()
