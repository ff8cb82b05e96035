"""A real pgBackRest (2.5x, from the real pg_tde bundle) for one test cluster: its own
configuration, repositories, logs and locks under a work directory, run as the `postgres` OS
user. WAL is archived through pg_tde's own wrappers, as facts section 7 prescribes:

    archive_command = '<bin>/pg_tde_archive_decrypt %f %p "pgbackrest ... archive-push %%p"'
    restore_command = '<bin>/pg_tde_restore_encrypt %f %p "pgbackrest ... archive-get %%f \\"%%p\\""'

    br = PgBackRest(workdir, cluster, cipher_pass='...', plain_repo=True)
    cluster.set_conf(**br.archive_settings()); cluster.restart()
    br.run('stanza-create'); br.run('check'); br.run('backup', '--type=full', '--repo=1')
    br.restore(target)                # pgbackrest restore into target.datadir + the wrapped restore_command last

Repository 1 is encrypted (repo1-cipher-type=aes-256-cbc) when cipher_pass is given; with
plain_repo=True a repository 2 without a cipher gets the same archive (a control: archived WAL
is plaintext there). compress-type=none, so a plaintext marker would be found by a byte search.
"""
from __future__ import annotations

import os
import subprocess
from typing import Any

from tests.support.pg import PG_BIN, PgCluster, _as_postgres, chown_postgres, ensure_traversable, pgbackrest_binary


class PgBackRestError(RuntimeError):
    pass


class PgBackRest:
    def __init__(self, workdir: str, cluster: PgCluster, stanza: str = 'tdeops', cipher_pass: str | None = None,
                 plain_repo: bool = False) -> None:
        exe = pgbackrest_binary()
        if exe is None:
            raise PgBackRestError('no pgBackRest 2.50+ on PATH (the real pg_tde bundle installs 2.59.1 as '
                                  '/usr/bin/pgbackrest; Debian 12\'s 2.45 cannot handle PostgreSQL 17)')
        self.exe = exe
        self.workdir = os.path.abspath(workdir)
        self.cluster = cluster
        self.stanza = stanza
        self.cipher_pass = cipher_pass
        self.config = os.path.join(self.workdir, 'pgbackrest.conf')
        self.repo_paths = [os.path.join(self.workdir, 'repo1')]
        if plain_repo:
            self.repo_paths.append(os.path.join(self.workdir, 'repo2'))
        for sub in ['log', 'lock', 'spool'] + [os.path.basename(p) for p in self.repo_paths]:
            os.makedirs(os.path.join(self.workdir, sub), mode=0o750, exist_ok=True)
        ensure_traversable(self.workdir)
        self._write_config()
        chown_postgres(self.workdir, recursive=True)

    def _write_config(self) -> None:
        lines = ['[global]',
                 'log-path=%s' % os.path.join(self.workdir, 'log'),
                 'lock-path=%s' % os.path.join(self.workdir, 'lock'),
                 'spool-path=%s' % os.path.join(self.workdir, 'spool'),
                 'log-level-console=warn',
                 'log-level-file=info',
                 # facts section 7: required with pg_tde's wrappers
                 'archive-async=n',
                 'archive-header-check=n',
                 'checksum-page=n',
                 'compress-type=none',
                 'start-fast=y',
                 'archive-timeout=60']
        for n, path in enumerate(self.repo_paths, 1):
            lines.append('repo%d-path=%s' % (n, path))
            lines.append('repo%d-retention-full=1' % n)
            if n == 1 and self.cipher_pass:
                lines.append('repo1-cipher-type=aes-256-cbc')
                lines.append('repo1-cipher-pass=%s' % self.cipher_pass)
        lines += ['', '[%s]' % self.stanza, 'pg1-path=%s' % self.cluster.datadir,
                  'pg1-port=%d' % self.cluster.port, 'pg1-socket-path=%s' % self.cluster.socket_dir,
                  'pg1-user=postgres', '']
        with open(self.config, 'w') as fh:
            fh.write('\n'.join(lines))
        os.chmod(self.config, 0o640)

    def command(self, *args: str) -> str:
        """A pgbackrest command line for archive_command / restore_command."""
        return ' '.join([self.exe, '--config=%s' % self.config, '--stanza=%s' % self.stanza] + list(args))

    def archive_settings(self) -> dict[str, Any]:
        wrapper = os.path.join(PG_BIN, 'pg_tde_archive_decrypt')
        return {'archive_mode': 'on', 'wal_level': 'replica',
                'archive_command': '%s %%f %%p "%s"' % (wrapper, self.command('archive-push', '%%p'))}

    def restore_command(self, target: PgCluster) -> str:
        """For postgresql.auto.conf: `\\"` is a `"` there; pg1-path is the restored data directory
        (pgBackRest checks it against the working directory of the server that calls it)."""
        wrapper = os.path.join(PG_BIN, 'pg_tde_restore_encrypt')
        return '%s %%f %%p "%s"' % (wrapper, self.command('--repo=1', '--pg1-path=%s' % target.datadir,
                                                          'archive-get', '%%f', '\\"%%p\\"'))

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        cmd = _as_postgres([self.exe, '--config=%s' % self.config, '--stanza=%s' % self.stanza] + list(args))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd='/')
        if proc.returncode != 0:
            raise PgBackRestError('pgbackrest %s failed (rc=%d): %s%s' % (
                ' '.join(args), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        return proc

    def restore(self, target: PgCluster) -> None:
        """pgbackrest restore (repository 1) into target.datadir, then the pg_tde-wrapped
        restore_command as the last line of postgresql.auto.conf (the last line wins over the
        one pgbackrest writes), and target's own port and sockets."""
        os.makedirs(target.datadir, mode=0o700, exist_ok=True)
        ensure_traversable(target.workdir)
        chown_postgres(target.workdir, recursive=True)
        self.run('restore', '--repo=1', '--pg1-path=%s' % target.datadir)
        auto = os.path.join(target.datadir, 'postgresql.auto.conf')
        with open(auto, 'a') as fh:
            fh.write("\n# pg_tde: re-encrypt restored WAL (facts section 7)\nrestore_command = '%s'\n"
                     % self.restore_command(target).replace("'", "''"))
        target.write_test_conf()

    def repository_files(self, repo: int = 1) -> list[str]:
        out = []
        for root, _dirs, files in os.walk(self.repo_paths[repo - 1]):
            out.extend(os.path.join(root, name) for name in files)
        return out
