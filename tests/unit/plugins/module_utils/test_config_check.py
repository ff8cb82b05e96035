"""The cross-checks of pg_tde_config_check (no server): a table of bad inputs -> the variable path
named and the words of the problem; good inputs -> no problem; what the server could not show is
said, never guessed."""
from __future__ import annotations

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils._config_check import (
    config_problems,
    problems_message,
)

KMIP = {'name': 'kms', 'type': 'kmip', 'kmip_host': 'kms.example.com', 'kmip_cert': '/etc/pg_tde/c.crt',
        'kmip_key': '/etc/pg_tde/c.key', 'kmip_ca': '/etc/pg_tde/ca.crt'}
VAULT = {'name': 'vault', 'type': 'vault_v2', 'vault_url': 'https://v:8200', 'vault_token_path': '/etc/pg_tde/t'}
FILE = {'name': 'lab', 'type': 'file', 'file_path': '/var/lib/postgresql/k.per'}

# A fresh server: pg_tde not loaded, databases postgres and appdb, no extension anywhere.
FRESH = {'user': 'postgres', 'superuser': True, 'preloaded': False, 'databases': ['appdb', 'postgres', 'template1'],
         'extension': {'postgres': False, 'appdb': False, 'template1': False}, 'providers': {'global': None},
         'why': {'providers global': 'pg_tde is not loaded yet'}}
# A configured server: global provider kms, appdb has the extension and a database provider dbkms.
CONFIGURED = {'user': 'postgres', 'superuser': True, 'preloaded': True, 'databases': ['appdb', 'postgres', 'other'],
              'extension': {'postgres': True, 'appdb': True, 'other': False},
              'providers': {'global': {'kms': 'kmip'}, 'appdb': {'dbkms': 'kmip'}}, 'why': {}}


def cfg(**kw):
    base = {'providers': [], 'server_key': {}, 'default_key': {}, 'database_keys': [],
            'extension_databases': ['postgres'], 'extension_template1': False, 'login_db': 'postgres',
            'wal_encrypt': False}
    base.update(kw)
    return base


def messages(config, server=None):
    return [str(p) for p in config_problems(config, server if server is not None else FRESH, 'configure_')]


