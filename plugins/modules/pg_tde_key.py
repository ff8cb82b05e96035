#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_key
short_description: Create, set, rotate and delete pg_tde principal keys
version_added: 1.0.0
description:
  - Makes the principal key O(name) on key provider O(provider) the key in place for the server
    (WAL) key, the default key and/or the keys of O(databases), creating it on the provider when
    needed.
  - Idempotent. The key in place is read with C(pg_tde_server_key_info()),
    C(pg_tde_default_key_info()) and C(pg_tde_key_info()) before any C(pg_tde_set_*) call,
    because a repeated set is another rotation in pg_tde. A target whose key already is O(name)
    on O(provider) is left alone.
  - Rotation is a new key name set in place of the old one; it is listed in RV(rotated).
    Setting the default key also moves every key that is the same as the old default key (same
    name and provider) to the new one; those appear in RV(rotated) with C(followed_default=true).
  - When no server key is set yet, pg_tde makes the new default key the server key as well. The
    module plans for it. The server key is then listed in RV(set) with C(followed_default=true)
    and gets no C(pg_tde_set_server_key_using_global_key_provider()) call of its own, also when
    O(targets) does not name C(server).
  - The server key and the default key need a global key provider.
  - With O(state=absent) the key O(name) is removed from the targets where it is in place, with
    C(pg_tde_delete_default_key()) for C(default), C(pg_tde_delete_key()) in each database for
    C(database). pg_tde has no function that removes the server key (rotate it instead), but
    C(pg_tde_delete_default_key()) removes it along with the default key when it is the same key
    and no WAL encryption keys use it; RV(deleted) lists it then. The key itself stays on the KMS.
  - "pg_tde guards these deletes: for example it refuses to delete the default key while a
    database that uses it holds encrypted data, and a database key while its database holds
    encrypted data and there is no default key to fall back to. The module lists the databases
    that use the default key and passes pg_tde's own error text on."
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
attributes:
  check_mode:
    support: full
    details: Reads the keys and returns the statements it would run in RV(executed_queries).
  diff_mode:
    support: none
options:
  name:
    description:
      - Name of the principal key (at most 255 bytes). Key names must be unique on a KMIP server.
    type: str
    required: true
  provider:
    description:
      - Name of the key provider that holds the key. Required with O(state=present).
    type: str
  provider_scope:
    description:
      - Scope of O(provider). C(database) providers exist per database and serve only
        C(database) targets of that database.
    type: str
    default: global
    choices: [ global, database ]
  targets:
    description:
      - Where the key is to be in place. C(server) is the WAL key, C(default) the key of every
        database without a key of its own, C(database) the key of each database in O(databases).
      - The empty list only creates the key on the provider.
    type: list
    elements: str
    default: []
    choices: [ server, default, database ]
  databases:
    description:
      - Databases for the C(database) target (and whose provider is used with
        O(provider_scope=database)). Each must have the pg_tde extension.
      - Defaults to O(login_db).
    type: list
    elements: str
  create:
    description:
      - Create the key on the provider (C(pg_tde_create_key_using_*_key_provider())) when it is not
        already the key in place. An answer C(cannot create key "K" because it already exists)
        means the key is there and is not an error.
      - In check mode the module cannot ask the KMS; it reports the create unless the key is
        already in place somewhere.
    type: bool
    default: true
  verify:
    description:
      - After a set, fetch the key back through its provider with C(pg_tde_verify_server_key()),
        C(pg_tde_verify_default_key()) or C(pg_tde_verify_key()).
    type: bool
    default: true
  keep_rotated:
    description:
      - With O(state=present), a target that already holds a key of another name keeps it, so a
        rotation done earlier (for example by C(playbooks/rotate_keys.yml)) is not undone by a run
        with the first name. Such targets are listed in RV(kept) with a warning and get no call.
      - A database whose key is the same as the default key has no key of its own and is set.
      - The configure role passes C(not configure_rotate_keys).
    type: bool
    default: false
  state:
    description:
      - C(present) creates/sets/rotates, C(absent) deletes the key from the targets.
    type: str
    default: present
    choices: [ present, absent ]
notes:
  - Global provider key operations need a superuser (O(login_user)).
  - Do not rotate keys while a backup runs (facts, section 7).
  - Supports check mode; RV(executed_queries), RV(created), RV(rotated) and RV(deleted) say what
    would happen.
