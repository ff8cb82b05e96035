"""The pg_tde_archive_decrypt / pg_tde_restore_encrypt TEST DOUBLES keep the real tools' argument
contract (facts section 7, observed/cli-pg_tde_*-help.txt): exactly three arguments, %p/%f
replaced in the 3rd argument, staging in /dev/shm, the data directory as CWD, the wrapped
command's exit status. No server needed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parents[1] / 'pg_tde_double' / 'bin'
ARCHIVE = str(BIN / 'pg_tde_archive_decrypt')
RESTORE = str(BIN / 'pg_tde_restore_encrypt')


@pytest.fixture()
def datadir(tmp_path: Path) -> Path:
    d = tmp_path / 'data'
    (d / 'pg_wal').mkdir(parents=True)
    (d / 'PG_VERSION').write_text('15\n')
    (d / 'pg_wal' / '000000010000000000000001').write_bytes(b'WAL' * 1000)
    return d


def run(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PG_TDE_DOUBLE_WRAPPER_LOG=str(tmp_path / 'wrappers.log'))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize('tool', [ARCHIVE, RESTORE])
def test_version_and_help_name_the_double(tool: str, tmp_path: Path) -> None:
    v = run([tool, '--version'], tmp_path, tmp_path)
    assert v.returncode == 0 and 'TEST DOUBLE' in v.stdout
    h = run([tool, '--help'], tmp_path, tmp_path)
    assert h.returncode == 0 and 'Usage:' in h.stdout and 'TEST DOUBLE' in h.stdout


@pytest.mark.parametrize('tool', [ARCHIVE, RESTORE])
@pytest.mark.parametrize('args', [[], ['a'], ['a', 'b'], ['a', 'b', 'c', 'd']])
def test_exactly_three_arguments(tool: str, args: list[str], datadir: Path, tmp_path: Path) -> None:
    r = run([tool] + args, datadir, tmp_path)
    assert r.returncode == 1
    assert 'wrong number of arguments, 3 needed' in r.stderr
    assert '--help" for more information' in r.stderr


def test_archive_stages_in_dev_shm_and_replaces_placeholders(datadir: Path, tmp_path: Path) -> None:
    out = tmp_path / 'archive'
    out.mkdir()
    seg = '000000010000000000000001'
    # what PostgreSQL passes after turning %%p into %p: the wrapper replaces %p and %f
    cmd = 'echo "%p" > ' + str(tmp_path / 'seen') + ' && cp "%p" ' + str(out) + '/%f && test 100%% = "100%%"'
    r = run([ARCHIVE, seg, 'pg_wal/' + seg, cmd], datadir, tmp_path)
    assert r.returncode == 0, r.stderr
    seen = (tmp_path / 'seen').read_text().strip()
    assert seen.startswith('/dev/shm/') and seen.endswith('/' + seg)
    assert not os.path.exists(seen), 'the staged segment is removed afterwards'
    assert (out / seg).read_bytes() == (datadir / 'pg_wal' / seg).read_bytes()
    assert 'exit=0' in (tmp_path / 'wrappers.log').read_text()


def test_archive_returns_the_wrapped_status(datadir: Path, tmp_path: Path) -> None:
    seg = '000000010000000000000001'
    r = run([ARCHIVE, seg, 'pg_wal/' + seg, 'exit 7'], datadir, tmp_path)
    assert r.returncode == 7


def test_archive_needs_the_data_directory_as_cwd(datadir: Path, tmp_path: Path) -> None:
    seg = '000000010000000000000001'
    r = run([ARCHIVE, seg, str(datadir / 'pg_wal' / seg), 'true'], tmp_path, tmp_path)
    assert r.returncode == 1 and 'data directory' in r.stderr


def test_unknown_placeholder_is_an_error(datadir: Path, tmp_path: Path) -> None:
    seg = '000000010000000000000001'
    r = run([ARCHIVE, seg, 'pg_wal/' + seg, 'cp %x /tmp'], datadir, tmp_path)
    assert r.returncode == 1 and 'unexpected placeholder "%x"' in r.stderr


def test_restore_writes_dest_only_on_success(datadir: Path, tmp_path: Path) -> None:
    arch = tmp_path / 'archive'
    arch.mkdir()
    seg = '000000010000000000000002'
    (arch / seg).write_bytes(b'SEG2' * 100)
    ok = run([RESTORE, seg, 'pg_wal/RECOVERYXLOG', 'cp ' + str(arch) + '/%f "%p"'], datadir, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert (datadir / 'pg_wal' / 'RECOVERYXLOG').read_bytes() == b'SEG2' * 100
    (datadir / 'pg_wal' / 'RECOVERYXLOG').unlink()
    missing = run([RESTORE, '000000010000000000000009', 'pg_wal/RECOVERYXLOG',
                   'cp ' + str(arch) + '/%f "%p"'], datadir, tmp_path)
    assert missing.returncode != 0
    assert not (datadir / 'pg_wal' / 'RECOVERYXLOG').exists()


def test_restore_with_the_facts_command_line_through_a_shell(datadir: Path, tmp_path: Path) -> None:
    """restore_command as PostgreSQL runs it: %f/%p replaced by PostgreSQL, %% -> %, via /bin/sh."""
    arch = tmp_path / 'archive'
    arch.mkdir()
    seg = '000000010000000000000003'
    (arch / seg).write_bytes(b'SEG3')
    fake = tmp_path / 'fakebin'
    fake.mkdir()
    # a stand-in for "pgbackrest --stanza=S archive-get SEG PATH"
    (fake / 'pgbackrest').write_text('#!/bin/sh\n[ "$2" = archive-get ] && cp "%s/$3" "$4"\n' % arch)
    (fake / 'pgbackrest').chmod(0o755)
    # the value PostgreSQL reads from facts section 7's line, after it replaced %f, %p and %%
    line = RESTORE + ' ' + seg + ' pg_wal/RECOVERYXLOG "pgbackrest --stanza=main archive-get %f "%p""'
    env = dict(os.environ, PATH=str(fake) + ':' + os.environ['PATH'],
               PG_TDE_DOUBLE_WRAPPER_LOG=str(tmp_path / 'wrappers.log'))
    r = subprocess.run(['/bin/sh', '-c', line], cwd=datadir, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (datadir / 'pg_wal' / 'RECOVERYXLOG').read_bytes() == b'SEG3'
