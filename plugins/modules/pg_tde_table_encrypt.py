#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
---
module: pg_tde_table_encrypt
short_description: Encrypt (or decrypt) existing tables with pg_tde by moving them to the tde_heap access method
version_added: 1.0.0
description:
  - Moves existing tables, partitions and (optionally) materialized views to the C(tde_heap)
    access method of Percona pg_tde (2.0 to 2.2) with C(ALTER TABLE ... SET ACCESS METHOD tde_heap),
    which rewrites each table under an C(ACCESS EXCLUSIVE) lock. O(state=decrypted) moves them
    back to C(heap).
  - Tables already on the target access method are skipped, so the module is idempotent.
  - "Before anything is changed it refuses, with what to do: when pg_tde is not loaded or its
    extension is missing, when a database has no principal key (neither its own,
    C(pg_tde_key_info()), nor a default key, C(pg_tde_default_key_info())) or the key cannot be
    fetched, when free space on a table's tablespace is below what the rewrites need, when a named
    table does not exist, and (decrypting) when C(pg_tde.enforce_encryption) is on."
  - "Each table is rewritten in one transaction: lock (O(lock_timeout)), row count and checksum,
    rewrite, C(pg_tde_is_encrypted) on the table, its indexes, its TOAST table and TOAST index,
    row count and checksum again. The transaction commits only when all of it holds; otherwise it
    rolls back and the table is left as it was. A table that fails is reported and the task fails."
  - A table that cannot be locked within O(lock_timeout) is tried again O(retries) times with a
    growing wait; if it still cannot be locked it is left untouched, the other tables go on and the
    task fails at the end. Any other error stops the start of further tables.
  - Partitioned tables are handled through their partitions (a partitioned table has no storage).
    On PostgreSQL 17 and later the partitioned table's own access method is set too, so that
    partitions created later are C(tde_heap) as well; older releases cannot do that (warning).
  - The free space check reads the tablespace directories, so the module must run on the
    database host (C(delegate_to) it there, C(become_user=postgres)).
  - In check mode the module returns the plan (tables, sizes, bytes to rewrite, order, free space)
    and changes nothing.
  - O(method=online) moves tables while they stay readable and writable - a copy built with
    the target access method next to the table, kept in step through row triggers and a change
    log, then a switch under a short C(ACCESS EXCLUSIVE) lock - for large, busy tables that
    cannot be locked for a whole rewrite. It refuses, up front and with the reason, tables it
    cannot move without losing something (no primary key or unique key, dependent materialized
    views, partitions of a table with a DEFAULT partition, ...). See docs/encrypt-tables.md.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.postgres
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_pg_tde
options:
  databases:
    description:
      - Databases to work in, one after another (tables of several databases may run in parallel).
      - Defaults to O(login_db).
    type: list
    elements: str
  tables:
    description:
      - Tables by name, C(table) or C(schema.table). Unquoted names fold to lower case and quoted
        ones (C('"Sales"."Orders"')) keep their case, as in SQL.
      - An unqualified name is found through the C(search_path) of O(login_user), like PostgreSQL
        does (usually C(public)).
      - A name that does not exist, or names a view, foreign table or sequence, is an error.
      - A partitioned table brings all its partitions.
    type: list
    elements: str
    default: []
  schemas:
    description:
      - All tables (and partitioned tables) of these schemas.
    type: list
    elements: str
    default: []
  patterns:
    description:
      - SQL C(LIKE) patterns matched against C(schema.table) (names as stored, case-sensitive).
        C(%) is any text, C(_) one character, a backslash escapes them (C(public.tmp\_%)).
      - Examples C(public.order%) or C(%.audit_%).
    type: list
    elements: str
    default: []
  all_tables:
    description:
      - All user tables of each database (not C(pg_catalog), C(information_schema), TOAST and
        temporary tables, nor tables that belong to an extension).
      - Cannot be combined with O(tables), O(schemas) or O(patterns).
    type: bool
    default: false
  exclude:
    description:
      - Tables to leave alone. An entry with C(%) is a C(LIKE) pattern on C(schema.table);
        otherwise it is a name, C(schema.table) matching exactly and C(table) matching a table
        of that name in every schema. Excluding a partitioned table excludes its partitions.
    type: list
    elements: str
    default: []
  include_matviews:
    description:
      - Also move materialized views (C(ALTER MATERIALIZED VIEW ... SET ACCESS METHOD)).
    type: bool
    default: false
  state:
    description:
      - C(encrypted) moves tables from C(heap) to C(tde_heap); C(decrypted) moves them back to C(heap).
      - Tables on any other access method are left alone (reported as skipped).
    type: str
    choices: [ encrypted, decrypted ]
    default: encrypted
  order:
    description:
      - C(largest_first) rewrites the largest tables first (the long ones start early when
        O(parallel) > 1); C(as_given) keeps the order of O(tables), then schemas, patterns and
        all tables (alphabetical within each). Partitioned tables' own access method comes first.
    type: str
    choices: [ largest_first, as_given ]
    default: largest_first
  lock_timeout:
    description:
      - How long to wait for the C(ACCESS EXCLUSIVE) lock of a table (PostgreSQL C(lock_timeout)
        syntax, C(5s), C(500ms), C(1min)), so that a busy table does not queue the application's
        queries behind the rewrite. C(0) waits forever.
    type: str
    default: 5s
  retries:
    description:
      - How many more times to try a table whose lock could not be taken (or that hit a deadlock).
    type: int
    default: 3
  retry_delay:
    description:
      - Seconds to wait before the first retry; the wait doubles with every retry (at most 300).
    type: float
    default: 5
  parallel:
    description:
      - How many tables to rewrite at the same time, each on its own connection (threads).
        Each rewrite needs its own free space and uses a CPU core and I/O.
    type: int
    default: 1
  verify_integrity:
    description:
      - Count the rows and compute an order-independent checksum of them (the exact sum of a 64-bit
        hash of each row, in SQL) before and after the rewrite, in the same transaction; commit
        only when they match.
      - The row hash is C(hash_record_extended) (each column hashed by its type's own hash
        function; PostgreSQL computes it with parallel workers when C(max_parallel_workers_per_gather)
        allows); a table with a column type that has no hash function (C(json), C(point), C(xml), ...)
        is hashed through the row's text instead, which is slower (C(checksum_method) in RV(tables)).
      - It reads the table twice more while the lock is held; C(phase_seconds) in RV(tables) shows what
        that costs per table.
      - With O(method=online) nothing is read under the lock. The copy is compared with the table in
        one snapshot after the copy, every catch-up round compares the rows it copied again, and after
        the switch the old table (no longer written) must have the row count and checksum the new
        table had at the switch, before it is dropped.
    type: bool
    default: true
  free_space_margin:
    description:
      - Extra free space to require, in percent of the bytes the concurrent rewrites on a file
        system write (the O(parallel) largest tables there, with their indexes and TOAST).
      - The WAL a rewrite writes is not counted; keep C(pg_wal) on a file system with room for it.
    type: float
    default: 20
  method:
    description:
      - C(rewrite) runs C(ALTER TABLE ... SET ACCESS METHOD), which locks the table (C(ACCESS EXCLUSIVE),
        no reads, no writes) for the whole rewrite, about 17 s per GB here.
      - C(online) builds a copy with the target access method while the table stays in use, keeps it
        in step with the writes (row triggers and a change log in schema C(tdeops_online)), then
        switches under an C(ACCESS EXCLUSIVE) lock held for the last changes and catalog changes only
        (well under a second), retried like O(lock_timeout) says. Indexes, constraints, foreign keys
        both ways, defaults, identity and serial sequences, triggers, rules, privileges, row level
        security, views, publications, comments, owner, statistics targets and extended statistics
        are carried over; tables the method cannot move without a loss are refused with the reason.
        Needs a primary key or a unique index on NOT NULL columns. Partitions are moved one by one (the
        switch detaches the old partition and attaches the copy, locking the partitioned table briefly);
        a partitioned table's own access method and materialized views are changed as with C(rewrite).
      - With O(method=online) an interrupted run (killed, connection lost) leaves the table untouched and
        its state in C(tdeops_online.jobs); the next run resumes it. Other errors remove the copy again.
    type: str
    choices: [ rewrite, online ]
    default: rewrite
  online_batch_rows:
    description:
      - O(method=online) only. Rows copied per transaction (in key order).
    type: int
    default: 50000
  online_keep_old:
    description:
      - O(method=online) only. Keep the old table as C(tdeops_online.old_<oid>) after the switch and its
        verification, instead of dropping it (drop it yourself when done).
    type: bool
    default: false
  online_abort:
    description:
      - O(method=online) only. Do not move anything; remove what an interrupted online run left for the
        selected tables (copy, change log, triggers). A job whose switch is done is finished instead.
    type: bool
    default: false
  online_max_catchup_seconds:
    description:
      - O(method=online) only. How long the copy may try to catch up with the writes before the switch;
        when the writes outpace it, the task fails and keeps the copy (run again later).
    type: float
    default: 3600
