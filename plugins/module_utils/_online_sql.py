# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The statements of the online method, composed with psycopg.sql (identifiers and literals
always quoted by psycopg; definitions that PostgreSQL itself printed with pg_get_*def are used
as they are). Pure: unit-tested by rendering them without a server."""
from __future__ import annotations

from typing import Any

try:
    from psycopg import sql
except ImportError:  # the modules fail with missing_required_lib before any of this runs
    sql = None  # type: ignore[assignment]

from ansible_collections.tdeops.pg_tde.plugins.module_utils._online_catalog import (
    CAPTURE_TRIGGER,
    STATE_SCHEMA,
    TRUNCATE_TRIGGER,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._online_plan import NOT_VALID, state_name

JOBS_TABLE = 'jobs'


class DefinitionError(ValueError):
    """A definition printed by PostgreSQL does not have the expected shape."""


# ---------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------

def names(job_id: int) -> dict[str, str]:
    return {
        'shadow': state_name('shadow', job_id),
        'log': state_name('log', job_id),
        'capture': state_name('capture', job_id),
        'truncated': state_name('truncated', job_id),
        'old': state_name('old', job_id),
        'keys': state_name('tdeops_keys', job_id),
        'src_view': state_name('tdeops_src', job_id),
        'shd_view': state_name('tdeops_shd', job_id),
    }


def temp_index_name(job_id: int, index_oid: int) -> str:
    return '%s_%s' % (state_name('tdeops', job_id), int(index_oid))


def st(name: str):
    """An object in the state schema."""
    return sql.Identifier(STATE_SCHEMA, name)


def source(defn: dict[str, Any]):
    return sql.Identifier(defn['table']['schema'], defn['table']['name'])


def _cols(columns: list[str], alias: str | None = None):
    if alias:
        return sql.SQL(', ').join(sql.Identifier(alias, c) for c in columns)
    return sql.SQL(', ').join(sql.Identifier(c) for c in columns)


def _key_equal(a: str, b: str, key: list[str]):
    return sql.SQL(' AND ').join(sql.SQL('{} = {}').format(sql.Identifier(a, c), sql.Identifier(b, c)) for c in key)


def copy_columns(defn: dict[str, Any]) -> list[str]:
    """Columns the copy writes: all but stored generated ones (the copy computes those itself)."""
    return [c['name'] for c in defn['columns'] if not c.get('generated')]


def key_columns(defn: dict[str, Any], key: dict[str, Any]) -> list[dict[str, Any]]:
    by_name = {c['name']: c for c in defn['columns']}
    return [by_name[name] for name in key['key_columns']]


def _options(options: list[str] | None, prefix: str = ''):
    """WITH (...) items from reloptions text ('fillfactor=70'), quoted."""
    items = []
    for opt in options or []:
        name, _sep, value = opt.partition('=')
        ident = sql.SQL(prefix + '{}').format(sql.Identifier(name)) if prefix else sql.Identifier(name)
        items.append(sql.SQL('{} = {}').format(ident, sql.Literal(value)))
    return sql.SQL(', ').join(items)


# ---------------------------------------------------------------------------------------------
# state: the schema, the jobs table, the change log, the capture triggers
# ---------------------------------------------------------------------------------------------

def create_state_schema():
    return sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(sql.Identifier(STATE_SCHEMA))


def create_jobs_table(am: str):
    """One row per job; tde_heap when encrypting (it holds the key of the last row copied)."""
    return sql.SQL(
        'CREATE TABLE IF NOT EXISTS {} ('
        'job_id bigint PRIMARY KEY, source_oid oid NOT NULL, schema_name text NOT NULL, table_name text NOT NULL, '
        'target_am text NOT NULL, phase text NOT NULL, fingerprint text NOT NULL, trigger_xmin text, '
        'key_columns text[] NOT NULL, last_key text[], copied_rows bigint NOT NULL DEFAULT 0, '
        'shd_rows bigint, shd_sum numeric, truncated boolean NOT NULL DEFAULT false, '
        'new_oid oid, validate text[], started_at timestamptz NOT NULL DEFAULT now(), '
        'updated_at timestamptz NOT NULL DEFAULT now(), swapped_at timestamptz) USING {}'
    ).format(st(JOBS_TABLE), sql.Identifier(am))


def create_log(job_id: int, keycols: list[dict[str, Any]], am: str):
    cols = sql.SQL(', ').join(
        sql.SQL('{} {}{}').format(sql.Identifier(c['name']), sql.SQL(c['type']),
                                  sql.SQL(' COLLATE ' + c['collation']) if c.get('collation') else sql.SQL(''))
        for c in keycols)
    return sql.SQL('CREATE TABLE {} ({}) USING {}').format(st(names(job_id)['log']), cols, sql.Identifier(am))


def create_capture_function(job_id: int, key: list[str]):
    """The row trigger's function: the key of every row written (old and new key of an update
    that changes it). SECURITY DEFINER so that the application's roles need no right on the log."""
    log = st(names(job_id)['log']).as_string(None)
    cols = _cols(key).as_string(None)
    new = ', '.join('NEW.%s' % sql.Identifier(c).as_string(None) for c in key)
    old = ', '.join('OLD.%s' % sql.Identifier(c).as_string(None) for c in key)
    body = (
        'BEGIN\n'
        "  IF TG_OP <> 'INSERT' THEN\n"
        '    INSERT INTO %(log)s (%(cols)s) VALUES (%(old)s);\n'
        '  END IF;\n'
        "  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (%(new)s) IS DISTINCT FROM (%(old)s)) THEN\n"
        '    INSERT INTO %(log)s (%(cols)s) VALUES (%(new)s);\n'
        '  END IF;\n'
        '  RETURN NULL;\n'
        'END' % {'log': log, 'cols': cols, 'new': new, 'old': old})
    return sql.SQL('CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp AS {}').format(st(names(job_id)['capture']), sql.Literal(body))


