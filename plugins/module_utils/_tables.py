# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tables for pg_tde_table_encrypt: which relations a selection names, what each one
needs (rewrite, parent access method, skip), sizes and free space, the order of work,
and the rewrite itself (lock, rewrite, verify, prove, then commit or roll back).

The decision logic is in small pure functions (unit-tested without a server); the
functions that take a session run SQL through PgSession (query() for reads,
execute() for changes, so check mode and executed_queries work as everywhere)."""
from __future__ import annotations

import os
import re
import time
from typing import Any, Callable

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import sqlstate

TARGET_AM = {'encrypted': 'tde_heap', 'decrypted': 'heap'}
SOURCE_AM = {'encrypted': 'heap', 'decrypted': 'tde_heap'}

KIND_NAMES = {
    'r': 'table',
    'p': 'partitioned table',
    'm': 'materialized view',
    'f': 'foreign table',
    'v': 'view',
    'S': 'sequence',
}
# PostgreSQL 17 is the first release that can set the access method of a partitioned table.
PARTITIONED_AM_MIN_VERSION = 170000
# SQLSTATEs after which the same table is tried again (lock_not_available, deadlock_detected).
RETRY_SQLSTATES = ('55P03', '40P01')
MAX_RETRY_DELAY = 300.0

_IDENT_RE = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^".\s]+))\s*')


# ---------------------------------------------------------------------------
# names and patterns (pure)
# ---------------------------------------------------------------------------

def quote_ident(name: str) -> str:
    """An SQL identifier, always quoted (safe for any name)."""
    return '"%s"' % name.replace('"', '""')


def qualified(schema: str, name: str) -> str:
    return '%s.%s' % (quote_ident(schema), quote_ident(name))


def display_name(schema: str, name: str) -> str:
    """schema.table as people write it (no quotes): used in messages and patterns."""
    return '%s.%s' % (schema, name)


def parse_relation_name(text: str) -> tuple[str | None, str]:
    """'orders' -> (None, 'orders'); 'Sales.Orders' -> ('sales', 'orders');
    '"Sales"."Order Items"' -> ('Sales', 'Order Items'). Unquoted names fold to lower
    case and quoted names keep their case, as in SQL. ValueError on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('empty table name')
    parts: list[str] = []
    pos = 0
    while True:
        m = _IDENT_RE.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError('cannot parse table name %r' % text)
        parts.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2).lower())
        pos = m.end()
        if pos == len(text):
            break
        if text[pos] != '.':
            raise ValueError('cannot parse table name %r' % text)
        pos += 1
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError('table name %r has more than two parts: give schema.table (the database is '
                     'chosen with the databases option)' % text)


def like_to_regex(pattern: str) -> re.Pattern:
    """An SQL LIKE pattern as a compiled regular expression: % is any text, _ one character,
    a backslash escapes the next character; case-sensitive, matching the whole text."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '\\' and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == '%':
            out.append('.*')
        elif ch == '_':
            out.append('.')
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile(''.join(out) + r'\Z', re.DOTALL)


def like_match(pattern: str, text: str) -> bool:
    return like_to_regex(pattern).match(text) is not None


def is_like_pattern(entry: str) -> bool:
    """An exclude entry is a LIKE pattern when it holds an unescaped %."""
    return re.search(r'(?<!\\)%', entry) is not None


# ---------------------------------------------------------------------------
# selection (pure)
# ---------------------------------------------------------------------------

def resolve_name(schema: str | None, name: str, search_path: list[str],
                 catalog: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The relation a (schema, name) means: a schema-qualified name exactly, an
    unqualified one through the search path (first schema that has it), as SQL does."""
    if schema is not None:
        for rel in catalog:
            if rel['schema'] == schema and rel['name'] == name:
                return rel
        return None
    for path_schema in search_path:
        for rel in catalog:
            if rel['schema'] == path_schema and rel['name'] == name:
                return rel
    return None