seealso:
  - module: tdeops.pg_tde.pg_tde_provider
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: Server (WAL) key and default key from the global KMIP provider
  tdeops.pg_tde.pg_tde_key:
    name: "{{ inventory_hostname }}-2026-11"
    provider: kms
    targets: [server, default]

- name: Rotate the keys of two databases to a new key
  tdeops.pg_tde.pg_tde_key:
    name: appdb-2026-12
    provider: kms
    targets: [database]
    databases: [appdb, reports]
  register: rotation

- name: A database key from a database-scoped provider
  tdeops.pg_tde.pg_tde_key:
    name: appdb-local-01
    provider: appdb_vault
    provider_scope: database
    targets: [database]
    databases: [appdb]

- name: Only create a key on the KMS (set it later)
  tdeops.pg_tde.pg_tde_key:
    name: next-key
    provider: kms

- name: Drop a database's own key (it falls back to the default key)
  tdeops.pg_tde.pg_tde_key:
    name: appdb-local-01
    targets: [database]
    databases: [appdb]
    state: absent
'''

RETURN = r'''
principal_keys:
  description:
    - The keys in place after the run (in check mode, unchanged). Each is null when no key is
      set, or a dict with C(key_name), C(provider_name), C(provider_id), C(provider_scope) and
      C(key_creation_time) (ISO 8601).
    - Earlier versions also returned this dict as C(keys); that name was removed (C(result.keys) is
      the dict method in Jinja, and ansible-test refuses a return value named C(keys)).
  returned: always
  type: dict
  sample:
    server: {key_name: k1, provider_name: kms, provider_id: -1, provider_scope: global,
             key_creation_time: "2026-11-23T18:29:58.575318+00:00"}
    default: null
    databases: {postgres: null}
created:
  description: Keys created on a provider (in check mode, that would be created).
  returned: always
  type: list
  elements: dict
  sample: [ {key: k1, provider: kms, provider_scope: global, database: null} ]
rotated:
  description:
    - Targets whose key was replaced by O(name) (a rotation). C(followed_default) is true for keys
      pg_tde moved along with the default key.
  returned: always
  type: list
  elements: dict
  sample: [ {target: database, database: appdb, old_key: k1, new_key: k2, followed_default: false} ]
set:
  description:
    - Targets that got O(name) as their first key (no key was in place), and rotations.
      C(followed_default) is true for keys pg_tde set along with the default key (a server key
      that was empty takes the first default key).
  returned: always
  type: list
  elements: dict
  sample: [ {target: server, database: null, old_key: null, new_key: k1, followed_default: false} ]
deleted:
  description:
    - Keys removed from a target with O(state=absent). C(followed_default) is true for keys pg_tde
      removed along with the default key (the server key when it is the default key and no WAL
      encryption keys use it, and databases on the default key without encrypted data).
  returned: always
  type: list
  elements: dict
  sample: [ {target: database, database: appdb, key: k1, followed_default: false} ]
kept:
  description:
    - With O(keep_rotated=true), the targets that keep a key of another name (rotated earlier);
      C(key) is the name in place. Empty otherwise.
  returned: always
  type: list
  elements: dict
  sample: [ {target: server, database: null, key: db1-wal-20261201} ]
executed_queries:
  description: Statements run (in check mode, that would run). Reads and verifications are not listed.
  returned: always
  type: list
  elements: str
