"""Unit tests of module_utils/_files.py: can the PostgreSQL OS user reach and read a path (no server)."""
from __future__ import annotations

import os
import stat
from types import SimpleNamespace

import pytest

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _files as t


def fake_stat(tree):
    def st(path):
        if path not in tree:
            raise FileNotFoundError(path)
        mode, uid, gid = tree[path]
        return SimpleNamespace(st_mode=mode, st_uid=uid, st_gid=gid)
    return st


TREE = {
    '/etc': (stat.S_IFDIR | 0o755, 0, 0),
    '/etc/pg': (stat.S_IFDIR | 0o750, 0, 120),
    '/etc/pg/ok.crt': (stat.S_IFREG | 0o640, 0, 120),
    '/etc/pg/root.key': (stat.S_IFREG | 0o600, 0, 0),
    '/etc/pg/own.key': (stat.S_IFREG | 0o600, 110, 120),
    '/etc/closed': (stat.S_IFDIR | 0o700, 0, 0),
    '/etc/closed/x': (stat.S_IFREG | 0o644, 0, 0),
    '/var': (stat.S_IFDIR | 0o755, 0, 0),
    '/var/keys': (stat.S_IFDIR | 0o700, 110, 120),
    '/var/ro': (stat.S_IFDIR | 0o755, 0, 0),
}


@pytest.mark.parametrize('path,problem', [
    ('/etc/pg/ok.crt', None),
    ('/etc/pg/own.key', None),
    ('/etc/pg/root.key', 'is not readable'),
    ('/etc/closed/x', 'not searchable'),
    ('/etc/pg/missing.crt', 'does not exist'),
    ('/nope/x', 'does not exist (directory /nope is missing)'),
    ('/etc/pg', 'is a directory'),
    ('relative/x', 'absolute'),
    ('', 'empty'),
])
def test_path_access_problem_for_postgres_user(path, problem):
    got = t.path_access_problem(path, 110, [120], stat_func=fake_stat(TREE))
    if problem is None:
        assert got is None
    else:
        assert problem in got


def test_path_access_root_reads_everything_that_exists():
    assert t.path_access_problem('/etc/pg/root.key', 0, [0], stat_func=fake_stat(TREE)) is None
    assert 'does not exist' in t.path_access_problem('/etc/pg/nope', 0, [0], stat_func=fake_stat(TREE))


def test_path_access_write_needed():
    assert 'not writable' in t.path_access_problem('/etc/pg/ok.crt', 110, [120], need_write=True,
                                                   stat_func=fake_stat(TREE))


def test_dir_write_problem():
    st = fake_stat(TREE)
    assert t.dir_write_problem('/var/keys/k.per', 110, [120], stat_func=st) is None
    assert 'not writable' in t.dir_write_problem('/var/ro/k.per', 110, [120], stat_func=st)
    assert 'missing' in t.dir_write_problem('/var/none/k.per', 110, [120], stat_func=st)


def test_path_access_on_real_files(tmp_path):
    f = tmp_path / 'a.crt'
    f.write_text('x')
    os.chmod(f, 0o600)
    me = os.getuid()
    assert t.path_access_problem(str(f), me, list(os.getgroups())) is None
    assert t.path_access_problem(str(tmp_path / 'none'), me, []) == 'does not exist'


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to create files owned by others')
def test_file_access_problems(tmp_path) -> None:
    path = tmp_path / 'secret.key'
    path.write_text('x')
    os.chmod(path, 0o600)
    os.chmod(tmp_path, 0o755)
    assert t.file_access_problems(str(path), 'root') == []
    problems = t.file_access_problems(str(path), 'nobody')
    assert any('cannot read' in p and 'secret.key' in p for p in problems)
    assert 'does not exist' in t.file_access_problems(str(path), 'no-such-user-xyz')[0]
    assert t.loose_secret_mode(str(path)) is None
    os.chmod(path, 0o644)
    assert 'mode 0644' in t.loose_secret_mode(str(path))


def test_os_user_ids_and_messages_name_user_and_path(tmp_path):
    assert t.os_user_ids('no-such-user-xyz') is None
    uid, gids = t.os_user_ids('root')
    assert uid == 0 and 0 in gids
    missing = str(tmp_path / 'missing.crt')
    assert t.file_access_problems(missing, 'root') == ['root cannot read %s: the path does not exist' % missing]
