"""Which hosts site.yml may restart (the rest run all at once)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.filter.site import site_restart_reasons
from ansible_collections.tdeops.pg_tde.plugins.module_utils._site import restart_reasons

STEADY = {'preload': 'pg_tde,pg_stat_statements', 'wal_encrypt': 'on', 'archive_mode': 'on', 'extension': True,
          'server_key': 'db1-wal', 'pending': [], 'postmaster_start': '2026-12-06 10:00:00+00',
          'dropin_mtime': '2026-12-05 10:00:00+00'}
WANT = {'site_configure': True, 'configure_wal_encrypt': True, 'site_pgbackrest': True, 'site_hardening': True,
        'hardening_restart_postgresql': True}


def test_a_configured_host_will_not_restart():
    assert restart_reasons(STEADY, WANT) == []


def test_new_or_unreachable_host():
    assert 'could not be asked' in restart_reasons(None, WANT)[0]


def test_each_reason():
    cases = [({'preload': 'pg_stat_statements'}, 'not preloaded'),
             ({'extension': False}, 'extension'),
             ({'wal_encrypt': 'off'}, 'wal_encrypt is off, wanted on'),
             ({'pending': ['shared_buffers']}, 'shared_buffers'),
             ({'archive_mode': 'off'}, 'archive_mode is off'),
             ({'dropin_mtime': None}, 'drop-in'),
             ({'postmaster_start': '2026-12-04 10:00:00+00'}, 'started before the hardening drop-in')]
    for change, text in cases:
        reasons = restart_reasons(dict(STEADY, **change), WANT)
        assert any(text in r for r in reasons), (change, reasons)


def test_switches_that_are_off_do_not_count():
    probe = dict(STEADY, archive_mode='off', dropin_mtime=None, wal_encrypt='off')
    want = dict(WANT, site_pgbackrest=False, site_hardening=False, configure_wal_encrypt=False)
    assert restart_reasons(probe, want) == []
    assert restart_reasons(probe, dict(want, hardening_restart_postgresql=False, site_hardening=True)) == []
    # turning WAL encryption off is a restart too
    assert restart_reasons(dict(STEADY, wal_encrypt='on'), dict(WANT, configure_wal_encrypt=False))


def test_filter_takes_the_registered_query():
    assert site_restart_reasons({'query_result': [STEADY], 'failed': False}, WANT) == []
    assert site_restart_reasons({'failed': True, 'msg': 'connection refused'}, WANT)
    assert site_restart_reasons({'unreachable': True}, WANT)
