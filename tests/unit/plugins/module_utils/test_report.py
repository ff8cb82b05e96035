"""Decisions of the compliance report (_report): coverage, policy, key ages, KMS and file
checks, hardening, backups, the fleet summary and the gate. No server."""
from __future__ import annotations

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report as r
from tests.unit import report_samples as s

POLICY = r.effective_policy({})


def host(info=None, facts=None, policy=None, roles=None):
    return r.evaluate_host('db1', s.info() if info is None else info, s.facts() if facts is None else facts,
                           r.effective_policy(policy or {}), s.NOW, roles or {'hardening': True, 'backup': True})


def ids(report, severity=None):
    return sorted({f['id'] for f in report['findings'] if severity is None or f['severity'] == severity})


def test_compliant_host_passes():
    rep = host()
    assert rep['status'] == 'pass', rep['findings']
    assert ids(rep, 'violation') == [] and ids(rep, 'warning') == []
    assert rep['coverage']['percent_bytes'] == 100.0
    assert rep['coverage']['encrypted_count'] == 5 and rep['coverage']['unencrypted_count'] == 0
    appdb = next(d for d in rep['databases'] if d['name'] == 'appdb')
    assert appdb['kinds']['index']['encrypted'] == {'count': 2, 'bytes': 163840 + 8192}
    assert appdb['kinds']['materialized view']['encrypted']['count'] == 1
    assert appdb['not_encryptable'] == {'sequences': 2, 'pg_statistic': True}


def test_sequences_and_statistics_are_never_gaps():
    inf = s.info()
    inf['databases']['appdb']['not_encryptable'] = {'sequences': 50}
    rep = host(inf)
    assert rep['status'] == 'pass'
    assert 'sequences' in r.NOT_ENCRYPTABLE_NOTE and 'pg_statistic' in r.NOT_ENCRYPTABLE_NOTE


def test_unencrypted_relations_are_gaps_with_bytes_largest_first():
    inf = s.info()
    inf['databases']['appdb']['unencrypted'] = [
        {'name': 'public.small', 'kind': 'table', 'bytes': 8192},
        {'name': 'public.big', 'kind': 'table', 'bytes': 10 * 1024 * 1024},
        {'name': 'pg_toast.pg_toast_1', 'kind': 'toast', 'bytes': 0}]
    rep = host(inf)
    assert rep['status'] == 'fail'
    appdb = next(d for d in rep['databases'] if d['name'] == 'appdb')
    assert [g['name'] for g in appdb['gaps']] == ['public.big', 'public.small', 'pg_toast.pg_toast_1']
    assert appdb['totals']['unencrypted_count'] == 3
    assert appdb['totals']['unencrypted_bytes'] == 10 * 1024 * 1024 + 8192
    assert 0 < appdb['totals']['percent_bytes'] < 100
    gap = next(f for f in rep['findings'] if f['id'] == 'unencrypted_relations')
    assert gap['severity'] == 'violation' and 'public.big' in gap['message'] and 'appdb' in gap['message']
    # the policy can make gaps a warning
    assert next(f for f in host(inf, policy={'require_full_coverage': False})['findings']
                if f['id'] == 'unencrypted_relations')['severity'] == 'warning'


def test_gap_list_is_limited_but_counts_are_complete():
    inf = s.info()
    inf['databases']['appdb']['unencrypted'] = [{'name': 'public.t%d' % i, 'kind': 'table', 'bytes': i}
                                                for i in range(30)]
    rep = host(inf, policy={'gap_list_limit': 5})
    appdb = next(d for d in rep['databases'] if d['name'] == 'appdb')
    assert len(appdb['gaps']) == 5 and appdb['gaps_not_listed'] == 25
    assert appdb['totals']['unencrypted_count'] == 30


def test_database_without_relations_has_no_percentage():
    rep = host()
    pg = next(d for d in rep['databases'] if d['name'] == 'postgres')
    assert pg['totals']['percent_bytes'] is None


