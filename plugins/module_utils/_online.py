# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Online move of a table to another access method (tde_heap and back) while it stays
readable and writable: a copy built next to it and kept in step, then a short switch.

1. setup (one transaction, SHARE ROW EXCLUSIVE lock with lock_timeout): a change log and row
   triggers on the table (ENABLE ALWAYS) that write the key of every row written into it, a
   TRUNCATE trigger that marks the job, the copy (CREATE TABLE ... (LIKE ...) USING tde_heap),
   and the job's row in tdeops_online.jobs.
2. copy: batches in key order, each in its own transaction with its progress.
3. first round: the key index of the copy (one sorted build), then in one REPEATABLE READ snapshot, every logged key is read again from the
   table (delete from the copy, insert from the table). Afterwards the copy holds exactly the
   table's rows of that snapshot; with verify_integrity the row count and checksum of both are
   compared (_tables.row_checksum) and kept as the copy's running total. Then the other indexes
   (built once the copy is consistent, so unique ones cannot trip over rows of two moments),
   NOT VALID checks, VACUUM ANALYZE of the copy.
4. catch-up rounds like 3, each tracking the total through the checksums of the rows it
   replaced and checking those rows against the table, until a round is short.
5. switch (one transaction, ACCESS EXCLUSIVE with lock_timeout and retries): the triggers must
   be the ones created in 1 (tuple xmin) and no TRUNCATE happened, the table's shape must be
   the one the copy was built from; a last round; dependent objects move or are recreated
   (_online_sql.swap_statements); the new table's definition is compared with the old one and
   the transaction rolls back on any difference.
6. after: foreign keys added NOT VALID are validated, the old table (no longer written by
   anyone) must have the running total, then it is dropped with the log and the triggers.

State is in tdeops_online.jobs, written in the same transaction as each step: a run that
is interrupted (killed, connection lost) is resumed by the next run; an error inside a step
rolls that step back and the job is cleaned up (the table is untouched), except a lock that
could not be taken for the switch, which keeps the job for the next run."""
from __future__ import annotations

import time
from typing import Any, Callable

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import sqlstate
from ansible_collections.tdeops.pg_tde.plugins.module_utils._online_catalog import (
    CAPTURE_TRIGGER,
    STATE_SCHEMA,
    TRUNCATE_TRIGGER,
    read_definition,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._online_plan import (
    choose_key,
    differences,
    fingerprint,
    online_plan,
    refusals,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils import _online_sql as q
from ansible_collections.tdeops.pg_tde.plugins.module_utils._tables import (
    RETRY_SQLSTATES,
    TARGET_AM,
    hash_method,
    retry_delays,
    row_checksum,
    storage_parts,
    storage_problems,
)

# sessions of the online method show up under this name in pg_stat_activity
APPLICATION_NAME = 'tdeops.pg_tde online'
# settings that fix the text form of values (keys travel as text; checksums hash row text)
SESSION_SETTINGS = (
    ("search_path", ''), ('DateStyle', 'ISO, YMD'), ('TimeZone', 'UTC'), ('IntervalStyle', 'postgres'),
    ('extra_float_digits', '3'), ('bytea_output', 'hex'), ('row_security', 'off'),
    # a role's statement_timeout must not cancel a batch, an index build or the verification
    ('statement_timeout', '0'), ('idle_in_transaction_session_timeout', '0'),
)
SERIALIZATION_FAILURE = '40001'
SHORT_ROUND_SECONDS = 0.3      # a catch-up round this short means the switch's last round is short too
PHASES = ('copy', 'first_round', 'indexes', 'catchup', 'swapped')


class Refused(Exception):
    """The table cannot be moved online (nothing was created)."""


class VerificationFailed(Exception):
    """Rows or definitions differ: the step rolls back."""


class JobStale(Exception):
    """The job no longer fits the table (changed, truncated, triggers touched): start again."""


class SwitchNotLocked(Exception):
    """The switch could not take its lock in time: the job is kept for the next run."""


def _is_connection_lost(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    state = sqlstate(exc) or ''
    return isinstance(exc, psycopg.OperationalError) and (state.startswith('57P') or state in ('', '08006', '08003'))


def totals_from(row: dict[str, Any]) -> dict[str, int]:
    return {'rows': int(row['rows']), 'sum': int(row['hash_sum'])}


def replace_rows(total: dict[str, int], removed: dict[str, int], added: dict[str, int]) -> dict[str, int]:
    """The running total of the copy after `removed` rows were deleted and `added` inserted
    (count and sum add up)."""
    return {'rows': total['rows'] - removed['rows'] + added['rows'],
            'sum': total['sum'] - removed['sum'] + added['sum']}


def job_row(session, job_id: int) -> dict[str, Any] | None:
    exists = session.query_one("SELECT to_regclass(%s) IS NOT NULL AS e", ['%s.%s' % (STATE_SCHEMA, q.JOBS_TABLE)])
    if not exists or not exists['e']:
        return None
    return session.query_one(q.sql.SQL('SELECT * FROM {} WHERE job_id = %s').format(q.st(q.JOBS_TABLE)), [job_id])


def leftover_jobs(session) -> list[dict[str, Any]]:
    """Every job recorded in the session's database (empty when the state schema is absent)."""
    exists = session.query_one("SELECT to_regclass(%s) IS NOT NULL AS e", ['%s.%s' % (STATE_SCHEMA, q.JOBS_TABLE)])
    if not exists or not exists['e']:
        return []
    return session.query(q.sql.SQL('SELECT job_id, source_oid, schema_name, table_name, target_am, phase, '
                                   'copied_rows, new_oid, started_at::text AS started_at FROM {} ORDER BY job_id')
                         .format(q.st(q.JOBS_TABLE)))