def create_truncated_function(job_id: int):
    body = ('BEGIN UPDATE %s SET truncated = true WHERE job_id = %d; RETURN NULL; END'
            % (st(JOBS_TABLE).as_string(None), int(job_id)))
    return sql.SQL('CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp AS {}').format(
        st(names(job_id)['truncated']), sql.Literal(body))


def create_triggers(job_id: int, defn: dict[str, Any]) -> list[Any]:
    n = names(job_id)
    src = source(defn)
    return [
        sql.SQL('CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()')
        .format(sql.Identifier(CAPTURE_TRIGGER), src, st(n['capture'])),
        sql.SQL('CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()')
        .format(sql.Identifier(TRUNCATE_TRIGGER), src, st(n['truncated'])),
        # ALWAYS: fire also for sessions with session_replication_role = replica (logical replication
        # apply, bulk loaders), which would otherwise write without being logged
        sql.SQL('ALTER TABLE {} ENABLE ALWAYS TRIGGER {}').format(src, sql.Identifier(CAPTURE_TRIGGER)),
        sql.SQL('ALTER TABLE {} ENABLE ALWAYS TRIGGER {}').format(src, sql.Identifier(TRUNCATE_TRIGGER)),
    ]


# ---------------------------------------------------------------------------------------------
# the copy: table, key, indexes, constraints
# ---------------------------------------------------------------------------------------------

AUTOVACUUM = 'autovacuum_enabled'


def without_autovacuum(options: list[str] | None) -> list[str]:
    """The options with autovacuum_enabled=false (in its place when set): autovacuum would only
    compete with the copy for I/O and for locks on it; the copy is vacuumed once, by the job."""
    opts = list(options or [])
    keys = [o.partition('=')[0] for o in opts]
    if AUTOVACUUM in keys:
        opts[keys.index(AUTOVACUUM)] = AUTOVACUUM + '=false'
    else:
        opts.append(AUTOVACUUM + '=false')
    return opts


def restore_autovacuum(target, options: list[str] | None, prefix: str = ''):
    """Back to the old table's autovacuum_enabled (RESET when it had none)."""
    value = dict(o.partition('=')[::2] for o in options or []).get(AUTOVACUUM)
    name = sql.SQL(prefix + '{}').format(sql.Identifier(AUTOVACUUM))
    if value is None:
        return sql.SQL('ALTER TABLE {} RESET ({})').format(target, name)
    return sql.SQL('ALTER TABLE {} SET ({} = {})').format(target, name, sql.Literal(value))


