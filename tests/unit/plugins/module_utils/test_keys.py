"""Unit tests of the key decisions in module_utils/_keys.py (no server)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _keys as t


def info(name, pid=-1, provider='kms', created='2026-11-23T18:29:58+00:00'):
    return {'key_name': name, 'provider_name': provider, 'provider_id': pid, 'key_creation_time': created}


def test_same_key_is_name_and_provider_id():
    assert t.same_key(info('k1'), info('k1', created='other'))
    assert not t.same_key(info('k1'), info('k1', pid=-2))
    assert not t.same_key(info('k1'), None)


def test_key_matches_checks_name_provider_and_scope():
    assert t.key_matches(info('k1'), 'k1', 'kms', 'global')
    assert not t.key_matches(info('k1'), 'k2', 'kms', 'global')
    assert not t.key_matches(info('k1'), 'k1', 'other', 'global')
    assert not t.key_matches(info('k1', pid=1), 'k1', 'kms', 'global')
    assert not t.key_matches(None, 'k1', 'kms', 'global')


def test_plan_nothing_when_in_place():
    current = {'server': info('k1'), 'default': info('k1'), 'databases': {'app': info('k1')}}
    assert t.plan_key_targets(current, 'k1', 'kms', 'global', ['server', 'default', 'database'], ['app']) == []


def test_plan_first_set_is_not_a_rotation():
    current = {'server': None, 'default': None, 'databases': {'postgres': None}}
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['server', 'default'], [])
    assert [(s['target'], s['old_key']) for s in plan] == [('default', None), ('server', None)]


def test_plan_first_default_key_becomes_the_server_key():
    # pg_tde 2.2: setting a default key while no server key is set sets the server key too
    current = {'server': None, 'default': None, 'databases': {'postgres': None}}
    for targets in (['server', 'default'], ['default']):
        plan = t.plan_key_targets(current, 'k1', 'kms', 'global', targets, [])
        assert [(s['target'], s['followed_default']) for s in plan] == [('default', False), ('server', True)]
    # a server key in place stays where it is
    current['server'] = info('s1')
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['default'], [])
    assert [s['target'] for s in plan] == ['default']


def test_plan_rotation_and_default_followers():
    # app and the server follow the default key (same name and provider); own has its own key
    current = {'server': info('k1'), 'default': info('k1'),
               'databases': {'app': info('k1'), 'own': info('own1'), 'none': None}}
    plan = t.plan_key_targets(current, 'k2', 'kms', 'global', ['default'], [])
    assert plan[0] == {'target': 'default', 'database': None, 'old_key': 'k1', 'new_key': 'k2',
                       'followed_default': False}
    followers = [(s['target'], s['database']) for s in plan if s['followed_default']]
    assert followers == [('server', None), ('database', 'app')]
    assert not any(s['database'] in ('own', 'none') for s in plan)


def test_plan_database_targets_only_listed_databases():
    current = {'server': None, 'default': None, 'databases': {'a': info('k0'), 'b': None, 'c': info('k0')}}
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['database'], ['a', 'b'])
    assert [(s['database'], s['old_key']) for s in plan] == [('a', 'k0'), ('b', None)]


def test_plan_same_name_other_provider_is_a_set():
    current = {'server': info('k1', provider='old'), 'default': None, 'databases': {}}
    plan = t.plan_key_targets(current, 'k1', 'kms', 'global', ['server'], [])
    assert plan and plan[0]['old_key'] == 'k1'


def test_provider_users_and_default_databases():
    server, default = info('s1', pid=-1), info('d1', pid=-2)
    dbs = {'a': info('d1', pid=-2), 'b': info('x', pid=1), 'c': None}
    assert t.provider_users(-1, server, default, dbs) == ['server key "s1"']
    assert t.provider_users(-2, server, default, dbs) == ['default key "d1"', 'key "d1" of database "a"']
    assert t.provider_users(1, None, None, {'b': dbs['b']}) == ['key "x" of database "b"']
    assert t.provider_users(-3, server, default, dbs) == []
    assert t.databases_on_default(default, dbs) == ['a']


def test_same_id_keys_elsewhere():
    # database provider ids restart at 1 in each database; pg_tde checks them all on a change
    dbs = {'a': info('ka', pid=1), 'b': info('kb', pid=1), 'c': info('kc', pid=2), 'd': None,
           'g': info('gk', pid=-1)}
    assert t.same_id_keys_elsewhere(1, 'b', dbs) == ['key "ka" of database "a"']
    assert t.same_id_keys_elsewhere(2, 'b', dbs) == ['key "kc" of database "c"']
    assert t.same_id_keys_elsewhere(3, 'b', dbs) == []
    assert t.same_id_keys_elsewhere(-1, 'b', dbs) == [], 'global ids are unique: no collision'
    assert t.same_id_keys_elsewhere(None, 'b', dbs) == []


# -- every database and its key ------------------------------------------------------------------

class _DbSession:
    """A session in one database: whether it has the extension, and its key (or an error)."""

    def __init__(self, database, extension, key=None, error=None):
        self.database, self.extension, self.key, self.error = database, extension, key, error

    def query_one(self, sql, params=None):
        if 'FROM pg_extension' in sql:
            return {'extversion': '2.2'} if self.extension else None
        assert 'pg_tde_key_info()' in sql, sql
        if self.error:
            raise RuntimeError(self.error)
        return self.key or {'key_name': None}


def test_database_keys_skips_databases_without_the_extension_and_keeps_errors():
    sessions = {
        'app': _DbSession('app', True, info('k1')),
        'plain': _DbSession('plain', False),
        'template1': _DbSession('template1', True, info('t1', pid=1)),
        'broken': _DbSession('broken', True, error='key "k" not found in key provider "p"'),
        'nokey': _DbSession('nokey', True),
    }
    keys = t.database_keys(sessions.__getitem__, ['template1', 'app', 'plain', 'broken', 'nokey'])
    assert list(keys) == ['template1', 'app', 'broken', 'nokey'], 'order kept, no extension = no key'
    assert keys['template1'][0]['key_name'] == 't1' and keys['template1'][0]['provider_scope'] == 'database'
    assert keys['app'] == (dict(info('k1'), provider_scope='global'), None)
    assert keys['broken'] == (None, 'key "k" not found in key provider "p"')
    assert keys['nokey'] == (None, None)


# keep_rotated: the configure role's "keep a rotated key unless configure_rotate_keys" ---------

def test_keep_rotated_keeps_server_and_default_of_another_name():
    current = {'server': info('wal-20261201'), 'default': info('def-20261201'), 'databases': {}}
    targets, dbs, kept = t.keep_rotated_keys(current, 'wal', ['server'], [])
    assert (targets, dbs) == ([], [])
    assert kept == [{'target': 'server', 'database': None, 'key': 'wal-20261201'}]
    targets, _dbs, kept = t.keep_rotated_keys(current, 'def', ['default'], [])
    assert targets == [] and kept[0]['key'] == 'def-20261201'


def test_keep_rotated_sets_missing_and_same_name():
    current = {'server': None, 'default': info('def'), 'databases': {}}
    assert t.keep_rotated_keys(current, 'wal', ['server'], []) == (['server'], [], [])
    # same name (even on another provider: the module decides the rest) is not a rotation to keep
    current['server'] = info('wal', provider='other')
    assert t.keep_rotated_keys(current, 'wal', ['server', 'default'], [])[2] == [
        {'target': 'default', 'database': None, 'key': 'def'}]


def test_keep_rotated_database_keys():
    current = {'server': None, 'default': info('def'),
               'databases': {'own': info('app-2'), 'ondef': info('def'), 'none': None, 'same': info('app')}}
    targets, dbs, kept = t.keep_rotated_keys(current, 'app', ['database'], ['own', 'ondef', 'none', 'same', 'new'])
    # a database on the default key has no key of its own: it gets the configured one
    assert targets == ['database']
    assert dbs == ['ondef', 'none', 'same', 'new']
    assert kept == [{'target': 'database', 'database': 'own', 'key': 'app-2'}]


def test_keep_rotated_all_databases_kept_leaves_no_database_target():
    current = {'server': None, 'default': None, 'databases': {'own': info('app-2')}}
    assert t.keep_rotated_keys(current, 'app', ['database'], ['own'])[:2] == ([], [])


def test_keep_rotated_databases_only_for_the_database_target():
    # provider_scope=database without the database target: the databases are where the provider is
    current = {'server': None, 'default': None, 'databases': {'own': info('app-2')}}
    assert t.keep_rotated_keys(current, 'app', [], ['own']) == ([], ['own'], [])


def test_kept_message_names_the_keys_and_the_fix():
    text = t.kept_message([{'target': 'server', 'database': None, 'key': 'w2'},
                           {'target': 'database', 'database': 'app', 'key': 'a2'}], 'w1')
    assert 'server key is "w2"' in text and 'key of database "app" is "a2"' in text
    assert 'configure_rotate_keys=true' in text
