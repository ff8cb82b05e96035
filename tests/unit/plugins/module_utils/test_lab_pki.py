"""Unit tests of lab_pki_check's decision (module_utils/_lab_pki.py): fresh only when the lab PKI
is exactly what lab_kms's community.crypto tasks would leave; every difference is named."""
from __future__ import annotations

import os

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _lab_pki as p
from tests.support.lab_pki import CERTS, NOW, SANS, issue, make_pki, rsa_key, write


@pytest.fixture
def pki(tmp_path):
    return make_pki(str(tmp_path / 'pki'))


def problems(d, certs=None, key_size=2048, renew=30):
    return p.pki_problems(d, certs or CERTS, key_size, renew, now=NOW)


def test_fresh_pki_has_no_problems(pki):
    assert problems(pki[0]) == []


def test_names_in_another_order_or_a_new_address_are_a_new_request(pki):
    certs = [dict(c) for c in CERTS]
    certs[2]['sans'] = SANS[::-1]
    assert any('subject alternative names' in x for x in problems(pki[0], certs))
    certs[2]['sans'] = SANS[:2] + ['IP:10.0.0.3', 'IP:127.0.0.1']
    assert any('subject alternative names' in x for x in problems(pki[0], certs))


def test_expiry_within_the_renewal_margin(pki):
    assert problems(pki[0], renew=364) == []
    found = problems(pki[0], renew=366)
    assert len(found) == 3 and all('renewal margin of 366 days' in x for x in found)


def test_key_size_mode_and_directory_mode(pki):
    d = pki[0]
    assert any('not an RSA key of 4096 bits' in x for x in problems(d, key_size=4096))
    os.chmod(os.path.join(d, 'pg_tde.key'), 0o640)
    os.chmod(d, 0o755)
    found = problems(d)
    assert any('pg_tde.key has mode 0640, not 0600' in x for x in found)
    assert any('has mode 0755, not 0700' in x for x in found)


def test_a_certificate_for_another_key_or_from_another_ca(pki):
    d, ca_key, ca = pki
    other = rsa_key(index=3)
    write(d, 'pg_tde', rsa_key(index=1), issue('pg_tde', 'client', other, ca_key, ca))
    assert any('is not for the key' in x for x in problems(d))
    rogue = issue('lab CA', 'ca', other)            # same name, other key
    write(d, 'pg_tde', rsa_key(index=1), issue('pg_tde', 'client', rsa_key(index=1), other, rogue))
    assert problems(d) == ['pg_tde: not signed by the lab CA']


def test_request_fields(pki):
    d, ca_key, ca = pki
    write(d, 'pg_tde', rsa_key(index=1), issue('pg_tde', 'server', rsa_key(index=1), ca_key, ca))
    assert problems(d) == ['pg_tde: extended key usage differs from the request']
    write(d, 'pg_tde', rsa_key(index=1), issue('pg-tde', 'client', rsa_key(index=1), ca_key, ca, sans=['DNS:pg_tde']))
    assert problems(d) == ['pg_tde: subject is CN=pg-tde, not CN=pg_tde']
    write(d, 'pg_tde', rsa_key(index=1), issue('pg_tde', 'client', rsa_key(index=1), ca_key, ca,
                                               key_usage={'digital_signature'}))
    assert problems(d) == ['pg_tde: key usage is not digital_signature, key_encipherment (critical)']
    write(d, 'pg_tde', rsa_key(index=1), issue('pg_tde', 'client', rsa_key(index=1), ca_key, ca, extra=True))
    assert problems(d) == ['pg_tde: extensions the request does not have: 1.3.6.1.5.5.7.48.1.5']


def test_missing_files_and_directory(pki, tmp_path):
    d = pki[0]
    os.remove(os.path.join(d, 'server-kms1.crt'))
    assert problems(d) == ['%s/server-kms1.crt: missing' % d]
    assert problems(str(tmp_path / 'none')) == ['%s: missing' % (tmp_path / 'none')]
    os.remove(os.path.join(d, 'ca.key'))
    found = problems(d)
    assert '%s/ca.key: missing' % d in found
    assert 'pg_tde: not signed by the lab CA' in found      # without the CA nothing counts as signed
