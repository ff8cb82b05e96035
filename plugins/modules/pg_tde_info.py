#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_info
short_description: Report the pg_tde state of a PostgreSQL server (for audits)
version_added: 1.0.0
description:
  - Reads, and never changes, everything about Percona pg_tde on one server - version, preload,
    settings (with C(pending_restart)), WAL encryption, global and database key providers, the
    server, default and database principal keys, and which relations are encrypted.
  - Works on servers without pg_tde too (reports C(preloaded=false) and C(extension=false)), so it
    can audit a whole fleet. When pg_tde is not in C(shared_preload_libraries) no pg_tde function
    is called (that would end the session).
  - Never returns secrets. Provider options carry hosts, ports, URLs and file paths only (the
    Vault token is a path); any inline secret is masked.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
options:
  databases:
    description:
      - Databases to look at. Default is every database that allows connections, C(template1)
        included (it can carry the extension and a key of its own); C(template0) allows none.
    type: list
    elements: str
  include_relations:
    description:
      - List the user tables, indexes, TOAST tables and materialized views of each database,
        split into encrypted and unencrypted (C(pg_tde_is_encrypted())).
      - Sequences, catalogs and temporary tables of other sessions are not listed (pg_tde never
        encrypts sequences; their number is returned in C(not_encryptable)).
    type: bool
    default: true
  include_sizes:
    description:
      - With O(include_relations), add C(bytes) to every relation listed (all forks of that
        relation alone; a table's indexes and TOAST table are listed, and counted, on their own).
    type: bool
    default: false
  include_file_settings:
    description:
      - Add C(file_settings), what the configuration files say now (C(pg_file_settings) - every
        line that sets something, with its file, line and error), and C(conf_load_time). The
        configure role reads them to merge C(shared_preload_libraries) and to see whether its file
        is read.
    type: bool
    default: false
notes:
  - Reading a key that pg_tde has not cached makes it fetch the key from the KMS. When that
    fails, the key's entry carries C(error) with pg_tde's text and the module warns; it does not fail.
  - Always check-mode safe; C(changed) is always false.
seealso:
  - module: tdeops.pg_tde.pg_tde_provider
  - module: tdeops.pg_tde.pg_tde_key
'''

EXAMPLES = r'''
- name: Audit pg_tde
  tdeops.pg_tde.pg_tde_info:
  become: true
  become_user: postgres
  register: tde

- name: WAL encryption must be on and not waiting for a restart
  ansible.builtin.assert:
    that:
      - tde.pg_tde.wal_encryption.setting == 'on'
      - not tde.pg_tde.wal_encryption.pending_restart
      - tde.pg_tde.wal_encryption.server_key_set

- name: Only the key state of one database, without the relation lists
  tdeops.pg_tde.pg_tde_info:
    databases: [appdb]
    include_relations: false

- name: Relations with their size (what the compliance report counts)
  tdeops.pg_tde.pg_tde_info:
    include_sizes: true
'''

RETURN = r'''
pg_tde:
  description: The pg_tde state of the server.
  returned: always
  type: dict
  contains:
    version:
      description: pg_tde version (C(2.2.0)), null when no database has a usable extension.
      type: str
    version_text:
      description: Text of C(pg_tde_version()), for example C(pg_tde 2.2.0).
      type: str
    preloaded:
      description: Whether C(pg_tde) is in C(shared_preload_libraries) (the running value).
      type: bool
    shared_preload_libraries:
      description: The running value of C(shared_preload_libraries) as a list.
      type: list
      elements: str
    settings:
      description:
        - C(shared_preload_libraries) and every C(pg_tde.*) setting, each with C(name),
          C(setting), C(pending_restart) and C(context).
      type: list
      elements: dict
    wal_encryption:
      description: C(setting) of pg_tde.wal_encrypt (null when unknown), C(pending_restart), C(server_key_set).
      type: dict
    providers:
      description: C(global) (list) and C(databases) (database name -> list) of providers, each
        with C(id), C(name), C(type), C(scope), C(options).
      type: dict
    principal_keys:
      description:
        - C(server), C(default) and C(databases) (database name -> key). A key is null when none is
          set, or has C(key_name), C(provider_name), C(provider_id), C(provider_scope),
          C(key_creation_time); C(same_as_default) for database keys; C(error) when it could not be read.
      type: dict
    pending_restart:
      description: Names of every setting that waits for a restart (C(pg_settings.pending_restart)), sorted.
      type: list
      elements: str
    file_settings:
      description:
        - With O(include_file_settings), the rows of C(pg_file_settings) in order, each with C(seqno),
          C(name), C(setting), C(sourcefile), C(sourceline) and C(error).
      type: list
      elements: dict
    conf_load_time:
      description: With O(include_file_settings), C(pg_conf_load_time()) as text.
      type: str
    databases:
      description:
        - Per database, C(extension) (bool), C(extension_version), C(default_table_access_method)
          and C(enforce_encryption) (the values a new session of that database gets, so settings
          per database count; C(enforce_encryption) is null when pg_tde is not loaded), and with
          O(include_relations) C(encrypted) and C(unencrypted) lists of C({name, kind}) (C(name) is
          C(schema.relation), C(kind) one of table, index, toast, materialized view; C(bytes) too
          with O(include_sizes)) and C(not_encryptable) (C({sequences}) - pg_tde never encrypts
          sequences, nor pg_statistic).
      type: dict
  sample:
    version: 2.2.0
    version_text: pg_tde 2.2.0
    preloaded: true
    shared_preload_libraries: [pg_tde]
    settings: [{name: pg_tde.wal_encrypt, setting: "on", pending_restart: false, context: postmaster}]
    wal_encryption: {setting: "on", pending_restart: false, server_key_set: true}
    pending_restart: []
    providers: {global: [{id: -1, name: kms, type: kmip, scope: global,
                          options: {host: 127.0.0.1, port: 5696, certPath: /etc/c.crt, keyPath: /etc/c.key,
                                    caPath: /etc/ca.crt}}], databases: {postgres: []}}
    principal_keys: {server: {key_name: k1, provider_name: kms, provider_id: -1}, default: null,
                     databases: {postgres: null}}
    databases: {postgres: {extension: true, extension_version: "2.2", default_table_access_method: tde_heap,
                           enforce_encryption: "on", encrypted: [{name: public.t, kind: table}],
                           unencrypted: [], not_encryptable: {sequences: 0}}}
'''

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    Sessions,
    open_session,
    pg_error_text,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._keys import database_keys, same_key
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    connectable_databases,
    extension_version,
    list_providers,
    parse_tde_version,
    public_provider,
    split_guc_list,
    tde_version_text,
    try_key_info,
)

RELKINDS = {'r': 'table', 'i': 'index', 't': 'toast', 'm': 'materialized view'}

SETTINGS_SQL = ("SELECT name, setting, pending_restart, context FROM pg_settings "
                "WHERE name LIKE 'pg\\_tde.%' OR name = 'shared_preload_libraries' ORDER BY name")

RELATIONS_FILTER = ("FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'i', 't', 'm') AND c.oid >= 16384 "
                    "AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema')")

# pg_tde usable: ask it.
RELATIONS_SQL = ("SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind, "
                 "pg_tde_is_encrypted(c.oid) AS encrypted{sizes} " + RELATIONS_FILTER + " ORDER BY 1, 2")

# Every fork of the relation alone (pg_table_size would add a table's TOAST, listed on its own).
SIZE_COLUMN = (", (pg_relation_size(c.oid, 'main') + pg_relation_size(c.oid, 'fsm') + pg_relation_size(c.oid, 'vm') "
               "+ pg_relation_size(c.oid, 'init'))::bigint AS bytes")

SEQUENCES_SQL = ("SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')")

# The values a new session of this database gets (ALTER DATABASE ... SET counts).
PENDING_RESTART_SQL = "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name"

FILE_SETTINGS_SQL = ("SELECT seqno, name, setting, sourcefile, sourceline, error FROM pg_file_settings ORDER BY seqno")

DATABASE_SETTINGS_SQL = ("SELECT current_setting('default_table_access_method') AS am, "
                         "current_setting('pg_tde.enforce_encryption', true) AS enforce")

# pg_tde not loaded (its functions must not be called): the access method tells for tables and
# materialized views; indexes and TOAST belong to a table.
RELATIONS_BY_AM_SQL = (
    "SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind, "
    "COALESCE((SELECT a.amname = 'tde_heap' FROM pg_class o JOIN pg_am a ON a.oid = o.relam "
    "          WHERE o.oid = CASE c.relkind WHEN 'i' THEN (SELECT indrelid FROM pg_index WHERE indexrelid = c.oid) "
    "                                       WHEN 't' THEN (SELECT p.oid FROM pg_class p WHERE p.reltoastrelid = c.oid) "
    "                                       ELSE c.oid END), false) AS encrypted{sizes} "
    + RELATIONS_FILTER + " ORDER BY 1, 2")


def relations_sql(tde_usable: bool, sizes: bool) -> str:
    """The relation listing: pg_tde_is_encrypted() when pg_tde is usable, the access method
    otherwise; with the size of each relation when asked."""
    return (RELATIONS_SQL if tde_usable else RELATIONS_BY_AM_SQL).replace('{sizes}', SIZE_COLUMN if sizes else '')


def format_version(version: tuple[int, int, int] | None) -> str | None:
    return '.'.join(str(v) for v in version) if version else None


def split_relations(rows: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Rows of (schema, name, kind, encrypted) -> (encrypted, unencrypted) lists (pure)."""
    encrypted: list[dict[str, str]] = []
    unencrypted: list[dict[str, str]] = []
    for row in rows:
        item = {'name': '%s.%s' % (row['schema'], row['name']),
                'kind': RELKINDS.get(row['kind'], row['kind'])}
        if 'bytes' in row:
            item['bytes'] = int(row['bytes'] or 0)
        (encrypted if row.get('encrypted') else unencrypted).append(item)
    return encrypted, unencrypted


def wal_encryption(settings: list[dict[str, Any]], server_key: dict[str, Any] | None,
                   tde_usable: bool) -> dict[str, Any]:
    """WAL encryption status from the settings and the server key (pure)."""
    setting = next((s for s in settings if s['name'] == 'pg_tde.wal_encrypt'), None)
    return {
        'setting': setting['setting'] if setting else None,
        'pending_restart': bool(setting['pending_restart']) if setting else False,
        'server_key_set': (server_key is not None and not server_key.get('error')) if tde_usable else False,
    }


def reported_key(info: dict[str, Any] | None, err: str | None, warnings: list[str],
                 label: str) -> dict[str, Any] | None:
    """A key as reported: its info, {'error': text} when pg_tde could not read it (warned),
    None when unset."""
    if err:
        warnings.append('Could not read the %s: %s' % (label, err))
        return {'error': err}
    return info


def gather(module: AnsibleModule) -> dict[str, Any]:
    with Sessions(lambda db: open_session(module, db)) as sessions:
        return gather_from(module, sessions)


def gather_from(module: AnsibleModule, sessions: Sessions) -> dict[str, Any]:
    params = module.params
    warnings: list[str] = []
    main = sessions(params['login_db'])
    settings = [dict(r) for r in main.query(SETTINGS_SQL)]
    spl_row = next((s for s in settings if s['name'] == 'shared_preload_libraries'), None)
    spl = split_guc_list(spl_row['setting'] if spl_row else '')
    preloaded = 'pg_tde' in spl
    databases = params.get('databases') or connectable_databases(main)
    # pg_tde functions must not be called when pg_tde is not preloaded: no keys are read then.
    keys = database_keys(sessions, databases) if preloaded else {}

    out_dbs: dict[str, Any] = {}
    db_providers: dict[str, Any] = {}
    db_keys: dict[str, Any] = {}
    global_providers: list[dict[str, Any] | None] = []
    server_key = default_key = None
    version_text = None
    first = True
    for db in databases:
        session = sessions(db)
        ext = extension_version(session)
        entry: dict[str, Any] = {'extension': ext is not None, 'extension_version': ext}
        row = session.query_one(DATABASE_SETTINGS_SQL)
        entry['default_table_access_method'] = row['am'] if row else None
        entry['enforce_encryption'] = row['enforce'] if row else None
        usable = preloaded and ext is not None
        if usable:
            if first:
                first = False
                version_text = tde_version_text(session)
                global_providers = [public_provider(p, 'global') for p in list_providers(session, 'global')]
                server_key = reported_key(*try_key_info(session, 'server'), warnings, 'server key')
                default_key = reported_key(*try_key_info(session, 'default'), warnings, 'default key')
            db_providers[db] = [public_provider(p, 'database') for p in list_providers(session, 'database')]
            key = reported_key(*keys.get(db, (None, None)), warnings, 'key of database "%s"' % db)
            if key is not None and not key.get('error'):
                key['same_as_default'] = same_key(key, default_key)
            db_keys[db] = key
        if params['include_relations']:
            if ext is not None and not preloaded:
                warnings.append('pg_tde is not preloaded: the encryption state of relations in "%s" is read '
                                'from their access method (tde_heap).' % db)
            sql = relations_sql(usable, params['include_sizes'])
            try:
                rows = session.query(sql)
            except Exception as exc:
                warnings.append('Could not list the relations of "%s": %s' % (db, pg_error_text(exc)))
                rows = []
                entry['error'] = pg_error_text(exc)
            entry['encrypted'], entry['unencrypted'] = split_relations(rows)
            seq = session.query_one(SEQUENCES_SQL)
            entry['not_encryptable'] = {'sequences': int(seq['n']) if seq else 0}
        out_dbs[db] = entry

    for text in warnings:
        module.warn(text)
    clean_settings = [{'name': s['name'], 'setting': s['setting'], 'pending_restart': bool(s['pending_restart']),
                       'context': s['context']} for s in settings]
    out: dict[str, Any] = {
        'version': format_version(parse_tde_version(version_text)),
        'version_text': version_text,
        'preloaded': preloaded,
        'shared_preload_libraries': spl,
        'settings': clean_settings,
        'wal_encryption': wal_encryption(clean_settings, server_key, version_text is not None),
        'providers': {'global': global_providers, 'databases': db_providers},
        'principal_keys': {'server': server_key, 'default': default_key, 'databases': db_keys},
        'pending_restart': [r['name'] for r in main.query(PENDING_RESTART_SQL)],
        'databases': out_dbs,
    }
    if params.get('include_file_settings'):
        out['file_settings'] = [dict(r) for r in main.query(FILE_SETTINGS_SQL)]
        out['conf_load_time'] = str(main.query_one('SELECT pg_conf_load_time() AS t')['t'])
    return out


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        databases=dict(type='list', elements='str'),
        include_relations=dict(type='bool', default=True),
        include_sizes=dict(type='bool', default=False),
        include_file_settings=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    module.exit_json(changed=False, pg_tde=gather(module))


if __name__ == '__main__':
    main()
