"""Unit tests of pg_tde_key: option checks and the orchestration of create/set/rotate (no server)."""
from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_key as m


def params(**kw):
    base = dict(name='k1', provider='kms', provider_scope='global', targets=[], databases=['postgres'],
                create=True, verify=True, keep_rotated=False, state='present')
    base.update(kw)
    return base


def test_valid():
    assert m.option_problems(params(targets=['server', 'default', 'database'])) == []


def test_server_and_default_need_global_provider():
    problems = m.option_problems(params(provider_scope='database', targets=['server', 'database']))
    assert len(problems) == 1 and 'server key needs a global key provider' in problems[0]
    problems = m.option_problems(params(provider_scope='database', targets=['server', 'default']))
    assert 'server and default key needs a global key provider' in problems[0]
    assert m.option_problems(params(provider_scope='database', targets=['database'])) == []


def test_provider_required_for_present_only():
    assert 'provider is required' in m.option_problems(params(provider=None))[0]
    assert m.option_problems(params(provider=None, state='absent', targets=['default'])) == []


def test_absent_rules():
    assert 'no function that removes the server key' in \
        m.option_problems(params(state='absent', targets=['server']))[0]
    assert 'needs targets' in m.option_problems(params(state='absent'))[0]


def test_key_name_limits():
    assert 'at most 255 bytes' in m.option_problems(params(name='k' * 256))[0]
    assert m.option_problems(params(name='k' * 255)) == []
    assert 'empty' in m.option_problems(params(name=''))[0]


def test_known_on_provider():
    infos = [None, {'key_name': 'k1', 'provider_name': 'kms', 'provider_id': -1}]
    assert m.known_on_provider(infos, 'k1', 'kms', 'global')
    assert not m.known_on_provider(infos, 'k1', 'kms', 'database')
    assert not m.known_on_provider(infos, 'k2', 'kms', 'global')


def test_describe():
    assert m.describe({'target': 'database', 'database': 'app'}) == 'key of database "app"'
    assert m.describe({'target': 'server', 'database': None}) == 'server key'


# ---------------------------------------------------------------------------------------------
# The orchestration against an in-memory stand-in of the pg_tde SQL API (no server): check mode
# runs no change, a key in place is not set again, the default key runs first and keys that
# follow it get no call, 'already exists' is not an error.
# ---------------------------------------------------------------------------------------------


