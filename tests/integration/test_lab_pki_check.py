"""lab_pki_check through real ansible on the controller's file system: a fresh lab PKI, one that
needs a certificate issued again, and a bad list of certificates (no PostgreSQL needed)."""
from __future__ import annotations

import os

from tests.support.ansible_runner import run_module
from tests.support.lab_pki import CERTS, make_pki


def test_fresh_then_a_missing_certificate(tmp_path):
    d = make_pki(str(tmp_path / 'pki'))[0]
    res = run_module('lab_pki_check', {'pki_dir': d, 'certs': CERTS}, check=True)
    assert not res.get('failed'), res
    assert res['fresh'] is True and res['problems'] == [] and res['changed'] is False
    os.remove(os.path.join(d, 'server-kms1.crt'))
    res = run_module('lab_pki_check', {'pki_dir': d, 'certs': CERTS})
    assert res['fresh'] is False and res['problems'] == ['%s/server-kms1.crt: missing' % d]
    # nothing of a key is printed
    assert 'PRIVATE KEY' not in res['_stdout']


def test_exactly_one_ca(tmp_path):
    d = make_pki(str(tmp_path / 'pki'))[0]
    res = run_module('lab_pki_check', {'pki_dir': d, 'certs': CERTS[1:]})
    assert res.get('failed') and 'exactly one certificate of kind ca' in res['msg']
    res = run_module('lab_pki_check', {'pki_dir': d, 'certs': [dict(CERTS[0], kind='root')]})
    assert res.get('failed') and 'kind' in res['msg']
