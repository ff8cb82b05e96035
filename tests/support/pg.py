"""Throw-away PostgreSQL 17 clusters with the REAL pg_tde (Percona's server patches, pg_tde 2.2.0,
installed from the bundle ../shared/real-pg_tde by scripts/setup.sh), run as the `postgres` OS
user on a free loopback port, pg_tde preloaded.

    cluster = PgCluster(tmp_path / 'pg')          # initdb (runuser -u postgres)
    cluster.start()                               # ClusterStartError carries PostgreSQL's FATAL
    cluster.psql("CREATE EXTENSION pg_tde")
    cluster.set_conf(**{'pg_tde.wal_encrypt': 'on'}); cluster.restart()
    run_module('pg_tde_info', cluster.login_args())
    cluster.destroy()                             # stop + remove; the server log is kept in SERVER_LOGS

Authentication is trust on loopback and on the socket directory; never use on a shared host.
"""
from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Iterable, Mapping

PG_VERSION = os.environ.get('TDEOPS_PG_MAJOR', '17')
PG_BIN = '/usr/lib/postgresql/%s/bin' % PG_VERSION
PG_OS_USER = 'postgres'
HOST = '127.0.0.1'
CONF_BASE = 'tdeops_test.conf'      # written at initdb: port, sockets, preload, speed settings
CONF_SET = 'tdeops_set.conf'        # written by set_conf()
START_TIMEOUT = 60


class ClusterError(RuntimeError):
    """A cluster operation failed."""


class ClusterStartError(ClusterError):
    """The server did not start. `fatal` holds PostgreSQL's FATAL/PANIC lines (with HINTs and
    the WARNINGs just before them), `log_tail` the end of the server log."""

    def __init__(self, message: str, fatal: str = '', log_tail: str = ''):
        super().__init__(message)
        self.fatal = fatal
        self.log_tail = log_tail


class PsqlError(ClusterError):
    """psql failed; `stderr` holds PostgreSQL's messages as psql prints them."""

    def __init__(self, message: str, returncode: int, stdout: str, stderr: str):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


# The server log of every cluster this process destroyed: [(cluster description, log text)].
# tests/integration/test_error_texts.py runs every ERROR/FATAL line of them through the explainer.
SERVER_LOGS: list[tuple[str, str]] = []

REAL_TDE_TOOLS = ('pg_tde_archive_decrypt', 'pg_tde_restore_encrypt', 'pg_tde_change_key_provider')
INSTALL_HINT = ('run scripts/setup.sh, which installs the real pg_tde bundle from ../shared/real-pg_tde '
                '(or TDEOPS_REAL_PG_TDE_BUNDLE): PostgreSQL 17 with Percona\'s server patches, pg_tde 2.2.0 '
                'and its tools, pgBackRest 2.59.1')


def pg_available() -> str | None:
    """None when PostgreSQL 17 with the real pg_tde is installed, else what is missing."""
    if not os.path.exists(os.path.join(PG_BIN, 'postgres')):
        return 'PostgreSQL %s with the real pg_tde is not installed (%s/postgres missing): %s' % (
            PG_VERSION, PG_BIN, INSTALL_HINT)
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        return 'OS user %s does not exist: %s' % (PG_OS_USER, INSTALL_HINT)
    libdir = _pg_config('--pkglibdir') or '/usr/lib/postgresql/%s/lib' % PG_VERSION
    sharedir = _pg_config('--sharedir') or '/usr/share/postgresql/%s' % PG_VERSION
    needed = [os.path.join(libdir, 'pg_tde.so'), os.path.join(sharedir, 'extension', 'pg_tde.control')]
    needed += [os.path.join(PG_BIN, tool) for tool in REAL_TDE_TOOLS]
    for path in needed:
        if not os.path.exists(path):
            return 'the real pg_tde is not installed (%s missing): %s' % (path, INSTALL_HINT)
    return None


def pgbackrest_binary() -> str | None:
    """The pgBackRest that handles PostgreSQL 17 (2.5x from the bundle), or None."""
    exe = shutil.which('pgbackrest')
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, 'version'], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'pgBackRest (\d+)\.(\d+)', out)
    return exe if m and (int(m.group(1)), int(m.group(2))) >= (2, 50) else None


