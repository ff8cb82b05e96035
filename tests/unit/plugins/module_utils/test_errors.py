"""Unit tests of module_utils/_errors.py: PostgreSQL's words of an error and what pg_tde's
texts mean (no server)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _errors as t


@pytest.mark.parametrize('text,word', [
    ('SSL error: BIO_do_connect failed (SQLSTATE XX000)', 'three causes'),
    ('SSL error: Loading the client certificate failed', 'kmip_cert'),
    ('SSL error: Loading the client key failed', 'does not match'),
    ('SSL error: Loading the CA certificate failed', 'kmip_ca'),
    ('cannot delete provider which is currently in use', 'Rotate'),
    ('key "k" used by database "app" not found in modified key provider "p"', 'fetchable'),
    ('key provider "x" does not exists', 'pg_tde_provider'),
    ('key "k" does not exist HINT: Use pg_tde_create_key_using_global_key_provider() to create it.', 'create'),
    ('key "k" not found in key provider "p"', 'unreachable'),
    ('principal key not configured for current database', 'pg_tde_key'),
    ('principal key not configured', 'wal_encrypt'),
    ('principal key not configured (SQLSTATE XX000) HINT: Use pg_tde_set_key_using_database_key_provider() '
     'or pg_tde_set_key_using_global_key_provider() to configure one.', 'targets: [database]'),
    ('pg_tde.enforce_encryption is ON, only the tde_heap access method is allowed.', 'default_table_access_method'),
    ('Failed to open keyring file /root/nope/keyring.per: Permission denied', 'file_path'),
    ('Invalid provider type.', 'vault-v2'),
    ('cannot create key "k" because it already exists', 'rotation'),
    ('default principal key is not set', 'absent'),
    ('cannot delete default principal key (SQLSTATE 55006) HINT: There are encrypted tables in the database '
     'with id: 16384.', 'new default key'),
    ('cannot delete principal key DETAIL: There are encrypted tables in the database.', 'fall back'),
    ('HTTP(S) request to keyring provider "v" failed', 'vault_url'),
    ('Key provider "x" already exists.', 'already exists'),
])
def test_explanations(text, word):
    assert word in t.explain_tde_error(text)
    msg = t.tde_failure_message('Adding', text)
    assert text.rstrip('.') in msg and word in msg


def test_no_explanation_for_unknown_text():
    assert t.explain_tde_error('something else') is None
    assert t.tde_failure_message('X', 'boom') == 'X failed: boom.'


def test_already_exists_text():
    assert t.is_key_already_exists('cannot create key "k1" because it already exists (SQLSTATE 22023)')
    assert not t.is_key_already_exists('key "k1" does not exist')


def test_other_database_in_change_error():
    text = 'key "ka" used by database "a" not found in modified key provider "pb" (SQLSTATE XX000)'
    assert t.other_database_in_change_error(text, 'b') == ('ka', 'a')
    assert t.other_database_in_change_error(text, 'a') is None
    assert t.other_database_in_change_error('key "gk" used as server key not found in modified key '
                                            'provider "g"', 'b') is None
    assert t.other_database_in_change_error(None, 'b') is None


def test_pg_error_text_has_sqlstate_and_hint():
    diag = SimpleNamespace(message_primary='key "k" does not exist', sqlstate='22023',
                           message_detail=None,
                           message_hint='Use pg_tde_create_key_using_global_key_provider() to create it.')
    exc = Exception('x')
    exc.diag = diag  # type: ignore[attr-defined]
    text = t.pg_error_text(exc)
    assert text.startswith('key "k" does not exist (SQLSTATE 22023)')
    assert 'HINT: Use pg_tde_create_key_using_global_key_provider()' in text
    assert t.sqlstate(exc) == '22023'


def test_pg_error_text_without_diag():
    assert t.pg_error_text(ValueError(' boom ')) == 'boom'
    assert t.sqlstate(ValueError('boom')) is None


@pytest.mark.parametrize('text', [
    'vault mount at "kv1" has unsupported Key/Value engine version "1"',
    'vault mount at "gen1" has unsupported engine type "generic"',
    'failed to parse mount info for "https://127.0.0.1:8200" at mountpoint "kvnov": missing version field',
    'The FILE_COPY strategy cannot be used when there are encrypted objects in the template database: '
    '1 object found',
])
def test_texts_observed_on_pg_tde_2_2_are_explained(text):
    assert t.explain_tde_error(text)


def test_text_constants_match_themselves_with_names_filled_in():
    assert t.text_pattern(t.VAULT_REQUEST_FAILED).search(t.VAULT_REQUEST_FAILED % 'v')
    assert t.text_pattern(t.KEY_NOT_FOUND).search('ERROR:  ' + t.KEY_NOT_FOUND % ('k', 'p'))
    assert not t.text_pattern(t.KMIP_CONNECT_FAILED).search('SSL error: other')


def test_permission_errors_of_pg_tde_and_settings_are_explained():
    from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import explain_tde_error as explain
    assert 'superuser' in explain('permission denied for function pg_tde_list_all_global_key_providers')
    assert 'pg_read_all_settings' in explain('permission denied to examine "shared_preload_libraries"')