BAD = [
    # (what, config, server, path, words in the problem)
    ('unknown provider type', cfg(providers=[dict(KMIP, type='kmpi')]), FRESH,
     'configure_providers[0].type', 'did you mean "kmip"'),
    ('provider type missing', cfg(providers=[{'name': 'kms', 'file_path': '/x'}]), FRESH,
     'configure_providers[0].type', 'is missing'),
    ('provider name missing', cfg(providers=[{k: v for k, v in FILE.items() if k != 'name'}]), FRESH,
     'configure_providers[0].name', 'is missing'),
    ('provider name of 128 bytes', cfg(providers=[dict(FILE, name='p' * 128)]), FRESH,
     'configure_providers[0].name', 'shorter than 128 bytes'),
    ('kmip option missing', cfg(providers=[{k: v for k, v in KMIP.items() if k != 'kmip_ca'}]), FRESH,
     'configure_providers[0].kmip_ca', 'a kmip provider needs'),
    ('option of another type', cfg(providers=[dict(FILE, kmip_host='h')]), FRESH,
     'configure_providers[0].kmip_host', 'belongs to a kmip provider'),
    ('misspelt option', cfg(providers=[dict(KMIP, kmip_hots='h')]), FRESH,
     'configure_providers[0].kmip_hots', 'did you mean "kmip_host"'),
    ('kmip port out of range', cfg(providers=[dict(KMIP, kmip_port=70000)]), FRESH,
     'configure_providers[0].kmip_port', 'between 1 and 65535'),
    ('vault url without scheme', cfg(providers=[dict(VAULT, vault_url='v:8200')]), FRESH,
     'configure_providers[0].vault_url', 'https://'),
    ('vault API path as mount', cfg(providers=[dict(VAULT, vault_mount_path='secret/data')]), FRESH,
     'configure_providers[0].vault_mount_path', 'not the KV mount'),
    ('empty vault mount', cfg(providers=[dict(VAULT, vault_mount_path='/')]), FRESH,
     'configure_providers[0].vault_mount_path', 'is empty'),
    ('options over 1024 bytes', cfg(providers=[dict(FILE, file_path='/' + 'd' * 1100)]), FRESH,
     'configure_providers[0]', '1024'),
    ('bad scope', cfg(providers=[dict(FILE, scope='databse')]), FRESH,
     'configure_providers[0].scope', 'did you mean "database"'),
    ('database provider without database', cfg(providers=[dict(FILE, scope='database')]), FRESH,
     'configure_providers[0].database', 'is missing'),
    ('database provider where the extension will not be', cfg(providers=[dict(FILE, scope='database', database='appdb')]),
     FRESH, 'configure_providers[0].database', 'not in configure_extension_databases'),
    ('provider declared twice', cfg(providers=[FILE, FILE]), FRESH, 'configure_providers[1].name', 'declared twice'),
    ('server key name of 300 bytes', cfg(providers=[FILE], server_key={'name': 'k' * 300, 'provider': 'lab'}), FRESH,
     'configure_server_key.name', 'at most 255 bytes'),
    ('server key name of 300 bytes, key already set', cfg(server_key={'name': 'k' * 300, 'provider': 'kms'}),
     CONFIGURED, 'configure_server_key.name', '300 bytes'),
    ('server key without provider', cfg(server_key={'name': 'wal'}), FRESH, 'configure_server_key.provider', 'missing'),
    ('server key on an unknown provider (fresh)', cfg(server_key={'name': 'wal', 'provider': 'nope'}), FRESH,
     'configure_server_key.provider', 'could not be read'),
    ('server key on an unknown provider (configured)', cfg(server_key={'name': 'wal', 'provider': 'nope'}), CONFIGURED,
     'configure_server_key.provider', 'providers there: kms'),
    ('server key on a database provider', cfg(providers=[dict(FILE, scope='database', database='postgres')],
                                              server_key={'name': 'wal', 'provider': 'lab'}), FRESH,
     'configure_server_key.provider', 'needs a global one'),
    ('server key with provider_scope database', cfg(server_key={'name': 'w', 'provider': 'kms', 'provider_scope': 'database'}),
     CONFIGURED, 'configure_server_key.provider_scope', 'global provider'),
    ('default key on a provider being deleted', cfg(providers=[dict(FILE, state='absent')],
                                                    default_key={'name': 'd', 'provider': 'lab'}), FRESH,
     'configure_default_key.provider', 'state: absent'),
    ('misspelt key option', cfg(providers=[FILE], default_key={'name': 'd', 'provider': 'lab', 'craete': False}), FRESH,
     'configure_default_key.craete', 'not an option'),
    ('WAL encryption without a server key', cfg(wal_encrypt=True), FRESH, 'configure_wal_encrypt', 'server key'),
    ('login db without the extension', cfg(extension_databases=['appdb']), FRESH, 'configure_login_db',
     'is not one of configure_extension_databases'),
    ('extension database that does not exist', cfg(extension_databases=['postgres', 'nodb']), FRESH,
     'configure_extension_databases[1]', 'does not exist'),
    ('database key where the extension will not be', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['appdb']}]), FRESH,
     'configure_database_keys[0].databases[0]', 'does not have the pg_tde extension'),
    ('database key for a missing database', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['nodb']}]), FRESH,
     'configure_database_keys[0].databases[0]', 'does not exist'),
    ('database key without databases', cfg(providers=[FILE], database_keys=[{'name': 'k', 'provider': 'lab'}]), FRESH,
     'configure_database_keys[0].databases', 'missing or empty'),
    ('databases as a string', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': 'postgres'}]), FRESH,
     'configure_database_keys[0].databases', 'list of database names'),
    ('one database, two keys', cfg(providers=[FILE], extension_databases=['postgres', 'appdb'], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['appdb']}, {'name': 'l', 'provider': 'lab', 'databases': ['appdb']}]),
     FRESH, 'configure_database_keys[1].databases[0]', 'already gets the key'),
    ('database key on a database provider of another database', cfg(database_keys=[
        {'name': 'k', 'provider': 'dbkms', 'provider_scope': 'database', 'databases': ['postgres']}]), CONFIGURED,
     'configure_database_keys[0].provider', 'database "postgres"'),
    ('database-scope key naming a global provider', cfg(extension_databases=['postgres', 'appdb'], database_keys=[
        {'name': 'k', 'provider': 'kms', 'provider_scope': 'database', 'databases': ['appdb']}]), CONFIGURED,
     'configure_database_keys[0].provider', 'set provider_scope: global'),
    ('provider_scope misspelt', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'provider_scope': 'globl', 'databases': ['postgres']}]), FRESH,
     'configure_database_keys[0].provider_scope', 'did you mean "global"'),
    ('not a superuser', cfg(), dict(CONFIGURED, superuser=False, user='app'), 'pg_layout_user', 'not a superuser'),
    ('providers not listable (permission)', cfg(default_key={'name': 'd', 'provider': 'kms'}),
     dict(CONFIGURED, providers={'global': None},
          why={'providers global': 'PostgreSQL role "app" lacks the privilege to list the global key providers'}),
     'configure_default_key.provider', 'lacks the privilege'),
    ('extension unreadable', cfg(providers=[FILE], database_keys=[{'name': 'k', 'provider': 'lab', 'databases': ['appdb']}]),
     dict(FRESH, extension={'postgres': False, 'appdb': None},
          why={'extension appdb': 'cannot connect to database "appdb" as "postgres": permission denied'}),
     'configure_database_keys[0].databases[0]', 'could not be read (cannot connect'),
    ('provider not a dict', cfg(providers=['kms']), FRESH, 'configure_providers[0]', 'must be a dictionary'),
    # What the argument-spec engine checked in the nested options before (elements: raw now), by index.
    ('provider state misspelt', cfg(providers=[dict(FILE, state='gone')]), FRESH,
     'configure_providers[0].state', 'one of present, absent'),
    ('provider scope empty', cfg(providers=[dict(FILE, scope=None)]), FRESH, 'configure_providers[0].scope', 'is empty'),
    ('kmip port not a number', cfg(providers=[FILE, dict(KMIP, kmip_port='abc')]), FRESH,
     'configure_providers[1].kmip_port', 'between 1 and 65535'),
    ('kmip port not a whole number', cfg(providers=[dict(KMIP, kmip_port=5696.5)]), FRESH,
     'configure_providers[0].kmip_port', 'between 1 and 65535'),
    ('kmip port empty', cfg(providers=[dict(KMIP, kmip_port=None)]), FRESH, 'configure_providers[0].kmip_port', 'is empty'),
    ('provider path as a list', cfg(providers=[dict(FILE, file_path=['/a', '/b'])]), FRESH,
     'configure_providers[0].file_path', 'is a list'),
    ('provider name as a list', cfg(providers=[dict(FILE, name=['a'])]), FRESH, 'configure_providers[0].name', 'is a list'),
    ('database key not a dict', cfg(database_keys=['appkey']), FRESH, 'configure_database_keys[0]', 'must be a dictionary'),
    ('database key without name', cfg(providers=[FILE], database_keys=[{'provider': 'lab', 'databases': ['postgres']}]),
     FRESH, 'configure_database_keys[0].name', 'is missing'),
    ('database key without provider', cfg(database_keys=[{'name': 'k', 'databases': ['postgres']}]), FRESH,
     'configure_database_keys[0].provider', 'is missing'),
    ('database key create not a boolean', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['postgres'], 'create': 'maybe'}]), FRESH,
     'configure_database_keys[0].create', 'true or false'),
    ('database key create empty', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['postgres'], 'create': None}]), FRESH,
     'configure_database_keys[0].create', 'is empty'),
    ('database key misspelt option', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['postgres'], 'provder_scope': 'global'}]), FRESH,
     'configure_database_keys[0].provder_scope', 'not an option'),
    ('database key provider as a list', cfg(database_keys=[{'name': 'k', 'provider': ['a'], 'databases': ['postgres']}]),
     FRESH, 'configure_database_keys[0].provider', 'is a list'),
    ('databases a number', cfg(providers=[FILE], database_keys=[{'name': 'k', 'provider': 'lab', 'databases': 5}]),
     FRESH, 'configure_database_keys[0].databases', 'must be a list of database names'),
    ('a database as a dict', cfg(providers=[FILE], database_keys=[
        {'name': 'k', 'provider': 'lab', 'databases': ['postgres', {'name': 'appdb'}]}]), FRESH,
     'configure_database_keys[0].databases[1]', 'not a database name'),
]