attributes:
  check_mode:
    description: Returns the plan (tables, sizes, bytes to rewrite, order, free space) and changes nothing.
    support: full
  diff_mode:
    description: Shows the access method of each planned table before and after.
    support: full
notes:
  - Needs a role that owns the tables (or a superuser), and pg_tde in C(shared_preload_libraries)
    with the extension created in every database named.
  - Run it where the data directory is (the database host); it reads free space with C(statvfs).
  - "Not encrypted by pg_tde whatever this module does: sequences, C(pg_statistic), temporary files
    and server logs."
seealso:
  - module: tdeops.pg_tde.pg_tde_key
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: Encrypt two tables, waiting at most 3 s for each lock
  tdeops.pg_tde.pg_tde_table_encrypt:
    databases: [shop]
    tables: [public.orders, customers]
    lock_timeout: 3s
  become: true
  become_user: postgres

- name: Show what encrypting every table of two databases would do
  tdeops.pg_tde.pg_tde_table_encrypt:
    databases: [shop, billing]
    all_tables: true
    exclude: [public.scratch_%, audit_log]
  check_mode: true
  register: plan

- name: Encrypt all tables of schema sales, three at a time, materialized views too
  tdeops.pg_tde.pg_tde_table_encrypt:
    login_db: shop
    schemas: [sales]
    include_matviews: true
    parallel: 3