def test_wal_encryption_off_and_pending():
    inf = s.info(wal_encryption={'setting': 'off', 'pending_restart': True, 'server_key_set': True})
    rep = host(inf)
    assert 'wal_encryption_off' in ids(rep, 'violation')
    assert 'wal_encryption_pending_restart' in ids(rep, 'warning')
    assert 'wal_encryption_off' in ids(host(inf, policy={'require_wal_encryption': False}), 'info')


def test_enforcement_and_default_access_method():
    inf = s.info()
    inf['databases']['appdb'].update(enforce_encryption='off', default_table_access_method='heap')
    rep = host(inf)
    assert 'enforcement_off' in ids(rep, 'info') and 'default_access_method_not_tde_heap' in ids(rep, 'info')
    rep = host(inf, policy={'require_enforcement': True})
    assert 'enforcement_off' in ids(rep, 'violation')
    inf['databases']['appdb'].update(enforce_encryption='on')
    assert 'default_access_method_not_tde_heap' in ids(host(inf), 'warning')


def test_key_ages_against_the_policy():
    inf = s.info()
    inf['principal_keys']['server']['key_creation_time'] = s.days_ago(400)
    inf['principal_keys']['databases']['appdb']['key_creation_time'] = s.days_ago(350)
    rep = host(inf)
    by_target = {(k['target'], k['database']): k for k in rep['keys']}
    assert by_target[('server', None)]['status'] == 'violation'
    assert by_target[('server', None)]['age_days'] == 400.0
    assert by_target[('database', 'appdb')]['status'] == 'warning'
    assert by_target[('database', 'postgres')]['follows_default'] is True
    assert by_target[('server', None)]['provider_type'] == 'kmip'
    assert 'key_too_old' in ids(rep, 'violation') and 'key_age_near_limit' in ids(rep, 'warning')
    # a key seen twice (default and a database on it) is judged once
    inf = s.info()
    inf['principal_keys']['default']['key_creation_time'] = s.days_ago(500)
    inf['principal_keys']['databases']['postgres']['key_creation_time'] = s.days_ago(500)
    rep = host(inf)
    assert sum(1 for f in rep['findings'] if f['id'] == 'key_too_old') == 1
    assert not [f for f in host(inf, policy={'max_key_age_days': 1000})['findings'] if f['id'].startswith('key_')]


def test_unreadable_key_is_a_violation():
    inf = s.info()
    inf['principal_keys']['server'] = {'error': 'key "k" not found in key provider "kms"'}
    rep = host(inf)
    assert 'key_unreadable' in ids(rep, 'violation')
    assert next(k for k in rep['keys'] if k['target'] == 'server')['status'] == 'error'


def test_file_keyring_is_flagged_not_for_production():
    inf = s.info()
    inf['providers']['global'].append({'id': -2, 'name': 'labfile', 'type': 'file', 'scope': 'global',
                                       'options': {'path': '/var/lib/postgresql/keyring.per'}})
    fac = s.facts()
    fac['files']['/var/lib/postgresql/keyring.per'] = {'path': '/var/lib/postgresql/keyring.per', 'exists': True,
                                                       'owner': 'postgres', 'mode': '0600'}
    rep = host(inf, fac)
    prov = next(p for p in rep['providers'] if p['name'] == 'labfile')
    assert prov['production_ready'] is False and prov['in_use'] is False
    assert 'file_provider' in ids(rep, 'warning')
    inf['principal_keys']['server']['provider_id'] = -2
    inf['principal_keys']['server']['provider_name'] = 'labfile'
    rep = host(inf, fac)
    assert 'file_provider' in ids(rep, 'violation')
    assert 'file_provider' in ids(host(inf, fac, policy={'allow_file_provider': True}), 'warning')