class PgError(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.diag = SimpleNamespace(message_primary=text, sqlstate='22023', message_detail=None,
                                    message_hint=None)


class Cluster:
    """State of one server: providers, keys on the providers, keys in place."""

    def __init__(self, first_default_sets_server: bool = True) -> None:
        # pg_tde 2.2 (observed): the first default key becomes the server key when none is set
        self.first_default_sets_server = first_default_sets_server
        self.global_providers = {'kms': -1}
        self.kms_keys: set[str] = {'old'}
        self.server: dict[str, Any] | None = None
        self.default: dict[str, Any] | None = None
        self.db_keys: dict[str, dict[str, Any] | None] = {'postgres': None, 'app': None}
        self.changes: list[str] = []

    def info(self, name: str, provider: str = 'kms') -> dict[str, Any]:
        return {'key_name': name, 'provider_name': provider, 'provider_id': self.global_providers[provider],
                'key_creation_time': None}


class FakeSession:
    def __init__(self, cluster: Cluster, db: str, check_mode: bool) -> None:
        self.cluster, self.database, self.check_mode = cluster, db, check_mode
        self.executed_queries: list[str] = []

    def close(self) -> None:
        pass

    def query_one(self, sql, params=None):
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def query(self, sql, params=None):
        c = self.cluster
        if 'shared_preload_libraries' in sql:
            return [{'v': 'pg_tde'}]
        if 'FROM pg_extension' in sql:
            return [{'extversion': '2.2'}]
        if 'pg_tde_version()' in sql:
            return [{'v': 'pg_tde 2.2.0'}]
        if 'FROM pg_database' in sql:
            return [{'datname': d} for d in sorted(c.db_keys)]
        if 'list_all_global' in sql:
            return [{'id': i, 'name': n, 'type': 'file', 'options': '{"path" : "/k"}'}
                    for n, i in c.global_providers.items()]
        if 'list_all_database' in sql:
            return []
        key = re.search(r'FROM (pg_tde_\w+_info)\(\)', sql)
        if key:
            info = {'pg_tde_server_key_info': c.server, 'pg_tde_default_key_info': c.default,
                    'pg_tde_key_info': c.db_keys.get(self.database)}[key.group(1)]
            return [info or {'key_name': None, 'provider_name': None, 'provider_id': None,
                             'key_creation_time': None}]
        if 'verify' in sql:
            return []
        raise AssertionError('unexpected query %s' % sql)

    def execute(self, sql, params=None, record=None):
        self.executed_queries.append('%s %s' % (sql.split('(')[0], params))
        if self.check_mode:
            return []
        c = self.cluster
        c.changes.append(sql)
        name, provider = (params or [None, None])[:2]
        if 'create_key' in sql:
            if name in c.kms_keys:
                raise PgError('cannot create key "%s" because it already exists' % name)
            c.kms_keys.add(name)
        elif 'set_default' in sql:
            old = c.default
            c.default = c.info(name, provider)
            if c.server is None and c.first_default_sets_server:
                c.server = c.info(name, provider)
            if old is not None:
                if c.server and (c.server['key_name'], c.server['provider_id']) == (old['key_name'], old['provider_id']):
                    c.server = dict(c.default)
                for db, info in c.db_keys.items():
                    if info and (info['key_name'], info['provider_id']) == (old['key_name'], old['provider_id']):
                        c.db_keys[db] = dict(c.default)
        elif 'delete_default_key' in sql:
            old = c.default
            same = (old['key_name'], old['provider_id'])
            if c.server and (c.server['key_name'], c.server['provider_id']) == same:
                c.server = None
            for db, info in c.db_keys.items():
                if info and (info['key_name'], info['provider_id']) == same:
                    c.db_keys[db] = None
            c.default = None
        elif 'set_server' in sql:
            c.server = c.info(name, provider)
        elif 'set_key_using' in sql:
            c.db_keys[self.database] = c.info(name, provider)
        return []


class Failed(Exception):
    pass


def run(monkeypatch, cluster: Cluster, check: bool = False, **params) -> dict[str, Any]:
    base = dict(login_db='postgres', name='k1', provider='kms', provider_scope='global', targets=[],
                databases=['postgres'], create=True, verify=True, keep_rotated=False, state='present')
    base.update(params)
    module = SimpleNamespace(params=base, check_mode=check, warnings=[])
    module.warn = module.warnings.append

    def fail_json(**kw):
        raise Failed(kw['msg'])

    module.fail_json = fail_json
    monkeypatch.setattr(m, 'open_session', lambda mod, db: FakeSession(cluster, db, check))
    key_run = m.KeyRun(module)
    outcome = key_run.present() if base['state'] == 'present' else key_run.absent()
    return dict(outcome, created=key_run.created, rotated=key_run.rotated, set=key_run.set,
                deleted=key_run.deleted, kept=key_run.kept, warnings=module.warnings,
                queries=key_run.run_order_queries())


def test_check_mode_changes_nothing_and_lists_statements(monkeypatch):
    c = Cluster()
    out = run(monkeypatch, c, check=True, targets=['server', 'default'])
    assert out['changed'] and c.changes == []
    # the server key follows the first default key: no call of its own
    assert [q.split(' ')[1] for q in out['queries']] == [
        'pg_tde_create_key_using_global_key_provider', 'pg_tde_set_default_key_using_global_key_provider']
    assert [(s['target'], s['old_key'], s['followed_default']) for s in out['set']] == [
        ('default', None, False), ('server', None, True)]


@pytest.mark.parametrize('targets', [['server', 'default'], ['default']])
def test_first_default_key_also_sets_the_server_key(monkeypatch, targets):
    """Check mode and the real run report the same: the server key is set by the default key."""
    planned = run(monkeypatch, Cluster(), check=True, targets=targets)
    c = Cluster()
    out = run(monkeypatch, c, targets=targets)
    assert c.server['key_name'] == 'k1' and c.default['key_name'] == 'k1'
    assert [q for q in c.changes if 'set_' in q] == [m.set_key_statement('default', 'global')]
    assert out['queries'] == planned['queries']
    assert [(s['target'], s['followed_default']) for s in out['set']] == \
        [(s['target'], s['followed_default']) for s in planned['set']] == [('default', False), ('server', True)]
    assert out['rotated'] == []


def test_server_key_set_explicitly_when_the_default_key_does_not_fill_it(monkeypatch):
    """A pg_tde that does not copy the first default key to the server key: the module sees the
    server key still empty after the default key and sets it itself."""
    c = Cluster(first_default_sets_server=False)
    out = run(monkeypatch, c, targets=['server', 'default'])
    expected = [m.set_key_statement('default', 'global'), m.set_key_statement('server', 'global')]
    assert [q for q in c.changes if 'set_' in q] == expected
    assert [(s['target'], s['followed_default']) for s in out['set']] == [('default', False), ('server', False)]
    assert c.server['key_name'] == 'k1'


def test_existing_server_key_does_not_follow_a_first_default_key(monkeypatch):
    c = Cluster()
    c.server = c.info('old')
    out = run(monkeypatch, c, targets=['default'])
    assert c.server['key_name'] == 'old' and c.default['key_name'] == 'k1'
    assert [s['target'] for s in out['set']] == ['default']


def test_set_then_idempotent(monkeypatch):
    c = Cluster()
    out = run(monkeypatch, c, targets=['server', 'default', 'database'])
    assert out['changed'] and c.server['key_name'] == 'k1' and c.db_keys['postgres']['key_name'] == 'k1'
    assert out['rotated'] == []
    c.changes.clear()
    out = run(monkeypatch, c, targets=['server', 'default', 'database'])
    assert not out['changed'] and c.changes == [] and out['queries'] == []


def test_followers_get_no_call_of_their_own(monkeypatch):
    c = Cluster()
    c.kms_keys.add('k1')
    c.server = c.info('k1')
    c.default = c.info('k1')
    c.db_keys['app'] = c.info('k1')
    out = run(monkeypatch, c, name='k2', targets=['server', 'default'])
    assert [q for q in c.changes if 'set_' in q] == [m.set_key_statement('default', 'global')]
    assert c.server['key_name'] == 'k2' and c.db_keys['app']['key_name'] == 'k2'
    assert {(r['target'], r['database'], r['followed_default']) for r in out['rotated']} == {
        ('default', None, False), ('server', None, True), ('database', 'app', True)}


def test_already_exists_is_not_an_error_nor_a_change(monkeypatch):
    c = Cluster()
    out = run(monkeypatch, c, name='old')
    assert not out['changed'] and out['created'] == [] and out['queries'] == []


def test_provider_missing_fails_before_changes(monkeypatch):
    c = Cluster()
    with pytest.raises(Failed, match='Key provider "nope" does not exist in the global scope'):
        run(monkeypatch, c, provider='nope', targets=['server'])
    assert c.changes == []


def test_absent_deletes_only_the_named_key(monkeypatch):
    c = Cluster()
    c.db_keys['app'] = c.info('k1')
    out = run(monkeypatch, c, state='absent', targets=['database'], databases=['app', 'postgres'],
              name='other')
    assert not out['changed'] and c.changes == []
    out = run(monkeypatch, c, state='absent', targets=['database'], databases=['app', 'postgres'])
    assert out['changed'] and c.changes == ['SELECT pg_tde_delete_key()']


@pytest.mark.parametrize('check', [True, False])
def test_deleting_the_default_key_lists_what_goes_with_it(monkeypatch, check):
    c = Cluster()
    c.kms_keys.add('k1')
    c.server, c.default = c.info('k1'), c.info('k1')
    c.db_keys['app'] = c.info('k1')
    c.db_keys['own'] = c.info('old')
    out = run(monkeypatch, c, check=check, targets=['default', 'database'], databases=['app'], state='absent',
              provider=None)
    assert [(d['target'], d['database'], d['followed_default']) for d in out['deleted']] == [
        ('default', None, False), ('server', None, True), ('database', 'app', True)]
    assert [q.split(' ')[0] for q in out['queries']] == ['SELECT'] and len(out['queries']) == 1, \
        'no pg_tde_delete_key() for a database whose key went with the default key'
    if not check:
        assert c.server is None and c.db_keys['app'] is None and c.db_keys['own']['key_name'] == 'old'


def test_keep_rotated_keeps_keys_of_another_name_and_creates_nothing(monkeypatch):
    c = Cluster()
    c.kms_keys |= {'wal-2', 'app-2'}
    c.server, c.default = c.info('wal-2'), c.info('old')
    c.db_keys['app'] = c.info('app-2')
    for target, databases in ((['server'], ['postgres']), (['database'], ['app'])):
        out = run(monkeypatch, c, targets=target, databases=databases, keep_rotated=True)
        assert not out['changed'] and out['queries'] == [] and out['created'] == []
        assert len(out['kept']) == 1 and 'Kept keys rotated earlier' in out['warnings'][0]
    assert c.changes == []
    # without keep_rotated the configured name wins (a rotation)
    out = run(monkeypatch, c, targets=['server'], keep_rotated=False)
    assert out['changed'] and [s['old_key'] for s in out['rotated']] == ['wal-2']


def test_keep_rotated_still_sets_missing_keys_and_databases_on_the_default(monkeypatch):
    c = Cluster()
    c.default = c.info('old')
    c.db_keys['app'] = c.info('old')           # on the default key: no key of its own
    out = run(monkeypatch, c, targets=['database'], databases=['app'], keep_rotated=True)
    assert out['changed'] and out['kept'] == [] and c.db_keys['app']['key_name'] == 'k1'
    out = run(monkeypatch, c, targets=['server'], keep_rotated=True)
    assert out['changed'] and c.server['key_name'] == 'k1'
