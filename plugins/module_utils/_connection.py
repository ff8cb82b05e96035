# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One way to reach PostgreSQL: the login_* argument spec, psycopg 3 connections,
and a session that records every statement it runs (executed_queries) and runs no
write at all in check mode."""
from __future__ import annotations

import traceback
from typing import Any, Callable

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import pg_error_text

try:
    import psycopg
    from psycopg import sql as _sql  # noqa: F401  (re-exported for the modules)
    from psycopg.rows import dict_row
except ImportError:
    psycopg = None  # type: ignore[assignment]
    dict_row = None  # type: ignore[assignment]
    PSYCOPG_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None


def postgres_argument_spec() -> dict[str, Any]:
    """The options of the tdeops.pg_tde.postgres doc fragment."""
    return dict(
        login_user=dict(type='str', default='postgres', aliases=['login']),
        login_password=dict(type='str', no_log=True),
        login_host=dict(type='str'),
        login_port=dict(type='int', default=5432, aliases=['port']),
        login_unix_socket=dict(type='str'),
        login_db=dict(type='str', default='postgres'),
        ssl_mode=dict(type='str', default='prefer',
                      choices=['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        connect_params=dict(type='dict', default={}),
    )


def ensure_psycopg(module: Any) -> None:
    if PSYCOPG_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)


def conninfo_kwargs(params: dict[str, Any], database: str | None = None) -> dict[str, Any]:
    """libpq keyword arguments from module parameters (pure: unit-tested)."""
    kw: dict[str, Any] = {
        'user': params.get('login_user') or 'postgres',
        'dbname': database or params.get('login_db') or 'postgres',
        'port': params.get('login_port') or 5432,
        'sslmode': params.get('ssl_mode') or 'prefer',
        'application_name': 'tdeops.pg_tde',
    }
    # A Unix socket directory wins over a host name, as with community.postgresql.
    if params.get('login_unix_socket'):
        kw['host'] = params['login_unix_socket']
    elif params.get('login_host'):
        kw['host'] = params['login_host']
    if params.get('login_password'):
        kw['password'] = params['login_password']
    if params.get('ca_cert'):
        kw['sslrootcert'] = params['ca_cert']
    for key, value in (params.get('connect_params') or {}).items():
        kw[key] = value
    return kw


def connect(module: Any, database: str | None = None, autocommit: bool = True) -> Any:
    """Open a connection or fail the module with a message that says what to check."""
    ensure_psycopg(module)
    kw = conninfo_kwargs(module.params, database)
    try:
        conn = psycopg.connect(autocommit=autocommit, row_factory=dict_row, **kw)
    except psycopg.Error as exc:
        where = kw.get('host') or 'the default Unix socket'
        module.fail_json(
            msg='Cannot connect to PostgreSQL database "%s" as "%s" on %s port %s: %s. '
                'Check login_user/login_unix_socket/login_host, or run the task with '
                'become_user=postgres for peer authentication.'
                % (kw['dbname'], kw['user'], where, kw['port'], pg_error_text(exc)))
    return conn


class PgSession:
    """A connection plus the list of statements run through it.

    query() is for reads and always runs; execute() is for changes: it is recorded
    in executed_queries and runs only when check_mode is off."""

    def __init__(self, module: Any, conn: Any, database: str) -> None:
        self.module = module
        self.conn = conn
        self.database = database
        self.check_mode: bool = module.check_mode
        self.executed_queries: list[str] = []

    def _render(self, query: Any, params: Any) -> str:
        try:
            if params:
                return psycopg.ClientCursor(self.conn).mogrify(query, params)
            return query.as_string(self.conn) if hasattr(query, 'as_string') else str(query)
        except Exception:  # rendering is for the report only
            return str(query)

    def query(self, query: Any, params: Any = None) -> list[dict[str, Any]]:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def query_one(self, query: Any, params: Any = None) -> dict[str, Any] | None:
        rows = self.query(query, params)
        return rows[0] if rows else None

    def execute(self, query: Any, params: Any = None, record: str | None = None) -> list[dict[str, Any]]:
        """Run a change. record replaces the text shown in executed_queries (for secrets)."""
        self.executed_queries.append(record if record is not None else self._render(query, params))
        if self.check_mode:
            return []
        return self.query(query, params)

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


def open_session(module: Any, database: str | None = None) -> PgSession:
    db = database or module.params.get('login_db') or 'postgres'
    return PgSession(module, connect(module, db), db)


class Sessions:
    """One session per database, opened on first use by `opener(database)` and all closed by
    close() (or at the end of a `with` block). Modules that read several databases use it."""

    def __init__(self, opener: Callable[[str], PgSession]) -> None:
        self._opener = opener
        self._open: dict[str, PgSession] = {}

    def __call__(self, database: str) -> PgSession:
        if database not in self._open:
            self._open[database] = self._opener(database)
        return self._open[database]

    def close(self) -> None:
        for session in self._open.values():
            session.close()
        self._open.clear()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
