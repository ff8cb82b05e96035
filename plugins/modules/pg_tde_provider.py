#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_provider
short_description: Add, change or delete a pg_tde key provider (KMIP, Vault/OpenBao KV v2, file)
version_added: 1.0.0
description:
  - Manages one key provider of Percona pg_tde in the global scope (usable by every database, the
    server key and the default key) or in one database's scope.
  - Idempotent. The provider is compared with C(pg_tde_list_all_global_key_providers()) or
    C(pg_tde_list_all_database_key_providers()) as parsed JSON. A missing provider is added with
    the typed C(pg_tde_add_*_key_provider_<type>()) function, a provider whose type or options
    differ is changed in place with C(pg_tde_change_*_key_provider_<type>()), an equal provider
    is left alone (no call at all).
  - Before pg_tde is called, the module checks on the database host that the files the provider
    names exist and can be read by the OS user that runs PostgreSQL (the owner of the data
    directory), that a Vault mount is a KV version 2 secrets engine, and, before a delete, that
    no principal key uses the provider. Each refusal names the problem and the fix.
  - pg_tde refuses to change a provider unless every key in use is still fetchable, and
    identical, through the new settings. Its error text is passed on with an explanation.
  - "pg_tde 2.2 checks, on a change of a database provider, the keys of every database whose key
    uses a database provider with the same id (ids start at 1 in each database), not only the keys
    of O(database). The module warns before the change when another database has such a key, and
    explains the refusal and the way around it (a provider under a new name) when pg_tde refuses."
  - Works with pg_tde 2.0, 2.1 and 2.2. O(vault_namespace) needs pg_tde 2.1 or later.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
attributes:
  check_mode:
    support: full
    details: Compares with the providers pg_tde lists and returns the statements it would run.
  diff_mode:
    support: full
    details: Before and after show the provider options (paths, hosts, URLs), never a secret.