'''

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    Sessions,
    open_session,
    pg_error_text,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import (
    is_key_already_exists,
    tde_failure_message,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._keys import (
    database_keys,
    databases_on_default,
    keep_rotated_keys,
    kept_message,
    key_matches,
    plan_key_targets,
    same_key,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    KEY_NAME_MAX_BYTES,
    VERIFY_FUNCTION,
    connectable_databases,
    create_key_statement,
    find_provider,
    has_extension,
    list_providers,
    no_extension_message,
    require_pg_tde,
    set_key_statement,
    try_key_info,
    verify_key,
)


def option_problems(params: dict[str, Any]) -> list[str]:
    """Problems with the options themselves (pure: unit-tested)."""
    problems: list[str] = []
    name = params.get('name') or ''
    targets = params.get('targets') or []
    if not name:
        problems.append('name must not be empty')
    elif len(name.encode('utf-8')) > KEY_NAME_MAX_BYTES:
        problems.append('name must be at most 255 bytes (pg_tde limit)')
    if params.get('state') == 'present':
        if not params.get('provider'):
            problems.append('provider is required with state=present')
        global_only = [t for t in targets if t in ('server', 'default')]
        if params.get('provider_scope') == 'database' and global_only:
            problems.append('the %s key needs a global key provider (pg_tde only has '
                            'pg_tde_set_server_key_using_global_key_provider() and '
                            'pg_tde_set_default_key_using_global_key_provider()): set provider_scope=global '
                            'and name a global provider, or use targets=[database]' % ' and '.join(global_only))
    else:
        if 'server' in targets:
            problems.append('pg_tde has no function that removes the server key: rotate it to another key '
                            'with state=present instead')
        if not targets:
            problems.append('state=absent needs targets (default and/or database)')
    return problems


def known_on_provider(infos: list[dict[str, Any] | None], name: str, provider: str, scope: str) -> bool:
    """Is the key already in place somewhere on this provider (so it exists there)?"""
    return any(key_matches(info, name, provider, scope) for info in infos if info is not None)


class KeyRun:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.login_db: str = self.params['login_db']
        self.session = Sessions(lambda db: open_session(module, db))
        self.queries: list[str] = []
        self.created: list[dict[str, Any]] = []
        self.rotated: list[dict[str, Any]] = []
        self.set: list[dict[str, Any]] = []
        self.deleted: list[dict[str, Any]] = []
        self.kept: list[dict[str, Any]] = []

    def close(self) -> None:
        self.session.close()

    def fail(self, msg: str) -> None:
        self.module.fail_json(msg=msg, executed_queries=self.run_order_queries(), created=self.created,
                              rotated=self.rotated, deleted=self.deleted)

    def execute(self, db: str, sql: str, args: list[Any] | None = None) -> None:
        """Run a change and keep the statements in the order they ran."""
        session = self.session(db)
        before = len(session.executed_queries)
        try:
            session.execute(sql, args)
        finally:
            self.queries.extend(session.executed_queries[before:])
            del session.executed_queries[before:]

    def run_order_queries(self) -> list[str]:
        return list(self.queries)

    # reads --------------------------------------------------------------------------------------
    def checked(self, kind: str, db: str, info: dict[str, Any] | None, err: str | None,
                required: bool) -> dict[str, Any] | None:
        """A key read: a failed read of a key the run needs fails it, any other is warned about."""
        if err:
            where = '%s key' % kind if kind != 'database' else 'key of database "%s"' % db
            if required:
                self.fail(tde_failure_message('Reading the %s' % where, err))
            self.module.warn('Could not read the %s: %s' % (where, err))
        return info

    def current(self, targets: list[str], databases: list[str], with_followers: bool) -> dict[str, Any]:
        """Keys in place: server and default key, the keys of `databases` and, with_followers,
        of every other database that can follow the default key."""
        main = self.login_db
        state: dict[str, Any] = {
            'server': self.checked('server', main, *try_key_info(self.session(main), 'server'),
                                   required='server' in targets),
            'default': self.checked('default', main, *try_key_info(self.session(main), 'default'),
                                    required='default' in targets),
            'databases': {},
        }
        names = list(databases)
        if with_followers:
            names += [db for db in connectable_databases(self.session(main)) if db not in names]
        for db, (info, err) in database_keys(self.session, names).items():
            state['databases'][db] = self.checked('database', db, info, err,
                                                  required=db in databases and 'database' in targets)
        return state

    def keys_view(self, state: dict[str, Any]) -> dict[str, Any]:
        return {'server': state['server'], 'default': state['default'], 'databases': dict(state['databases'])}

    # present ------------------------------------------------------------------------------------
    def check_databases(self, databases: list[str]) -> None:
        for db in databases:
            if not has_extension(self.session(db)):
                self.fail(no_extension_message(db))

    def check_provider(self, provider: str, scope: str, databases: list[str]) -> None:
        places = [self.login_db] if scope == 'global' else databases
        for db in places:
            if find_provider(list_providers(self.session(db), scope), provider) is None:
                where = 'the global scope' if scope == 'global' else 'database "%s"' % db
                self.fail('Key provider "%s" does not exist in %s. Add it with tdeops.pg_tde.pg_tde_provider '
                          '(scope: %s) first, or check provider and provider_scope.' % (provider, where, scope))

    def create_key(self, name: str, provider: str, scope: str, db: str) -> None:
        entry = {'key': name, 'provider': provider, 'provider_scope': scope,
                 'database': db if scope == 'database' else None}
        session = self.session(db)
        before = len(session.executed_queries)
        try:
            session.execute(create_key_statement(scope), [name, provider])
        except Exception as exc:
            text = pg_error_text(exc)
            if is_key_already_exists(text):
                del session.executed_queries[before:]
                return
            self.queries.extend(session.executed_queries[before:])
            del session.executed_queries[before:]
            self.fail(tde_failure_message('Creating key "%s" on %s key provider "%s"' % (name, scope, provider), text))
        self.queries.extend(session.executed_queries[before:])
        del session.executed_queries[before:]
        self.created.append(entry)

    def set_target(self, step: dict[str, Any], name: str, provider: str, scope: str) -> None:
        db = step['database'] or self.login_db
        sql = set_key_statement(step['target'], scope)
        try:
            self.execute(db, sql, [name, provider])
        except Exception as exc:
            text = pg_error_text(exc)
            extra = None
            if 'does not exist' in text and not self.params['create']:
                extra = 'create is false: create the key first or set create: true.'
            self.fail(tde_failure_message('Setting key "%s" (%s provider "%s") as the %s' % (
                name, scope, provider, describe(step)), text, extra))
        if self.params['verify'] and not self.module.check_mode:
            try:
                verify_key(self.session(db), step['target'])
            except Exception as exc:
                self.fail(tde_failure_message(
                    'The %s is now "%s", but verifying it (%s()) ' % (describe(step), name,
                                                                      VERIFY_FUNCTION[step['target']]),
                    pg_error_text(exc),
                    'The key is set; make sure the KMS is reachable before the next restart.'))

    def record(self, step: dict[str, Any]) -> None:
        """A set with a key in place before it is a rotation (pg_tde re-wraps the data keys)."""
        self.set.append(step)
        if step['old_key'] is not None:
            self.rotated.append(step)

    def present(self) -> dict[str, Any]:
        p = self.params
        name, provider, scope = p['name'], p['provider'], p['provider_scope']
        targets: list[str] = p['targets']
        databases: list[str] = p['databases']
        need_dbs = databases if ('database' in targets or scope == 'database') else []
        self.check_databases(need_dbs)
        self.check_provider(provider, scope, need_dbs)
        before = self.current(targets, need_dbs, with_followers='default' in targets)
        only_create = not targets
        if p['keep_rotated']:
            targets, need_dbs, self.kept = keep_rotated_keys(before, name, targets, need_dbs)
            if self.kept:
                self.module.warn(kept_message(self.kept, name))
        plan = plan_key_targets(before, name, provider, scope, targets, need_dbs)
        explicit = [s for s in plan if not s['followed_default']]

        # 1. create the key where it is needed
        if p['create'] and (explicit or only_create):
            infos = [before['server'], before['default']] + list(before['databases'].values())
            if scope == 'global':
                if not known_on_provider(infos, name, provider, scope) or only_create:
                    self.create_key(name, provider, scope, self.login_db)
            else:
                for db in need_dbs:
                    if not key_matches(before['databases'].get(db), name, provider, scope) or only_create:
                        self.create_key(name, provider, scope, db)

        # 2. the default key first: keys that are the same as the old default key follow it
        default_step = next((s for s in explicit if s['target'] == 'default'), None)
        state = before
        if default_step is not None:
            self.set_target(default_step, name, provider, scope)
            self.record(default_step)
            if self.module.check_mode:
                for step in plan:
                    if step['followed_default']:
                        self.record(step)
            else:
                after_default = self.current([], need_dbs, with_followers=True)
                for step in plan:
                    if not step['followed_default']:
                        continue
                    now = after_default['server'] if step['target'] == 'server' \
                        else after_default['databases'].get(step['database'])
                    if key_matches(now, name, provider, scope):
                        self.record(step)
                state = after_default

        # 3. server and database keys that still differ
        if default_step is None or self.module.check_mode:
            remaining = [s for s in explicit if s['target'] != 'default']
        else:
            remaining = [s for s in plan_key_targets(state, name, provider, scope,
                                                     [t for t in targets if t != 'default'], need_dbs)
                         if not s['followed_default']]
        for step in remaining:
            self.set_target(step, name, provider, scope)
            self.record(step)
        changed = bool(self.created or self.set)
        return {'changed': changed, 'databases_read': list(before['databases'])}

    # absent -------------------------------------------------------------------------------------
    def absent(self) -> dict[str, Any]:
        p = self.params
        name, provider, scope = p['name'], p.get('provider'), None
        targets: list[str] = p['targets']
        databases: list[str] = p['databases'] if 'database' in targets else []
        self.check_databases(databases)
        if p.get('provider'):
            scope = p['provider_scope']
        before = self.current([], databases, with_followers='default' in targets)
        default = before['default']
        gone: set[str] = set()
        if 'default' in targets and key_matches(default, name, provider, scope):
            on_default = databases_on_default(default, before['databases'])
            users = list(on_default)
            if same_key(before['server'], default):
                users = ['the server key'] + users
            try:
                self.execute(self.login_db, 'SELECT pg_tde_delete_default_key()')
            except Exception as exc:
                text = pg_error_text(exc)
                extra = ('Keys that are the default key now: %s.' % ', '.join(users)) if users else None
                self.fail(tde_failure_message('Deleting the default key "%s"' % name, text, extra))
            self.deleted.append({'target': 'default', 'database': None, 'key': name, 'followed_default': False})
            gone = self.deleted_with_default(before, on_default, name)
        for db in databases:
            info = before['databases'].get(db)
            if not key_matches(info, name, provider, scope) or db in gone:
                continue
            try:
                self.execute(db, 'SELECT pg_tde_delete_key()')
            except Exception as exc:
                text = pg_error_text(exc)
                extra = None
                if same_key(info, default):
                    extra = 'The key of database "%s" is the default key.' % db
                self.fail(tde_failure_message('Deleting key "%s" of database "%s"' % (name, db), text, extra))
            self.deleted.append({'target': 'database', 'database': db, 'key': name, 'followed_default': False})
        return {'changed': bool(self.deleted), 'databases_read': list(before['databases'])}

    def deleted_with_default(self, before: dict[str, Any], on_default: list[str], name: str) -> set[str]:
        """pg_tde_delete_default_key() also removes the server key when it is the default key (and
        no WAL encryption keys use it), and the key entry of every database on the default key
        (they have no encrypted data, or pg_tde refuses). Record what went with it: in check mode
        what would go, otherwise what is gone when read again. Returns the databases."""
        candidates = ([('server', None)] if same_key(before['server'], before['default']) else []) + \
            [('database', db) for db in on_default]
        if not candidates:
            return set()
        if not self.module.check_mode:
            after = self.current([], on_default, with_followers=False)
            candidates = [(t, db) for t, db in candidates
                          if (after['server'] if t == 'server' else after['databases'].get(db)) is None]
        for target, db in candidates:
            self.deleted.append({'target': target, 'database': db, 'key': name, 'followed_default': True})
        return {db for target, db in candidates if target == 'database'}


def describe(step: dict[str, Any]) -> str:
    if step['target'] == 'database':
        return 'key of database "%s"' % step['database']
    return '%s key' % step['target']


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        provider=dict(type='str'),
        provider_scope=dict(type='str', default='global', choices=['global', 'database']),
        targets=dict(type='list', elements='str', default=[], choices=['server', 'default', 'database']),
        databases=dict(type='list', elements='str'),
        create=dict(type='bool', default=True),
        verify=dict(type='bool', default=True),
        keep_rotated=dict(type='bool', default=False),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    params['targets'] = list(dict.fromkeys(params['targets'] or []))
    params['databases'] = list(dict.fromkeys(params.get('databases') or [params['login_db']]))
    problems = option_problems(params)
    if problems:
        module.fail_json(msg='Invalid options: %s.' % '; '.join(problems))

    run = KeyRun(module)
    try:
        require_pg_tde(module, run.session(run.login_db))
        outcome = run.present() if params['state'] == 'present' else run.absent()
        after = run.current([], outcome['databases_read'], with_followers=False)
        result = {
            'changed': outcome['changed'],
            'principal_keys': run.keys_view(after),
            'created': run.created,
            'rotated': run.rotated,
            'set': run.set,
            'deleted': run.deleted,
            'kept': run.kept,
            'executed_queries': run.run_order_queries(),
        }
    finally:
        run.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
