"""Unit tests of kms_client_files' decisions: owner, group and mode against the wanted ones."""
from __future__ import annotations

import os

from ansible_collections.tdeops.pg_tde.plugins.modules import kms_client_files as m


class St:
    def __init__(self, uid: int, gid: int, mode: int):
        self.st_uid, self.st_gid, self.st_mode = uid, gid, mode


def test_metadata_differs():
    assert not m.metadata_differs(St(26, 26, 0o100600), 26, 26, '0600')
    assert m.metadata_differs(St(26, 26, 0o100644), 26, 26, '0600')
    assert m.metadata_differs(St(0, 26, 0o100600), 26, 26, '0600')
    assert m.metadata_differs(St(26, 0, 0o100600), 26, 26, '0600')
    assert m.metadata_differs(St(26, 26, 0o100600), None, 26, '0600')     # unknown user: never "as wanted"


def test_ids_by_name_or_number():
    assert m.user_id('0') == 0 and m.group_id('0') == 0
    assert m.user_id('root') == 0
    assert m.user_id('no-such-user-here') is None
    assert m.group_id('no-such-group-here') is None


def test_sha1_of(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc')
    assert m.sha1_of(str(path)) == 'a9993e364706816aba3e25717850c26c9cd0d89d'
    assert os.path.exists(path)
