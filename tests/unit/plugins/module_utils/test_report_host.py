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
    state = h.backup_state(None, 'main', str(tmp_path / 'pgbackrest.conf'))
    assert state['configured'] is False and state['error']


def test_swap_and_hardening_read_without_failing():
    state = h.hardening_state('/nonexistent')
    assert 'swaps' in state and 'plaintext_swaps' in state
    assert state['postmaster_core_limit'] is None and 'postmaster' in state['error']


def test_backup_state_reads_pgbackrest_json(tmp_path, monkeypatch):
    conf = tmp_path / 'pgbackrest.conf'
    conf.write_text('[global]\n')
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    exe = bindir / 'pgbackrest'
    exe.write_text('#!/bin/sh\n')
    exe.chmod(0o755)
    monkeypatch.setenv('PATH', str(bindir))
    answer = ('[{"name": "main", "status": {"code": 0, "message": "ok"}, "cipher": "aes-256-cbc", "backup": '
              '[{"label": "F1", "type": "full", "timestamp": {"start": 1, "stop": 2}, "error": false}]}]')
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, answer, ''
    state = h.backup_state(run, 'main', str(conf))
    assert calls[0][1:] == ['--config=%s' % conf, '--stanza=main', '--output=json', 'info']
    assert state['configured'] and state['error'] is None
    assert state['info']['backup'][0]['label'] == 'F1' and state['info']['cipher'] == 'aes-256-cbc'
    state = h.backup_state(lambda argv: (1, '', 'ERROR: [055]: unable to load info file'), 'main', str(conf))
    assert state['error'] == 'ERROR: [055]: unable to load info file'
    assert h.backup_state(run, 'other', str(conf))['error'] == 'stanza other not in pgbackrest info'
