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


def test_directory_as_wanted(tmp_path):
    st = os.stat(tmp_path)
    mode = '%04o' % (st.st_mode & 0o7777)
    assert m.directory_as_wanted(str(tmp_path), st.st_uid, st.st_gid, mode)
    assert not m.directory_as_wanted(str(tmp_path), st.st_uid, st.st_gid, '0701' if mode != '0701' else '0700')
    assert not m.directory_as_wanted(str(tmp_path / 'missing'), st.st_uid, st.st_gid, mode)
    (tmp_path / 'file').write_text('x')
    fst = os.stat(tmp_path / 'file')
    assert not m.directory_as_wanted(str(tmp_path / 'file'), fst.st_uid, fst.st_gid, '%04o' % (fst.st_mode & 0o7777))
    assert not m.directory_as_wanted(str(tmp_path), None, st.st_gid, mode)     # unknown user