def test_kms_unreachable_unverified_and_certificate_expiry():
    fac = s.facts()
    check = fac['kms'][r.kms_key(s.KMIP)]
    check.update(reachable=False, server_certificate_verified=False, detail='Cannot connect')
    assert 'kms_unreachable' in ids(host(facts=fac), 'violation')
    check.update(reachable=True, detail='does not chain to the CA')
    assert 'kms_certificate_unverified' in ids(host(facts=fac), 'violation')
    check.update(server_certificate_verified=True)
    check['client_certificate']['days_left'] = 10
    assert 'client_certificate_expiring' in ids(host(facts=fac), 'warning')
    check['client_certificate']['days_left'] = -1
    assert 'client_certificate_expired' in ids(host(facts=fac), 'violation')
    check['client_certificate']['days_left'] = 40
    assert not [f for f in host(facts=fac, policy={'cert_expiry_warning_days': 30})['findings']
                if f['id'].startswith('client_certificate')]
    assert 'client_certificate_expiring' in ids(host(facts=fac, policy={'cert_expiry_warning_days': 45}), 'warning')


@pytest.mark.parametrize('path,change,severity', [
    ('/etc/pg_tde/kmip-client.key', {'mode': '0644'}, 'violation'),
    ('/etc/pg_tde/kmip-client.key', {'mode': '0640'}, 'warning'),
    ('/etc/pg_tde/kmip-client.key', {'owner': 'www-data'}, 'violation'),
    ('/etc/pg_tde/kmip-client.crt', {'mode': '0666'}, 'violation'),
    ('/etc/pg_tde/kmip-ca.crt', {'exists': False}, 'violation'),
    ('/etc/pg_tde/kmip-ca.crt', {'directory_writable_by_others': True}, 'violation'),
])
def test_kms_file_owner_and_mode(path, change, severity):
    fac = s.facts()
    fac['files'][path].update(change)
    rep = host(facts=fac)
    assert any(f['id'].startswith('kms_file') and f['severity'] == severity and path in f['message']
               for f in rep['findings']), rep['findings']


def test_root_owned_certificate_is_fine():
    fac = s.facts()
    fac['files']['/etc/pg_tde/kmip-ca.crt'].update(owner='root')
    assert host(facts=fac)['status'] == 'pass'


def test_hardening_applies_only_where_the_role_is_used():
    fac = s.facts()
    fac['hardening'].update(postmaster_core_limit=['unlimited', 'unlimited'], core_pattern='core',
                            plaintext_swaps=['/swapfile'], swaps=['/swapfile'])
    rep = host(facts=fac)
    assert {'core_dumps_enabled', 'swap_plaintext'} <= set(ids(rep, 'violation'))
    rep = host(facts=fac, roles={'hardening': False, 'backup': True})
    assert {'core_dumps_enabled', 'swap_plaintext'} <= set(ids(rep, 'info'))
    assert rep['hardening']['applies'] is False
    assert 'core_dumps_enabled' in ids(host(facts=fac, roles={}, policy={'hardening': 'required'}), 'violation')
    assert 'core_dumps_enabled' in ids(host(facts=fac, policy={'hardening': 'reported'}), 'info')


def test_hardening_in_a_container_is_not_applicable():
    fac = s.facts()
    fac['hardening'].update(container=True, core_pattern='core', suid_dumpable='2',
                            plaintext_swaps=['/dev/vda2'], swaps=['/dev/vda2'])
    rep = host(facts=fac)
    assert rep['status'] == 'pass', rep['findings']
    assert rep['hardening']['core_dumps']['status'] == 'not_applicable'
    assert {'core_dumps_host_kernel', 'swap_host_kernel'} <= set(ids(rep, 'info'))
    fac['hardening']['postmaster_core_limit'] = ['unlimited', 'unlimited']
    assert 'core_dumps_enabled' in ids(host(facts=fac), 'violation')


