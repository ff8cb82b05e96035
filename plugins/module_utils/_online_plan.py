# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Decisions of the online method, on the data _online_catalog reads (pure: unit-tested
without a server): which unique key matches rows between the table and its copy, which
tables are refused and why, what must stay equal while the copy is built (fingerprint), how
the new table is compared with the old one under the switch lock, and the plan shown in
check mode (lock windows, space)."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

KIND_WORDS = {'p': 'partitioned table', 'm': 'materialized view', 'v': 'view', 'f': 'foreign table'}
NOT_VALID = ' NOT VALID'


def choose_key(defn: dict[str, Any]) -> dict[str, Any] | None:
    """The index whose columns identify a row: the primary key, else the unique btree index
    with the fewest columns that is valid, not partial, on plain NOT NULL columns with the
    default operator classes and collations (so that ORDER BY and = mean what it means)."""
    notnull = {c['name'] for c in defn['columns'] if c['notnull']}
    generated = {c['name'] for c in defn['columns'] if c.get('generated')}
    usable = []
    for idx in defn['indexes']:
        cols = idx.get('key_columns') or []
        if not (idx['valid'] and idx['is_unique'] and idx['full_index'] and idx['plain_columns']
                and idx.get('method') == 'btree' and idx.get('default_opclasses') and idx.get('default_collations')
                and cols and all(c in notnull for c in cols)):
            continue
        if any(c in generated for c in cols):
            continue
        usable.append(idx)
    if not usable:
        return None
    usable.sort(key=lambda i: (not i['is_primary'], len(i['key_columns']), i['name']))
    return usable[0]


def refusals(defn: dict[str, Any]) -> list[str]:
    """Why the online method cannot move this table without losing something (empty: it can).
    Every reason names the object and says what to do instead."""
    t = defn['table']
    out: list[str] = []
    if t['relkind'] != 'r':
        out.append('it is a %s, not a table (only tables are copied online)' % KIND_WORDS.get(t['relkind'], t['relkind']))
    if t['is_partition'] and t.get('parent_has_default'):
        out.append('it is a partition of %s.%s, which has a DEFAULT partition: attaching the copy would scan the '
                   'default partition under the lock of the partitioned table' % (t['parent_schema'], t['parent_name']))
    if t['is_partition'] and t.get('parent_referenced'):
        out.append('it is a partition of %s.%s, which foreign keys reference: detaching the partition at the switch '
                   'checks every referencing row under the lock' % (t['parent_schema'], t['parent_name']))
    if (t['has_parent'] and not t['is_partition']) or t['has_children']:
        out.append('it takes part in table inheritance (INHERITS): the copy would not be linked to the parent '
                   'or children')
    if t['is_typed']:
        out.append('it is a typed table (CREATE TABLE ... OF type)')
    if t['extension_member']:
        out.append('it belongs to an extension: a new table would not be a member of it')
    if not (t.get('i_am_superuser') or t.get('i_own')):
        out.append('the login role neither owns it nor is a superuser')
    if t['relkind'] == 'r' and choose_key(defn) is None:
        out.append('it has no primary key and no unique index on NOT NULL columns (btree, not partial, no '
                   'expressions): the copy cannot match rows to changes without one; add one or use method rewrite')
    for v in defn['views']:
        where = '%s.%s' % (v['schema'], v['name'])
        if v['relkind'] == 'm':
            out.append('materialized view %s reads it: a materialized view cannot be re-pointed without being '
                       'dropped and rebuilt (new OID, its indexes, grants and dependents); drop it first or use '
                       'method rewrite' % where)
        elif v.get('temporary'):
            out.append('temporary view %s of another session reads it: it cannot be re-pointed' % where)
        elif not (t.get('i_am_superuser') or v.get('owned')):
            out.append('view %s reads it and the login role cannot replace that view (not its owner)' % where)
    for fk in defn['fks_in']:
        where = '%s.%s' % (fk['table_schema'], fk['table_name'])
        if fk['table_relkind'] == 'p' or fk['inherited']:
            out.append('foreign key %s of partitioned table %s references it: PostgreSQL 17 cannot add that key '
                       'back NOT VALID, so the switch would check every referencing row under the lock'
                       % (fk['name'], where))
        elif not (t.get('i_am_superuser') or fk.get('owned')):
            out.append('foreign key %s of %s references it and the login role does not own %s'
                       % (fk['name'], where, where))
    for fk in defn['fks_out']:
        if fk['inherited']:
            out.append('foreign key %s is inherited from the partitioned table: attaching the copy would add and '
                       'check it under the lock' % fk['name'])
    for seq in defn['sequences']:
        if seq['deptype'] == 'i' and int(seq.get('other_users') or 0) > 0:
            out.append('identity sequence %s.%s is used by other objects: the identity is recreated on the new '
                       'table with a new sequence (same name and value), which they would not follow'
                       % (seq['schema'], seq['name']))
    for dep in defn['other_dependents']:
        out.append('%s depends on it (or on its row type) and would keep pointing at the old table'
                   % dep['object'])
    if defn['seclabels']:
        out.append('it has security labels (SECURITY LABEL), which are not carried over')
    for sub in defn['subscriptions']:
        out.append('it is a target of subscription %s: logical replication tracks the table by OID and would '
                   'silently stop applying changes to the new one' % sub)
    for pub in defn['all_tables_publications']:
        out.append('publication %s publishes all tables (or the schema the copy is built in): the copy and the '
                   'change log would be replicated to its subscribers' % pub)
    return out