@pytest.mark.parametrize('what,config,server,path,words', BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_path_and_the_fix(what, config, server, path, words):
    problems = config_problems(config, server, 'configure_', 'pg_layout_user')
    found = [p for p in problems if p.path == path]
    assert found, '%s: no problem at %s; got %s' % (what, path, [str(p) for p in problems])
    assert any(words in p.problem or words in p.fix for p in found), [str(p) for p in found]
    assert all(p.fix for p in problems)


GOOD = [
    ('defaults', cfg(), FRESH),
    ('fresh host, everything declared', cfg(
        providers=[KMIP, VAULT, dict(FILE, scope='database', database='appdb')],
        extension_databases=['postgres', 'appdb'], wal_encrypt=True,
        server_key={'name': 'wal', 'provider': 'kms'}, default_key={'name': 'd', 'provider': 'vault', 'create': False},
        database_keys=[{'name': 'a', 'provider': 'lab', 'provider_scope': 'database', 'databases': ['appdb']}]), FRESH),
    ('providers already on the server', cfg(
        server_key={'name': 'w' * 255, 'provider': 'kms'},
        database_keys=[{'name': 'a', 'provider': 'dbkms', 'provider_scope': 'database', 'databases': ['appdb']}]),
     CONFIGURED),
    ('inputs alone', cfg(providers=[dict(FILE, name='p' * 127)], server_key={'name': 'w', 'provider': 'p' * 127}), {}),
    ('inputs alone: a provider on the server is not guessed at', cfg(
        server_key={'name': 'w', 'provider': 'kms'},
        providers=[dict(FILE, scope='database', database='appdb')]), {}),
    ('deleting an unused provider needs no type options', cfg(providers=[{'name': 'old', 'state': 'absent'}]), FRESH),
    ('what Ansible reads as an int or a bool', cfg(
        providers=[dict(KMIP, kmip_port='5696'), dict(VAULT, state='absent', scope='global')],
        database_keys=[{'name': 'k', 'provider': 'kms', 'databases': ['postgres'], 'create': 'yes'}]), FRESH),
]


@pytest.mark.parametrize('what,config,server', GOOD, ids=[g[0] for g in GOOD])
def test_good_input_has_no_problem(what, config, server):
    assert messages(config, server) == []


def test_the_measured_kmpi_case_is_one_message_with_path_problem_and_fix():
    problems = config_problems(cfg(providers=[dict(KMIP, type='kmpi')]), FRESH, 'configure_')
    assert [str(p) for p in problems] == [
        'configure_providers[0].type: is "kmpi", which is not a pg_tde provider type. '
        'Fix: set it to one of kmip, vault_v2, file (did you mean "kmip"?).']
    text = problems_message(problems)
    assert text.startswith('1 problem in the pg_tde variables; nothing was changed:')


def test_every_problem_is_reported_at_once():
    config = cfg(providers=[dict(KMIP, type='kmpi'), dict(FILE, name='x' * 200)], wal_encrypt=True)
    paths = [p.path for p in config_problems(config, FRESH, 'configure_')]
    assert paths == ['configure_providers[0].type', 'configure_providers[1].name', 'configure_wal_encrypt']


def test_a_provider_used_by_two_keys_is_named_once_per_key():
    config = cfg(server_key={'name': 'w', 'provider': 'nope'}, default_key={'name': 'd', 'provider': 'nope'})
    paths = [p.path for p in config_problems(config, CONFIGURED, 'configure_')]
    assert paths == ['configure_server_key.provider', 'configure_default_key.provider']


def test_without_prefix_the_module_options_are_named():
    problems = config_problems(cfg(providers=[dict(KMIP, type='kmpi')]), {}, '')
    assert problems[0].path == 'providers[0].type'
