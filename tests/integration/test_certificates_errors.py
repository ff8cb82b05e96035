"""The certificates role turns raw errors into the variable, the cause and the fix: a controller
file that does not exist fails before any change and names its variable (not a bare lookup error,
hidden by no_log); a staged file that kms_preflight refuses is named by the variable it came from
and the path it was meant for, never by a path inside the temporary staging directory."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.ansible_runner import ROOT, ansible_env

pytestmark = pytest.mark.slow

PLAYBOOK = """---
- name: Place KMS client material
  hosts: db
  gather_facts: false
  roles:
    - role: tdeops.pg_tde.certificates
"""


def run_role(tmp_path, variables):
    host = {'ansible_connection': 'local', 'ansible_become': False,
            'ansible_python_interpreter': os.path.join(ROOT, '.venv', 'bin', 'python'),
            'certificates_owner': 'root', 'certificates_group': 'root',
            'certificates_kmip_enabled': True, 'certificates_kmip_host': '127.0.0.1', 'certificates_kmip_port': 9}
    host.update(variables)
    (tmp_path / 'hosts.json').write_text(json.dumps({'all': {'hosts': {'db': host}}}))
    (tmp_path / 'play.yml').write_text(PLAYBOOK)
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', str(tmp_path / 'hosts.json'),
                           str(tmp_path / 'play.yml')], capture_output=True, text=True, env=ansible_env(), timeout=300)
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    failed = (None, '')      # the last failure: what the user reads at the end (after a rescue)
    for play in doc['plays']:
        for task in play['tasks']:
            result = task['hosts'].get('db', {})
            if result.get('failed'):
                failed = (task['task']['name'], str(result.get('msg')))
    return (proc.returncode,) + failed


@pytest.fixture
def pem_files(tmp_path):
    out = {}
    for name in ('ca', 'cert', 'key'):
        path = tmp_path / ('%s.pem' % name)
        path.write_text('-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n')
        out[name] = str(path)
    return out


def test_missing_controller_file_names_the_variable_before_any_change(tmp_path, pem_files):
    target = tmp_path / 'tde'
    rc, task, msg = run_role(tmp_path, {
        'certificates_dir': str(target), 'certificates_kmip_ca_src': str(tmp_path / 'nowhere' / 'ca.crt'),
        'certificates_kmip_cert_src': pem_files['cert'], 'certificates_kmip_key_src': pem_files['key']})
    assert rc != 0 and task, msg
    assert 'certificates_kmip_ca_src' in msg and 'does not exist on the controller' in msg, msg
    assert 'nothing was changed' in msg
    assert not target.exists()


def test_empty_controller_file_is_named(tmp_path, pem_files):
    empty = tmp_path / 'empty.key'
    empty.write_text('')
    rc, task, msg = run_role(tmp_path, {
        'certificates_dir': str(tmp_path / 'tde'), 'certificates_kmip_ca_src': pem_files['ca'],
        'certificates_kmip_cert_src': pem_files['cert'], 'certificates_kmip_key_src': str(empty)})
    assert rc != 0 and 'certificates_kmip_key_src' in msg and 'is empty' in msg, msg


def test_refused_staged_file_is_named_by_its_variable_not_the_staging_path(tmp_path, pem_files):
    target = tmp_path / 'tde'
    rc, task, msg = run_role(tmp_path, {
        'certificates_dir': str(target), 'certificates_kmip_ca_src': pem_files['ca'],
        'certificates_kmip_cert_content': 'not a certificate\n', 'certificates_kmip_key_src': pem_files['key']})
    assert rc != 0 and task, msg
    assert '.staging-' not in msg, msg
    assert 'the live files are unchanged' in msg, msg
    assert 'certificates_kmip_' in msg and str(target) in msg, msg
    assert not (target / 'kmip-client.crt').exists()
    assert [p for p in os.listdir(target) if p.startswith('.staging-')] == []
