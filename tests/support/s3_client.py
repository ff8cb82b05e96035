"""A minimal S3 client (AWS Signature Version 4, path-style URLs, Python standard library only)
for the tests: create a bucket, list objects, read an object.

Standalone on purpose: molecule copies this one file into test hosts that have python3 but no
boto3 and no route to PyPI. Credentials come from the environment (S3_ACCESS_KEY,
S3_SECRET_KEY) so they never appear on a command line.

CLI: python3 s3_client.py --endpoint https://localhost:8333 --ca CA.crt [--region R]
         mkbucket BUCKET | ls BUCKET [PREFIX] | get BUCKET KEY [--head N]
         | scan BUCKET [PREFIX] [--needle TEXT]
`ls` prints one "<size> <key>" line per object; `scan` reads every object and prints JSON: the
count per first path element under PREFIX, the keys that do not start with pgBackRest's cipher
header "Salted__", and the keys whose bytes contain TEXT. An S3 error exits 2 ("HTTP <status> <Code>").
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any, Iterator

_EMPTY_SHA256 = hashlib.sha256(b'').hexdigest()


class S3Error(RuntimeError):
    """The server answered with an error status; `code` is S3's error Code (or '')."""

    def __init__(self, status: int, code: str, body: str) -> None:
        super().__init__('HTTP %d %s' % (status, code or body[:200]))
        self.status = status
        self.code = code


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _quote(text: str, safe: str = '-_.~') -> str:
    return urllib.parse.quote(text, safe=safe)


class S3Client:
    """Signed requests to one endpoint (https://host:port). Path-style: /<bucket>/<key>."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, *,
                 region: str = 'us-east-1', ca_file: str | None = None,
                 timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip('/')
        self.host = urllib.parse.urlsplit(self.endpoint).netloc
        self._access = access_key
        self._secret = secret_key
        self.region = region
        self._context = ssl.create_default_context(cafile=ca_file)
        self.timeout = timeout

    def _headers(self, method: str, path: str, query: dict[str, str], payload_hash: str,
                 now: dt.datetime) -> dict[str, str]:
        amz_date = now.strftime('%Y%m%dT%H%M%SZ')
        day = amz_date[:8]
        headers = {'host': self.host, 'x-amz-content-sha256': payload_hash, 'x-amz-date': amz_date}
        canonical_query = '&'.join('%s=%s' % (_quote(k), _quote(v)) for k, v in sorted(query.items()))
        signed = ';'.join(sorted(headers))
        canonical = '\n'.join([method, _quote(path, safe='/-_.~'), canonical_query,
                               ''.join('%s:%s\n' % (k, headers[k]) for k in sorted(headers)),
                               signed, payload_hash])
        scope = '%s/%s/s3/aws4_request' % (day, self.region)
        to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(_hmac(_hmac(_hmac(('AWS4' + self._secret).encode(), day), self.region), 's3'),
                    'aws4_request')
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers['Authorization'] = ('AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s'
                                    % (self._access, scope, signed, signature))
        return headers

    def request(self, method: str, path: str, query: dict[str, str] | None = None,
                body: bytes = b'') -> bytes:
        """One signed request; returns the body or raises S3Error."""
        query = query or {}
        payload_hash = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        headers = self._headers(method, path, query, payload_hash, dt.datetime.now(dt.timezone.utc))
        url = self.endpoint + _quote(path, safe='/-_.~')
        if query:
            url += '?' + urllib.parse.urlencode(sorted(query.items()), quote_via=urllib.parse.quote)
        req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self._context, timeout=self.timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as err:
            text = err.read().decode('utf-8', errors='replace')
            code = ''
            try:
                node = ET.fromstring(text).find('Code')
                code = node.text or '' if node is not None else ''
            except ET.ParseError:
                pass
            raise S3Error(err.code, code, text) from None

    def make_bucket(self, bucket: str) -> bool:
        """Create `bucket`; False when it is already ours."""
        try:
            self.request('PUT', '/' + bucket)
        except S3Error as err:
            if err.code in ('BucketAlreadyOwnedByYou', 'BucketAlreadyExists'):
                return False
            raise
        return True

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.request('PUT', '/%s/%s' % (bucket, key), body=data)

    def get(self, bucket: str, key: str) -> bytes:
        return self.request('GET', '/%s/%s' % (bucket, key))

    def list(self, bucket: str, prefix: str = '') -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix` (ListObjectsV2, all pages)."""
        token = ''
        while True:
            query = {'list-type': '2', 'prefix': prefix}
            if token:
                query['continuation-token'] = token
            root = ET.fromstring(self.request('GET', '/' + bucket, query))
            ns = root.tag.split('}')[0] + '}' if root.tag.startswith('{') else ''
            for item in root.iter(ns + 'Contents'):
                yield (item.findtext(ns + 'Key') or '', int(item.findtext(ns + 'Size') or 0))
            token = root.findtext(ns + 'NextContinuationToken') or ''
            if (root.findtext(ns + 'IsTruncated') or 'false') != 'true' or not token:
                return


def scan(client: S3Client, bucket: str, prefix: str, needle: bytes = b'') -> dict[str, Any]:
    """What is in the bucket under `prefix`, read object by object (see the CLI's `scan`)."""
    tops: dict[str, int] = {}
    not_salted: list[str] = []
    needle_in: list[str] = []
    for key, _size in client.list(bucket, prefix):
        top = key[len(prefix):].lstrip('/').split('/', 1)[0]
        tops[top] = tops.get(top, 0) + 1
        data = client.get(bucket, key)
        if not data.startswith(b'Salted__'):
            not_salted.append(key)
        if needle and needle in data:
            needle_in.append(key)
    return {'objects': sum(tops.values()), 'by_top': tops, 'not_salted': not_salted,
            'needle_in': needle_in}


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='s3_client.py', description=__doc__.split('\n\n')[0])
    parser.add_argument('--endpoint', required=True)
    parser.add_argument('--ca', help='CA bundle that signed the server certificate')
    parser.add_argument('--region', default='us-east-1')
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('mkbucket').add_argument('bucket')
    ls = sub.add_parser('ls')
    ls.add_argument('bucket')
    ls.add_argument('prefix', nargs='?', default='')
    get = sub.add_parser('get')
    get.add_argument('bucket')
    get.add_argument('key')
    get.add_argument('--head', type=int, default=0, help='only the first N bytes')
    sc = sub.add_parser('scan')
    sc.add_argument('bucket')
    sc.add_argument('prefix', nargs='?', default='')
    sc.add_argument('--needle', default='', help='text that must not be in any object')
    opts = parser.parse_args(argv)
    client = S3Client(opts.endpoint, os.environ.get('S3_ACCESS_KEY', ''),
                      os.environ.get('S3_SECRET_KEY', ''), region=opts.region, ca_file=opts.ca)
    try:
        if opts.cmd == 'mkbucket':
            print('created' if client.make_bucket(opts.bucket) else 'exists')
        elif opts.cmd == 'ls':
            for key, size in client.list(opts.bucket, opts.prefix):
                print('%d %s' % (size, key))
        elif opts.cmd == 'scan':
            print(json.dumps(scan(client, opts.bucket, opts.prefix, opts.needle.encode()), indent=1))
        else:
            data = client.get(opts.bucket, opts.key)
            sys.stdout.buffer.write(data[:opts.head] if opts.head else data)
    except S3Error as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(_cli())
