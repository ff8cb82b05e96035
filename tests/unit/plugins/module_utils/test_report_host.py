"""The host readers of the report on local files (no server, no KMS)."""
from __future__ import annotations

import os

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report_host as h


def test_file_state(tmp_path):
    path = tmp_path / 'client.key'
    path.write_text('x')
    os.chmod(path, 0o640)
    state = h.file_state(str(path))
    assert state['exists'] and state['mode'] == '0640' and state['owner']
    missing = h.file_state(str(tmp_path / 'nope'))
    assert missing['exists'] is False and missing['detail']
    os.chmod(tmp_path, 0o777)
    assert h.file_state(str(path))['directory_writable_by_others'] is True
    os.chmod(tmp_path, 0o1777)      # sticky, like /tmp: nobody replaces another user's file
    assert h.file_state(str(path))['directory_writable_by_others'] is False


def test_kms_check_unreachable_and_without_ca(tmp_path):
    closed = h.kms_check('kmip', {'host': '127.0.0.1', 'port': 1, 'caPath': str(tmp_path / 'ca.crt')}, 2)
    assert closed['reachable'] is False and closed['server_certificate_verified'] is False
    plain = h.kms_check('vault_v2', {'url': 'http://127.0.0.1:1'}, 2)
    assert 'plain HTTP' in plain['detail'] and plain['server_certificate_verified'] is False


def test_backup_state_without_configuration(tmp_path):
    state = h.backup_state('main', str(tmp_path / 'pgbackrest.conf'), 5)
    assert state['configured'] is False and state['error']


def test_swap_and_hardening_read_without_failing():
    state = h.hardening_state('/nonexistent')
    assert 'swaps' in state and 'plaintext_swaps' in state
    assert state['postmaster_core_limit'] is None and 'postmaster' in state['error']
