# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pg_tde SQL API as the modules use it: readiness checks, versions, key and
provider read-outs. Statements that change state belong to the module that owns
the state (providers, keys, tables) and go through PgSession.execute()."""
from __future__ import annotations

import json
import re
from typing import Any

KEY_KINDS = ('server', 'default', 'database')
KEY_INFO_FUNCTION = {
    'server': 'pg_tde_server_key_info',
    'default': 'pg_tde_default_key_info',
    'database': 'pg_tde_key_info',
}
VERIFY_FUNCTION = {
    'server': 'pg_tde_verify_server_key',
    'default': 'pg_tde_verify_default_key',
    'database': 'pg_tde_verify_key',
}
SCOPES = ('global', 'database')

_VERSION_RE = re.compile(r'pg_tde\s+(\d+)\.(\d+)(?:\.(\d+))?')


def parse_tde_version(text: str | None) -> tuple[int, int, int] | None:
    """'pg_tde 2.2.0' -> (2, 2, 0); None when the text names no version."""
    if not text:
        return None
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def split_guc_list(value: str | None) -> list[str]:
    """Split a list setting such as shared_preload_libraries (quotes and blanks removed)."""
    if not value:
        return []
    return [item.strip().strip('"').strip() for item in value.split(',') if item.strip().strip('"').strip()]


def preloaded_libraries(session) -> list[str]:
    row = session.query_one("SELECT current_setting('shared_preload_libraries') AS v")
    return split_guc_list(row['v'] if row else '')


def is_preloaded(session) -> bool:
    return 'pg_tde' in preloaded_libraries(session)


def extension_version(session) -> str | None:
    row = session.query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_tde'")
    return row['extversion'] if row else None


def tde_version_text(session) -> str | None:
    if extension_version(session) is None:
        return None
    row = session.query_one('SELECT pg_tde_version() AS v')
    return row['v'] if row else None


def server_version_num(session) -> int:
    row = session.query_one("SELECT current_setting('server_version_num')::int AS v")
    return int(row['v'])


def not_preloaded_message(libraries: list[str]) -> str:
    return ('pg_tde is not loaded: shared_preload_libraries is "%s". Add pg_tde to '
            'shared_preload_libraries and restart PostgreSQL (the tdeops.pg_tde.configure role '
            'merges it and restarts safely).' % ','.join(libraries))


def no_extension_message(database: str) -> str:
    return ('The pg_tde extension does not exist in database "%s". Run CREATE EXTENSION pg_tde '
            'there as a superuser (configure role: configure_extension_databases).' % database)


def require_pg_tde(module, session) -> dict[str, Any]:
    """Fail with what to do when pg_tde is not usable in the session's database;
    return {'version': (2, 2, 0), 'version_text': 'pg_tde 2.2.0'} otherwise."""
    libraries = preloaded_libraries(session)
    if 'pg_tde' not in libraries:
        module.fail_json(msg=not_preloaded_message(libraries))
    text = tde_version_text(session)
    if text is None:
        module.fail_json(msg=no_extension_message(session.database))
    return {'version': parse_tde_version(text), 'version_text': text}


def key_info(session, kind: str) -> dict[str, Any] | None:
    """The principal key of kind server/default/database, or None when none is set."""
    func = KEY_INFO_FUNCTION[kind]
    row = session.query_one(
        'SELECT key_name, provider_name, provider_id, key_creation_time FROM %s()' % func)
    if not row or row.get('key_name') is None:
        return None
    created = row.get('key_creation_time')
    return {
        'key_name': row['key_name'],
        'provider_name': row['provider_name'],
        'provider_id': row['provider_id'],
        'key_creation_time': created.isoformat() if hasattr(created, 'isoformat') else created,
    }


def parse_options(options: Any) -> dict[str, Any]:
    """Provider options arrive as json (already a dict with psycopg) or text."""
    if options is None:
        return {}
    if isinstance(options, dict):
        return options
    return json.loads(options)


def list_providers(session, scope: str) -> list[dict[str, Any]]:
    """Providers of one scope: [{'id', 'name', 'type', 'options': dict}], ordered by id."""
    if scope not in SCOPES:
        raise ValueError('scope must be one of %s' % ', '.join(SCOPES))
    rows = session.query(
        'SELECT id, name, type, options FROM pg_tde_list_all_%s_key_providers() ORDER BY abs(id)' % scope)
    return [{'id': r['id'], 'name': r['name'], 'type': r['type'], 'options': parse_options(r['options'])}
            for r in rows]