class OnlineMove:
    """One table, one connection of its own (see SESSION_SETTINGS)."""

    def __init__(self, session, item: dict[str, Any], state: str, *, lock_timeout: str, retries: int,
                 retry_delay: float, verify_integrity: bool, batch_rows: int, keep_old: bool,
                 max_catchup_seconds: float, pg_error_text: Callable[[BaseException], str],
                 pause: Callable[[str], None] | None = None) -> None:
        self.s = session
        self.item = item
        self.state = state
        self.target_am = TARGET_AM[state]
        self.lock_timeout = lock_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.verify = verify_integrity
        self.batch_rows = max(1, int(batch_rows))
        self.keep_old = keep_old
        self.max_catchup = max_catchup_seconds
        self.err = pg_error_text
        self.pause = pause or (lambda step: None)   # fault injection point for the tests
        self.job_id = int(item['oid'])
        self.n = q.names(self.job_id)
        self.job: dict[str, Any] | None = None
        self.defn: dict[str, Any] | None = None
        self.key: list[str] = []
        self.totals: dict[str, int] | None = None
        self.hash: str | None = None   # row hash of every checksum of this table (_tables.hash_method)
        self.recorded: set[str] = set()
        self.out: dict[str, Any] = {
            'method': 'online', 'attempts': 0, 'rows': None, 'verified': None, 'checksum_match': None,
            'copied_rows': 0, 'rounds': 0, 'replayed_keys': 0, 'last_round_keys': None,
            'setup_lock_seconds': None, 'switch_lock_wait_seconds': None, 'switch_lock_seconds': None,
            'resumed_from': None, 'restarted': None, 'old_table': None, 'changed': False, 'error': None,
            'lock_timeout': False, 'job_kept': False, 'phase_seconds': {},
        }

    # -- plumbing ------------------------------------------------------------------------------
    def setup_session(self) -> None:
        for name, value in SESSION_SETTINGS:
            self.s.query('SELECT set_config(%s, %s, false)', [name, value])
        # lock_timeout guards the application's tables and is set (SET LOCAL) for each step that
        # locks them; the job's own objects are locked by nobody but autovacuum, which yields
        self.s.query("SELECT set_config('lock_timeout', '1min', false)")

    def checksum(self, schema: str, name: str) -> dict[str, Any]:
        """The collection's row checksum, with one row hash for the table, its copy and their views
        (the copy has the table's column types)."""
        if self.hash is None:
            self.hash = hash_method(self.s, self.item['schema'], self.item['table'])
        return row_checksum(self.s, schema, name, self.hash)

    def x(self, stmt, params=None) -> int:
        """Run a change; record its text once (without values: keys are data)."""
        text = stmt.as_string(self.s.conn) if hasattr(stmt, 'as_string') else str(stmt)
        if text not in self.recorded:
            self.recorded.add(text)
            self.s.executed_queries.append(text)
        with self.s.conn.cursor() as cur:
            try:
                cur.execute(stmt, params)
            except Exception as exc:
                exc.tdeops_statement = text  # type: ignore[attr-defined]
                raise
            return cur.rowcount

    def txn(self):
        return self.s.conn.transaction()

    def save_phase(self, phase: str) -> None:
        self.x(q.sql.SQL('UPDATE {} SET phase = %s, updated_at = now() WHERE job_id = %s').format(
            q.st(q.JOBS_TABLE)), [phase, self.job_id])
        if self.job is not None:
            self.job['phase'] = phase

    def relation_oid(self, schema: str, name: str) -> int | None:
        row = self.s.query_one('SELECT to_regclass(%s)::oid::bigint AS oid',
                               [q.sql.Identifier(schema, name).as_string(self.s.conn)])
        return int(row['oid']) if row and row['oid'] is not None else None

    def storage_check(self, oid: int, local: bool = False) -> list[str]:
        """pg_tde_is_encrypted of the table, its indexes, TOAST and TOAST index (_tables), with
        the extension's schema on the search_path for as long as it takes."""
        row = self.s.query_one("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                               "WHERE e.extname = 'pg_tde'")
        self.s.query("SELECT set_config('search_path', %s, %s)",
                     [q.sql.Identifier(row['nspname']).as_string(self.s.conn) if row else '', local])
        try:
            return storage_problems(storage_parts(self.s, oid), self.state == 'encrypted')
        finally:
            self.s.query("SELECT set_config('search_path', '', %s)", [local])

    def with_lock_retries(self, what: str, step: Callable[[], Any]) -> Any:
        delays = retry_delays(self.retries, self.retry_delay)
        attempt = 0
        while True:
            attempt += 1
            self.out['attempts'] += 1
            try:
                return step()
            except Exception as exc:
                code = sqlstate(exc)
                if code in RETRY_SQLSTATES and attempt <= len(delays):
                    time.sleep(delays[attempt - 1])
                    continue
                if code in RETRY_SQLSTATES:
                    self.out['lock_timeout'] = True
                    raise SwitchNotLocked('could not lock %s.%s for the %s within lock_timeout %s in %d attempt(s): '
                                          '%s' % (self.item['schema'], self.item['table'], what, self.lock_timeout,
                                                  attempt, self.err(exc))) from exc
                raise

    # -- the whole move ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            self.setup_session()
            self._run()
        except Refused as exc:
            if self.job is not None and self.job.get('phase') != 'swapped':
                self.fail(exc)
            else:
                self.out.update(status='failed', error='cannot move online: %s' % exc)
        except SwitchNotLocked as exc:
            phase = (self.job or {}).get('phase')
            if phase in ('catchup', 'indexes', 'copy'):
                self.out.update(status='failed', job_kept=True,
                                error='%s. The copy is kept and its triggers keep logging changes: run again to '
                                      'switch (it resumes), or with online_abort: true to drop the copy' % exc)
            else:
                self.out.update(status='failed', error='%s; nothing was changed' % exc)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with what was done about it
            self.fail(exc)
        self.out['seconds'] = round(time.monotonic() - started, 3)
        self.drop_temp_objects()
        return self.out

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, Refused):
            text = 'cannot move online: %s' % exc
        elif isinstance(exc, (VerificationFailed, JobStale)):
            text = str(exc)
        else:
            text = self.err(exc)
        statement = getattr(exc, 'tdeops_statement', None)
        if statement:
            text = '%s (while running: %s)' % (text, statement if len(statement) < 300 else statement[:300] + '...')
        phase = (self.job or {}).get('phase')
        if phase == 'swapped':
            self.out.update(status='failed', job_kept=True,
                            error='the switch is done (the table is %s and in use); finishing failed: %s. Run again '
                                  'to finish (validate foreign keys, verify and drop the old table %s.%s)'
                                  % (self.target_am, text, STATE_SCHEMA, self.n['old']))
            return
        if _is_connection_lost(exc) or self.s.conn.closed or getattr(self.s.conn, 'broken', False):
            self.out.update(status='failed', job_kept=self.job is not None,
                            error='connection lost (%s). The table is untouched%s' % (
                                text, '; run again to resume the online move from where it stopped (or with '
                                      'online_abort: true to drop the copy)' if self.job is not None else ''))
            return
        cleaned = ''
        if self.job is not None:
            try:
                self.cleanup()
                cleaned = '; the copy, the change log and the triggers were removed'
            except Exception as cexc:  # noqa: BLE001
                self.out['job_kept'] = True
                cleaned = ('; removing the copy failed too (%s): run again with online_abort: true to remove it'
                           % self.err(cexc))
        self.out.update(status='failed', error='%s. The table is untouched%s' % (text, cleaned))

    def timed(self, step: str, fn: Callable[[], Any]) -> Any:
        """Run a step and add its wall time to phase_seconds (what the time goes to)."""
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            spent = self.out['phase_seconds']
            spent[step] = round(spent.get(step, 0.0) + time.monotonic() - t0, 3)

    def _run(self) -> None:
        self.prepare()
        if self.job is None:
            self.pause('setup')
            self.timed('setup', lambda: self.with_lock_retries('setup', self.setup))
        if self.job['phase'] == 'copy':
            self.pause('copy')
            self.timed('copy', self.copy)
        if self.job['phase'] == 'first_round':
            self.pause('first_round')
            self.timed('first_round', self.first_round)
        if self.job['phase'] == 'indexes':
            self.pause('indexes')
            self.timed('indexes', self.build_indexes)
        if self.job['phase'] == 'catchup':
            self.pause('catchup')
            self.timed('catchup', self.catch_up)
            self.pause('switch')
            self.timed('switch', lambda: self.with_lock_retries('switch', self.switch))
        if self.job['phase'] == 'swapped':
            self.pause('finish')
            self.timed('finish', self.finish)

    # -- 0. an earlier job? ---------------------------------------------------------------------
    def prepare(self) -> None:
        self.x(q.create_state_schema())
        self.x(q.create_jobs_table(self.target_am))
        self.job = job_row(self.s, self.job_id)
        self.defn = read_definition(self.s, self.job_id)
        if self.defn is None:
            raise Refused('table %s.%s does not exist any more' % (self.item['schema'], self.item['table']))
        if self.job is None:
            return
        self.out['resumed_from'] = self.job['phase']
        if self.job['phase'] == 'swapped':
            return
        reason = self.stale_reason(self.defn)
        if reason:
            self.out['restarted'] = reason
            self.cleanup()
            self.job = None
            self.out['resumed_from'] = None
            return
        self.key = list(self.job['key_columns'])
        if self.job['shd_rows'] is not None:
            self.totals = {'rows': int(self.job['shd_rows']), 'sum': int(self.job['shd_sum'])}

    def stale_reason(self, defn: dict[str, Any]) -> str | None:
        job = self.job or {}
        if job.get('target_am') != self.target_am:
            return 'the earlier job moved the table to %s' % job.get('target_am')
        if job.get('truncated'):
            return 'the table was truncated while the copy was built'
        if fingerprint(defn) != job.get('fingerprint'):
            return 'the table was altered (columns, indexes or constraints) while the copy was built'
        if self.relation_oid(STATE_SCHEMA, self.n['shadow']) is None:
            return 'the copy is missing'
        marks = self.trigger_marks()
        if marks != job.get('trigger_xmin'):
            return 'the capture triggers were changed, disabled or dropped (changes may have gone unlogged)'
        return None

    def trigger_marks(self) -> str:
        """xmin and enabled state of both capture triggers: any ALTER/ENABLE/DISABLE of them
        writes a new catalog row (a new xmin), so an unchanged mark proves none happened."""
        rows = self.s.query("SELECT tgname, xmin::text AS x, tgenabled::text AS e FROM pg_trigger "
                            "WHERE tgrelid = %s::oid AND tgname IN (%s, %s) ORDER BY tgname",
                            [self.job_id, CAPTURE_TRIGGER, TRUNCATE_TRIGGER])
        return ';'.join('%s:%s:%s' % (r['tgname'], r['x'], r['e']) for r in rows)

    # -- 1. setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        with self.txn():
            self.x(q.set_lock_timeout(self.lock_timeout))
            t0 = time.monotonic()
            self.x(q.lock(q.source(self.defn), 'SHARE ROW EXCLUSIVE'))
            defn = read_definition(self.s, self.job_id)
            problems = refusals(defn)
            if problems:
                raise Refused('; '.join(problems))
            key = choose_key(defn)
            keycols = q.key_columns(defn, key)
            self.key = [c['name'] for c in keycols]
            self.x(q.create_log(self.job_id, keycols, self.target_am))
            self.x(q.create_capture_function(self.job_id, self.key))
            self.x(q.create_truncated_function(self.job_id))
            for stmt in q.create_triggers(self.job_id, defn):
                self.x(stmt)
            for stmt in q.create_shadow(self.job_id, defn, self.target_am):
                self.x(stmt)
            if defn['table']['is_partition'] and defn['table'].get('partition_constraint'):
                self.x(q.partition_check(self.job_id, defn))
            for chk in defn['checks']:
                if chk['validated']:
                    self.x(q.check_statement(self.job_id, chk))
            marks = self.trigger_marks()
            self.x(q.sql.SQL('INSERT INTO {} (job_id, source_oid, schema_name, table_name, target_am, phase, '
                             'fingerprint, trigger_xmin, key_columns) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)')
                   .format(q.st(q.JOBS_TABLE)),
                   [self.job_id, self.job_id, defn['table']['schema'], defn['table']['name'], self.target_am,
                    'copy', fingerprint(defn), marks, self.key])
        self.out['setup_lock_seconds'] = round(time.monotonic() - t0, 3)
        self.defn = defn
        self.job = job_row(self.s, self.job_id)

    # -- 2. copy ----------------------------------------------------------------------------------
    def keycols(self) -> list[dict[str, Any]]:
        by_name = {c['name']: c for c in self.defn['columns']}
        return [by_name[k] for k in self.key]

    def copy(self) -> None:
        keycols = self.keycols()
        last = self.job.get('last_key')
        while True:
            with self.txn():
                row = self.s.query_one(q.copy_upper_bound(self.defn, keycols, last is not None, self.batch_rows),
                                       list(last or []))
                upper = list(row.values()) if row else None
                copied = self.x(q.copy_batch(self.job_id, self.defn, keycols, last is not None, upper is not None),
                                list(last or []) + list(upper or []))
                self.x(q.save_copy_progress(), [upper if upper is not None else last, copied, self.job_id])
                if upper is None:
                    self.save_phase('first_round')
            self.out['copied_rows'] += max(0, copied)
            if upper is None:
                return
            last = upper
            self.pause('copy_batch')

    # -- 3./4. rounds -------------------------------------------------------------------------------
    def ensure_round_objects(self) -> None:
        self.x(q.create_keys_table(self.job_id, self.target_am))
        for stmt in q.create_key_views(self.job_id, self.defn, self.key):
            self.x(stmt)

    def replay(self, track: bool) -> int:
        """One round inside the caller's REPEATABLE READ transaction: take every logged key
        visible in its snapshot and make the copy's rows of those keys the table's."""
        keys = self.x(q.take_logged_keys(self.job_id, self.key))
        if keys <= 0:
            return 0
        self.x(q.analyze_keys(self.job_id))
        before = totals_from(self.checksum('pg_temp', self.n['shd_view'])) if track else None
        self.x(q.delete_keys_from_copy(self.job_id, self.key))
        self.x(q.copy_keys(self.job_id, self.defn, self.key))
        if self.verify:
            after = totals_from(self.checksum('pg_temp', self.n['shd_view']))
            expected = totals_from(self.checksum('pg_temp', self.n['src_view']))
            if after != expected:
                raise VerificationFailed('the rows of %d changed keys differ between the table and the copy after '
                                         'copying them again (table %s, copy %s)' % (keys, expected, after))
            if track and before is not None and self.totals is not None:
                self.totals = replace_rows(self.totals, before, after)
        self.out['replayed_keys'] += keys
        self.out['rounds'] += 1
        self.out['last_round_keys'] = keys
        return keys

    def save_totals(self, phase: str) -> None:
        t = self.totals or {}
        self.x(q.save_totals(), [t.get('rows'), t.get('sum'), phase, self.job_id])
        self.job['phase'] = phase

    def check_not_stale(self) -> None:
        row = self.s.query_one(q.sql.SQL('SELECT truncated FROM {} WHERE job_id = %s').format(q.st(q.JOBS_TABLE)),
                               [self.job_id])
        if row and row['truncated']:
            raise JobStale('the table was truncated while the copy was built; run again to start over')

    def first_round(self) -> None:
        # the key index, built now in one sorted pass rather than row by row during the copy (the
        # copy needs none: its batches are disjoint key ranges, so the keys in the copy are unique)
        key = choose_key(self.defn)
        if not self.relation_oid(STATE_SCHEMA, q.temp_index_name(self.job_id, key['oid'])):
            self.x(q.index_statement(self.job_id, self.defn, key))
        self.ensure_round_objects()
        for attempt in range(3):
            try:
                with self.txn():
                    self.check_not_stale()
                    self.replay(track=False)
                    if self.verify:
                        copy_total = totals_from(self.checksum(STATE_SCHEMA, self.n['shadow']))
                        table_total = totals_from(self.checksum(self.defn['table']['schema'],
                                                                self.defn['table']['name']))
                        if copy_total != table_total:
                            raise VerificationFailed('after the copy, in one snapshot, the copy has %(rows)s rows '
                                                     '(checksum %(sum)s)' % copy_total +
                                                     ' and the table %(rows)s (%(sum)s)' % table_total)
                        self.totals = copy_total
                        self.out['verified'] = True
                    self.save_totals('indexes')
                return
            except Exception as exc:
                if sqlstate(exc) == SERIALIZATION_FAILURE and attempt < 2:
                    continue
                raise

    def build_indexes(self) -> None:
        if not self.key:
            self.key = list(self.job['key_columns'])
        for idx in self.defn['indexes']:
            # the key index was made at setup; others made by an interrupted run exist already
            if self.relation_oid(STATE_SCHEMA, q.temp_index_name(self.job_id, idx['oid'])):
                continue
            self.x(q.index_statement(self.job_id, self.defn, idx))
        shadow_oid = self.relation_oid(STATE_SCHEMA, self.n['shadow'])
        have = {r['conname'] for r in self.s.query('SELECT conname FROM pg_constraint WHERE conrelid = %s::oid',
                                                   [shadow_oid])}
        for chk in self.defn['checks']:
            if chk['name'] not in have:
                self.x(q.check_statement(self.job_id, chk))
        self.x(q.sql.SQL('VACUUM (ANALYZE) {}').format(q.st(self.n['shadow'])))
        self.save_phase('catchup')

    def catch_up(self) -> None:
        self.ensure_round_objects()
        deadline = time.monotonic() + self.max_catchup
        while True:
            t0 = time.monotonic()
            try:
                with self.txn():
                    self.check_not_stale()
                    self.replay(track=True)
                    self.save_totals('catchup')
            except Exception as exc:
                if sqlstate(exc) == SERIALIZATION_FAILURE:
                    continue
                raise
            if time.monotonic() - t0 <= SHORT_ROUND_SECONDS:
                return
            if time.monotonic() > deadline:
                raise SwitchNotLocked('the copy did not catch up with the writes to %s.%s within %s s '
                                      '(online_max_catchup_seconds); the last round copied %s changed rows'
                                      % (self.item['schema'], self.item['table'], self.max_catchup,
                                         self.out['last_round_keys']))

    # -- 5. switch --------------------------------------------------------------------------------------
    def parent_lock(self, defn: dict[str, Any]) -> list[Any]:
        """A partition's partitioned table is locked first (queries lock the parent before its partitions)."""
        t = defn['table']
        if not t.get('is_partition'):
            return []
        return [q.lock(q.sql.Identifier(t['parent_schema'], t['parent_name']), 'ACCESS EXCLUSIVE')]

    def switch_locks(self, defn: dict[str, Any]) -> list[Any]:
        stmts = []
        for v in defn['views']:
            stmts.append(q.lock(q.sql.Identifier(v['schema'], v['name']), 'ACCESS EXCLUSIVE'))
        for fk in defn['fks_in']:
            stmts.append(q.lock(q.sql.Identifier(fk['table_schema'], fk['table_name']), 'ACCESS EXCLUSIVE'))
        return stmts

    def switch(self) -> None:
        self.ensure_round_objects()
        with self.txn():
            # the copy first: waiting for it (a VACUUM, a pg_dump) must not hold the table's lock
            self.x(q.lock(q.st(self.n['shadow']), 'ACCESS EXCLUSIVE'))
            self.x(q.set_lock_timeout(self.lock_timeout))
            t0 = time.monotonic()
            for stmt in self.parent_lock(self.defn):
                self.x(stmt)
            self.x(q.lock(q.source(self.defn), 'ACCESS EXCLUSIVE'))
            for stmt in self.switch_locks(self.defn):
                self.x(stmt)
            locked = time.monotonic()
            self.out['switch_lock_wait_seconds'] = round(locked - t0, 3)
            fresh = read_definition(self.s, self.job_id)
            # dependents created since the plan must be locked too (and pass the refusals)
            for stmt in self.switch_locks(fresh):
                self.x(stmt)
            problems = refusals(fresh)
            if problems:
                raise Refused('; '.join(problems))
            reason = self.stale_reason(fresh)
            if reason:
                raise JobStale('%s: the switch was not done; run again to start over' % reason)
            self.replay(track=True)
            self.pause('switch_locked')
            seq_state = {}
            for seq in fresh['sequences']:
                if seq['deptype'] == 'i':
                    seq_state[seq['name']] = self.s.query_one(q.sql.SQL('SELECT last_value, is_called FROM {}').format(
                        q.sql.Identifier(seq['schema'], seq['name'])))
            shadow_oid = self.relation_oid(STATE_SCHEMA, self.n['shadow'])
            shadow_def = read_definition(self.s, shadow_oid)
            stmts, views, validate = q.swap_statements(self.job_id, fresh, shadow_def, seq_state)
            for stmt in stmts + views:
                self.x(stmt)
            after = read_definition(self.s, shadow_oid)
            diffs = differences(fresh, after, self.target_am)
            if diffs:
                raise VerificationFailed('the new table would differ from the old one: %s. Rolled back: the '
                                         'table is unchanged' % '; '.join(diffs))
            bad = self.storage_check(shadow_oid, local=True)
            if bad:
                raise VerificationFailed('%s. Rolled back: the table is unchanged' % '; '.join(bad))
            t = self.totals or {}
            self.x(q.mark_swapped(), [shadow_oid, ['%s\t%s\t%s' % v for v in validate], t.get('rows'), t.get('sum'),
                                      self.job_id])
        self.out['switch_lock_seconds'] = round(time.monotonic() - locked, 3)
        self.out['changed'] = True
        self.job = job_row(self.s, self.job_id)

    # -- 6. after the switch ------------------------------------------------------------------------------
    def finish(self) -> None:
        self.out['changed'] = True
        for entry in self.job.get('validate') or []:
            schema, table, con = entry.split('\t')
            if self.relation_oid(schema, table) is None:
                continue

            def validate(schema=schema, table=table, con=con) -> None:
                # SHARE UPDATE EXCLUSIVE: reads and writes go on; lock_timeout keeps DDL from queueing
                with self.txn():
                    self.x(q.set_lock_timeout(self.lock_timeout))
                    self.x(q.sql.SQL('ALTER TABLE {} VALIDATE CONSTRAINT {}').format(
                        q.sql.Identifier(schema, table), q.sql.Identifier(con)))
            self.with_lock_retries('validation of foreign key %s' % con, validate)
        self.x(q.sql.SQL('UPDATE {} SET validate = NULL WHERE job_id = %s').format(q.st(q.JOBS_TABLE)), [self.job_id])
        old_exists = self.relation_oid(STATE_SCHEMA, self.n['old']) is not None
        if self.verify and self.job.get('shd_rows') is not None and old_exists:
            expected = {'rows': int(self.job['shd_rows']), 'sum': int(self.job['shd_sum'])}
            old = totals_from(self.checksum(STATE_SCHEMA, self.n['old']))
            self.out['rows'] = old['rows']
            self.out['checksum_match'] = old == expected
            if old != expected:
                raise VerificationFailed('the old table (%s.%s, kept) has %s rows and checksum %s at the switch, '
                                         'the new table had %s rows and %s: investigate before dropping it'
                                         % (STATE_SCHEMA, self.n['old'], old['rows'], old['sum'],
                                            expected['rows'], expected['sum']))
            self.out['verified'] = True
        new_oid = int(self.job['new_oid'])
        bad = self.storage_check(new_oid)
        if bad:
            raise VerificationFailed('after the switch: %s' % '; '.join(bad))
        self.drop_temp_objects()
        if self.keep_old and old_exists:
            for trg in (CAPTURE_TRIGGER, TRUNCATE_TRIGGER):
                self.x(q.sql.SQL('DROP TRIGGER IF EXISTS {} ON {}').format(q.sql.Identifier(trg), q.st(self.n['old'])))
            self.out['old_table'] = '%s.%s' % (STATE_SCHEMA, self.n['old'])
        else:
            self.x(q.sql.SQL('DROP TABLE IF EXISTS {}').format(q.st(self.n['old'])))
        self.drop_state(keep_shadow=True)
        self.out['status'] = self.state

    # -- clean up -------------------------------------------------------------------------------------------
    def drop_temp_objects(self) -> None:
        if self.s.conn.closed or getattr(self.s.conn, 'broken', False):
            return
        try:
            for view in (self.n['src_view'], self.n['shd_view']):
                self.s.query(q.sql.SQL('DROP VIEW IF EXISTS {}').format(q.sql.Identifier('pg_temp', view)))
            self.s.query(q.sql.SQL('DROP TABLE IF EXISTS {}').format(q.sql.Identifier('pg_temp', self.n['keys'])))
        except Exception:  # noqa: BLE001 - temporary objects go with the session anyway
            pass

    def drop_state(self, keep_shadow: bool = False) -> None:
        if not keep_shadow:
            self.x(q.sql.SQL('DROP TABLE IF EXISTS {}').format(q.st(self.n['shadow'])))
        self.x(q.sql.SQL('DROP TABLE IF EXISTS {}').format(q.st(self.n['log'])))
        for func in (self.n['capture'], self.n['truncated']):
            self.x(q.sql.SQL('DROP FUNCTION IF EXISTS {}() CASCADE').format(q.st(func)))
        self.x(q.sql.SQL('DELETE FROM {} WHERE job_id = %s').format(q.st(q.JOBS_TABLE)), [self.job_id])

    def cleanup(self) -> None:
        """Remove what a job not yet switched left: its triggers (a short ACCESS EXCLUSIVE lock of the
        table, with lock_timeout and retries), the copy, the log, the job."""
        self.drop_temp_objects()
        src = q.sql.Identifier(self.item['schema'], self.item['table'])
        if self.relation_oid(self.item['schema'], self.item['table']) == self.job_id:
            def drop_triggers() -> None:
                with self.txn():
                    self.x(q.set_lock_timeout(self.lock_timeout))
                    for trg in (CAPTURE_TRIGGER, TRUNCATE_TRIGGER):
                        self.x(q.sql.SQL('DROP TRIGGER IF EXISTS {} ON {}').format(q.sql.Identifier(trg), src))
            self.with_lock_retries('removal of the capture triggers', drop_triggers)
        self.drop_state()
        self.job = None


