"""kms_client_files and pg_tde_conf's directory through real ansible on this host's file system:
what the certificates and configure roles decide from (no PostgreSQL needed)."""
from __future__ import annotations

import hashlib
import os
import stat

from tests.support.ansible_runner import run_module


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def files_args(directory: str, ca: bytes, key: bytes) -> dict:
    return {'directory': directory, 'owner': 'root', 'group': 'root',
            'files': [{'name': 'kmip_ca', 'path': directory + '/ca.crt', 'mode': '0644', 'checksum': sha1(ca)},
                      {'name': 'kmip_key', 'path': directory + '/c.key', 'mode': '0600', 'checksum': sha1(key)}]}


def test_pending_drift_and_directory(tmp_path):
    d = tmp_path / 'tde'
    res = run_module('kms_client_files', files_args(str(d), b'CA', b'KEY'))
    assert not res.get('failed'), res
    assert res['pending'] == ['kmip_ca', 'kmip_key'] and res['drift'] == [] and res['directory_ok'] is False

    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    (d / 'ca.crt').write_bytes(b'CA')
    os.chmod(d / 'ca.crt', 0o644)
    (d / 'c.key').write_bytes(b'OLD')
    os.chmod(d / 'c.key', 0o640)
    res = run_module('kms_client_files', files_args(str(d), b'CA', b'KEY'))
    assert res['pending'] == ['kmip_key'] and res['drift'] == [[str(d / 'c.key'), '0600']]
    assert res['directory_ok'] is True and res['changed'] is False
    # The checksums are never printed (no_log on the option).
    assert sha1(b'KEY') not in res['_stdout']

    (d / 'c.key').write_bytes(b'KEY')
    os.chmod(d / 'c.key', 0o600)
    res = run_module('kms_client_files', files_args(str(d), b'CA', b'KEY'))
    assert res['pending'] == [] and res['drift'] == []


def test_per_file_owner_and_further_directories(tmp_path):
    """The lab KMS's shape: files of several owners, directories beside the main one."""
    d, data = tmp_path / 'conf', tmp_path / 'data'
    d.mkdir(mode=0o750)
    os.chmod(d, 0o750)
    (d / 'unit').write_bytes(b'U')
    os.chmod(d / 'unit', 0o644)
    args = {'directory': str(d), 'directory_mode': '0750', 'owner': 'root', 'group': 'root',
            'files': [{'name': 'unit', 'path': str(d / 'unit'), 'mode': '0644', 'checksum': sha1(b'U'),
                       'owner': 'root', 'group': 'nogroup'}],
            'directories': [{'path': str(data), 'owner': 'root', 'group': 'root', 'mode': '0750'}]}
    res = run_module('kms_client_files', args)
    assert not res.get('failed'), res
    # the file's own group wins over the module's; a missing further directory drifts
    assert res['drift'] == [[str(d / 'unit'), '0644']] and res['directories_drift'] == [str(data)]
    assert res['directory_ok'] is True and res['pending'] == []
    data.mkdir(mode=0o750)
    os.chmod(data, 0o750)
    args['files'][0]['group'] = 'root'
    res = run_module('kms_client_files', args)
    assert res['drift'] == [] and res['directories_drift'] == []


def conf_args(path: str) -> dict:
    return {'path': path, 'owner': 'root', 'group': 'root', 'base_preload': '', 'running_preload': 'pg_tde',
            'wal_encrypt': True}


def test_pg_tde_conf_creates_its_directory_and_is_honest_in_check_mode(tmp_path):
    path = str(tmp_path / 'conf.d' / '90-tdeops-pg_tde.conf')
    res = run_module('pg_tde_conf', conf_args(path), check=True)
    assert res['changed'] and res['content_changed'] and not os.path.exists(os.path.dirname(path))

    res = run_module('pg_tde_conf', conf_args(path))
    assert res['changed'] and res['content_changed'] and res['undo'] == [{'path': path, 'backup': ''}]
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
    assert res['rendered'] == {'preload': ['pg_tde'], 'wal_encrypt': True, 'enforce_encryption': False,
                               'default_table_access_method': ''}
    assert res['restart_reasons'] == []

    res = run_module('pg_tde_conf', conf_args(path))
    assert not res['changed'] and not res['content_changed'] and res['undo'] == []

    os.chmod(os.path.dirname(path), 0o700)       # only the directory's mode drifted: no new content
    res = run_module('pg_tde_conf', conf_args(path))
    assert res['changed'] and not res['content_changed']
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o755