def create_shadow(job_id: int, defn: dict[str, Any], am: str) -> list[Any]:
    t = defn['table']
    unlogged = sql.SQL('UNLOGGED ') if t['persistence'] == 'u' else sql.SQL('')
    out = [sql.SQL('CREATE {}TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE '
                   'INCLUDING COMPRESSION INCLUDING COMMENTS) USING {} WITH ({}){}').format(
        unlogged, st(names(job_id)['shadow']), source(defn), sql.Identifier(am),
        _options(without_autovacuum(t['reloptions'])),
        sql.SQL(' TABLESPACE {}').format(sql.Identifier(t['tablespace'])) if t.get('tablespace') else sql.SQL(''))]
    shadow = st(names(job_id)['shadow'])
    out.append(sql.SQL('ALTER TABLE {} SET ({})').format(
        shadow, _options(without_autovacuum(t['toast_reloptions']), 'toast.')))
    for c in defn['columns']:
        if c.get('stattarget') is not None and int(c['stattarget']) >= 0:
            out.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET STATISTICS {}').format(
                shadow, sql.Identifier(c['name']), sql.Literal(int(c['stattarget']))))
        if c.get('options'):
            out.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET ({})').format(
                shadow, sql.Identifier(c['name']), _options(c['options'])))
    return out


def index_statement(job_id: int, defn: dict[str, Any], idx: dict[str, Any]):
    """The index (or the constraint that owns it) on the copy, under a temporary name."""
    shadow = st(names(job_id)['shadow'])
    tmp = sql.Identifier(temp_index_name(job_id, idx['oid']))
    if idx.get('constraint_name'):
        return sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}').format(shadow, tmp, sql.SQL(idx['constraint_def']))
    head = None
    for unique in ('UNIQUE ', ''):
        prefix = 'CREATE %sINDEX %s ON %s USING ' % (unique, idx['quoted'], defn['table']['qualified'])
        if idx['def'].startswith(prefix):
            head = unique
            rest = idx['def'][len(prefix):]
            break
    if head is None:
        raise DefinitionError('unexpected definition of index %s: %s' % (idx['name'], idx['def']))
    stmt = sql.SQL('CREATE {}INDEX {} ON {} USING {}').format(sql.SQL(head), tmp, shadow, sql.SQL(rest))
    if idx.get('tablespace'):
        stmt = sql.SQL('{} TABLESPACE {}').format(stmt, sql.Identifier(idx['tablespace']))
    return stmt


def partition_check_name(job_id: int) -> str:
    return state_name('tdeops_partition', job_id)


def partition_check(job_id: int, defn: dict[str, Any]):
    """A partition's copy carries its partition constraint as a CHECK from the start (rows are
    checked as they are copied), so that ATTACH PARTITION finds it proven and scans nothing."""
    return sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})').format(
        st(names(job_id)['shadow']), sql.Identifier(partition_check_name(job_id)),
        sql.SQL(defn['table']['partition_constraint']))


def check_statement(job_id: int, check: dict[str, Any]):
    return sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}').format(
        st(names(job_id)['shadow']), sql.Identifier(check['name']), sql.SQL(check['def']))


def _key_cast(keycols: list[dict[str, Any]]):
    """(%s::text::type, ...) for the key values, which travel as text."""
    return sql.SQL(', ').join(sql.SQL('%s::text::{}').format(sql.SQL(c['type'])) for c in keycols)


def copy_upper_bound(defn: dict[str, Any], keycols: list[dict[str, Any]], after: bool, batch: int):
    """The key of the last row of the next batch (in key order), as text."""
    key = [c['name'] for c in keycols]
    where = sql.SQL(' WHERE ({}) > ({})').format(_cols(key), _key_cast(keycols)) if after else sql.SQL('')
    return sql.SQL('SELECT {} FROM ONLY {}{} ORDER BY {} OFFSET {} LIMIT 1').format(
        sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(k)) for k in key),
        source(defn), where, _cols(key), sql.Literal(max(0, int(batch) - 1)))