def abort_job(session, item: dict[str, Any], state: str, **options: Any) -> dict[str, Any]:
    """online_abort: drop what an interrupted online move of the table left behind."""
    move = OnlineMove(session, item, state, **options)
    move.setup_session()
    move.job = job_row(session, move.job_id)
    if move.job is None:
        return {'status': 'skipped', 'changed': False, 'error': None, 'reason': 'no online job to abort'}
    if move.job['phase'] == 'swapped':
        return {'status': 'failed', 'changed': False,
                'error': 'the switch is already done: run without online_abort to finish it'}
    move.cleanup()
    return {'status': 'aborted', 'changed': True, 'error': None}


# ---------------------------------------------------------------------------------------------
# entry points for the module
# ---------------------------------------------------------------------------------------------

def read_definition_qualified(session, oid: int) -> dict[str, Any] | None:
    """read_definition on a session whose search_path is not empty (the module's): empty
    for the duration, then back."""
    row = session.query_one("SELECT current_setting('search_path') AS p")
    session.query("SELECT set_config('search_path', '', false)")
    try:
        return read_definition(session, oid)
    finally:
        session.query("SELECT set_config('search_path', %s, false)", [row['p']])


def plan_item(session, item: dict[str, Any], margin: float) -> dict[str, Any]:
    """The online part of a plan entry (check mode shows it); 'refused' lists the reasons the
    table cannot be moved online."""
    defn = read_definition_qualified(session, int(item['oid']))
    if defn is None:
        return {'refused': ['it does not exist any more']}
    plan = online_plan(defn, int(item.get('size_bytes') or 0), margin)
    job = job_row(session, int(item['oid']))
    plan['pending_job'] = ({'phase': job['phase'], 'copied_rows': job['copied_rows'],
                            'target_access_method': job['target_am']} if job else None)
    return plan


