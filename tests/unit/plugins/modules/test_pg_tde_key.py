"""Unit tests of pg_tde_key's option checks (no server)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_key as m


def params(**kw):
    base = dict(name='k1', provider='kms', provider_scope='global', targets=[], databases=['postgres'],
                create=True, verify=True, state='present')
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
