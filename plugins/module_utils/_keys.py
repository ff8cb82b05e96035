# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Principal keys: every database and its key (one rule for the templates, see
_pg_tde.connectable_databases), which keys are the same, which key is in place, the order of
the set_* calls of a rotation, and who uses a provider. Pure decisions, except
database_keys(), which reads through the sessions it is given."""
from __future__ import annotations

from typing import Any, Callable

from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    has_extension,
    provider_scope_of,
    try_key_info,
)


def database_keys(session_for: Callable[[str], Any],
                  databases: list[str]) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """The key of every database in `databases` that has the pg_tde extension, as
    {database: (key info or None, pg_tde's error text or None)}, in the order given.

    `databases` is usually _pg_tde.connectable_databases() (template1 included, template0 not);
    `session_for(database)` returns a session in that database (a _connection.Sessions).
    Databases without the extension have no key and are left out. Reading a key makes pg_tde
    fetch it from the KMS, which can fail: the error text is returned, never raised."""
    keys: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
    for database in databases:
        session = session_for(database)
        if has_extension(session):
            keys[database] = try_key_info(session, 'database')
    return keys


def same_key(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """pg_tde's own notion of 'the same principal key': same name and same provider id. A
    database whose key is the same as the default key follows the default key on rotation."""
    return (a is not None and b is not None and a.get('key_name') == b.get('key_name')
            and a.get('provider_id') == b.get('provider_id'))


def key_matches(info: dict[str, Any] | None, name: str, provider: str | None,
                provider_scope: str | None) -> bool:
    """Is the key in place (a key_info dict) the wanted key on the wanted provider?"""
    if info is None or info.get('key_name') != name:
        return False
    if provider is not None and info.get('provider_name') != provider:
        return False
    if provider_scope is not None and provider_scope_of(info.get('provider_id')) not in (None, provider_scope):
        return False
    return True


def plan_key_targets(current: dict[str, Any], name: str, provider: str, provider_scope: str,
                     targets: list[str], databases: list[str]) -> list[dict[str, Any]]:
    """Which set_* calls make the wanted key the key in place, in the order they must run.

    current: {'server': info|None, 'default': info|None, 'databases': {db: info|None}}.
    Returns [{'target', 'database', 'old_key', 'new_key', 'followed_default'}]. The default
    key runs first: pg_tde moves every key that is the same as the old default key (same
    name and provider) to the new default key, so those need no call of their own; they are
    listed with followed_default=True and no statement.

    pg_tde 2.2 also makes a new default key the server key when no server key is set yet
    (observed: pg_tde_set_default_key_using_global_key_provider() on a cluster without a server
    key fills pg_tde_server_key_info() as well), so that server key is a follower too."""
    plan: list[dict[str, Any]] = []
    old_default = current.get('default')
    default_changes = 'default' in targets and not key_matches(old_default, name, provider, provider_scope)

    def follows(info: dict[str, Any] | None) -> bool:
        return default_changes and old_default is not None and same_key(info, old_default)

    if default_changes:
        plan.append({'target': 'default', 'database': None,
                     'old_key': old_default.get('key_name') if old_default else None,
                     'new_key': name, 'followed_default': False})
    server = current.get('server')
    if follows(server) or (default_changes and server is None):
        plan.append({'target': 'server', 'database': None,
                     'old_key': server.get('key_name') if server else None,
                     'new_key': name, 'followed_default': True})
    elif 'server' in targets and not key_matches(server, name, provider, provider_scope):
        plan.append({'target': 'server', 'database': None,
                     'old_key': server.get('key_name') if server else None,
                     'new_key': name, 'followed_default': False})
    db_infos = current.get('databases') or {}
    seen: set[str] = set()
    for db in list(databases) + sorted(db_infos):
        if db in seen:
            continue
        seen.add(db)
        info = db_infos.get(db)
        if follows(info):
            plan.append({'target': 'database', 'database': db, 'old_key': info.get('key_name'),
                         'new_key': name, 'followed_default': True})
        elif 'database' in targets and db in databases and not key_matches(info, name, provider, provider_scope):
            plan.append({'target': 'database', 'database': db,
                         'old_key': info.get('key_name') if info else None,
                         'new_key': name, 'followed_default': False})
    return plan


def provider_users(provider_id: int, server: dict[str, Any] | None, default: dict[str, Any] | None,
                   databases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Who uses a provider, as pg_tde decides it before a delete: the server key, the default
    key and any database key whose provider id is this one. ['server key "k1"', ...]."""
    users: list[str] = []
    if server is not None and server.get('provider_id') == provider_id:
        users.append('server key "%s"' % server.get('key_name'))
    if default is not None and default.get('provider_id') == provider_id:
        users.append('default key "%s"' % default.get('key_name'))
    for db in sorted(databases):
        info = databases[db]
        if info is not None and info.get('provider_id') == provider_id:
            users.append('key "%s" of database "%s"' % (info.get('key_name'), db))
    return users


def same_id_keys_elsewhere(provider_id: Any, database: str,
                           databases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Keys of OTHER databases that pg_tde 2.2 checks when a database provider is changed.

    Database provider ids start at 1 in every database, and pg_tde's change check looks for
    keys by provider id in every database (observed: changing provider "pb" (id 1) of database
    b fails with 'key "ka" used by database "a" not found in modified key provider "pb"' when
    database a has key "ka" on its own provider with id 1). ['key "ka" of database "a"', ...]."""
    if not isinstance(provider_id, int) or provider_id <= 0:
        return []
    return ['key "%s" of database "%s"' % (info.get('key_name'), db)
            for db, info in sorted(databases.items())
            if db != database and info is not None and info.get('provider_id') == provider_id]


def databases_on_default(default: dict[str, Any] | None,
                         databases: dict[str, dict[str, Any] | None]) -> list[str]:
    """Databases whose key is the default key (same name and provider)."""
    return sorted(db for db, info in databases.items() if same_key(info, default))


def keep_rotated_keys(current: dict[str, Any], name: str, targets: list[str],
                      databases: list[str]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Targets that already hold a key of another name keep it (a rotation done earlier, for
    example by playbooks/rotate_keys.yml, is not undone by a re-run with the first names).

    current: as for plan_key_targets. A database whose key is the same as the default key has no
    key of its own and is not kept. Returns (targets still to set, databases still to set, kept)
    with kept = [{'target', 'database', 'key'}] (key: the name in place)."""
    kept: list[dict[str, Any]] = []
    wanted_targets: list[str] = []
    for target in targets:
        info = current.get(target) if target in ('server', 'default') else None
        if info is not None and info.get('key_name') != name:
            kept.append({'target': target, 'database': None, 'key': info.get('key_name')})
        else:
            wanted_targets.append(target)
    wanted_dbs: list[str] = []
    db_infos = current.get('databases') or {}
    for db in databases:
        info = db_infos.get(db)
        own = info is not None and not same_key(info, current.get('default'))
        if 'database' in targets and own and info.get('key_name') != name:
            kept.append({'target': 'database', 'database': db, 'key': info.get('key_name')})
        else:
            wanted_dbs.append(db)
    if 'database' in wanted_targets and databases and not wanted_dbs:
        wanted_targets.remove('database')
    return wanted_targets, wanted_dbs, kept


def kept_message(kept: list[dict[str, Any]], wanted: str) -> str:
    """The warning of a run that kept rotated keys in place."""
    where = ', '.join(('key of database "%s" is "%s"' % (k['database'], k['key'])) if k['target'] == 'database'
                      else ('%s key is "%s"' % (k['target'], k['key'])) for k in kept)
    return ('Kept keys rotated earlier in place (keep_rotated): the %s, not "%s". Put the rotated names into '
            'the inventory, or set configure_rotate_keys=true (keep_rotated: false) to rotate to "%s".'
            % (where, wanted, wanted))