def copy_batch(job_id: int, defn: dict[str, Any], keycols: list[dict[str, Any]], lower: bool, upper: bool):
    """Rows with lower < key <= upper (either bound may be open) into the copy."""
    key = [c['name'] for c in keycols]
    cols = copy_columns(defn)
    conds = []
    if lower:
        conds.append(sql.SQL('({}) > ({})').format(_cols(key), _key_cast(keycols)))
    if upper:
        conds.append(sql.SQL('({}) <= ({})').format(_cols(key), _key_cast(keycols)))
    where = sql.SQL(' WHERE ') + sql.SQL(' AND ').join(conds) if conds else sql.SQL('')
    return sql.SQL('INSERT INTO {} ({}) SELECT {} FROM ONLY {}{}').format(
        st(names(job_id)['shadow']), _cols(cols), _cols(cols), source(defn), where)


def save_copy_progress():
    return sql.SQL('UPDATE {} SET last_key = %s, copied_rows = copied_rows + %s, updated_at = now() '
                   'WHERE job_id = %s').format(st(JOBS_TABLE))


# ---------------------------------------------------------------------------------------------
# catching up: every key written since, read again from the table
# ---------------------------------------------------------------------------------------------

def create_keys_table(job_id: int, am: str):
    """A temporary table for the keys of one round (TEMP and tde_heap when encrypting: keys can
    be sensitive too)."""
    return sql.SQL('CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) USING {} ON COMMIT DELETE ROWS').format(
        sql.Identifier(names(job_id)['keys']), st(names(job_id)['log']), sql.Identifier(am))


def create_key_views(job_id: int, defn: dict[str, Any], key: list[str]) -> list[Any]:
    """Views over the rows of the current round's keys, in the table and in the copy, so that
    the collection's one row checksum (_tables.row_checksum) sums exactly those rows."""
    n = names(job_id)
    keys = sql.Identifier('pg_temp', n['keys'])
    out = []
    for view, rel in ((n['src_view'], source(defn)), (n['shd_view'], st(n['shadow']))):
        out.append(sql.SQL('CREATE OR REPLACE TEMP VIEW {} AS SELECT r.* FROM ONLY {} AS r WHERE EXISTS '
                           '(SELECT 1 FROM {} AS k WHERE {})').format(
            sql.Identifier(view), rel, keys, _key_equal('r', 'k', key)))
    return out


def take_logged_keys(job_id: int, key: list[str]):
    n = names(job_id)
    return sql.SQL('WITH d AS (DELETE FROM {} RETURNING {}) INSERT INTO {} ({}) SELECT DISTINCT {} FROM d').format(
        st(n['log']), _cols(key), sql.Identifier('pg_temp', n['keys']), _cols(key), _cols(key))


def analyze_keys(job_id: int):
    return sql.SQL('ANALYZE {}').format(sql.Identifier('pg_temp', names(job_id)['keys']))


def delete_keys_from_copy(job_id: int, key: list[str]):
    n = names(job_id)
    return sql.SQL('DELETE FROM {} AS s USING {} AS k WHERE {}').format(
        st(n['shadow']), sql.Identifier('pg_temp', n['keys']), _key_equal('s', 'k', key))


def copy_keys(job_id: int, defn: dict[str, Any], key: list[str]):
    n = names(job_id)
    cols = copy_columns(defn)
    return sql.SQL('INSERT INTO {} ({}) SELECT {} FROM ONLY {} AS r WHERE EXISTS (SELECT 1 FROM {} AS k WHERE {})'
                   ).format(st(n['shadow']), _cols(cols), _cols(cols, 'r'), source(defn),
                            sql.Identifier('pg_temp', n['keys']), _key_equal('r', 'k', key))


def save_totals():
    return sql.SQL('UPDATE {} SET shd_rows = %s, shd_sum = %s, phase = %s, updated_at = now() '
                   'WHERE job_id = %s').format(st(JOBS_TABLE))