options:
  name:
    description:
      - Name of the key provider (less than 128 bytes).
    type: str
    required: true
  scope:
    description:
      - C(global) providers serve the server (WAL) key, the default key and any database.
      - C(database) providers belong to one database, O(database).
    type: str
    default: global
    choices: [ global, database ]
  database:
    description:
      - Database that owns the provider when O(scope=database). Defaults to O(login_db).
      - Ignored for O(scope=global).
    type: str
  type:
    description:
      - Provider type. Required with O(state=present).
      - C(file) keeps keys in plaintext in a local file; for tests and labs only, and it does not
        work with replication.
    type: str
    choices: [ kmip, vault_v2, file ]
  kmip_host:
    description: Host name or IP address of the KMIP server, as seen from the database host.
    type: str
  kmip_port:
    description: Port of the KMIP server.
    type: int
    default: 5696
  kmip_cert:
    description:
      - Client certificate (PEM) PostgreSQL presents to the KMIP server, a path on the database host.
      - Its CN is the owner of the keys on PyKMIP-style servers.
    type: path
  kmip_key:
    description: Private key (PEM) of O(kmip_cert), a path on the database host. The module never reads it.
    type: path
  kmip_ca:
    description:
      - CA certificate (PEM) for the KMIP server, a path on the database host.
      - Note that pg_tde does not verify the KMIP server certificate against it (facts, section 2).
    type: path
  vault_url:
    description: URL of the Vault or OpenBao server, for example C(https://vault.example.com:8200).
    type: str
  vault_mount_path:
    description:
      - The bare KV version 2 mount (C(secret), not C(secret/data)). Leading and trailing slashes
        are removed.
    type: str
    default: secret
  vault_token_path:
    description:
      - File on the database host whose first line is the Vault token. The module reads it only to
        check the mount; the token never appears in the output.
    type: path
  vault_ca_path:
    description: CA certificate (PEM) that signs the Vault server certificate, a path on the database host.
    type: path
  vault_namespace:
    description: Vault Enterprise / OpenBao namespace. Needs pg_tde 2.1 or later.
    type: str
  file_path:
    description:
      - Keyring file on the database host. pg_tde creates it when missing; its directory must be
        writable for the PostgreSQL OS user.
    type: path
  state:
    description:
      - C(present) adds or changes the provider, C(absent) deletes it.
      - A delete is refused while a principal key uses the provider (the module names which).
    type: str
    default: present
    choices: [ present, absent ]
notes:
  - Runs on the database host (the file checks look at that host's files as the PostgreSQL OS
    user). When the data directory is not on the host that runs the module, the file checks are
    skipped with a warning.
  - Provider changes need a superuser (O(login_user)).
  - Supports check mode (the statements that would run are returned in RV(executed_queries)) and
    diff mode (type, paths and settings; never file contents or tokens).
seealso:
  - module: tdeops.pg_tde.pg_tde_key
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: Global KMIP provider
  tdeops.pg_tde.pg_tde_provider:
    name: kms
    type: kmip
    kmip_host: kms.example.com
    kmip_port: 5696
    kmip_cert: /etc/postgresql/kmip/client.crt
    kmip_key: /etc/postgresql/kmip/client.key
    kmip_ca: /etc/postgresql/kmip/ca.crt
  become: true
  become_user: postgres

- name: Vault / OpenBao KV v2 provider for one database
  tdeops.pg_tde.pg_tde_provider:
    name: vault
    scope: database
    database: appdb
    type: vault_v2
    vault_url: https://vault.example.com:8200
    vault_mount_path: secret
    vault_token_path: /etc/postgresql/vault/token
    vault_ca_path: /etc/postgresql/vault/ca.crt

- name: File provider (labs and tests only)
  tdeops.pg_tde.pg_tde_provider:
    name: lab_keyring
    type: file
    file_path: /var/lib/postgresql/pg_tde_keyring.per

- name: Delete a provider no key uses any more
  tdeops.pg_tde.pg_tde_provider:
    name: old_kms
    state: absent
'''

RETURN = r'''
provider:
  description:
    - The provider after the run (in check mode, as it would be). Null when it does not exist.
    - O(type) uses the module's spelling (C(vault_v2)); options use pg_tde's JSON keys and hold
      hosts, ports, URLs and paths only.
  returned: always
  type: dict
  sample:
    id: -1
    name: kms
    type: kmip
    scope: global
    options: {host: kms.example.com, port: 5696, certPath: /etc/postgresql/kmip/client.crt,
              keyPath: /etc/postgresql/kmip/client.key, caPath: /etc/postgresql/kmip/ca.crt}
operation:
  description: What the module did or would do.
  returned: always
  type: str
  choices: [ add, change, delete, none ]
  sample: change
differences:
  description: Option keys (pg_tde spelling) and C(type) that differed before the run.
  returned: always
  type: list
  elements: str
  sample: [ caPath ]
executed_queries:
  description: Statements run (in check mode, that would run).
  returned: always
  type: list
  elements: str
  sample: [ "SELECT pg_tde_add_global_key_provider_file('lab'::text, '/srv/keys.per'::text)" ]
'''

import os
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._config_check import provider_value_problems
from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    PgSession,
    Sessions,
    open_session,
    pg_error_text,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import (
    PROVIDER_IN_USE,
    other_database_in_change_error,
    tde_failure_message,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._files import (
    dir_write_problem,
    path_access_problem,
    server_os_identity,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._keys import (
    database_keys,
    provider_users,
    same_id_keys_elsewhere,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    OPTION_PARAM,
    PROVIDER_FILE_KEYS,
    connectable_databases,
    desired_provider_options,
    find_provider,
    has_vault_namespace_overload,
    list_providers,
    provider_action,
    provider_differences,
    provider_statement,
    public_provider,
    require_pg_tde,
    try_key_info,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._vault import (
    VaultCheckError,
    check_kv2_mount,
    read_token_file,
)

TYPE_OPTIONS = {
    'kmip': ('kmip_host', 'kmip_cert', 'kmip_key', 'kmip_ca'),
    'vault_v2': ('vault_url', 'vault_token_path', 'vault_ca_path', 'vault_namespace'),
    'file': ('file_path',),
}


def normalize_mount(mount: str | None) -> str | None:
    return mount.strip('/') if mount else mount


def input_problems(params: dict[str, Any]) -> list[str]:
    """Problems with the options themselves (pure: unit-tested). The rules are those of
    pg_tde_config_check (one place: _config_check.provider_value_problems)."""
    ptype = None if params['state'] == 'absent' else params.get('type')
    values = {k: params.get(k) for k in ('name', 'kmip_host', 'kmip_port', 'kmip_cert', 'kmip_key', 'kmip_ca',
                                         'vault_url', 'vault_mount_path', 'vault_token_path', 'vault_ca_path',
                                         'vault_namespace', 'file_path')}
    return ['%s %s Fix: %s' % (option or 'the provider:', problem, fix)
            for option, problem, fix in provider_value_problems(values, ptype)]


def namespace_problem(options: dict[str, Any], has_overload: Callable[[], bool]) -> str | None:
    """A vault namespace needs the 6-argument vault_v2 functions of pg_tde 2.1+ (has_overload is
    asked only when a namespace is given)."""
    if options.get('namespace') and not has_overload():
        return ('vault_namespace needs pg_tde 2.1 or later (the 6-argument vault_v2 functions); this server '
                'has an older pg_tde. Upgrade pg_tde or leave vault_namespace unset.')
    return None


def ignored_options(params: dict[str, Any]) -> list[str]:
    """Options given for another provider type (warned about, never used)."""
    if params['state'] == 'absent' or not params.get('type'):
        return []
    used = set(TYPE_OPTIONS[params['type']])
    out = []
    for ptype, names in TYPE_OPTIONS.items():
        if ptype == params['type']:
            continue
        out.extend(n for n in names if n not in used and params.get(n) is not None)
    return sorted(set(out))


def file_checks(ptype: str, options: dict[str, Any], uid: int, gids: list[int], user: str) -> list[str]:
    """Problems of the files a provider names, for the PostgreSQL OS user (uid, gids)."""
    problems = []
    for key in PROVIDER_FILE_KEYS[ptype]:
        path = options.get(key)
        if path is None:
            continue
        param = OPTION_PARAM[ptype][key]
        if ptype == 'file':
            if os.path.exists(path):
                problem = path_access_problem(path, uid, gids, need_write=True)
            else:
                problem = dir_write_problem(path, uid, gids)
        else:
            problem = path_access_problem(path, uid, gids)
        if problem:
            problems.append('%s %s %s for the PostgreSQL OS user "%s"' % (param, path, problem, user))
    return problems


def check_vault_mount(module: AnsibleModule, name: str, options: dict[str, Any]) -> None:
    """Make the reads pg_tde makes (sys/mounts/<mount> is KV version 2, <mount>/metadata lists)
    with the token pg_tde would send; refuse the provider with the fix when one fails."""
    try:
        token, _ignored = read_token_file(options['tokenPath'])
        check_kv2_mount(options['url'], options['mountPath'], token, options['tokenPath'], options.get('caPath'),
                        options.get('namespace'), provider=name)
    except VaultCheckError as exc:
        module.fail_json(msg=str(exc))


def scope_users(session: PgSession, sessions: Sessions, scope: str,
                provider_id: int) -> tuple[list[str], list[str]]:
    """Keys that use the provider, and the keys that could not be read."""
    unreadable: list[str] = []
    if scope == 'database':
        info, err = try_key_info(session, 'database')
        if err:
            unreadable.append('%s (%s)' % (session.database, err))
        return provider_users(provider_id, None, None, {session.database: info}), unreadable
    server, err = try_key_info(session, 'server')
    if err:
        unreadable.append('server key (%s)' % err)
    default, err = try_key_info(session, 'default')
    if err:
        unreadable.append('default key (%s)' % err)
    infos: dict[str, Any] = {}
    for db, (info, err) in database_keys(sessions, connectable_databases(session)).items():
        if err:
            unreadable.append('database %s (%s)' % (db, err))
        infos[db] = info
    return provider_users(provider_id, server, default, infos), unreadable


def other_database_keys(session: PgSession, sessions: Sessions) -> dict[str, Any]:
    """The database keys of every other database with the extension ({db: info}); unreadable
    ones are left out (they are reported where they matter)."""
    others = [db for db in connectable_databases(session) if db != session.database]
    return {db: info for db, (info, _err) in database_keys(sessions, others).items()}


def same_id_message(name: str, database: str, provider_id: int, users: list[str]) -> str:
    return ('pg_tde checks the keys of every database whose key uses a database provider with id %d '
            '(database provider ids start at 1 in each database), not only those of database "%s": %s '
            'must also be fetchable through the new settings of "%s", or pg_tde refuses the change. '
            'If they are not, add a provider under a new name in database "%s" instead (it gets a new id), '
            'move the key of database "%s" to it with tdeops.pg_tde.pg_tde_key, and delete "%s".'
            % (provider_id, database, ', '.join(users), name, database, database, name))


def diff_view(provider: dict[str, Any] | None, scope: str, database: str | None) -> dict[str, Any]:
    if provider is None:
        return {}
    view = {'name': provider['name'], 'scope': scope, 'type': provider['type'], 'options': provider['options']}
    if scope == 'database':
        view['database'] = database
    return view


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        name=dict(type='str', required=True),
        scope=dict(type='str', default='global', choices=['global', 'database']),
        database=dict(type='str'),
        type=dict(type='str', choices=['kmip', 'vault_v2', 'file']),
        kmip_host=dict(type='str'),
        kmip_port=dict(type='int', default=5696),
        kmip_cert=dict(type='path'),
        kmip_key=dict(type='path', no_log=False),
        kmip_ca=dict(type='path'),
        vault_url=dict(type='str'),
        vault_mount_path=dict(type='str', default='secret'),
        vault_token_path=dict(type='path', no_log=False),
        vault_ca_path=dict(type='path'),
        vault_namespace=dict(type='str'),
        file_path=dict(type='path'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[
            ('state', 'present', ('type',)),
            ('type', 'kmip', ('kmip_host', 'kmip_cert', 'kmip_key', 'kmip_ca')),
            ('type', 'vault_v2', ('vault_url', 'vault_token_path')),
            ('type', 'file', ('file_path',)),
        ],
    )
    params = module.params
    params['vault_mount_path'] = normalize_mount(params.get('vault_mount_path'))
    name: str = params['name']
    scope: str = params['scope']
    state: str = params['state']
    database = (params.get('database') or params['login_db']) if scope == 'database' else params['login_db']

    problems = input_problems(params)
    if problems:
        module.fail_json(msg='Invalid options: %s.' % '; '.join(problems))
    for option in ignored_options(params):
        module.warn('%s is ignored for type %s.' % (option, params['type']))
    if scope == 'global' and params.get('database'):
        module.warn('database is ignored for scope=global (global providers serve every database).')

    with Sessions(lambda db: open_session(module, db)) as sessions:
        result = run(module, sessions, params, name, scope, state, database)
    module.exit_json(**result)


def run(module: AnsibleModule, sessions: Sessions, params: dict[str, Any], name: str, scope: str, state: str,
        database: str) -> dict[str, Any]:
    session = sessions(database)
    require_pg_tde(module, session)
    current = find_provider(list_providers(session, scope), name)
    ptype = params.get('type')
    desired = desired_provider_options(params) if state == 'present' else {}
    action = provider_action(current, ptype, desired, state)
    differences = [] if state == 'absent' else provider_differences(current, ptype, desired)
    if differences == ['missing']:
        differences = []
    before = public_provider(current, scope)
    where = 'global scope' if scope == 'global' else 'database "%s"' % database

    if action in ('add', 'change'):
        problem = namespace_problem(desired, lambda: has_vault_namespace_overload(session))
        if problem:
            module.fail_json(msg=problem)
        identity = server_os_identity(session)
        if identity is None:
            module.warn('The data directory of the server is not on this host (or not readable by this role): '
                        'the checks of the provider files were skipped. Run the module on the database host.')
        else:
            problems = file_checks(ptype, desired, identity['uid'], identity['gids'], identity['user'])
            if problems:
                module.fail_json(msg='Provider "%s" not %s: %s. Create the files, or fix their owner/mode so the '
                                     'PostgreSQL OS user can read them (tdeops.pg_tde.certificates does this).'
                                 % (name, 'added' if action == 'add' else 'changed', '; '.join(problems)))
        if ptype == 'vault_v2':
            check_vault_mount(module, name, desired)
        same_id_users: list[str] = []
        if action == 'change' and scope == 'database':
            same_id_users = same_id_keys_elsewhere(current['id'], database, other_database_keys(session, sessions))
            if same_id_users:
                module.warn(same_id_message(name, database, current['id'], same_id_users))
        sql, args = provider_statement(action, scope, ptype, name, desired)
        try:
            session.execute(sql, args)
        except Exception as exc:
            verb = 'Adding' if action == 'add' else 'Changing'
            text = pg_error_text(exc)
            extra = None
            if other_database_in_change_error(text, database):
                extra = same_id_message(name, database, current['id'], same_id_users or ['its key'])
            module.fail_json(msg=tde_failure_message('%s of %s key provider "%s" in the %s' % (verb, ptype, name, where),
                                                     text, extra),
                             executed_queries=session.executed_queries)
    elif action == 'delete':
        users, unreadable = scope_users(session, sessions, scope, current['id'])
        if users:
            module.fail_json(msg='Key provider "%s" (%s) is in use by %s: pg_tde refuses to delete a provider '
                                 'in use ("%s"). Rotate those keys to another provider with '
                                 'tdeops.pg_tde.pg_tde_key first.' % (name, where, ', '.join(users), PROVIDER_IN_USE))
        if unreadable:
            module.warn('Could not read some keys while looking for users of provider "%s": %s.'
                        % (name, '; '.join(unreadable)))
        sql, args = provider_statement('delete', scope, current['type'], name, {})
        try:
            session.execute(sql, args)
        except Exception as exc:
            module.fail_json(msg=tde_failure_message('Deleting key provider "%s" in the %s' % (name, where),
                                                     pg_error_text(exc)),
                             executed_queries=session.executed_queries)

    if action == 'none' or module.check_mode:
        if action == 'delete':
            after = None
        elif action in ('add', 'change'):
            after = public_provider({'id': current['id'] if current else None, 'name': name,
                                     'type': ptype, 'options': desired}, scope)
        else:
            after = before
    else:
        after = public_provider(find_provider(list_providers(session, scope), name), scope)

    result: dict[str, Any] = {
        'changed': action != 'none',
        'operation': action,
        'differences': differences,
        'provider': after,
        'executed_queries': session.executed_queries,
    }
    if module._diff:
        result['diff'] = {'before': diff_view(before, scope, database), 'after': diff_view(after, scope, database)}
    return result


if __name__ == '__main__':
    main()
