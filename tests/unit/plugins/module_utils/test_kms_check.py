"""Unit tests of _kms_check: one id per KMS check, and which providers still need one."""
from __future__ import annotations

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _kms_check as K
from ansible_collections.tdeops.pg_tde.plugins.filter.kms import kms_unchecked

KMIP = {'name': 'kms', 'type': 'kmip', 'kmip_host': 'kms.lab', 'kmip_port': 5696,
        'kmip_ca': '/etc/t/ca.crt', 'kmip_cert': '/etc/t/c.crt', 'kmip_key': '/etc/t/c.key'}
VAULT = {'name': 'vault', 'type': 'vault_v2', 'vault_url': 'https://v:8200', 'vault_token_path': '/etc/t/token',
         'vault_mount_path': 'tde'}


def test_the_module_parameters_and_the_provider_give_the_same_id():
    # kms_preflight's params carry every option (None when unset); a provider only those it sets.
    params = dict.fromkeys(['vault_url', 'vault_ca_path', 'vault_token_path', 'vault_mount_path', 'vault_namespace'])
    params.update({k: v for k, v in KMIP.items() if k != 'name'}, kmip_port='5696')
    assert K.check_id(params, 'postgres') == K.check_id(KMIP, 'postgres')
    assert K.check_id(dict(KMIP, kmip_port=None), 'postgres') == K.check_id(KMIP, 'postgres')   # the default port


def test_another_file_endpoint_or_reader_is_another_check():
    base = K.check_id(KMIP, 'postgres')
    assert K.check_id(dict(KMIP, kmip_cert='/etc/t/other.crt'), 'postgres') != base
    assert K.check_id(dict(KMIP, kmip_host='kms2.lab'), 'postgres') != base
    assert K.check_id(KMIP, 'pgadmin') != base
    assert K.check_id(VAULT, 'postgres') != K.check_id(dict(VAULT, vault_mount_path='kv'), 'postgres')


def test_only_successful_results_count():
    ok = {'check_id': K.check_id(KMIP, 'postgres'), 'changed': False}
    providers = [KMIP, VAULT]
    assert K.unchecked(providers, [ok], 'postgres') == [VAULT]
    assert K.unchecked(providers, [dict(ok, failed=True)], 'postgres') == providers
    assert K.unchecked(providers, [dict(ok, skipped=True)], 'postgres') == providers
    assert K.unchecked(providers, [{}, {'skipped': True}], 'postgres') == providers
    assert K.unchecked(providers, [ok], 'pgadmin') == providers
    assert kms_unchecked(providers, [ok], 'postgres') == [VAULT]
    assert kms_unchecked(None, None) == []
