"""Option rules, plan items and the diff of pg_tde_table_encrypt (no server)."""
from __future__ import annotations

import pytest

from ansible_collections.tdeops.pg_tde.plugins.modules import pg_tde_table_encrypt as m


def params(**kw):
    base = {name: spec.get('default') for name, spec in m.argument_spec().items()}
    base.update(kw)
    return base


def test_defaults_match_the_issue():
    spec = m.argument_spec()
    assert spec['state']['default'] == 'encrypted'
    assert spec['parallel']['default'] == 1
    assert spec['verify_integrity']['default'] is True
    assert spec['include_matviews']['default'] is False
    assert spec['login_password']['no_log'] is True
    assert spec['databases'].get('default') is None  # login_db then


def test_something_must_be_named():
    assert 'name what to change' in m.option_errors(params())[0]
    assert m.option_errors(params(tables=['t'])) == []
    assert m.option_errors(params(all_tables=True)) == []


def test_all_tables_is_exclusive():
    errs = m.option_errors(params(all_tables=True, schemas=['s']))
    assert len(errs) == 1 and 'all_tables cannot be combined' in errs[0]


@pytest.mark.parametrize('kw,word', [
    (dict(parallel=0), 'parallel'), (dict(parallel=65), 'parallel'), (dict(retries=-1), 'retries'),
    (dict(retry_delay=-1.0), 'retry_delay'), (dict(free_space_margin=-5.0), 'free_space_margin'),
    (dict(lock_timeout=' '), 'lock_timeout'),
])
def test_bad_numbers(kw, word):
    errs = m.option_errors(params(tables=['t'], **kw))
    assert len(errs) == 1 and word in errs[0]


REL = {'oid': 5, 'schema': 'public', 'name': 'p_1', 'relkind': 'r', 'access_method': 'heap', 'parent_oid': 4,
       'tablespace_oid': 0, 'populated': True}
PARENT = {'oid': 4, 'schema': 'public', 'name': 'p', 'relkind': 'p', 'access_method': '', 'parent_oid': 0}
SPACES = {'default': 1663, 'dirs': {1663: ('pg_default', '/data/base/5'), 1700: ('fast', '/ssd/ts')}}
SIZES = {5: {'size_bytes': 3 * 1024 * 1024, 'index_bytes': 1024 * 1024, 'toast_bytes': 0,
             'table_bytes': 2 * 1024 * 1024}}


def test_make_item():
    it = m.make_item('shop', REL, 'encrypted', 'rewrite', None, SIZES, SPACES, {4: PARENT, 5: REL})
    assert it['kind'] == 'partition' and it['partition_of'] == 'public.p'
    assert it['target_access_method'] == 'tde_heap' and it['size'] == '3.0 MB'
    assert it['tablespace'] == 'pg_default' and it['directory'] == '/data/base/5'
    other = m.make_item('shop', dict(REL, tablespace_oid=1700), 'decrypted', 'skip', 'x', {}, SPACES, {})
    assert other['directory'] == '/ssd/ts' and other['size_bytes'] == 0 and other['target_access_method'] == 'heap'
    assert other['partition_of'] is None


class FakeModule:
    def __init__(self, check_mode=False, **kw):
        self.params = params(**kw)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def test_diff_shows_only_done_tables():
    runner = m.Runner(FakeModule(tables=['t']))
    runner.plan = [
        {'order': 1, 'database': 'd', 'schema': 's', 'table': 'a', 'access_method': 'heap',
         'target_access_method': 'tde_heap', 'action': 'rewrite', 'size_bytes': 1},
        {'order': 2, 'database': 'd', 'schema': 's', 'table': 'b', 'access_method': 'heap',
         'target_access_method': 'tde_heap', 'action': 'rewrite', 'size_bytes': 1},
    ]
    runner.results = [dict(runner.plan[0], changed=True, status='encrypted'),
                      dict(runner.plan[1], changed=False, status='failed')]
    d = runner.diff()
    assert d['before']['access_methods'] == {'d: s.a': 'heap', 'd: s.b': 'heap'}
    assert d['after']['access_methods'] == {'d: s.a': 'tde_heap', 'd: s.b': 'heap'}
    out = runner.output()
    assert out['bytes_to_rewrite'] == 2 and out['summary']['changed'] == 1 and out['summary']['failed'] == 1
    assert set(out['tables'][0]) == set(m.RESULT_KEYS)


def test_check_mode_diff_is_the_plan():
    runner = m.Runner(FakeModule(check_mode=True, tables=['t']))
    runner.plan = [{'order': 1, 'database': 'd', 'schema': 's', 'table': 'a', 'access_method': None,
                    'target_access_method': 'tde_heap', 'action': 'set_access_method', 'size_bytes': 0}]
    assert runner.diff()['after']['access_methods'] == {'d: s.a': 'tde_heap'}
    assert runner.output()['bytes_to_rewrite'] == 0
