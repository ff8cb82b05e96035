"""kms_preflight against a real PyKMIP server (TLS 1.2, client auth) and a real OpenBao dev
server: the good case, and each bad certificate with its own error; nothing is ever changed.
The same bad material given to the real pg_tde shows what pg_tde itself would say (or accept)."""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import explain_tde_error
from tests.support.ansible_runner import run_module


def digest(paths: list[str]) -> dict[str, str]:
    out = {}
    for path in paths:
        with open(path, 'rb') as fh:
            out[path] = hashlib.sha256(fh.read()).hexdigest() + oct(os.stat(path).st_mode)
    return out


def kmip_args(server, cert: str, key: str, ca: str | None = None) -> dict:
    return dict(type='kmip', kmip_host=server.host, kmip_port=server.port, kmip_cert=cert, kmip_key=key,
                kmip_ca=ca or server.ca, timeout=5)


def failed_checks(result: dict) -> list[str]:
    return [c['name'] for c in result['checks'] if c['result'] == 'failed']


def test_good_material_passes(kmip_server, kmip_client_files) -> None:
    c = kmip_client_files
    r = run_module('kms_preflight', dict(kmip_args(kmip_server, c.cert, c.key), readable_by='postgres'))
    assert not r.get('failed'), r.get('msg')
    assert r['changed'] is False
    names = {ch['name']: ch['result'] for ch in r['checks']}
    for check in ('ca_file', 'client_certificate', 'client_key', 'client_key_match', 'client_eku',
                  'client_expiry', 'server_chain', 'server_name', 'server_expiry', 'tls_handshake'):
        assert names[check] == 'ok', (check, r['checks'])
    assert r['certificates']['client']['subject'] == 'CN=postgres-test'
    assert r['certificates']['client']['fingerprint_sha256'].replace(':', '') == c.fingerprint_sha256
    assert set(r['certificates']) == {'ca', 'client', 'server'}
    assert r['tls']['protocol'] == 'TLSv1.2'
    assert 'PRIVATE KEY' not in r['_stdout']


CASES = ['expired', 'wrong_ca', 'no_client_auth', 'key_mismatch', 'missing_file', 'unreadable_for_postgres',
         'server_name', 'untrusted_client']


def bad_material(case, kmip_server, kmip_client_files, pki, tmp_path) -> tuple[dict, str | None]:
    """kms_preflight arguments with the bad material of `case`, and the path the message must name."""
    c = kmip_client_files
    args = kmip_args(kmip_server, c.cert, c.key)
    mention = None
    ca_issued = kmip_server.ca_issued
    if case == 'expired':
        bad = pki.expired('pf-expired', 'postgres-test', ca=ca_issued)
        args.update(kmip_cert=bad.cert, kmip_key=bad.key)
        mention = bad.cert
    elif case == 'wrong_ca':
        args.update(kmip_ca=pki.other_ca.cert)
        mention = pki.other_ca.cert
    elif case == 'no_client_auth':
        bad = pki.without_client_auth('pf-noeku', 'postgres-test', ca=ca_issued)
        args.update(kmip_cert=bad.cert, kmip_key=bad.key)
        mention = bad.cert
    elif case == 'key_mismatch':
        bad = pki.mismatched_key(c)
        args.update(kmip_key=bad.key)
        mention = bad.key
    elif case == 'missing_file':
        args.update(kmip_cert=str(tmp_path / 'client.crt'))
        mention = args['kmip_cert']
    elif case == 'unreadable_for_postgres':
        key = tmp_path / 'client.key'
        shutil.copyfile(c.key, key)
        os.chmod(key, 0o600)
        os.chmod(tmp_path, 0o755)
        args.update(kmip_key=str(key), readable_by='postgres')
        mention = str(key)
    elif case == 'server_name':
        args.update(server_name='kms.example.com')
    elif case == 'untrusted_client':
        bad = pki.foreign('pf-foreign', 'postgres-test')
        args.update(kmip_cert=bad.cert, kmip_key=bad.key)
    return args, mention


@pytest.mark.parametrize('case', CASES)
def test_bad_material_has_its_own_error(case, kmip_server, kmip_client_files, pki, tmp_path) -> None:
    expect_check, expect_text = {
        'expired': ('client_expiry', 'the client certificate expired on'),
        'wrong_ca': ('server_chain', 'does not chain to the CA in'),
        'no_client_auth': ('client_eku', 'without clientAuth'),
        'key_mismatch': ('client_key_match', 'the client key does not belong to the client certificate'),
        'missing_file': ('client_certificate', 'the client certificate file does not exist'),
        'unreadable_for_postgres': ('file_access', 'cannot read'),
        'server_name': ('server_name', 'does not match the host name "kms.example.com"'),
        'untrusted_client': ('client_rejected', 'does not accept the client certificate'),
    }[case]
    args, mention = bad_material(case, kmip_server, kmip_client_files, pki, tmp_path)
    watched = [p for p in (args['kmip_cert'], args['kmip_key'], args['kmip_ca']) if os.path.exists(p)]
    before = digest(watched)
    r = run_module('kms_preflight', args)
    assert r.get('failed'), r
    assert r['changed'] is False
    assert expect_check in failed_checks(r), r['checks']
    assert expect_text in r['msg'], r['msg']
    if mention:
        assert mention in r['msg']
    assert digest(watched) == before
    if case in ('no_client_auth', 'key_mismatch', 'missing_file', 'expired', 'unreadable_for_postgres'):
        # File problems are found without relying on the server's reaction.
        assert [ch for ch in failed_checks(r) if ch == 'tls_handshake'] == []