- name: The way back - decrypt the tables of a schema
  tdeops.pg_tde.pg_tde_table_encrypt:
    login_db: shop
    schemas: [sales]
    state: decrypted
'''

RETURN = r'''
plan:
  description: What is (or, in check mode, would be) changed, in the order of work.
  returned: always
  type: list
  elements: dict
  sample:
    - order: 1
      database: shop
      schema: public
      table: orders
      kind: table
      action: rewrite
      access_method: heap
      target_access_method: tde_heap
      size_bytes: 1073741824
      size: 1.0 GB
      table_bytes: 805306368
      index_bytes: 268435456
      toast_bytes: 0
      tablespace: pg_default
      partition_of: null
      method: rewrite
      online: null
bytes_to_rewrite:
  description: Sum of C(size_bytes) of the tables in RV(plan) that are rewritten (table, indexes and TOAST).
  returned: always
  type: int
  sample: 1073741824
skipped_tables:
  description: Selected relations that are not changed, with the reason (already encrypted, excluded, ...).
  returned: always
  type: list
  elements: dict
  sample:
    - {database: shop, schema: public, table: sessions, kind: table, access_method: tde_heap,
       reason: already tde_heap}
tables:
  description:
    - The outcome for each item of RV(plan) that was worked on (empty in check mode).
    - C(status) is C(encrypted), C(decrypted), C(skipped) (changed by someone else meanwhile),
      C(failed) or C(not_started) (the run stopped before it).
    - C(verified) is true when C(pg_tde_is_encrypted) of the table, its indexes, TOAST and TOAST
      index was as expected; C(checksum_match) compares rows before and after (null without
      O(verify_integrity)); C(checksum_method) is C(record) (per-column hash) or C(text) (hash of
      the row's text, for column types without a hash function).
    - C(phase_seconds) is where the time of the last attempt went, in seconds - C(lock) (lock and
      access method check), C(checksum_before), C(rewrite), C(check) (C(pg_tde_is_encrypted) of
      every part), C(checksum_after), C(commit).
    - With O(method=online) C(status) can also be C(aborted) (O(online_abort)), C(checksum_match) compares
      the old table after the switch with the new one at the switch, and each entry also has
      C(method), C(copied_rows), C(rounds) and C(replayed_keys) (catch-up), the lock times
      C(setup_lock_seconds) (writes blocked), C(switch_lock_wait_seconds) and C(switch_lock_seconds)
      (reads and writes blocked), C(resumed_from) (phase of an interrupted run this one went on from),
      C(restarted) (why an earlier job was dropped and started over), C(old_table) (with
      O(online_keep_old)), C(job_kept) (the copy was kept for the next run); its C(phase_seconds)
      names the online phases.
  returned: always
  type: list
  elements: dict
  sample:
    - {database: shop, schema: public, table: orders, action: rewrite, status: encrypted,
       size_bytes: 1073741824, seconds: 41.2, attempts: 1, verified: true, checksum_match: true,
       checksum_method: record, rows: 5000000, error: null,
       phase_seconds: {lock: 0.001, checksum_before: 4.1, rewrite: 31.5, check: 0.002,
                       checksum_after: 5.3, commit: 0.3}}
free_space:
  description: Per file system holding tables to rewrite, the bytes needed and available.
  returned: always
  type: list
  elements: dict
  sample:
    - {directories: [/var/lib/postgresql/17/main/base/16384], needed_bytes: 1288490188,
       available_bytes: 53687091200, tables: 4}
summary:
  description: Counts, bytes and throughput of the run (C(seconds) is the wall time of the changes).
  returned: always
  type: dict
  sample: {planned: 4, changed: 4, failed: 0, not_started: 0, skipped: 1, bytes_rewritten: 1073741824,
           seconds: 44.0, mb_per_s: 23.3}
executed_queries:
  description: The statements that changed something (or would, in check mode).
  returned: always
  type: list
  elements: str
  sample: ['ALTER TABLE "public"."orders" SET ACCESS METHOD "tde_heap"']
'''

import threading
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    connect,
    ensure_psycopg,
    open_session,
    pg_error_text,
    postgres_argument_spec,
    PgSession,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils import _online as online
from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import ENFORCE_REFUSED
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    VERIFY_FUNCTION,
    key_info,
    require_pg_tde,
    server_version_num,
    verify_key,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._tables import (
    TARGET_AM,
    decide_action,
    display_name,
    fetch_catalog,
    fetch_sizes,
    format_bytes,
    free_bytes,
    kind_label,
    order_plan,
    rewrite_statement,
    rewrite_table,
    search_path,
    select_relations,
    space_needed,
    space_shortfalls,
    tablespace_directories,
)

PLAN_KEYS = ('order', 'database', 'schema', 'table', 'kind', 'action', 'access_method',
             'target_access_method', 'size_bytes', 'size', 'table_bytes', 'index_bytes', 'toast_bytes',
             'tablespace', 'partition_of', 'method', 'online')
RESULT_KEYS = ('database', 'schema', 'table', 'action', 'status', 'size_bytes', 'seconds', 'attempts',
               'verified', 'checksum_match', 'checksum_method', 'rows', 'phase_seconds', 'error')
ONLINE_RESULT_KEYS = ('method', 'copied_rows', 'rounds', 'replayed_keys', 'setup_lock_seconds',
                      'switch_lock_wait_seconds', 'switch_lock_seconds', 'resumed_from', 'restarted', 'old_table',
                      'job_kept')


def argument_spec() -> dict[str, Any]:
    spec = postgres_argument_spec()
    spec.update(
        databases=dict(type='list', elements='str'),
        tables=dict(type='list', elements='str', default=[]),
        schemas=dict(type='list', elements='str', default=[]),
        patterns=dict(type='list', elements='str', default=[]),
        all_tables=dict(type='bool', default=False),
        exclude=dict(type='list', elements='str', default=[]),
        include_matviews=dict(type='bool', default=False),
        state=dict(type='str', default='encrypted', choices=['encrypted', 'decrypted']),
        order=dict(type='str', default='largest_first', choices=['largest_first', 'as_given']),
        lock_timeout=dict(type='str', default='5s'),
        retries=dict(type='int', default=3),
        retry_delay=dict(type='float', default=5),
        parallel=dict(type='int', default=1),
        verify_integrity=dict(type='bool', default=True),
        free_space_margin=dict(type='float', default=20),
        method=dict(type='str', default='rewrite', choices=['rewrite', 'online']),
        online_batch_rows=dict(type='int', default=50000),
        online_keep_old=dict(type='bool', default=False),
        online_abort=dict(type='bool', default=False),
        online_max_catchup_seconds=dict(type='float', default=3600),
    )
    return spec


def option_errors(params: dict[str, Any]) -> list[str]:
    """Problems with the options alone (pure)."""
    errors = []
    if not (params['tables'] or params['schemas'] or params['patterns'] or params['all_tables']):
        errors.append('name what to change: tables, schemas, patterns or all_tables: true')
    if params['all_tables'] and (params['tables'] or params['schemas'] or params['patterns']):
        errors.append('all_tables cannot be combined with tables, schemas or patterns (use exclude to leave '
                      'tables out)')
    if params['parallel'] < 1 or params['parallel'] > 64:
        errors.append('parallel must be between 1 and 64, not %s' % params['parallel'])
    if params['retries'] < 0:
        errors.append('retries must be 0 or more, not %s' % params['retries'])
    if params['retry_delay'] < 0:
        errors.append('retry_delay must be 0 or more, not %s' % params['retry_delay'])
    if params['free_space_margin'] < 0:
        errors.append('free_space_margin must be 0 or more (percent), not %s' % params['free_space_margin'])
    if not (params['lock_timeout'] or '').strip():
        errors.append('lock_timeout must not be empty (for example 5s; 0 waits forever)')
    if params.get('online_batch_rows') is not None and params['online_batch_rows'] < 1:
        errors.append('online_batch_rows must be 1 or more, not %s' % params['online_batch_rows'])
    if params.get('online_abort') and params.get('method') != 'online':
        errors.append('online_abort needs method: online')
    return errors


def make_item(database: str, rel: dict[str, Any], state: str, action: str, reason: str | None,
              sizes: dict[int, dict[str, int]], spaces: dict[str, Any],
              by_oid: dict[int, dict[str, Any]]) -> dict[str, Any]:
    size = sizes.get(rel['oid'], {})
    spc_oid = rel.get('tablespace_oid') or spaces['default']
    spc_name, directory = spaces['dirs'].get(spc_oid, ('?', ''))
    parent = by_oid.get(rel.get('parent_oid') or 0)
    item = {
        'database': database, 'schema': rel['schema'], 'table': rel['name'], 'oid': rel['oid'],
        'relkind': rel['relkind'], 'populated': rel.get('populated'), 'kind': kind_label(rel),
        'action': action, 'reason': reason, 'access_method': rel.get('access_method') or None,
        'target_access_method': TARGET_AM[state],
        'size_bytes': size.get('size_bytes', 0), 'size': format_bytes(size.get('size_bytes', 0)),
        'table_bytes': size.get('table_bytes', 0), 'index_bytes': size.get('index_bytes', 0),
        'toast_bytes': size.get('toast_bytes', 0), 'tablespace': spc_name, 'directory': directory,
        'partition_of': display_name(parent['schema'], parent['name']) if parent else None,
        'method': 'rewrite', 'online': None,
    }
    return item


def skipped_entry(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item.get(k) for k in ('database', 'schema', 'table', 'kind', 'access_method', 'reason')}


class Runner:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.state: str = self.p['state']
        self.sessions: dict[str, PgSession] = {}
        self.extra_sessions: list[PgSession] = []
        self.plan: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.results: list[dict[str, Any]] = []
        self.free_space: list[dict[str, Any]] = []
        self.versions: dict[str, int] = {}
        self.wall_seconds = 0.0
        self.online_queries: list[str] = []

    # -- helpers -----------------------------------------------------------
    def executed_queries(self) -> list[str]:
        out: list[str] = []
        for session in list(self.sessions.values()) + self.extra_sessions:
            out.extend(session.executed_queries)
        return out + self.online_queries

    def close(self) -> None:
        for session in list(self.sessions.values()) + self.extra_sessions:
            session.close()

    def output(self) -> dict[str, Any]:
        rewritten = [r for r in self.results if r.get('changed') and r['action'] == 'rewrite']
        seconds = round(self.wall_seconds, 3)
        bytes_done = sum(r.get('size_bytes') or 0 for r in rewritten)
        return dict(
            plan=[{k: i.get(k) for k in PLAN_KEYS} for i in self.plan],
            bytes_to_rewrite=sum(i['size_bytes'] for i in self.plan if i['action'] == 'rewrite'),
            skipped_tables=self.skipped,
            tables=[{k: r.get(k) for k in RESULT_KEYS + (ONLINE_RESULT_KEYS if r.get('method') == 'online' else ())}
                    for r in self.results],
            free_space=self.free_space,
            summary=dict(planned=len(self.plan), changed=len([r for r in self.results if r.get('changed')]),
                         failed=len([r for r in self.results if r.get('status') == 'failed']),
                         not_started=len([r for r in self.results if r.get('status') == 'not_started']),
                         skipped=len(self.skipped), bytes_rewritten=bytes_done, seconds=seconds,
                         mb_per_s=round(bytes_done / 1048576.0 / seconds, 1) if seconds and bytes_done else None),
            executed_queries=self.executed_queries(),
        )

    def fail(self, msg: str, **extra: Any) -> None:
        out = self.output()
        out.update(extra)
        self.close()
        self.module.fail_json(msg=msg, **out)

    # -- planning ----------------------------------------------------------
    def build_plan(self) -> None:
        databases = list(dict.fromkeys(self.p['databases'] or [self.p['login_db']]))
        errors: list[str] = []
        items: list[dict[str, Any]] = []
        for db in databases:
            session = open_session(self.module, db)
            self.sessions[db] = session
            require_pg_tde(self.module, session)
            version = server_version_num(session)
            self.versions[db] = version
            catalog = fetch_catalog(session)
            by_oid = {r['oid']: r for r in catalog}
            sel = select_relations(catalog, search_path(session), tables=self.p['tables'],
                                   schemas=self.p['schemas'], patterns=self.p['patterns'],
                                   all_tables=self.p['all_tables'], exclude=self.p['exclude'],
                                   include_matviews=self.p['include_matviews'])
            errors.extend('database "%s": %s' % (db, e) for e in sel['errors'])
            for rel in [r for r in sel['selected'] if r['schema'] == online.STATE_SCHEMA]:
                # the online method's own state (jobs, copies, change logs) is never a table to move
                sel['selected'].remove(rel)
            sizes = fetch_sizes(session, [r['oid'] for r in sel['selected'] if r['relkind'] in ('r', 'm')])
            spaces = tablespace_directories(session)
            for rel, entry in sel['excluded']:
                item = make_item(db, rel, self.state, 'skip', 'excluded by "%s"' % entry, sizes, spaces, by_oid)
                self.skipped.append(skipped_entry(item))
            for rel in sel['selected']:
                action, reason = decide_action(rel, self.state, version)
                item = make_item(db, rel, self.state, action, reason, sizes, spaces, by_oid)
                if action == 'skip':
                    self.skipped.append(skipped_entry(item))
                    if reason and (reason.startswith('access method') or 'cannot set' in reason):
                        where = display_name(rel['schema'], rel['name'])
                        self.module.warn('database "%s": %s: %s' % (db, where, reason))
                    continue
                if not rel.get('owned'):
                    where = display_name(rel['schema'], rel['name'])
                    errors.append('database "%s": %s is not owned by %s (or a role it belongs to): connect as '
                                  'its owner or a superuser' % (db, where, self.p['login_user']))
                if self.p['method'] == 'online' and item['action'] == 'rewrite' and rel['relkind'] == 'r':
                    item['method'] = 'online'
                    item['online'] = online.plan_item(session, item, self.p['free_space_margin'])
                    if item['online']['refused'] and not self.p['online_abort']:
                        errors.append('database "%s": %s cannot be moved online: %s (use method: rewrite for it, '
                                      'or exclude it)' % (db, display_name(rel['schema'], rel['name']),
                                                          '; '.join(item['online']['refused'])))
                items.append(item)
            if self.p['method'] == 'online':
                items.extend(self.online_leftovers(db, session, items, sel))
        if errors:
            self.fail('Nothing was changed: %s.' % '; '.join(errors))
        finishing = [i for i in items if i['action'] == 'finish']
        self.plan = order_plan(items, self.p['order'])
        for n, item in enumerate(finishing, len(self.plan) + 1):
            item['order'] = n
        self.plan.extend(finishing)
        if self.p['online_abort']:
            self.plan = [i for i in self.plan if i['method'] == 'online' or i['action'] == 'finish']

    def online_leftovers(self, db: str, session: PgSession, items: list[dict[str, Any]],
                         sel: dict[str, Any]) -> list[dict[str, Any]]:
        """Jobs an interrupted online run left: switched ones of selected tables are finished;
        others of tables not planned now are reported (they keep logging until resumed or aborted)."""
        planned = {i['oid'] for i in items}
        selected = {r['oid'] for r in sel['selected']}
        out = []
        for job in online.leftover_jobs(session):
            where = display_name(job['schema_name'], job['table_name'])
            if job['phase'] == 'swapped' and int(job['new_oid'] or 0) in selected:
                out.append({'database': db, 'schema': job['schema_name'], 'table': job['table_name'],
                            'oid': int(job['job_id']), 'relkind': 'r', 'kind': 'table', 'action': 'finish',
                            'access_method': job['target_am'], 'target_access_method': job['target_am'],
                            'size_bytes': 0, 'size': '', 'table_bytes': 0, 'index_bytes': 0, 'toast_bytes': 0,
                            'tablespace': None, 'directory': '', 'partition_of': None, 'method': 'online',
                            'online': {'pending_job': dict(job, started_at=job['started_at'])}, 'reason': None})
            elif int(job['source_oid']) not in planned:
                self.module.warn('database "%s": an online move of %s started %s is pending (phase %s): its '
                                 'triggers log every write until it is resumed (select the table again with method: '
                                 'online) or removed (online_abort: true)' % (db, where, job['started_at'],
                                                                              job['phase']))
        return out

    # -- checks before any change ------------------------------------------
    def check_keys_and_settings(self) -> None:
        busy = {i['database'] for i in self.plan}
        for db, session in self.sessions.items():
            if self.state == 'encrypted':
                own = key_info(session, 'database')
                # the default key matters only to a database without a key of its own
                default = key_info(session, 'default') if own is None else None
                if own is None and default is None:
                    self.fail('Database "%s" has no principal key: neither its own (pg_tde_key_info()) nor a '
                              'default key (pg_tde_default_key_info()), so pg_tde cannot encrypt its tables. '
                              'Nothing was changed. Set a key for the database or a default key first '
                              '(tdeops.pg_tde.pg_tde_key) and run again.' % db)
                if db in busy:
                    kind = 'database' if own is not None else 'default'
                    func = VERIFY_FUNCTION[kind]
                    try:
                        verify_key(session, kind)
                    except Exception as exc:
                        self.fail('The principal key of database "%s" cannot be fetched from its key provider '
                                  '(%s() failed: %s). Nothing was changed. Check the key provider and the KMS '
                                  '(tdeops.pg_tde.pg_tde_info, tdeops.pg_tde.kms_preflight).'
                                  % (db, func, pg_error_text(exc)))
            elif db in busy:
                row = session.query_one("SELECT current_setting('pg_tde.enforce_encryption', true) AS v, "
                                        "(SELECT source FROM pg_settings WHERE name = 'pg_tde.enforce_encryption')"
                                        " AS source")
                if row and (row['v'] or '').lower() in ('on', 'true', '1', 'yes'):
                    self.fail('pg_tde.enforce_encryption is on in database "%s" for role "%s" (set by: %s). pg_tde '
                              'then refuses every access method but tde_heap ("%s"), so the tables cannot be decrypted. '
                              'Nothing was changed. Turn it off where it is set (ALTER SYSTEM SET '
                              'pg_tde.enforce_encryption = off and reload, or ALTER DATABASE / ALTER ROLE ... '
                              'RESET pg_tde.enforce_encryption) and run again.'
                              % (db, self.p['login_user'], row.get('source') or 'unknown', ENFORCE_REFUSED))
        if self.plan:
            session = self.sessions[self.plan[0]['database']]
            try:
                session.query("SELECT set_config('lock_timeout', %s, false)", [self.p['lock_timeout']])
                session.query('RESET lock_timeout')
            except Exception as exc:
                self.fail('lock_timeout "%s" is not valid: %s. Nothing was changed. Use a PostgreSQL '
                          'duration such as 5s, 500ms or 1min.' % (self.p['lock_timeout'], pg_error_text(exc)))

    def check_free_space(self) -> None:
        rewrites = [i for i in self.plan if i['action'] == 'rewrite']
        stats: dict[str, tuple[Any, int]] = {}
        for item in rewrites:
            directory = item['directory']
            if directory not in stats:
                try:
                    stats[directory] = free_bytes(directory)
                except OSError as exc:
                    self.fail('Cannot read the free space of tablespace %s (directory %s) for %s in database '
                              '"%s": %s. Nothing was changed. Run the module on the database host (delegate_to '
                              'it, become_user: postgres).' % (item['tablespace'], directory,
                                                               display_name(item['schema'], item['table']),
                                                               item['database'], exc))
            item['device'] = stats[directory][0]
        available = dict(stats.values())
        needs = space_needed(rewrites, self.p['parallel'], self.p['free_space_margin'])
        self.free_space = [dict(need, available_bytes=available[dev]) for dev, need in needs.items()]
        short = space_shortfalls(needs, available)
        if short:
            text = '; '.join('%s: %s free, %s needed (%s with %s%% margin for %d concurrent rewrite(s))'
                             % (', '.join(s['directories']), format_bytes(s['available_bytes']),
                                format_bytes(s['needed_bytes']), 'largest table %s' % format_bytes(s['largest_bytes']),
                                self.p['free_space_margin'], min(self.p['parallel'], s['tables']))
                             for s in short)
            self.fail('Not enough free space for the rewrites: %s. Nothing was changed. A rewrite writes a new '
                      'copy of the table, its indexes and TOAST before it frees the old one. Free space, '
                      'lower parallel, move tables to another tablespace, or lower free_space_margin.' % text)

    # -- the change --------------------------------------------------------
    def run_item(self, session: PgSession, item: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
        if item.get('method') == 'online' or item['action'] == 'finish':
            res, queries = online.run_item(self.module, item, self.state, self.p, pg_error_text)
            self.online_queries.extend(queries)
            return dict(item, **res)
        if item['action'] == 'rewrite' and item.get('directory'):
            try:
                avail = free_bytes(item['directory'])[1]
            except OSError:
                avail = None
            need = int(item['size_bytes'] * (1 + self.p['free_space_margin'] / 100.0))
            if avail is not None and avail < need:
                return dict(item, status='failed', seconds=0, attempts=0, changed=False,
                            error='not started: %s free in %s, %s needed' % (
                                format_bytes(avail), item['directory'], format_bytes(need)))
        res = rewrite_table(session, item, self.state, lock_timeout=self.p['lock_timeout'],
                            retries=self.p['retries'], retry_delay=self.p['retry_delay'],
                            verify_integrity=self.p['verify_integrity'], pg_error_text=pg_error_text, stop=stop)
        if res.get('error') and 'enforce_encryption' in res['error']:
            res['error'] += (' (pg_tde.enforce_encryption was turned on during the run: turn it off to '
                             'decrypt, see the module documentation)')
        if res.get('lock_timeout') and res.get('status') == 'failed':
            res['error'] = ('could not lock %s within lock_timeout %s in %d attempt(s); the table is untouched. '
                            'Another session holds or waits for a lock on it (see pg_locks). Last error: %s'
                            % (display_name(item['schema'], item['table']), self.p['lock_timeout'],
                               res['attempts'], res['error']))
        return dict(item, **res)

    def execute(self) -> None:
        started = time.monotonic()
        try:
            self._execute()
        finally:
            self.wall_seconds = time.monotonic() - started

    def _execute(self) -> None:
        stop = threading.Event()
        parents = [i for i in self.plan if i['action'] == 'set_access_method']
        rewrites = [i for i in self.plan if i['action'] in ('rewrite', 'finish')]
        workers = min(self.p['parallel'], len(rewrites))
        # every connection is opened before the first change (a refused connection fails the task cleanly)
        pools: list[dict[str, PgSession]] = []
        dbs = list(dict.fromkeys(i['database'] for i in rewrites))
        for w in range(workers if workers > 1 else 0):
            pool: dict[str, PgSession] = {}
            for db in dbs:
                if w == 0:
                    pool[db] = self.sessions[db]
                else:
                    session = PgSession(self.module, connect(self.module, db), db)
                    self.extra_sessions.append(session)
                    pool[db] = session
            pools.append(pool)
        for item in parents:
            self.results.append(self.run_item(self.sessions[item['database']], item, stop))
        if any(r['status'] == 'failed' and not r.get('lock_timeout') for r in self.results):
            stop.set()
        results: dict[int, dict[str, Any]] = {}
        if workers <= 1:
            for n, item in enumerate(rewrites):
                if stop.is_set():
                    break
                res = self.run_item(self.sessions[item['database']], item, stop)
                results[n] = res
                if res['status'] == 'failed' and not res.get('lock_timeout'):
                    stop.set()
        else:
            lock = threading.Lock()
            next_index = [0]

            def worker(pool: dict[str, PgSession]) -> None:
                while not stop.is_set():
                    with lock:
                        n = next_index[0]
                        if n >= len(rewrites):
                            return
                        next_index[0] += 1
                    item = rewrites[n]
                    try:
                        res = self.run_item(pool[item['database']], item, stop)
                    except Exception as exc:  # a bug or a lost connection: stop cleanly
                        res = dict(item, status='failed', changed=False, error=pg_error_text(exc))
                    results[n] = res
                    if res['status'] == 'failed' and not res.get('lock_timeout'):
                        stop.set()

            threads = [threading.Thread(target=worker, args=(pool,), daemon=True) for pool in pools]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for n, item in enumerate(rewrites):
            not_started = dict(item, status='not_started', changed=False,
                               error='not started: the run stopped after an error')
            self.results.append(results.get(n) or not_started)

    def diff(self) -> dict[str, Any]:
        changed = {r['order'] for r in self.results if r.get('changed')} if not self.module.check_mode \
            else {i['order'] for i in self.plan}
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for item in self.plan:
            key = '%s: %s' % (item['database'], display_name(item['schema'], item['table']))
            before[key] = item['access_method'] or ''
            after[key] = item['target_access_method'] if item['order'] in changed else (item['access_method'] or '')
        return {'before': {'access_methods': before}, 'after': {'access_methods': after}}


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    errors = option_errors(module.params)
    if errors:
        module.fail_json(msg='Nothing was changed: %s.' % '; '.join(errors))
    ensure_psycopg(module)
    runner = Runner(module)
    try:
        runner.build_plan()
        runner.check_keys_and_settings()
        runner.check_free_space()
    except Exception as exc:  # SQL errors while reading, before any change (fail_json is SystemExit)
        runner.fail('Nothing was changed: reading the catalog or the pg_tde state failed: %s' % pg_error_text(exc))
    if module.check_mode:
        for item in runner.plan:
            if item.get('method') == 'online' or item['action'] == 'finish':
                runner.sessions[item['database']].execute(online.preview_statement(item, module.params))
                continue
            runner.sessions[item['database']].execute(rewrite_statement(item, item['target_access_method']))
        out = runner.output()
        if module._diff:
            out['diff'] = runner.diff()
        runner.close()
        module.exit_json(changed=bool(runner.plan), **out)
    runner.execute()
    out = runner.output()
    if module._diff:
        out['diff'] = runner.diff()
    changed = any(r.get('changed') for r in runner.results)
    failed = [r for r in runner.results if r['status'] in ('failed', 'not_started')]
    runner.close()
    if failed:
        first = [r for r in failed if r['status'] == 'failed']
        msg = '; '.join('database "%s": %s: %s' % (r['database'], display_name(r['schema'], r['table']), r['error'])
                        for r in first) or 'the run stopped'
        module.fail_json(msg='%d of %d table(s) not %s: %s'
                         % (len(failed), len(runner.plan), module.params['state'], msg), changed=changed, **out)
    module.exit_json(changed=changed, **out)


if __name__ == '__main__':
    main()
