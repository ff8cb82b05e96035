"""Unit tests of pg_tde_provider's option checks (no server)."""
from __future__ import annotations

import os

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_provider as m


def params(**kw):
    base = dict(name='kms', state='present', type='kmip', kmip_host='h', kmip_port=5696, kmip_cert='/c',
                kmip_key='/k', kmip_ca='/ca', vault_url=None, vault_mount_path='secret', vault_token_path=None,
                vault_ca_path=None, vault_namespace=None, file_path=None)
    base.update(kw)
    return base


def test_valid_kmip_has_no_problems():
    assert m.input_problems(params()) == []


def test_name_limit():
    assert 'shorter than 128 bytes' in m.input_problems(params(name='x' * 128))[0]
    assert m.input_problems(params(name='x' * 127)) == []


def test_vault_mount_must_be_bare():
    p = params(type='vault_v2', vault_url='https://v:8200', vault_token_path='/t', vault_mount_path='secret/data')
    assert any('bare KV mount' in x for x in m.input_problems(p))
    p = params(type='vault_v2', vault_url='v:8200', vault_token_path='/t')
    assert any('https://' in x for x in m.input_problems(p))


def test_normalize_mount():
    assert m.normalize_mount('/secret/') == 'secret'
    assert m.normalize_mount('kv/team') == 'kv/team'


def test_options_limit():
    p = params(type='file', file_path='/' + 'x' * 1100)
    assert any('1024-byte' in x for x in m.input_problems(p))


def test_kmip_port_range():
    assert any('kmip_port' in x for x in m.input_problems(params(kmip_port=70000)))


def test_ignored_options_are_those_of_other_types():
    p = params(type='file', file_path='/f', kmip_host='h', vault_url='https://v')
    assert m.ignored_options(p) == ['kmip_ca', 'kmip_cert', 'kmip_host', 'kmip_key', 'vault_url']
    assert m.ignored_options(params(state='absent')) == []


def test_file_checks_name_option_and_user(tmp_path):
    cert = tmp_path / 'c.crt'
    cert.write_text('x')
    opts = {'host': 'h', 'port': 1, 'certPath': str(cert), 'keyPath': str(tmp_path / 'missing.key'),
            'caPath': str(cert)}
    problems = m.file_checks('kmip', opts, os.getuid(), os.getgroups(), 'postgres')
    assert problems == ['kmip_key %s does not exist for the PostgreSQL OS user "postgres"' % opts['keyPath']]


def test_file_provider_may_not_exist_yet(tmp_path):
    assert m.file_checks('file', {'path': str(tmp_path / 'new.per')}, os.getuid(), os.getgroups(), 'pg') == []
    problems = m.file_checks('file', {'path': str(tmp_path / 'no' / 'new.per')}, os.getuid(), [], 'pg')
    assert problems and 'file_path' in problems[0] and 'missing' in problems[0]


def test_diff_view_has_no_secrets_and_names_database():
    provider = {'id': 1, 'name': 'v', 'type': 'vault_v2', 'options': {'url': 'https://v', 'tokenPath': '/t'}}
    view = m.diff_view(provider, 'database', 'app')
    assert view == {'name': 'v', 'scope': 'database', 'database': 'app', 'type': 'vault_v2',
                    'options': {'url': 'https://v', 'tokenPath': '/t'}}
    assert m.diff_view(None, 'global', 'postgres') == {}


def test_namespace_needs_pg_tde_2_1():
    asked = []

    def overload(answer):
        def ask():
            asked.append(answer)
            return answer
        return ask

    assert m.namespace_problem({'url': 'https://v'}, overload(False)) is None
    assert asked == [], 'no namespace: pg_tde 2.0 is fine and the server is not asked'
    assert m.namespace_problem({'namespace': 'ns'}, overload(True)) is None
    problem = m.namespace_problem({'namespace': 'ns'}, overload(False))
    assert 'pg_tde 2.1 or later' in problem and 'vault_namespace' in problem