# ---------------------------------------------------------------------------------------------
# the switch
# ---------------------------------------------------------------------------------------------

def lock(relation, mode: str):
    if mode not in ('ACCESS EXCLUSIVE', 'SHARE ROW EXCLUSIVE'):
        raise ValueError(mode)
    return sql.SQL('LOCK TABLE ONLY {} IN {} MODE').format(relation, sql.SQL(mode))


def set_lock_timeout(value: str):
    # SET LOCAL is not a query: it takes no snapshot, so the snapshot of a REPEATABLE READ
    # transaction is taken after the lock is granted
    return sql.SQL('SET LOCAL lock_timeout = {}').format(sql.Literal(value))


def _enable_clause(state: str, kind: str, name: str):
    word = {'D': 'DISABLE', 'R': 'ENABLE REPLICA', 'A': 'ENABLE ALWAYS'}.get(state)
    return sql.SQL('{} {} {}').format(sql.SQL(word), sql.SQL(kind), sql.Identifier(name)) if word else None


def _grant_items(acl: list[str], owner: str) -> list[tuple[str, str, str, bool]]:
    items = []
    for entry in acl or []:
        grantor, grantee, privilege, grantable = entry.split('|')
        items.append((grantor, grantee, privilege, grantable == 'true'))
    # the owner's grants first: other grantors hold their GRANT OPTION from them
    return sorted(items, key=lambda i: (i[0] != owner, i[0], i[1], i[2]))


def _grantee(name: str):
    return sql.SQL('PUBLIC') if name == 'PUBLIC' else sql.Identifier(name)


def grant_statements(target, acl: list[str], owner: str, what: str = 'TABLE', column: str | None = None,
                     current_acl: list[str] | None = None) -> list[Any]:
    """Make the privileges of `target` exactly `acl`: revoke everything from everyone the
    current or the wanted ACL names (and from the owner and PUBLIC, whose rights can be
    implicit), then grant each item as its grantor (SET ROLE for grantors other than the owner)."""
    out: list[Any] = []
    col = sql.SQL(' ({})').format(sql.Identifier(column)) if column else sql.SQL('')
    revoke = {i[1] for i in _grant_items((current_acl or []) + (acl or []), owner)}
    if current_acl is not None:
        revoke |= {owner, 'PUBLIC'}
    for grantee in sorted(revoke):
        out.append(sql.SQL('REVOKE ALL{} ON {} {} FROM {} CASCADE').format(
            col, sql.SQL(what), target, _grantee(grantee)))
    for grantor, grantee, privilege, grantable in _grant_items(acl, owner):
        stmt = sql.SQL('GRANT {}{} ON {} {} TO {}{}').format(
            sql.SQL(privilege), col, sql.SQL(what), target, _grantee(grantee),
            sql.SQL(' WITH GRANT OPTION') if grantable else sql.SQL(''))
        if grantor and grantor != owner:
            out.append(sql.SQL('SET LOCAL ROLE {}').format(sql.Identifier(grantor)))
            out.append(stmt)
            out.append(sql.SQL('RESET ROLE'))
        else:
            out.append(stmt)
    return out


def comment(kind: str, target, text: str | None):
    return sql.SQL('COMMENT ON {} {} IS {}').format(sql.SQL(kind), target, sql.Literal(text))


