#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_checksum
short_description: Row counts and checksums of tables, with their encryption state (read-only)
version_added: 1.0.0
description:
  - Reads every row of the chosen tables and returns the row count and an order-independent
    checksum, the same one M(tdeops.pg_tde.pg_tde_table_encrypt) uses to prove a rewrite lost
    nothing (sum and xor of C(hashtextextended(ROW(r.*)::text, 0)) over all rows), together with
    C(pg_tde_is_encrypted()) of each table.
  - Run it on two servers and compare, for example an original and its restore on a new host
    (C(playbooks/disaster_recovery.yml)). Reading an encrypted table on a restored server also
    proves that pg_tde could fetch its principal key from the KMS.
  - Never changes anything; C(changed) is always false.
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
      - Databases whose tables are checksummed when O(tables) is empty. Default O(login_db).
    type: list
    elements: str
  tables:
    description:
      - Tables to checksum, each C({database, table}) with C(table) as C(schema.table) or
        C(table) (SQL folding and quoting rules, as in pg_tde_table_encrypt).
      - Empty - every table and materialized view of O(databases) (with O(encrypted_only), the
        encrypted ones).
    type: list
    elements: dict
    default: []
  encrypted_only:
    description: Without O(tables), only tables that pg_tde reports as encrypted.
    type: bool
    default: true
notes:
  - Every row is read, so the cost grows with the table size; the tables should not be written
    while two servers are compared.
seealso:
  - module: tdeops.pg_tde.pg_tde_table_encrypt
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: Checksums of the encrypted tables of appdb
  tdeops.pg_tde.pg_tde_checksum:
    databases: [appdb]
  become: true
  become_user: postgres
  register: sums

- name: Two named tables
  tdeops.pg_tde.pg_tde_checksum:
    tables:
      - {database: appdb, table: public.orders}
      - {database: appdb, table: '"Sales"."Order Items"'}
'''

RETURN = r'''
tables:
  description: One entry per table, sorted by database and name.
  returned: always
  type: list
  elements: dict
  contains:
    database:
      description: Database.
      type: str
    table:
      description: C(schema.table) as PostgreSQL displays it.
      type: str
    rows:
      description: Row count.
      type: int
    hash_sum:
      description: Sum of the row hashes (text, a numeric).
      type: str
    checksum_method:
      description:
        - The row hash summed in C(hash_sum) - C(record) (C(hash_record_extended), each column by its
          type's hash function) or C(text) (the row's text, for tables with a column type without an
          extended hash function such as C(json) or C(point)). The same rule as
          M(tdeops.pg_tde.pg_tde_table_encrypt)'s verification, so both sides of a comparison agree.
      type: str
    encrypted:
      description: C(pg_tde_is_encrypted()) of the table (null when pg_tde is not loaded).
      type: bool
  sample:
    - {database: appdb, table: public.orders, rows: 1000, hash_sum: "-1234567", checksum_method: record,
       encrypted: true}
'''

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    open_session,
    pg_error_text,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import is_preloaded
from ansible_collections.tdeops.pg_tde.plugins.module_utils._tables import (
    hash_method,
    parse_relation_name,
    qualified,
    quote_ident,
    row_checksum,
)

TABLES_SQL = ("SELECT n.nspname AS schema, c.relname AS name, {encrypted} AS encrypted "
              "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' "
              "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)' "
              "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
              "AND d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2")

RESOLVE_SQL = ("SELECT n.nspname AS schema, c.relname AS name, {encrypted} AS encrypted "
               "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'm', 'p')")


def encrypted_column(preloaded: bool) -> str:
    return 'pg_tde_is_encrypted(c.oid)' if preloaded else 'NULL::boolean'


def requests_by_database(tables: list[dict[str, Any]], databases: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """{database: [table names]} from the tables option ([] = all tables of that database), and
    the problems with it (pure)."""
    problems: list[str] = []
    wanted: dict[str, list[str]] = {}
    if not tables:
        return {db: [] for db in databases}, problems
    for i, item in enumerate(tables):
        db, table = item.get('database'), item.get('table')
        if not db or not table or set(item) - {'database', 'table'}:
            problems.append('tables[%d] must be {database, table}, not %r' % (i, item))
            continue
        try:
            parse_relation_name(table)
        except ValueError as exc:
            problems.append('tables[%d]: %s' % (i, exc))
            continue
        wanted.setdefault(db, []).append(table)
    return wanted, problems


def checksum_database(module, db: str, names: list[str], encrypted_only: bool) -> list[dict[str, Any]]:
    session = open_session(module, db)
    try:
        col = encrypted_column(is_preloaded(session))
        if names:
            rels = []
            for name in names:
                schema, table = parse_relation_name(name)
                regclass = qualified(schema, table) if schema else quote_ident(table)
                row = session.query_one(RESOLVE_SQL.replace('{encrypted}', col), [regclass])
                if row is None:
                    module.fail_json(msg='Table %s does not exist in database %s (tables option).' % (name, db))
                rels.append(row)
        else:
            rels = [r for r in session.query(TABLES_SQL.replace('{encrypted}', col))
                    if r['encrypted'] or not encrypted_only]
        out = []
        for rel in rels:
            try:
                sums = row_checksum(session, rel['schema'], rel['name'],
                                    hash_method(session, rel['schema'], rel['name']))
            except Exception as exc:  # e.g. the key cannot be fetched: say which table
                module.fail_json(msg='Reading %s.%s in database %s failed: %s' % (rel['schema'], rel['name'], db,
                                                                                  pg_error_text(exc)))
            out.append({'database': db, 'table': '%s.%s' % (rel['schema'], rel['name']), 'rows': sums['rows'],
                        'hash_sum': sums['hash_sum'], 'checksum_method': sums['method'],
                        'encrypted': rel['encrypted']})
        return out
    finally:
        session.close()


def main() -> None:
    argument_spec = postgres_argument_spec()
    argument_spec.update(
        databases=dict(type='list', elements='str'),
        tables=dict(type='list', elements='dict', default=[]),
        encrypted_only=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    wanted, problems = requests_by_database(p['tables'], p['databases'] or [p['login_db']])
    if problems:
        module.fail_json(msg='Invalid options: %s.' % '; '.join(problems))
    tables: list[dict[str, Any]] = []
    for db in sorted(wanted):
        tables += checksum_database(module, db, wanted[db], p['encrypted_only'])
    module.exit_json(changed=False, tables=sorted(tables, key=lambda t: (t['database'], t['table'])))


if __name__ == '__main__':
    main()