# ---------------------------------------------------------------------------------------------
# what the copy was built from, and the comparison of the new table with the old one
# ---------------------------------------------------------------------------------------------

_SHAPE_TABLE = ('persistence', 'reloptions', 'toast_reloptions', 'tablespace', 'partition_bound')
_SHAPE_COLUMN = ('name', 'type', 'notnull', 'generated', 'identity', 'default_expr', 'collation', 'storage',
                 'compression', 'stattarget', 'options')
_SHAPE_INDEX = ('name', 'def', 'constraint_name', 'constraint_def', 'tablespace')
_SHAPE_CHECK = ('name', 'def')


def fingerprint(defn: dict[str, Any]) -> str:
    """A digest of what the copy is built from (columns, indexes, CHECK constraints, storage):
    when it changes while the copy is built, the copy no longer fits and is started again."""
    shape = {
        'table': [defn['table'].get(k) for k in _SHAPE_TABLE],
        'columns': [[c.get(k) for k in _SHAPE_COLUMN] for c in defn['columns']],
        'indexes': [[i.get(k) for k in _SHAPE_INDEX] for i in defn['indexes']],
        'checks': [[c.get(k) for k in _SHAPE_CHECK] for c in defn['checks']],
    }
    text = json.dumps(shape, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def _strip_not_valid(text: str | None) -> str | None:
    if text and text.endswith(NOT_VALID):
        return text[:-len(NOT_VALID)]
    return text


def _pick(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[list[Any]]:
    return [[r.get(k) for k in keys] for r in rows]


COMPARED = {
    'table': ('schema', 'name', 'owner', 'persistence', 'reloptions', 'toast_reloptions', 'tablespace', 'rls',
              'rls_force', 'replident', 'comment', 'is_partition', 'partition_bound', 'parent_schema',
              'parent_name'),
    'columns': ('name', 'type', 'notnull', 'generated', 'identity', 'default_expr', 'collation', 'stattarget',
                'options', 'storage', 'compression', 'comment', 'acl'),
    'indexes': ('name', 'def', 'is_primary', 'is_unique', 'clustered', 'replident', 'tablespace', 'comment',
                'constraint_name', 'constraint_type', 'constraint_def', 'constraint_comment'),
    'checks': ('name', 'def', 'validated', 'noinherit', 'islocal', 'comment'),
    'triggers': ('name', 'def', 'enabled', 'inherited', 'comment'),
    'rules': ('name', 'def', 'enabled', 'comment'),
    'policies': ('name', 'permissive', 'cmd', 'roles', 'qual', 'with_check', 'comment'),
    'statistics': ('schema', 'name', 'def', 'stattarget', 'owner', 'comment'),
    'publications': ('name', 'columns', 'row_filter'),
    'sequences': ('deptype', 'schema', 'name', 'column_name', 'data_type', 'start', 'increment', 'min', 'max',
                  'cache', 'cycle', 'comment', 'acl'),
    'views': ('schema', 'name', 'relkind'),
}


def differences(before: dict[str, Any], after: dict[str, Any], target_am: str) -> list[str]:
    """What differs between the old table (read under the switch lock, before the change) and
    the new one (read after it, in the same transaction), other than what must differ: the
    access method, the OID, and foreign keys that are added NOT VALID and validated after
    the switch (their definitions are compared without the NOT VALID)."""
    out: list[str] = []
    if after['table'].get('access_method') != target_am:
        out.append('access method is %s, not %s' % (after['table'].get('access_method'), target_am))
    for part, keys in COMPARED.items():
        if part == 'table':
            a = [before['table'].get(k) for k in keys]
            b = [after['table'].get(k) for k in keys]
        else:
            a = _pick(before[part], keys)
            b = _pick(after[part], keys)
        if a != b:
            out.append('%s differ: before %s, after %s'
                       % (part, json.dumps(a, default=str), json.dumps(b, default=str)))
    if before['acl'] != after['acl']:
        out.append('privileges differ: before %s, after %s' % (before['acl'], after['acl']))
    for part, keys in (('fks_out', ('name', 'def', 'comment')),
                       ('fks_in', ('table_schema', 'table_name', 'name', 'def', 'comment'))):
        a = [[_strip_not_valid(v) if k == 'def' else v for k, v in zip(keys, row)] for row in _pick(before[part], keys)]
        b = [[_strip_not_valid(v) if k == 'def' else v for k, v in zip(keys, row)] for row in _pick(after[part], keys)]
        if a != b:
            out.append('%s differ: before %s, after %s' % (part, json.dumps(a, default=str), json.dumps(b, default=str)))
    return out


# ---------------------------------------------------------------------------------------------
# the plan (check mode)
# ---------------------------------------------------------------------------------------------

def lock_windows(defn: dict[str, Any]) -> list[dict[str, Any]]:
    """The moments the online method locks something that the application uses, in order."""
    t = defn['table']
    name = '%s.%s' % (t['schema'], t['name'])
    switch_others = []
    if t.get('is_partition'):
        switch_others.append('%s.%s (partitioned table: DETACH and ATTACH PARTITION, ACCESS EXCLUSIVE)'
                             % (t['parent_schema'], t['parent_name']))
    for v in defn['views']:
        switch_others.append('%s.%s (view, ACCESS EXCLUSIVE)' % (v['schema'], v['name']))
    for fk in defn['fks_in']:
        switch_others.append('%s.%s (references it, ACCESS EXCLUSIVE)' % (fk['table_schema'], fk['table_name']))
    for fk in defn['fks_out']:
        if fk['ref_oid'] != t['oid']:
            switch_others.append('table %s references (SHARE ROW EXCLUSIVE)' % fk['def'].split(' REFERENCES ')[-1]
                                 .split('(')[0])
    return [
        {'step': 'setup', 'relation': name, 'mode': 'SHARE ROW EXCLUSIVE', 'blocks': 'writes',
         'expected': 'catalog changes only (a few ms), after the writes running at that moment finish '
                     '(waits at most lock_timeout)'},
        {'step': 'switch', 'relation': name, 'mode': 'ACCESS EXCLUSIVE', 'blocks': 'reads and writes',
         'also': sorted(set(switch_others)),
         'expected': 'the last changes not yet copied plus catalog changes (typically 0.05 to 0.5 s, measured in '
                     'bench/results/online.md); waits at most lock_timeout for running queries'},
        {'step': 'after the switch', 'relation': name, 'mode': 'SHARE UPDATE EXCLUSIVE', 'blocks': 'nothing the '
         'application does (only DDL and VACUUM)',
         'expected': 'VALIDATE CONSTRAINT of foreign keys added NOT VALID at the switch (%d), ANALYZE'
                     % (len(defn['fks_out']) + len(defn['fks_in']))},
    ]


def online_plan(defn: dict[str, Any], size_bytes: int, margin: float) -> dict[str, Any]:
    """What check mode shows for one table."""
    key = choose_key(defn)
    carried = {
        'indexes': [i['name'] for i in defn['indexes']],
        'constraints': [c['name'] for c in defn['checks']] + [f['name'] for f in defn['fks_out']],
        'foreign_keys_referencing': ['%s.%s.%s' % (f['table_schema'], f['table_name'], f['name'])
                                     for f in defn['fks_in']],
        'triggers': [t['name'] for t in defn['triggers']],
        'rules': [r['name'] for r in defn['rules']],
        'policies': [p['name'] for p in defn['policies']],
        'views': ['%s.%s' % (v['schema'], v['name']) for v in defn['views']],
        'sequences': ['%s.%s (%s)' % (s['schema'], s['name'], 'identity' if s['deptype'] == 'i' else 'owned')
                      for s in defn['sequences']],
        'publications': [p['name'] for p in defn['publications']],
        'statistics': ['%s.%s' % (s['schema'], s['name']) for s in defn['statistics']],
    }
    return {
        'key': key['key_columns'] if key else None,
        'copy_bytes': int(size_bytes),
        'free_space_needed_bytes': int(size_bytes * (1 + margin / 100.0)),
        'lock_windows': lock_windows(defn),
        'carried_over': {k: v for k, v in carried.items() if v},
        'refused': refusals(defn),
    }


_VALID_ID = re.compile(r'^[0-9]+$')


def state_name(prefix: str, job_id: int) -> str:
    """Names of the objects of one job (job ids are table OIDs: digits only)."""
    text = str(job_id)
    if not _VALID_ID.match(text):
        raise ValueError('job id must be a number, not %r' % job_id)
    return '%s_%s' % (prefix, text)