def test_backup_age_missing_cipher_and_archiver():
    fac = s.facts()
    assert host(facts=fac)['backup']['last_backup']['age_hours'] == 10.0
    rep = host(facts=fac, policy={'backup_max_age_hours': 6})
    assert 'backup_too_old' in ids(rep, 'violation')
    fac['backup']['info']['backup'] = []
    fac['backup']['info']['status'] = {'code': 2, 'message': 'no valid backups'}
    rep = host(facts=fac)
    assert ids(rep, 'violation') == ['backup_missing']
    fac = s.facts()
    fac['backup']['info']['cipher'] = 'none'
    assert 'backup_repository_plaintext' in ids(host(facts=fac), 'violation')
    fac = s.facts()
    fac['backup']['archiver'].update(failed_count=3, last_failed_wal='000000010000000000000030',
                                     last_failed_time=s.days_ago(0.001), last_archived_time=s.days_ago(0.01))
    assert 'archive_failing' in ids(host(facts=fac), 'violation')
    fac['backup']['archiver'].update(last_failed_time=s.days_ago(1))
    rep = host(facts=fac)
    assert 'archive_failures_seen' in ids(rep, 'info') and rep['status'] == 'pass'


def test_backup_not_configured():
    fac = s.facts(backup={'stanza': 'main', 'configured': False, 'error': '/etc/pgbackrest/pgbackrest.conf does not exist',
                          'info': None, 'archiver': {}})
    assert 'backup_not_configured' in ids(host(facts=fac), 'violation')
    assert host(facts=fac, roles={'hardening': True, 'backup': False})['status'] == 'pass'


def test_pg_tde_not_loaded_and_no_report():
    inf = s.info(preloaded=False)
    assert 'pg_tde_not_loaded' in ids(host(inf), 'violation')
    rep = r.evaluate_host('db9', None, None, POLICY, s.NOW, error='connection refused')
    assert rep['status'] == 'error' and rep['findings'][0]['id'] == 'host_not_reported'


def test_policy_problems_name_the_setting():
    assert r.policy_problems({'max_key_age_days': 'x'}) == [
        "report_policy.max_key_age_days must be a number >= 0, not 'x'"]
    assert 'report_policy.hardening' in r.policy_problems({'hardening': 'maybe'})[0]
    assert 'report_policy.nope is not a policy setting' in r.policy_problems({'nope': 1})[0]
    assert r.policy_problems({'require_enforcement': 'yes'}) == []
    assert r.effective_policy({'require_enforcement': 'yes', 'max_key_age_days': '90'})['max_key_age_days'] == 90


def test_parse_time_forms():
    assert r.parse_time('2026-12-06 12:00:00+00') == s.NOW
    assert r.parse_time('2026-12-06T12:00:00Z') == s.NOW
    assert r.parse_time(int(s.NOW.timestamp())) == s.NOW
    assert r.parse_time('garbage') is None and r.parse_time(None) is None
    assert r.age_days(s.days_ago(1.25), s.NOW) == 1.2


def test_fleet_summary_and_gate():
    good = host()
    inf = s.info(wal_encryption={'setting': 'off', 'pending_restart': False, 'server_key_set': False})
    bad = r.evaluate_host('db2', inf, s.facts(), POLICY, s.NOW, {'hardening': True, 'backup': True})
    gone = r.evaluate_host('db3', None, None, POLICY, s.NOW, error='unreachable')
    doc = r.fleet_report([bad, gone, good], POLICY, s.NOW)
    assert doc['schema_version'] == r.SCHEMA_VERSION and doc['generated_at'] == '2026-12-06T12:00:00Z'
    assert [h['host'] for h in doc['hosts']] == ['db1', 'db2', 'db3']
    summ = doc['summary']
    assert summ['status'] == 'error' and summ['hosts'] == 3
    assert summ['hosts_by_status'] == {'pass': 1, 'warn': 0, 'fail': 1, 'error': 1}
    assert summ['wal_encryption_on'] == 1 and summ['wal_encryption_off'] == 1
    assert summ['oldest_key_days'] == 100.0
    assert summ['findings_by_id']['wal_encryption_off'] == 1
    assert r.gate(doc, 'none') == []
    lines = r.gate(doc, 'violation')
    assert any(line.startswith('db2: [wal_encryption_off]') for line in lines)
    assert any(line.startswith('db3: [host_not_reported]') for line in lines)
    assert len(r.gate(doc, 'warning')) >= len(lines)