# What the real pg_tde itself does with the same material when a KMIP provider is added: where it
# fails, kms_preflight said it first and clearer; where it accepts (it does not verify the server
# certificate or its name), kms_preflight is the only check.
PG_TDE_SAYS = {
    'expired': 'SSL error: BIO_do_connect failed',
    'wrong_ca': None,
    'no_client_auth': 'SSL error: BIO_do_connect failed',
    'key_mismatch': 'SSL error: Loading the client key failed',
    'missing_file': 'SSL error: Loading the client certificate failed',
    'unreadable_for_postgres': 'SSL error: Loading the client key failed',
    'server_name': None,
    'untrusted_client': 'SSL error: BIO_do_connect failed',
}


@pytest.mark.parametrize('case', CASES)
def test_real_pg_tde_on_the_same_material(case, pg, kmip_server, kmip_client_files, pki, tmp_path) -> None:
    args, _mention = bad_material(case, kmip_server, kmip_client_files, pki, tmp_path)
    name = 'pf_%s_%s' % (case, os.urandom(4).hex())
    proc = pg.psql_result("SELECT pg_tde_add_global_key_provider_kmip('%s', '%s', %d, '%s', '%s', '%s')" % (
        name, args['kmip_host'], args['kmip_port'], args['kmip_cert'], args['kmip_key'], args['kmip_ca']))
    expected = PG_TDE_SAYS[case]
    if expected is None:
        assert proc.returncode == 0, 'pg_tde accepts this material itself: %s' % proc.stderr
        pg.psql("SELECT pg_tde_delete_global_key_provider('%s')" % name)
    else:
        assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
        assert explain_tde_error(expected) is not None


def test_expiry_warning(kmip_server, pki) -> None:
    soon = pki.issue('pf-soon', 'postgres-test', ca=kmip_server.ca_issued, days=5)
    r = run_module('kms_preflight', dict(kmip_args(kmip_server, soon.cert, soon.key), expiry_warning_days=30))
    assert not r.get('failed'), r.get('msg')
    assert r['warnings_count'] == 1
    assert any(ch['name'] == 'client_expiry' and ch['result'] == 'warning' for ch in r['checks'])
    assert any('expires on' in w for w in r.get('warnings', []))


def test_compare_to_shows_metadata_diff(kmip_server, kmip_client_files, pki) -> None:
    c = kmip_client_files
    renewed = pki.issue('pf-renewed', 'postgres-test', ca=kmip_server.ca_issued, days=400)
    args = dict(kmip_args(kmip_server, renewed.cert, renewed.key),
                compare_to={'kmip_cert': c.cert, 'kmip_key': c.key, 'kmip_ca': kmip_server.ca})
    r = run_module('kms_preflight', args, diff=True)
    assert not r.get('failed'), r.get('msg')
    assert r['differences'] == ['kmip_cert', 'kmip_key']
    before, after = r['diff']['before'], r['diff']['after']
    assert before['kmip_cert']['fingerprint_sha256'].replace(':', '') == c.fingerprint_sha256
    assert after['kmip_cert']['fingerprint_sha256'].replace(':', '') == renewed.fingerprint_sha256
    assert after['kmip_cert']['path'] == c.cert and 'not_after' in after['kmip_cert']
    assert after['kmip_key']['public_key_fingerprint_sha256'] != before['kmip_key']['public_key_fingerprint_sha256']
    assert 'PRIVATE KEY' not in r['_stdout']


def test_vault(openbao, tmp_path) -> None:
    args = dict(type='vault_v2', vault_url=openbao.url, vault_ca_path=openbao.ca,
                vault_token_path=openbao.token_path, vault_mount_path='secret', vault_check_token=True)
    r = run_module('kms_preflight', args)
    assert not r.get('failed'), r.get('msg')
    names = {ch['name']: ch['result'] for ch in r['checks']}
    assert names['token_file'] == 'ok' and names['tls_handshake'] == 'ok' and names['vault_mount'] == 'ok'
    assert openbao.token not in r['_stdout']

    empty = tmp_path / 'empty-token'
    empty.write_text('\n')
    r = run_module('kms_preflight', dict(args, vault_token_path=str(empty)))
    assert r['failed'] and str(empty) in r['msg'] and 'empty' in r['msg']

    wrong = tmp_path / 'wrong-token'
    wrong.write_text('not-a-token\n')
    r = run_module('kms_preflight', dict(args, vault_token_path=str(wrong)))
    assert r['failed'] and 'vault_mount' in failed_checks(r) and 'not-a-token' not in r['_stdout']
    assert str(wrong) in r['msg']

    root = tmp_path / 'root-token'
    root.write_text(openbao.root_token + '\n')
    r = run_module('kms_preflight', dict(args, vault_mount_path='kv1', vault_token_path=str(root)))
    assert r['failed'] and 'KV version 2' in r['msg']

    # the same rule as pg_tde_provider: a generic mount is always KV version 1
    generic = 'gen' + os.urandom(4).hex()
    openbao.api('POST', 'sys/mounts/%s' % generic, {'type': 'generic'})
    r = run_module('kms_preflight', dict(args, vault_mount_path=generic, vault_token_path=str(root)))
    assert r['failed'] and 'always KV version 1' in r['msg'] and 'vault_mount' in failed_checks(r)

    # text after the token: pg_tde ignores it, the check warns
    extra = tmp_path / 'extra-token'
    extra.write_text(openbao.token + ' comment\n')
    r = run_module('kms_preflight', dict(args, vault_token_path=str(extra)))
    assert not r.get('failed'), r.get('msg')
    assert {ch['name']: ch['result'] for ch in r['checks']}['token_file'] == 'warning'
