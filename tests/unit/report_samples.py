"""Synthetic inputs of the compliance report (what pg_tde_info and _report_host return), shared by
the unit tests of the report's decisions, its renderings and its JSON schema."""
from __future__ import annotations

import copy
import datetime as dt

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)


def days_ago(days: float) -> str:
    return (NOW - dt.timedelta(days=days)).isoformat()


KMIP = {'id': -1, 'name': 'kms', 'type': 'kmip', 'scope': 'global',
        'options': {'host': 'kms.example.com', 'port': 5696, 'certPath': '/etc/pg_tde/kmip-client.crt',
                    'keyPath': '/etc/pg_tde/kmip-client.key', 'caPath': '/etc/pg_tde/kmip-ca.crt'}}


def info(**over) -> dict:
    """pg_tde_info's pg_tde of a compliant server: WAL encryption on, everything encrypted."""
    base = {
        'version': '2.2.0', 'version_text': 'pg_tde 2.2.0', 'preloaded': True,
        'shared_preload_libraries': ['pg_tde'],
        'wal_encryption': {'setting': 'on', 'pending_restart': False, 'server_key_set': True},
        'providers': {'global': [copy.deepcopy(KMIP)], 'databases': {'appdb': [], 'postgres': []}},
        'principal_keys': {
            'server': {'key_name': 'db1-wal', 'provider_name': 'kms', 'provider_id': -1, 'provider_scope': 'global',
                       'key_creation_time': days_ago(40)},
            'default': {'key_name': 'db1-default', 'provider_name': 'kms', 'provider_id': -1,
                        'provider_scope': 'global', 'key_creation_time': days_ago(40)},
            'databases': {
                'appdb': {'key_name': 'db1-appdb', 'provider_name': 'kms', 'provider_id': -1,
                          'provider_scope': 'global', 'key_creation_time': days_ago(100), 'same_as_default': False},
                'postgres': {'key_name': 'db1-default', 'provider_name': 'kms', 'provider_id': -1,
                             'provider_scope': 'global', 'key_creation_time': days_ago(40), 'same_as_default': True},
            }},
        'databases': {
            'appdb': {'extension': True, 'extension_version': '2.2', 'default_table_access_method': 'tde_heap',
                      'enforce_encryption': 'on',
                      'encrypted': [{'name': 'public.orders', 'kind': 'table', 'bytes': 819200},
                                    {'name': 'public.orders_pkey', 'kind': 'index', 'bytes': 163840},
                                    {'name': 'pg_toast.pg_toast_16400', 'kind': 'toast', 'bytes': 8192},
                                    {'name': 'pg_toast.pg_toast_16400_index', 'kind': 'index', 'bytes': 8192},
                                    {'name': 'public.totals', 'kind': 'materialized view', 'bytes': 16384}],
                      'unencrypted': [], 'not_encryptable': {'sequences': 2}},
            'postgres': {'extension': True, 'extension_version': '2.2', 'default_table_access_method': 'tde_heap',
                         'enforce_encryption': 'on', 'encrypted': [], 'unencrypted': [],
                         'not_encryptable': {'sequences': 0}},
        },
    }
    base.update(over)
    return base


def facts(**over) -> dict:
    """_report_host's reading of a compliant host."""
    from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report
    base = {
        'data_directory': '/var/lib/postgresql/17/main', 'server_version': '17.2', 'os_user': 'postgres',
        'files': {
            '/etc/pg_tde/kmip-client.crt': {'path': '/etc/pg_tde/kmip-client.crt', 'exists': True, 'owner': 'postgres',
                                            'group': 'postgres', 'mode': '0644', 'directory_writable_by_others': False},
            '/etc/pg_tde/kmip-client.key': {'path': '/etc/pg_tde/kmip-client.key', 'exists': True, 'owner': 'postgres',
                                            'group': 'postgres', 'mode': '0600', 'directory_writable_by_others': False},
            '/etc/pg_tde/kmip-ca.crt': {'path': '/etc/pg_tde/kmip-ca.crt', 'exists': True, 'owner': 'postgres',
                                        'group': 'postgres', 'mode': '0644', 'directory_writable_by_others': False},
        },
        'kms': {_report.kms_key(KMIP): {
            'type': 'kmip', 'address': 'kms.example.com:5696', 'reachable': True, 'server_certificate_verified': True,
            'tls': 'TLSv1.2 ECDHE-RSA-AES256-SHA384', 'detail': 'verified',
            'server_certificate': {'subject': 'CN=kms', 'issuer': 'CN=ca', 'not_after': '2027-12-01T00:00:00Z',
                                   'days_left': 360},
            'client_certificate': {'path': '/etc/pg_tde/kmip-client.crt', 'subject': 'CN=pg_tde', 'issuer': 'CN=ca',
                                   'not_after': '2027-12-01T00:00:00Z', 'days_left': 360,
                                   'fingerprint_sha256': 'aa'}}},
        'hardening': {'container': False, 'core_pattern': '|/bin/false', 'suid_dumpable': '0',
                      'postmaster_core_limit': ['0', '0'], 'swaps': [], 'plaintext_swaps': []},
        'backup': {'stanza': 'main', 'configured': True, 'error': None,
                   'info': {'status': {'code': 0, 'message': 'ok'}, 'cipher': 'aes-256-cbc',
                            'backup': [{'label': '20261205-010000F', 'type': 'full',
                                        'timestamp': {'start': int((NOW - dt.timedelta(hours=11)).timestamp()),
                                                      'stop': int((NOW - dt.timedelta(hours=10)).timestamp())},
                                        'error': False}]},
                   'archiver': {'archived_count': 40, 'failed_count': 0, 'last_archived_wal': '00000001000000000000002A',
                                'last_archived_time': days_ago(0.01), 'last_failed_wal': None,
                                'last_failed_time': None, 'archive_mode': 'on'}},
    }
    base.update(over)
    return base