def open_online_session(module, database: str):
    """A connection of its own for one move: REPEATABLE READ transactions, its own name."""
    import psycopg
    from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import PgSession, connect
    conn = connect(module, database)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    session = PgSession(module, conn, database)
    session.query("SELECT set_config('application_name', %s, false)", [APPLICATION_NAME])
    return session


def move_options(params: dict[str, Any], pg_error_text: Callable[[BaseException], str]) -> dict[str, Any]:
    return dict(lock_timeout=params['lock_timeout'], retries=params['retries'], retry_delay=params['retry_delay'],
                verify_integrity=params['verify_integrity'], batch_rows=params['online_batch_rows'],
                keep_old=params['online_keep_old'], max_catchup_seconds=params['online_max_catchup_seconds'],
                pg_error_text=pg_error_text)


def run_item(module, item: dict[str, Any], state: str, params: dict[str, Any],
             pg_error_text: Callable[[BaseException], str]) -> tuple[dict[str, Any], list[str]]:
    """Move (or, with online_abort, clean up) one table online on a connection of its own.
    Returns the result and the statements it ran."""
    session = open_online_session(module, item['database'])
    try:
        options = move_options(params, pg_error_text)
        if params.get('online_abort'):
            return abort_job(session, item, state, **options), session.executed_queries
        if item.get('action') == 'finish':
            move = OnlineMove(session, item, state, **options)
            move.setup_session()
            move.job = job_row(session, move.job_id)
            if move.job is None:
                return {'status': 'skipped', 'changed': False, 'error': None}, session.executed_queries
            move.out['resumed_from'] = move.job['phase']
            try:
                move.finish()
            except Exception as exc:  # noqa: BLE001
                move.fail(exc)
            return move.out, session.executed_queries
        return OnlineMove(session, item, state, **options).run(), session.executed_queries
    finally:
        session.close()


def preview_statement(item: dict[str, Any], params: dict[str, Any]) -> str:
    """What check mode lists in executed_queries for an online item (the statements themselves
    depend on the catalog at the time of the run)."""
    target = '%s.%s' % (q.sql.Identifier(item['schema']).as_string(None), q.sql.Identifier(item['table']).as_string(None))
    n = q.names(int(item['oid']))
    if item['action'] == 'finish':
        return '-- online: finish the switched move of %s (validate foreign keys, verify, drop %s.%s)' % (
            target, STATE_SCHEMA, n['old'])
    if params.get('online_abort'):
        return '-- online: remove the copy %s.%s, its change log and the triggers on %s' % (
            STATE_SCHEMA, n['shadow'], target)
    return ('-- online: CREATE TABLE %s.%s (LIKE %s ...) USING %s, copy in batches, catch up, switch'
            % (STATE_SCHEMA, n['shadow'], target, item['target_access_method']))