def _children(catalog: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    kids: dict[int, list[dict[str, Any]]] = {}
    for rel in sorted(catalog, key=lambda r: (r['schema'], r['name'])):
        if rel.get('parent_oid'):
            kids.setdefault(rel['parent_oid'], []).append(rel)
    return kids


def _ancestors(rel: dict[str, Any], by_oid: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    seen = set()
    parent = rel.get('parent_oid')
    while parent and parent in by_oid and parent not in seen:
        seen.add(parent)
        out.append(by_oid[parent])
        parent = by_oid[parent].get('parent_oid')
    return out


def excluded_by(rel: dict[str, Any], exclude: list[str]) -> str | None:
    """The exclude entry that matches rel, or None. Entries with % are LIKE patterns on
    schema.table; others are names: schema-qualified ones match exactly, unqualified ones
    match a table of that name in every schema."""
    full = display_name(rel['schema'], rel['name'])
    for entry in exclude:
        if is_like_pattern(entry):
            if like_match(entry, full):
                return entry
            continue
        try:
            schema, name = parse_relation_name(entry)
        except ValueError:
            continue
        if name == rel['name'] and (schema is None or schema == rel['schema']):
            return entry
    return None


def select_relations(catalog: list[dict[str, Any]], search_path: list[str], *,
                     tables: list[str] | None = None, schemas: list[str] | None = None,
                     patterns: list[str] | None = None, all_tables: bool = False,
                     exclude: list[str] | None = None, include_matviews: bool = False,
                     ) -> dict[str, Any]:
    """Apply the selection rules to one database's catalog.

    catalog rows: oid, schema, name, relkind, access_method, parent_oid (partitions only),
    extension_member. Returns {'selected': [rel...] in selection order, 'excluded':
    [(rel, entry)], 'errors': [text]}. Partitioned tables bring their partitions (all
    levels) and come first of their tree; a partitioned table excluded excludes its tree."""
    tables = tables or []
    schemas = schemas or []
    patterns = patterns or []
    exclude = exclude or []
    by_oid = {rel['oid']: rel for rel in catalog}
    kids = _children(catalog)
    broad_kinds = {'r', 'p'} | ({'m'} if include_matviews else set())
    order: list[dict[str, Any]] = []
    seen: set[int] = set()
    errors: list[str] = []

    def add_tree(rel: dict[str, Any]) -> None:
        if rel['oid'] in seen:
            return
        seen.add(rel['oid'])
        order.append(rel)
        for child in kids.get(rel['oid'], []):
            add_tree(child)

    for entry in tables:
        try:
            schema, name = parse_relation_name(entry)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        rel = resolve_name(schema, name, search_path, catalog)
        if rel is None:
            where = ('schema "%s"' % schema) if schema else ('search_path %s' % ', '.join(search_path) or '(empty)')
            errors.append('table "%s" does not exist (looked in %s)' % (entry, where))
        elif rel['relkind'] == 'm' and not include_matviews:
            errors.append('"%s" is a materialized view: set include_matviews: true to rewrite it'
                          % display_name(rel['schema'], rel['name']))
        elif rel['relkind'] not in ('r', 'p', 'm'):
            what = KIND_NAMES.get(rel['relkind'], rel['relkind'])
            errors.append('"%s" is a %s: only tables, partitioned tables and materialized views have '
                          'an access method pg_tde can encrypt' % (display_name(rel['schema'], rel['name']), what))
        else:
            add_tree(rel)

    for entry in exclude:
        if not is_like_pattern(entry):
            try:
                parse_relation_name(entry)
            except ValueError as exc:
                errors.append('exclude: %s' % exc)

    broad = sorted((rel for rel in catalog if rel['relkind'] in broad_kinds and not rel.get('extension_member')),
                   key=lambda r: (r['schema'], r['name']))
    known_schemas = {rel['schema'] for rel in catalog}
    for schema in schemas:
        if schema not in known_schemas:
            errors.append('schema "%s" has no tables (or does not exist)' % schema)
        for rel in broad:
            if rel['schema'] == schema:
                add_tree(rel)
    for pattern in patterns:
        regex = like_to_regex(pattern)
        for rel in broad:
            if regex.match(display_name(rel['schema'], rel['name'])):
                add_tree(rel)
    if all_tables:
        for rel in broad:
            add_tree(rel)

    selected: list[dict[str, Any]] = []
    excluded: list[tuple[dict[str, Any], str]] = []
    for rel in order:
        hit = excluded_by(rel, exclude)
        if hit is None:
            for ancestor in _ancestors(rel, by_oid):
                if excluded_by(ancestor, exclude) is not None:
                    hit = excluded_by(ancestor, exclude)
                    break
        if hit is None:
            selected.append(rel)
        else:
            excluded.append((rel, hit))
    return {'selected': selected, 'excluded': excluded, 'errors': errors}


# ---------------------------------------------------------------------------
# planning (pure)
# ---------------------------------------------------------------------------

def kind_label(rel: dict[str, Any]) -> str:
    if rel['relkind'] == 'r' and rel.get('parent_oid'):
        return 'partition'
    if rel['relkind'] == 'p' and rel.get('parent_oid'):
        return 'partitioned partition'
    return KIND_NAMES.get(rel['relkind'], rel['relkind'])


def decide_action(rel: dict[str, Any], state: str, server_version_num: int) -> tuple[str, str | None]:
    """('rewrite' | 'set_access_method' | 'skip', reason for a skip)."""
    target = TARGET_AM[state]
    source = SOURCE_AM[state]
    am = rel.get('access_method') or ''
    kind = rel['relkind']
    if kind == 'p':
        if server_version_num < PARTITIONED_AM_MIN_VERSION:
            return 'skip', ('PostgreSQL %s cannot set the access method of a partitioned table (17 can): '
                            'its partitions are handled one by one; partitions created later get '
                            'default_table_access_method unless created USING %s'
                            % (server_version_num // 10000, target))
        if am == target:
            return 'skip', 'already %s' % target
        if am == '' and state == 'decrypted':
            return 'skip', 'no access method of its own (new partitions get default_table_access_method)'
        if am in ('', source):
            return 'set_access_method', None
        return 'skip', 'access method %s is left alone (only %s is changed to %s)' % (am, source, target)
    if kind in ('r', 'm'):
        if am == target:
            return 'skip', 'already %s' % target
        if am == source:
            return 'rewrite', None
        return 'skip', 'access method %s is left alone (only %s is changed to %s)' % (am, source, target)
    return 'skip', '%s: no storage of its own to encrypt' % KIND_NAMES.get(kind, kind)


def order_plan(items: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """Partitioned parents first (catalog-only, so partitions created meanwhile inherit the
    access method), then rewrites: largest first (ties by name), or as selected."""
    parents = [i for i in items if i['action'] == 'set_access_method']
    rewrites = [i for i in items if i['action'] == 'rewrite']
    if order == 'largest_first':
        rewrites = sorted(rewrites, key=lambda i: (-int(i.get('size_bytes') or 0), i['database'],
                                                   i['schema'], i['table']))
    out = parents + rewrites
    for n, item in enumerate(out, 1):
        item['order'] = n
    return out


def format_bytes(num: int | float | None) -> str:
    if num is None:
        return ''
    value = float(num)
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if abs(value) < 1024 or unit == 'TB':
            return ('%d %s' % (value, unit)) if unit == 'bytes' else ('%.1f %s' % (value, unit))
        value /= 1024
    return '%d bytes' % num  # pragma: no cover


def space_needed(items: list[dict[str, Any]], parallel: int, margin: float) -> dict[Any, dict[str, Any]]:
    """Bytes each file system needs free, keyed by device: a rewrite writes a full new copy
    (table, indexes, TOAST) before the old one goes, and up to `parallel` of them run at
    once, so a device needs its `parallel` largest rewrites plus margin percent.
    items carry 'device', 'directory' and 'size_bytes' (rewrites only)."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for item in items:
        if item.get('action') == 'rewrite':
            groups.setdefault(item['device'], []).append(item)
    out: dict[Any, dict[str, Any]] = {}
    for device, group in groups.items():
        sizes = sorted((int(i['size_bytes'] or 0) for i in group), reverse=True)
        base = sum(sizes[:max(1, parallel)])
        out[device] = {
            'directories': sorted({i['directory'] for i in group}),
            'needed_bytes': int(base * (1 + margin / 100.0)),
            'largest_bytes': sizes[0] if sizes else 0,
            'tables': len(group),
        }
    return out


def space_shortfalls(needs: dict[Any, dict[str, Any]], available: dict[Any, int]) -> list[dict[str, Any]]:
    short = []
    for device, need in needs.items():
        have = available.get(device)
        if have is not None and have < need['needed_bytes']:
            short.append(dict(need, available_bytes=have))
    return short


def retry_delays(retries: int, delay: float) -> list[float]:
    """Waits before each retry: delay, 2*delay, 4*delay ... (at most MAX_RETRY_DELAY each)."""
    return [min(float(delay) * (2 ** n), MAX_RETRY_DELAY) for n in range(max(0, retries))]


def storage_problems(parts: list[dict[str, Any]], expect_encrypted: bool) -> list[str]:
    """Parts (table, indexes, TOAST, TOAST index) whose pg_tde_is_encrypted is not as expected."""
    bad = []
    for part in parts:
        if part['encrypted'] is not expect_encrypted:
            value = 'NULL' if part['encrypted'] is None else str(part['encrypted']).lower()
            bad.append('%s (%s): pg_tde_is_encrypted = %s' % (part['relation'], part['part'], value))
    return bad


def rewrite_statement(item: dict[str, Any], target_am: str) -> str:
    what = 'MATERIALIZED VIEW' if item['relkind'] == 'm' else 'TABLE'
    return 'ALTER %s %s SET ACCESS METHOD %s' % (what, qualified(item['schema'], item['table']),
                                                 quote_ident(target_am))


# Row hashes for verify_integrity. "record" hashes each column with its type's own extended hash
# function (hash_record_extended, PostgreSQL 14+): no text output of every value, and parallel
# workers can compute it. "text" hashes the row's text form: the fallback for a table with a
# column type that has no hash function (json, point, xml, ...).
ROW_HASHES = {
    'record': 'hash_record_extended(r.*, 0)',
    'text': 'hashtextextended(r::text, 0)',
}
# SQLSTATEs of "could not identify an extended hash function for type ..."
NO_HASH_SQLSTATES = ('42883', '0A000')


def checksum_statement(schema: str, name: str, method: str = 'record') -> str:
    """Row count and the exact (numeric) sum of a 64-bit hash of every row: the same rows give
    the same result whatever their physical order, and any other multiset of rows a different
    one but with a chance of about 2**-64. One aggregate over one hash: PostgreSQL does not share
    a common subexpression between aggregates, so a second aggregate of the hash (a xor, as
    before) would hash every row twice. A plain aggregate over the table, so PostgreSQL can run it
    with parallel workers (they share the rewrite's lock)."""
    return ('SELECT count(*) AS rows, coalesce(sum(%s), 0)::text AS hash_sum FROM ONLY %s AS r'
            % (ROW_HASHES[method], qualified(schema, name)))


# ---------------------------------------------------------------------------
# reads (a PgSession)
# ---------------------------------------------------------------------------

CATALOG_SQL = """
SELECT c.oid::bigint AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
       coalesce(am.amname, '') AS access_method, c.relispopulated AS populated,
       coalesce((SELECT i.inhparent::bigint FROM pg_inherits i
                 WHERE i.inhrelid = c.oid AND c.relispartition LIMIT 1), 0) AS parent_oid,
       c.reltablespace::bigint AS tablespace_oid,
       EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
               AND d.objid = c.oid AND d.deptype = 'e') AS extension_member,
       pg_has_role(c.relowner, 'USAGE') AS owned
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v', 'S')
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_)'
"""

SIZES_SQL = """
SELECT c.oid::bigint AS oid, pg_total_relation_size(c.oid) AS total_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       CASE WHEN c.reltoastrelid <> 0 THEN pg_total_relation_size(c.reltoastrelid) ELSE 0 END AS toast_bytes
FROM pg_class c WHERE c.oid = ANY(%s::oid[])
"""

# The table, its TOAST table, their indexes: each found through an index of the catalog (a join
# with OR conditions would scan pg_class and pg_index for every row, which grows with the size
# of the catalog and cost milliseconds per table even on a small one).
PARTS_SQL = """
WITH t AS (SELECT c.oid, c.reltoastrelid FROM pg_class c WHERE c.oid = %s::oid),
parts AS (
    SELECT t.oid AS oid, 'table' AS part FROM t
    UNION ALL SELECT t.reltoastrelid, 'TOAST' FROM t WHERE t.reltoastrelid <> 0
    UNION ALL SELECT i.indexrelid, 'index' FROM t JOIN pg_index i ON i.indrelid = t.oid
    UNION ALL SELECT i.indexrelid, 'TOAST index' FROM t JOIN pg_index i ON i.indrelid = t.reltoastrelid
              WHERE t.reltoastrelid <> 0
)
SELECT p.oid::regclass::text AS relation, p.part, pg_tde_is_encrypted(p.oid::regclass) AS encrypted
FROM parts p JOIN pg_class c ON c.oid = p.oid
WHERE c.relkind IN ('r', 'm', 't', 'i')
ORDER BY 2 DESC, 1
"""


def fetch_catalog(session) -> list[dict[str, Any]]:
    rows = session.query(CATALOG_SQL)
    return [dict(r, oid=int(r['oid']), parent_oid=int(r['parent_oid'] or 0),
                 tablespace_oid=int(r['tablespace_oid'] or 0)) for r in rows]


def search_path(session) -> list[str]:
    row = session.query_one('SELECT current_schemas(false) AS path')
    return [s for s in (row['path'] if row else []) if not s.startswith('pg_temp')]


def fetch_sizes(session, oids: list[int]) -> dict[int, dict[str, int]]:
    if not oids:
        return {}
    out = {}
    for row in session.query(SIZES_SQL, [oids]):
        total = int(row['total_bytes'] or 0)
        index = int(row['index_bytes'] or 0)
        toast = int(row['toast_bytes'] or 0)
        out[int(row['oid'])] = {'size_bytes': total, 'index_bytes': index, 'toast_bytes': toast,
                                'table_bytes': max(0, total - index - toast)}
    return out


def tablespace_directories(session) -> dict[str, Any]:
    """{'default': oid of the database's default tablespace, 'dirs': {oid: (name, directory)}}.
    pg_default is data_directory/base/<database oid>; others their location."""
    row = session.query_one(
        "SELECT current_setting('data_directory') AS data_directory, d.oid::bigint AS db_oid, "
        "d.dattablespace::bigint AS default_tablespace FROM pg_database d WHERE d.datname = current_database()")
    dirs: dict[int, tuple[str, str]] = {}
    for spc in session.query('SELECT oid::bigint AS oid, spcname, pg_tablespace_location(oid) AS location '
                             'FROM pg_tablespace'):
        if spc['location']:
            directory = spc['location']
        elif spc['spcname'] == 'pg_global':
            directory = os.path.join(row['data_directory'], 'global')
        else:
            directory = os.path.join(row['data_directory'], 'base', str(row['db_oid']))
        dirs[int(spc['oid'])] = (spc['spcname'], directory)
    return {'default': int(row['default_tablespace']), 'dirs': dirs}


def free_bytes(directory: str) -> tuple[Any, int]:
    """(device id, bytes the postgres user may still write) of a directory's file system."""
    st = os.stat(directory)
    vfs = os.statvfs(directory)
    return st.st_dev, vfs.f_bavail * vfs.f_frsize


def storage_parts(session, oid: int) -> list[dict[str, Any]]:
    return session.query(PARTS_SQL, [oid])


def row_checksum(session, schema: str, name: str, method: str = 'record') -> dict[str, Any]:
    row = session.query_one(checksum_statement(schema, name, method))
    return {'rows': int(row['rows']), 'hash_sum': row['hash_sum'], 'method': method}


def first_checksum(session, schema: str, name: str) -> dict[str, Any]:
    """row_checksum with the per-column hash, or with the text hash when a column type has no
    extended hash function. That error comes at the first row (the type cache is read before
    any value is hashed), inside a savepoint, so the transaction and its lock go on."""
    try:
        with session.conn.transaction():
            return row_checksum(session, schema, name, 'record')
    except Exception as exc:
        if sqlstate(exc) not in NO_HASH_SQLSTATES:
            raise
    return row_checksum(session, schema, name, 'text')


def hash_method(session, schema: str, name: str) -> str:
    """The row hash every checksum of this table uses: "record" when every column type has an
    extended hash function, else "text". Probed on one row of NULLs of the table's row type
    (hash_record_extended looks the functions up before it hashes any value), so an empty table
    gives the same answer as a full one; inside a savepoint, so the caller's transaction goes on."""
    probe = 'SELECT hash_record_extended(r.*, 0) FROM (SELECT (NULL::%s).*) AS r' % qualified(schema, name)
    try:
        with session.conn.transaction():
            session.query_one(probe)
    except Exception as exc:
        if sqlstate(exc) not in NO_HASH_SQLSTATES:
            raise
        return 'text'
    return 'record'


def current_access_method(session, oid: int) -> str | None:
    row = session.query_one('SELECT coalesce(am.amname, \'\') AS am FROM pg_class c '
                            'LEFT JOIN pg_am am ON am.oid = c.relam WHERE c.oid = %s::oid', [oid])
    return row['am'] if row else None


# ---------------------------------------------------------------------------
# the change
# ---------------------------------------------------------------------------

class VerificationFailed(Exception):
    """Raised inside the rewrite transaction so that it rolls back."""


class LockNotAcquired(Exception):
    pass


def rewrite_once(session, item: dict[str, Any], state: str, lock_timeout: str,
                 verify_integrity: bool) -> dict[str, Any]:
    """One attempt, in one transaction: take the lock (lock_timeout), check the access
    method again, checksum, ALTER ... SET ACCESS METHOD, check every part with
    pg_tde_is_encrypted, checksum again (same hash as before); commit only when all of it
    holds, otherwise roll back (VerificationFailed) so the table stays as it was.
    out['phase_seconds'] says where the time went (lock, checksum_before, rewrite, check,
    checksum_after, commit)."""
    target = TARGET_AM[state]
    expect = state == 'encrypted'
    out: dict[str, Any] = {}
    phases: dict[str, float] = {}
    out['phase_seconds'] = phases
    clock = [time.monotonic()]

    def lap(name: str) -> None:
        now = time.monotonic()
        phases[name] = round(phases.get(name, 0.0) + now - clock[0], 3)
        clock[0] = now

    with session.conn.transaction():
        session.query("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
        if item['action'] == 'set_access_method':
            # A partitioned table (PostgreSQL 17+): catalog only, nothing to rewrite or prove.
            session.execute(rewrite_statement(item, target))
            lap('rewrite')
            am = current_access_method(session, item['oid'])
            out['verified'] = am == target
            if am != target:
                raise VerificationFailed('the access method is %s after the ALTER, not %s. Rolled back.'
                                         % (am, target))
            out['status'] = state
            lap('check')
            return out
        if item['relkind'] != 'm':  # LOCK TABLE does not take materialized views; their ALTER locks
            session.query('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE'
                          % qualified(item['schema'], item['table']))
            am = current_access_method(session, item['oid'])
            lap('lock')
            if am == target:
                out['status'] = 'skipped'
                out['reason'] = 'already %s (changed by someone else meanwhile)' % target
                return out
            if am is None:
                out['status'] = 'skipped'
                out['reason'] = 'dropped meanwhile'
                return out
        populated = item.get('populated', True) is not False
        before = None
        if verify_integrity and populated:
            before = first_checksum(session, item['schema'], item['table'])
            lap('checksum_before')
        session.execute(rewrite_statement(item, target))
        lap('rewrite')
        bad = storage_problems(storage_parts(session, item['oid']), expect)
        lap('check')
        after = None
        if before is not None:
            after = row_checksum(session, item['schema'], item['table'], before['method'])
            lap('checksum_after')
        out['verified'] = not bad
        if before is not None:
            out['rows'] = after['rows']
            out['checksum_match'] = before == after
            out['checksum_method'] = before['method']
        if bad:
            raise VerificationFailed('after the rewrite, inside its transaction: %s. Rolled back: the '
                                     'table is unchanged.' % '; '.join(bad))
        if before is not None and before != after:
            raise VerificationFailed('rows differ after the rewrite (before: %s rows, hash sum %s; after: %s '
                                     'rows, hash sum %s). Rolled back: the table is unchanged.'
                                     % (before['rows'], before['hash_sum'], after['rows'], after['hash_sum']))
    lap('commit')
    out['status'] = state
    return out


def rewrite_table(session, item: dict[str, Any], state: str, *, lock_timeout: str, retries: int,
                  retry_delay: float, verify_integrity: bool, pg_error_text: Callable[[BaseException], str],
                  stop: Any = None) -> dict[str, Any]:
    """rewrite_once with retries on lock timeouts and deadlocks (backoff), then a second
    check of pg_tde_is_encrypted after the commit. Never raises for database errors:
    the result says status failed, the error and whether it was a lock problem."""
    result: dict[str, Any] = {'attempts': 0, 'verified': None, 'checksum_match': None, 'rows': None,
                              'error': None, 'lock_timeout': False, 'changed': False}
    delays = retry_delays(retries, retry_delay)
    started = time.monotonic()
    while True:
        result['attempts'] += 1
        try:
            out = rewrite_once(session, item, state, lock_timeout, verify_integrity)
        except VerificationFailed as exc:
            result.update(status='failed', verified=False, error=str(exc))
            if 'rows differ' in str(exc):
                result['checksum_match'] = False
                result['verified'] = True
            break
        except Exception as exc:  # psycopg errors: keep PostgreSQL's words
            code = sqlstate(exc)
            if code in RETRY_SQLSTATES and result['attempts'] <= len(delays):
                wait = delays[result['attempts'] - 1]
                if stop is not None and stop.wait(wait):
                    result.update(status='failed', error='stopped while waiting to retry after: %s'
                                  % pg_error_text(exc), lock_timeout=True)
                    break
                if stop is None:
                    time.sleep(wait)
                continue
            result.update(status='failed', error=pg_error_text(exc), lock_timeout=code in RETRY_SQLSTATES)
            break
        result.update(out)
        if out['status'] == state and item['action'] == 'set_access_method':
            result['changed'] = True
        elif out['status'] == state:
            result['changed'] = True
            try:
                bad = storage_problems(storage_parts(session, item['oid']), state == 'encrypted')
            except Exception as exc:
                bad = ['cannot check after commit: %s' % pg_error_text(exc)]
            if bad:
                result.update(status='failed', verified=False,
                              error='committed, but the check after commit fails: %s' % '; '.join(bad))
        break
    result['seconds'] = round(time.monotonic() - started, 3)
    return result
