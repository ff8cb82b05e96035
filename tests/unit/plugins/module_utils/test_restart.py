"""The decisions of the one safe restart (module_utils/_restart.py, module pg_restart)."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _restart as R

LIB = '/usr/lib/postgresql/17/lib'


def test_library_path_of_each_entry_form():
    assert R.library_path('pg_tde', LIB) == LIB + '/pg_tde.so'
    assert R.library_path('$libdir/pg_stat_statements', LIB) == LIB + '/pg_stat_statements.so'
    assert R.library_path('/opt/x/lib.so', LIB) == '/opt/x/lib.so'
    assert R.library_path('/opt/x/lib', LIB) == '/opt/x/lib.so'


def test_missing_libraries_parses_the_list_once_with_quotes():
    present = {LIB + '/pg_tde.so', LIB + '/pg_stat_statements.so'}
    assert R.missing_libraries('"pg_tde", pg_stat_statements,nope', LIB, present.__contains__) == ['nope']
    assert R.missing_libraries('', LIB, present.__contains__) == []


def test_is_on():
    assert R.is_on('on') and R.is_on("'true'") and R.is_on('1')
    assert not R.is_on('off') and not R.is_on('') and not R.is_on(None)


def test_pending_message_is_one_format_for_every_role():
    msg = R.pending_message('postgresql@17-main', ['hardening: unit limits changed (LimitCORE)'],
                            ['hardening_restart_postgresql'])
    assert msg.startswith('PostgreSQL (postgresql@17-main) needs a restart for: hardening: unit limits changed (LimitCORE). ')
    assert 'Restarts are not allowed here (hardening_restart_postgresql is false)' in msg
    assert 'Run again with hardening_restart_postgresql=true' in msg
    two = R.pending_message('s', ['a', 'b'], ['x_allowed', 'y_allowed'])
    assert 'for: a; b.' in two and 'x_allowed is false and y_allowed is false' in two
    assert 'x_allowed=true or y_allowed=true' in two


def test_reason_lines_keep_what_postgresql_said_once_and_the_last_ones():
    lines = ['2026-01-01 00:00:00 UTC [1] LOG:  starting PostgreSQL 17',
             '2026-01-01 00:00:00 UTC [1] LOG:  could not bind IPv4 address "192.0.2.1": Cannot assign requested address',
             '2026-01-01 00:00:00 UTC [1] WARNING:  could not create listen socket for "192.0.2.1"',
             '2026-01-01 00:00:00 UTC [1] FATAL:  could not create any TCP/IP sockets',
             '2026-01-01 00:00:01 UTC [2] FATAL:  could not create any TCP/IP sockets',
             'pg_ctl: could not start server']
    assert R.reason_lines(lines) == ['WARNING:  could not create listen socket for "192.0.2.1"',
                                     'FATAL:  could not create any TCP/IP sockets']
    many = ['ERROR:  e%d' % i for i in range(20)]
    assert R.reason_lines(many) == many[-R.REASON_LIMIT:]


def test_ctl_commands():
    assert R.ctl_command(['pg_ctlcluster', '17', 'main'], 'restart') == ['pg_ctlcluster', '17', 'main', 'restart']
    assert not R.ctl_runs_as_owner(['pg_ctlcluster', '17', 'main'])
    pg_ctl = ['/usr/pgsql-17/bin/pg_ctl', '-w', '-D', '/d', '-l', '/d/log/startup.log']
    assert R.ctl_runs_as_owner(pg_ctl)
    assert R.ctl_log_file(pg_ctl) == '/d/log/startup.log'
    assert R.ctl_log_file(['pg_ctl', '--log=/x.log']) == '/x.log'
    assert R.ctl_log_file(['pg_ctlcluster', '17', 'main']) is None
    try:
        R.ctl_command([], 'restart')
    except ValueError as exc:
        assert 'ctl is empty' in str(exc)
    else:
        raise AssertionError('an empty ctl must be refused')


def test_kms_endpoint_from_the_provider_row():
    kmip = R.kms_endpoint('kmip', {'host': 'kms', 'port': '5696', 'caPath': '/c', 'certPath': '/a', 'keyPath': '/k'})
    assert kmip == {'type': 'kmip', 'host': 'kms', 'port': 5696, 'ca': '/c', 'cert': '/a', 'key': '/k'}
    vault = R.kms_endpoint('vault-v2', {'url': 'https://v', 'mountPath': 'secret', 'tokenPath': '/t'})
    assert vault['type'] == 'vault_v2' and vault['mount'] == 'secret' and vault['ca'] is None
    assert R.kms_endpoint('file', {'path': '/x'}) is None


def test_undo_problems():
    assert R.undo_problems([{'path': '/a', 'backup': ''}, {'path': '/b', 'backup': '/b.bak'}],
                           {'/b.bak'}.__contains__) == []
    problems = R.undo_problems([{'path': '/b', 'backup': '/gone'}, {'backup': '/x'}], lambda p: False)
    assert 'the backup /gone of /b is gone' in problems[0] and 'without a path' in problems[1]


def test_messages():
    refused = R.refusal_message('svc', ['pgbackrest: archive_mode=on'], ['the KMIP server k:5696 cannot be reached.'],
                                ['/etc/x.conf'])
    assert refused.startswith('Refusing to restart PostgreSQL (svc) for: pgbackrest: archive_mode=on. The KMIP server')
    assert 'back in place (/etc/x.conf) and reloaded' in refused and refused.endswith('keeps running as it was.')
    failed = R.failed_start_message('svc', ['configure: listen_addresses'], ['FATAL:  could not create any TCP/IP sockets'],
                                    '/log', True, [])
    assert 'did not start with the new configuration' in failed and 'runs again with them' in failed
    assert failed.endswith('PostgreSQL said: FATAL:  could not create any TCP/IP sockets')
    down = R.failed_start_message('svc', [], [], '/log', False, ['FATAL:  x'])
    assert 'it is DOWN' in down and 'nothing in /log' in down and 'FATAL:  x' in down