def swap_statements(job_id: int, src: dict[str, Any], shadow: dict[str, Any], seq_state: dict[str, Any]
                    ) -> tuple[list[Any], list[Any], list[tuple[str, str, str]]]:
    """The catalog changes of the switch, in order, for the table described by `src` (read
    under the lock) and its copy described by `shadow`. Returns (before the views are replaced,
    the view replacements, foreign keys to validate after the commit as (schema, table,
    constraint))."""
    n = names(job_id)
    t = src['table']
    schema, name = t['schema'], t['name']
    old = sql.Identifier(STATE_SCHEMA, n['old'])
    new = sql.Identifier(schema, name)
    out: list[Any] = []
    validate: list[tuple[str, str, str]] = []
    parent = sql.Identifier(t['parent_schema'], t['parent_name']) if t.get('is_partition') else None
    # 1. what points at the old table by OID lets go of it
    if parent is not None:
        out.append(sql.SQL('ALTER TABLE {} DETACH PARTITION {}').format(parent, source(src)))
    for fk in src['fks_in']:
        out.append(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(
            sql.Identifier(fk['table_schema'], fk['table_name']), sql.Identifier(fk['name'])))
    for seq in src['sequences']:
        if seq['deptype'] == 'a':
            out.append(sql.SQL('ALTER SEQUENCE {} OWNED BY NONE').format(sql.Identifier(seq['schema'], seq['name'])))
    for pub in src['publications']:
        out.append(sql.SQL('ALTER PUBLICATION {} DROP TABLE {}').format(sql.Identifier(pub['name']), source(src)))
    for stx in src['statistics']:
        out.append(sql.SQL('DROP STATISTICS {}').format(sql.Identifier(stx['schema'], stx['name'])))
    # 2. the old table leaves the schema (its indexes and identity sequences under names of their own)
    for idx in src['indexes']:
        out.append(sql.SQL('ALTER INDEX {} RENAME TO {}').format(
            sql.Identifier(schema, idx['name']), sql.Identifier(state_name('old_index', idx['oid']))))
    for seq in src['sequences']:
        if seq['deptype'] == 'i':
            out.append(sql.SQL('ALTER SEQUENCE {} RENAME TO {}').format(
                sql.Identifier(seq['schema'], seq['name']), sql.Identifier(state_name('old_seq', seq['oid']))))
    out.append(sql.SQL('ALTER TABLE {} RENAME TO {}').format(new, sql.Identifier(n['old'])))
    out.append(sql.SQL('ALTER TABLE {} SET SCHEMA {}').format(sql.Identifier(schema, n['old']),
                                                              sql.Identifier(STATE_SCHEMA)))
    # 3. the copy takes its place, names and all
    out.append(sql.SQL('ALTER TABLE {} SET SCHEMA {}').format(st(n['shadow']), sql.Identifier(schema)))
    out.append(sql.SQL('ALTER TABLE {} RENAME TO {}').format(sql.Identifier(schema, n['shadow']),
                                                             sql.Identifier(name)))
    for idx in src['indexes']:
        tmp = temp_index_name(job_id, idx['oid'])
        if idx.get('constraint_name'):
            out.append(sql.SQL('ALTER TABLE {} RENAME CONSTRAINT {} TO {}').format(
                new, sql.Identifier(tmp), sql.Identifier(idx['constraint_name'])))
        else:
            out.append(sql.SQL('ALTER INDEX {} RENAME TO {}').format(sql.Identifier(schema, tmp),
                                                                     sql.Identifier(idx['name'])))
    out.append(sql.SQL('ALTER TABLE {} OWNER TO {}').format(new, sql.Identifier(t['owner'])))
    out.append(restore_autovacuum(new, t.get('reloptions')))
    out.append(restore_autovacuum(new, t.get('toast_reloptions'), 'toast.'))
    if parent is not None:
        # indexes, CHECK constraints and triggers of the partitioned table attach to (or are cloned
        # onto) the copy; its partition constraint is proven by the CHECK it was built with
        out.append(sql.SQL('ALTER TABLE {} ATTACH PARTITION {} {}').format(parent, new, sql.SQL(t['partition_bound'])))
        if t.get('partition_constraint'):
            out.append(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(
                new, sql.Identifier(partition_check_name(job_id))))
    # 4. sequences: owned ones change hands, identity is recreated with the same name and state
    for seq in src['sequences']:
        col = sql.Identifier(seq['column_name'])
        target = sql.Identifier(seq['schema'], seq['name'])
        if seq['deptype'] == 'a':
            out.append(sql.SQL('ALTER SEQUENCE {} OWNED BY {}').format(
                target, sql.Identifier(schema, name, seq['column_name'])))
            continue
        column = next(c for c in src['columns'] if c['name'] == seq['column_name'])
        kind = 'ALWAYS' if column['identity'] == 'a' else 'BY DEFAULT'
        out.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} ADD GENERATED {} AS IDENTITY (SEQUENCE NAME {} '
                           'INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {})').format(
            new, col, sql.SQL(kind), target, sql.Literal(int(seq['increment'])),
            sql.Literal(int(seq['min'])), sql.Literal(int(seq['max'])), sql.Literal(int(seq['start'])),
            sql.Literal(int(seq['cache'])), sql.SQL('CYCLE' if seq['cycle'] else 'NO CYCLE')))
        state = seq_state.get(seq['name'])
        if state is not None:
            out.append(sql.SQL('SELECT pg_catalog.setval({}, {}, {})').format(
                sql.Literal(target.as_string(None)), sql.Literal(int(state['last_value'])),
                sql.Literal(bool(state['is_called']))))
        if seq.get('acl'):
            out.extend(grant_statements(target, seq['acl'], t['owner'], what='SEQUENCE'))
        if seq.get('comment') is not None:
            out.append(comment('SEQUENCE', target, seq['comment']))
    # 5. privileges, row level security, comments
    out.extend(grant_statements(new, src['acl'], t['owner'], current_acl=shadow['acl']))
    for c in src['columns']:
        if c.get('acl'):
            out.extend(grant_statements(new, c['acl'], t['owner'], column=c['name']))
    if t['rls']:
        out.append(sql.SQL('ALTER TABLE {} ENABLE ROW LEVEL SECURITY').format(new))
    if t['rls_force']:
        out.append(sql.SQL('ALTER TABLE {} FORCE ROW LEVEL SECURITY').format(new))
    for pol in src['policies']:
        out.append(sql.SQL('CREATE POLICY {} ON {} AS {} FOR {} TO {}{}{}').format(
            sql.Identifier(pol['name']), new, sql.SQL('PERMISSIVE' if pol['permissive'] else 'RESTRICTIVE'),
            sql.SQL({'r': 'SELECT', 'a': 'INSERT', 'w': 'UPDATE', 'd': 'DELETE'}.get(pol['cmd'], 'ALL')),
            sql.SQL(', ').join(sql.SQL(r) for r in pol['roles']),
            sql.SQL(' USING ({})').format(sql.SQL(pol['qual'])) if pol.get('qual') else sql.SQL(''),
            sql.SQL(' WITH CHECK ({})').format(sql.SQL(pol['with_check'])) if pol.get('with_check') else sql.SQL('')))
        if pol.get('comment') is not None:
            out.append(comment('POLICY', sql.SQL('{} ON {}').format(sql.Identifier(pol['name']), new), pol['comment']))
    if t.get('comment') is not None:
        out.append(comment('TABLE', new, t['comment']))
    for idx in src['indexes']:
        if idx.get('comment') is not None:
            out.append(comment('INDEX', sql.Identifier(schema, idx['name']), idx['comment']))
        if idx.get('constraint_comment') is not None:
            out.append(comment('CONSTRAINT', sql.SQL('{} ON {}').format(sql.Identifier(idx['constraint_name']), new),
                               idx['constraint_comment']))
    for chk in src['checks']:
        if chk.get('comment') is not None:
            out.append(comment('CONSTRAINT', sql.SQL('{} ON {}').format(sql.Identifier(chk['name']), new),
                               chk['comment']))
    # 6. triggers and rules (only now: on the copy they would have fired for the copying itself)
    for trg in src['triggers']:
        if trg.get('inherited'):
            continue       # cloned from the partitioned table by ATTACH PARTITION
        out.append(sql.SQL(trg['def']))
        clause = _enable_clause(trg['enabled'], 'TRIGGER', trg['name'])
        if clause is not None:
            out.append(sql.SQL('ALTER TABLE {} {}').format(new, clause))
        if trg.get('comment') is not None:
            out.append(comment('TRIGGER', sql.SQL('{} ON {}').format(sql.Identifier(trg['name']), new), trg['comment']))
    for rule in src['rules']:
        out.append(sql.SQL(rule['def'].rstrip(';')))
        clause = _enable_clause(rule['enabled'], 'RULE', rule['name'])
        if clause is not None:
            out.append(sql.SQL('ALTER TABLE {} {}').format(new, clause))
        if rule.get('comment') is not None:
            out.append(comment('RULE', sql.SQL('{} ON {}').format(sql.Identifier(rule['name']), new), rule['comment']))
    # 7. foreign keys both ways, NOT VALID now (no scan under the lock), validated after the commit
    for fk in src['fks_out']:
        already = fk['def'].endswith(NOT_VALID)
        out.append(sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}{}').format(
            new, sql.Identifier(fk['name']), sql.SQL(fk['def']), sql.SQL('' if already else NOT_VALID)))
        if not already:
            validate.append((schema, name, fk['name']))
        if fk.get('comment') is not None:
            out.append(comment('CONSTRAINT', sql.SQL('{} ON {}').format(sql.Identifier(fk['name']), new), fk['comment']))
    for fk in src['fks_in']:
        other = sql.Identifier(fk['table_schema'], fk['table_name'])
        already = fk['def'].endswith(NOT_VALID)
        out.append(sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {}{}').format(
            other, sql.Identifier(fk['name']), sql.SQL(fk['def']), sql.SQL('' if already else NOT_VALID)))
        if not already:
            validate.append((fk['table_schema'], fk['table_name'], fk['name']))
        if fk.get('comment') is not None:
            out.append(comment('CONSTRAINT', sql.SQL('{} ON {}').format(sql.Identifier(fk['name']), other),
                               fk['comment']))
    # 8. publications, replica identity, CLUSTER mark, extended statistics
    for pub in src['publications']:
        cols = sql.SQL(' ({})').format(sql.SQL(', ').join(sql.SQL(c) for c in pub['columns'])) \
            if pub.get('columns') else sql.SQL('')
        filt = sql.SQL(' WHERE ({})').format(sql.SQL(pub['row_filter'])) if pub.get('row_filter') else sql.SQL('')
        out.append(sql.SQL('ALTER PUBLICATION {} ADD TABLE {}{}{}').format(sql.Identifier(pub['name']), new, cols, filt))
    ident = next((i for i in src['indexes'] if i['replident']), None)
    if t['replident'] == 'i' and ident is not None:
        out.append(sql.SQL('ALTER TABLE {} REPLICA IDENTITY USING INDEX {}').format(new, sql.Identifier(ident['name'])))
    elif t['replident'] in ('f', 'n'):
        out.append(sql.SQL('ALTER TABLE {} REPLICA IDENTITY {}').format(
            new, sql.SQL('FULL' if t['replident'] == 'f' else 'NOTHING')))
    clustered = next((i for i in src['indexes'] if i['clustered']), None)
    if clustered is not None:
        out.append(sql.SQL('ALTER TABLE {} CLUSTER ON {}').format(new, sql.Identifier(clustered['name'])))
    for stx in src['statistics']:
        target = sql.Identifier(stx['schema'], stx['name'])
        out.append(sql.SQL(stx['def']))
        out.append(sql.SQL('ALTER STATISTICS {} OWNER TO {}').format(target, sql.Identifier(stx['owner'])))
        if stx.get('stattarget') is not None and int(stx['stattarget']) >= 0:
            out.append(sql.SQL('ALTER STATISTICS {} SET STATISTICS {}').format(target, sql.Literal(int(stx['stattarget']))))
        if stx.get('comment') is not None:
            out.append(comment('STATISTICS', target, stx['comment']))
    # 9. views read the new table (same view, same OID: their grants and dependents stay)
    views = []
    for v in src['views']:
        opts = sql.SQL(' WITH ({})').format(_options(v['reloptions'])) if v.get('reloptions') else sql.SQL('')
        views.append(sql.SQL('CREATE OR REPLACE VIEW {}{} AS {}').format(
            sql.Identifier(v['schema'], v['name']), opts, sql.SQL(v['def'].rstrip().rstrip(';'))))
    return out, views, validate


def mark_swapped():
    return sql.SQL("UPDATE {} SET phase = 'swapped', new_oid = %s, validate = %s, shd_rows = %s, shd_sum = %s, "
                   'swapped_at = now(), updated_at = now() WHERE job_id = %s').format(st(JOBS_TABLE))
