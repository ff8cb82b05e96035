#!/usr/bin/python3
"""Open a TLS KMIP session to a KMS with a client certificate (molecule verify helper).

accept: the server must accept the certificate; create an AES-128 key with a unique name,
        locate it by that name, then destroy it (keys are visible only to their owner CN).
reject: the server must refuse the handshake or the request (e.g. a cert from another CA).
Prints one JSON line; exit 0 when the expectation holds, 1 otherwise.
"""
import argparse
import json
import sys
import uuid

from kmip.core import enums
from kmip.pie.client import ProxyKmipClient


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("expect", choices=["accept", "reject"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=5696)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()

    name = "tdeops-molecule-check-" + uuid.uuid4().hex[:12]
    result = {"expect": args.expect, "host": args.host, "port": args.port}
    try:
        # ssl_version: negotiate; the server only speaks TLS 1.2 with its two ECDHE_RSA suites.
        with ProxyKmipClient(hostname=args.host, port=args.port, cert=args.cert, key=args.key,
                             ca=args.ca, ssl_version="PROTOCOL_SSLv23") as client:
            uid = client.create(enums.CryptographicAlgorithm.AES, 128, name=name)
            found = client.locate(attributes=[
                client.attribute_factory.create_attribute(enums.AttributeType.NAME, name)])
            client.destroy(uid)
        result.update(accepted=True, created=uid, located=found)
        ok = args.expect == "accept" and found == [uid]
    except Exception as exc:  # any refusal (TLS alert, reset, KMIP error) counts as rejected
        result.update(accepted=False, error=f"{type(exc).__name__}: {exc}")
        ok = args.expect == "reject"
    result["ok"] = ok
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