def _pg_config(arg: str) -> str | None:
    exe = os.path.join(PG_BIN, 'pg_config')
    if not os.path.exists(exe):
        return None
    try:
        return subprocess.run([exe, arg], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (PgCluster retries on a bind race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_traversable(path: str | os.PathLike) -> None:
    """Let the postgres OS user reach `path`: add o+x (search only, no listing) to every
    ancestor directory that lacks it (pytest's tmp directories are 0700)."""
    path = os.path.abspath(os.fspath(path))
    parts = []
    while True:
        parts.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in parts:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        if os.path.isdir(p) and not st.st_mode & 0o001:
            os.chmod(p, st.st_mode | 0o001)


def chown_postgres(path: str | os.PathLike, recursive: bool = False) -> None:
    """Give `path` (and with recursive everything below it) to the postgres OS user."""
    pw = pwd.getpwnam(PG_OS_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    if recursive:
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


_TEMPLATE: str | None = None
INITDB_ARGS = ['-U', PG_OS_USER, '-A', 'trust', '-E', 'UTF8', '--locale=C.UTF-8', '-N']


def _run_initdb(datadir: str) -> None:
    proc = subprocess.run(_as_postgres([os.path.join(PG_BIN, 'initdb'), '-D', datadir] + INITDB_ARGS),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError('initdb failed (rc=%d): %s%s' % (proc.returncode, proc.stdout, proc.stderr))


def _template() -> str:
    """One initdb per test process, copied for every cluster (initdb is slow on a busy machine).
    TDEOPS_PG_NO_TEMPLATE=1 runs initdb for every cluster instead."""
    global _TEMPLATE
    if _TEMPLATE is None or not os.path.exists(os.path.join(_TEMPLATE, 'PG_VERSION')):
        base = tempfile.mkdtemp(prefix='tdeops-pg-template-')
        os.chmod(base, 0o755)
        atexit.register(shutil.rmtree, base, True)
        datadir = os.path.join(base, 'data')
        os.makedirs(datadir, mode=0o700)
        chown_postgres(datadir)
        _run_initdb(datadir)
        _TEMPLATE = datadir
    return _TEMPLATE


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == pwd.getpwnam(PG_OS_USER).pw_uid:
        return cmd
    return ['runuser', '-u', PG_OS_USER, '--'] + cmd


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        value = ','.join(str(v) for v in value)
    return "'%s'" % str(value).replace("'", "''")


def _fatal_lines(log: str) -> str:
    """The FATAL/PANIC lines of a server log with their HINT/DETAIL and the WARNINGs that
    directly precede them, without the log_line_prefix."""
    out: list[str] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r'\b(FATAL|PANIC):\s+(.*)$', line)
        if not m:
            continue
        j = i - 1
        before = []
        while j >= 0 and re.search(r'\bWARNING:\s', lines[j]):
            before.insert(0, lines[j][lines[j].index('WARNING:'):])
            j -= 1
        out.extend(before)
        out.append('%s:  %s' % (m.group(1), m.group(2).strip()))
        k = i + 1
        while k < len(lines) and re.search(r'\b(HINT|DETAIL|CONTEXT):\s', lines[k]):
            out.append(lines[k][re.search(r'\b(HINT|DETAIL|CONTEXT):', lines[k]).start():])
            k += 1
    return '\n'.join(out)


class PgCluster:
    """One PostgreSQL 17 cluster under `workdir` (data/, postgresql.log, a socket directory)."""

    def __init__(self, workdir: str | os.PathLike, port: int | None = None,
                 preload: Iterable[str] = ('pg_tde',), settings: Mapping[str, Any] | None = None,
                 initdb: bool = True):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self._fixed_port = port is not None
        self.port = int(port) if port is not None else free_port()
        self.host = HOST
        self.user = PG_OS_USER
        self.preload = tuple(preload)
        self.settings = dict(settings or {})
        self.bindir = PG_BIN
        self.datadir = os.path.join(self.workdir, 'data')
        self.log_path = os.path.join(self.workdir, 'postgresql.log')
        self.socket_dir = os.path.join(self.workdir, 'sock')
        if len(self.socket_dir) > 80:     # sun_path is 108 bytes with ".s.PGSQL.NNNNN"
            self.socket_dir = tempfile.mkdtemp(prefix='tdeops-pgsock-')
            self._own_socket_dir = True
        else:
            self._own_socket_dir = False
        self._set: dict[str, Any] = {}
        if initdb and not os.path.exists(os.path.join(self.datadir, 'PG_VERSION')):
            self.initdb()

    # ----------------------------------------------------------------- set-up
    def initdb(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        ensure_traversable(self.workdir)
        os.makedirs(self.socket_dir, exist_ok=True)
        chown_postgres(self.workdir)
        chown_postgres(self.socket_dir)
        os.chmod(self.socket_dir, 0o755)
        if os.environ.get('TDEOPS_PG_NO_TEMPLATE'):
            _run_initdb(self.datadir)
        else:
            proc = subprocess.run(['cp', '-a', _template(), self.datadir], capture_output=True, text=True)
            if proc.returncode != 0:
                raise ClusterError('copying the initdb template failed: %s' % proc.stderr)
        with open(os.path.join(self.datadir, 'postgresql.conf'), 'a') as fh:
            fh.write("\n# tdeops tests\ninclude_if_exists = '%s'\ninclude_if_exists = '%s'\n" % (CONF_BASE, CONF_SET))
        self._write_base_conf()
        self._write_set_conf()

    def write_test_conf(self) -> None:
        """(Re)write this cluster's tdeops_test.conf and tdeops_set.conf (port, sockets, preload,
        settings), e.g. into a data directory that a restore brought from another cluster."""
        os.makedirs(self.socket_dir, exist_ok=True)
        chown_postgres(self.socket_dir)
        os.chmod(self.socket_dir, 0o755)
        self._write_base_conf()
        self._write_set_conf()

    def _write_base_conf(self) -> None:
        base = {
            'port': self.port,
            'listen_addresses': HOST,
            'unix_socket_directories': self.socket_dir,
            'shared_preload_libraries': ','.join(self.preload),
            'fsync': False,
            'synchronous_commit': False,
            'full_page_writes': False,
            'shared_buffers': '16MB',
            'max_connections': 30,
            'max_wal_senders': 4,
            'logging_collector': False,
            'log_line_prefix': '%m [%p] ',
            'lc_messages': 'C',
            'timezone': 'UTC',
        }
        base.update(self.settings)
        self._write_conf(CONF_BASE, base)

    def _write_set_conf(self) -> None:
        self._write_conf(CONF_SET, self._set)

    def _write_conf(self, name: str, values: Mapping[str, Any]) -> None:
        path = os.path.join(self.datadir, name)
        with open(path, 'w') as fh:
            fh.write('# written by tests/support/pg.py\n')
            for key, value in values.items():
                fh.write('%s = %s\n' % (key, _conf_value(value)))
        chown_postgres(path)

    def set_conf(self, **settings: Any) -> None:
        """Set (value) or remove (None) settings in the include file tdeops_set.conf. Takes effect
        on reload() or restart() as PostgreSQL decides. Dotted names: set_conf(**{'pg_tde.cipher': 'aes_256'})."""
        for key, value in settings.items():
            if value is None:
                self._set.pop(key, None)
            else:
                self._set[key] = value
        self._write_set_conf()

    # ------------------------------------------------------------- lifecycle
    def _pg_ctl(self, *args: str, timeout: int = START_TIMEOUT + 30) -> subprocess.CompletedProcess:
        return subprocess.run(_as_postgres([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir] + list(args)),
                              capture_output=True, text=True, timeout=timeout)

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as fh:
                return fh.read()
        except OSError:
            return ''

    def log_tail(self, lines: int = 40) -> str:
        return '\n'.join(self.log_text().splitlines()[-lines:])

    def is_running(self) -> bool:
        return self._pg_ctl('status').returncode == 0

    def start(self) -> None:
        """pg_ctl start -w; ClusterStartError (with PostgreSQL's FATAL text) when it does not come up."""
        for attempt in range(3):
            offset = len(self.log_text())
            if not os.path.exists(self.log_path):
                open(self.log_path, 'a').close()
                chown_postgres(self.log_path)
            proc = self._pg_ctl('-l', self.log_path, '-w', '-t', str(START_TIMEOUT), 'start')
            if proc.returncode == 0:
                return
            new_log = self.log_text()[offset:]
            if (not self._fixed_port and attempt < 2
                    and re.search(r'could not (bind|create listen socket)|Address already in use', new_log)):
                self.port = free_port()
                self._write_base_conf()
                continue
            fatal = _fatal_lines(new_log)
            raise ClusterStartError(
                'PostgreSQL did not start (pg_ctl rc=%d): %s\n%s\n--- log tail ---\n%s'
                % (proc.returncode, (proc.stdout + proc.stderr).strip(), fatal,
                   '\n'.join(new_log.splitlines()[-30:])),
                fatal=fatal, log_tail='\n'.join(new_log.splitlines()[-30:]))

    def stop(self, mode: str = 'fast') -> None:
        if not os.path.exists(os.path.join(self.datadir, 'postmaster.pid')):
            return
        proc = self._pg_ctl('-m', mode, '-w', 'stop')
        if proc.returncode != 0 and self.is_running():
            raise ClusterError('pg_ctl stop failed: %s%s' % (proc.stdout, proc.stderr))

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        proc = self._pg_ctl('reload')
        if proc.returncode != 0:
            raise ClusterError('pg_ctl reload failed: %s%s' % (proc.stdout, proc.stderr))
        time.sleep(0.3)     # the postmaster signals its children asynchronously

    def destroy(self) -> None:
        """Stop (immediate if fast fails), keep the server log in SERVER_LOGS, remove the workdir."""
        try:
            self.stop()
        except ClusterError:
            self.stop('immediate')
        log = self.log_text()
        if log:
            SERVER_LOGS.append((repr(self), log))
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._own_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> 'PgCluster':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    # ------------------------------------------------------------------- SQL
    def psql_result(self, sql: str, db: str = 'postgres') -> subprocess.CompletedProcess:
        """psql -X -A -t -v ON_ERROR_STOP=1 -c sql; the CompletedProcess, whatever its rc."""
        env = dict(os.environ, PGCONNECT_TIMEOUT='10')
        return subprocess.run(
            [os.path.join(self.bindir, 'psql'), '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
             '-h', self.host, '-p', str(self.port), '-U', self.user, '-d', db, '-c', sql],
            capture_output=True, text=True, env=env, timeout=300)

    def psql(self, sql: str, db: str = 'postgres') -> str:
        """Run sql with psql (unaligned, tuples only); its stdout stripped. PsqlError on failure."""
        proc = self.psql_result(sql, db)
        if proc.returncode != 0:
            raise PsqlError('psql failed (rc=%d) on %r: %s' % (proc.returncode, sql, proc.stderr.strip()),
                            proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout.strip()

    def connect(self, db: str = 'postgres', autocommit: bool = True, **kwargs: Any):
        """A psycopg 3 connection (autocommit by default)."""
        import psycopg
        params: dict[str, Any] = dict(host=self.host, port=self.port, user=self.user, dbname=db,
                                      autocommit=autocommit, connect_timeout=10)
        params.update(kwargs)
        return psycopg.connect(**params)

    def create_database(self, name: str, extension: bool = False) -> str:
        """CREATE DATABASE name (and CREATE EXTENSION pg_tde in it with extension=True)."""
        self.psql('CREATE DATABASE "%s"' % name.replace('"', '""'))
        if extension:
            self.psql('CREATE EXTENSION pg_tde', db=name)
        return name

    def login_args(self, db: str | None = None) -> dict[str, Any]:
        """The modules' connection options for this cluster."""
        return {'login_host': self.host, 'login_port': self.port, 'login_user': self.user,
                'login_db': db if db is not None else 'postgres'}

    @property
    def pg_tde_dir(self) -> str:
        """$PGDATA/pg_tde: pg_tde's key and provider state (what a restore must bring back)."""
        return os.path.join(self.datadir, 'pg_tde')

    def __repr__(self) -> str:
        return 'PgCluster(%r, port=%d)' % (self.workdir, self.port)
