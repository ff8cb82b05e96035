"""Unit tests of module_utils/_vault.py: the token file as pg_tde reads it and the KV version 2
mount rule (no server; tests/integration runs them against the real OpenBao and pg_tde)."""
from __future__ import annotations

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _vault as t


def test_kv_mount_problem():
    assert t.kv_mount_problem('secret', {'type': 'kv', 'options': {'version': '2'}}) is None
    assert t.kv_mount_problem('secret', {'data': {'type': 'kv', 'options': {'version': '2'}}}) is None
    assert 'KV version 1' in t.kv_mount_problem('kv', {'type': 'kv', 'options': {'version': '1'}})
    assert 'KV version 1' in t.kv_mount_problem('kv', {'type': 'kv', 'options': None})
    assert 'transit' in t.kv_mount_problem('t', {'type': 'transit'})
    # one rule: type kv with version 2; a generic mount is always KV version 1 (OpenBao 2.7.2)
    assert 'always KV version 1' in t.kv_mount_problem('g', {'type': 'generic', 'options': {}})
    assert 'unsupported engine type "generic"' in t.kv_mount_problem('g', {'data': {'type': 'generic'}})
    assert 'version "1"' in t.kv_mount_problem('kv', {'type': 'kv', 'options': {}})
    assert t.kv_mount_problem('s', {'type': 'kv', 'options': {'version': 2}}) is None


@pytest.mark.parametrize('text,token,ignored', [
    # observed with pg_tde 2.2.0: the token runs from the start up to the first blank
    ('tok\n', 'tok', False), ('tok', 'tok', False), ('tok\r\n', 'tok', False),
    ('tok   \n', 'tok', False), ('tok extra\n', 'tok', True), ('tok\nline 2\n', 'tok', True),
    ('tok\tx\n', 'tok', True), ('\ntok\n', '', True), ('  tok\n', '', True), ('', '', False),
])
def test_token_from_text(text, token, ignored):
    assert t.token_from_text(text) == (token, ignored)


def test_read_token_file(tmp_path):
    good = tmp_path / 'token'
    good.write_text('s.abc\n')
    assert t.read_token_file(str(good)) == ('s.abc', False)
    for content in ('\n', '', ' s.abc\n'):
        good.write_text(content)
        with pytest.raises(t.VaultCheckError) as err:
            t.read_token_file(str(good))
        assert err.value.check == 'token_file' and 'empty' in str(err.value) and str(good) in str(err.value)
    with pytest.raises(t.VaultCheckError, match='vault_token_path /nonexistent/token does not exist'):
        t.read_token_file('/nonexistent/token')
    with pytest.raises(t.VaultCheckError, match='is a directory'):
        t.read_token_file(str(tmp_path))
    with pytest.raises(t.VaultCheckError, match='vault_token_path is not set'):
        t.read_token_file(None)
