"""Rotation periods, new key names and the per-host summary of playbooks/rotate_keys.yml."""
from __future__ import annotations

import datetime as dt

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _rotation as rot

UTC = dt.timezone.utc


@pytest.mark.parametrize('period,now,suffix', [
    ('day', dt.datetime(2026, 12, 6, 23, 59, tzinfo=UTC), '20261206'),
    ('week', dt.datetime(2026, 12, 6, 9, 0, tzinfo=UTC), '20261130'),   # a Sunday: the week began on Monday 30 Nov
    ('week', dt.datetime(2026, 11, 30, 0, 0, tzinfo=UTC), '20261130'),
    ('month', dt.datetime(2026, 12, 31, 23, 59, tzinfo=UTC), '20261201'),
    ('quarter', dt.datetime(2026, 11, 15, tzinfo=UTC), '20261001'),
    ('quarter', dt.datetime(2026, 3, 31, tzinfo=UTC), '20260101'),
    ('year', dt.datetime(2026, 7, 1, tzinfo=UTC), '20260101'),
    ('minute', dt.datetime(2026, 12, 6, 9, 7, 30, tzinfo=UTC), '20261206T0907'),
])
def test_period_suffix(period, now, suffix):
    assert rot.period_suffix(period, now) == suffix


def test_suffix_is_utc_and_stable_within_the_period():
    cet = dt.timezone(dt.timedelta(hours=1))
    # 1 January 00:30 in UTC+1 is still December in UTC
    assert rot.period_suffix('month', dt.datetime(2027, 1, 1, 0, 30, tzinfo=cet)) == '20261201'
    runs = [dt.datetime(2026, 12, d, h, tzinfo=UTC) for d in (1, 6, 31) for h in (0, 12, 23)]
    assert {rot.period_suffix('month', r) for r in runs} == {'20261201'}


def test_unknown_period():
    with pytest.raises(ValueError, match='rotate_keys_period must be one of'):
        rot.period_suffix('fortnight', dt.datetime.now(UTC))


def test_rotated_name_replaces_an_earlier_suffix():
    assert rot.rotated_name('db1-wal', '20261201') == 'db1-wal-20261201'
    assert rot.rotated_name('db1-wal-20261101', '20261201') == 'db1-wal-20261201'
    assert rot.rotated_name('db1-wal-20261101T0930', '20261201') == 'db1-wal-20261201'
    # the same period twice: the same name (the re-run finds it in place)
    assert rot.rotated_name(rot.rotated_name('db1-wal', '20261201'), '20261201') == 'db1-wal-20261201'
    assert rot.suffix_problem('20261201') is None and rot.suffix_problem('20261201T0930') is None
    assert 'rotate_keys_suffix must look like' in rot.suffix_problem('dec')


def result(name, targets, set_=(), keys=None, databases=(), **extra):
    res = {'_rotate': {'name': name, 'targets': list(targets), 'databases': list(databases)},
           'set': list(set_), 'principal_keys': keys or {}, 'changed': bool(set_)}
    res.update(extra)
    return res


def test_summary_rotated_already_and_followers():
    server = result('db1-wal-20261201', ['server'],
                    set_=[{'target': 'server', 'database': None, 'old_key': 'db1-wal', 'new_key': 'db1-wal-20261201',
                           'followed_default': False}])
    default = result('db1-default-20261201', ['default'],
                     keys={'default': {'key_name': 'db1-default-20261201'}})
    item = {'item': {'name': 'db1-app-20261201', 'provider': 'kms', 'databases': ['app']},
            'set': [{'target': 'database', 'database': 'app', 'old_key': 'db1-app', 'new_key': 'db1-app-20261201',
                     'followed_default': False}], 'principal_keys': {}}
    dbs = {'results': [item, {'skipped': True}]}
    out = rot.summarize([server, default, dbs, {}], check_mode=False)
    assert out == [
        {'target': 'server', 'database': None, 'old_key': 'db1-wal', 'new_key': 'db1-wal-20261201',
         'action': 'rotated', 'detail': None},
        {'target': 'default', 'database': None, 'old_key': 'db1-default-20261201', 'new_key': 'db1-default-20261201',
         'action': 'already in place', 'detail': None},
        {'target': 'database', 'database': 'app', 'old_key': 'db1-app', 'new_key': 'db1-app-20261201',
         'action': 'rotated', 'detail': None}]
    assert rot.summarize([server], check_mode=True)[0]['action'] == 'would rotate'


def test_summary_of_a_default_rotation_that_moved_the_databases_on_it():
    default = result('d2', ['default'], set_=[
        {'target': 'default', 'database': None, 'old_key': 'd1', 'new_key': 'd2', 'followed_default': False},
        {'target': 'database', 'database': 'postgres', 'old_key': 'd1', 'new_key': 'd2', 'followed_default': True}])
    out = rot.summarize([default], check_mode=False)
    assert [o['action'] for o in out] == ['rotated', 'rotated (followed the default key)']


def test_summary_failed_and_not_set():
    failed = result('k', ['server'], failed=True, msg='KMS down')
    assert rot.summarize([failed], False)[0]['action'] == 'failed'
    odd = result('k', ['server'], keys={'server': {'key_name': 'other'}})
    line = rot.summarize([odd], False)[0]
    assert line['action'] == 'not set' and 'other' in line['detail']
