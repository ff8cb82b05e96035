# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Vault / OpenBao the way pg_tde's vault_v2 provider uses it, written once for
pg_tde_provider and kms_preflight: the token file (read as pg_tde reads it), the KV version 2
mount rule, and the reads pg_tde makes when a provider is added or changed.

Observed with pg_tde 2.2.0 and OpenBao 2.7.2 (both real):
- pg_tde takes the token from the start of the file up to the first blank (space, tab, CR or
  LF): `tok\\n`, `tok`, `tok\\r\\n`, `tok extra\\n` and `tok\\nline 2` all work, while a file
  that starts with a blank (`\\ntok`, `  tok`) or is empty sends an empty token (HTTP 403).
- `GET /v1/sys/mounts/<mount>` answers a KV v2 mount with `type: kv` and `options.version:
  "2"` (top level and under `data`; a mount enabled as `kv-v2` reports the same). A `generic`
  mount reports `type: generic` with no version, and OpenBao refuses a version for it ("secrets
  engine "generic" does not allow setting a version"): it is always KV version 1.
- pg_tde accepts exactly `type == "kv"` with version "2" and refuses the rest with an ERROR:
  `vault mount at "m" has unsupported engine type "generic"` (also cubbyhole, ...),
  `... unsupported Key/Value engine version "1"`, and for a kv mount without a version
  `failed to parse mount info ... missing version field`. That is the one rule here."""
from __future__ import annotations

import json
import re
from typing import Any

from ansible.module_utils.urls import open_url

from ansible_collections.tdeops.pg_tde.plugins.module_utils._errors import (
    VAULT_ENGINE_TYPE,
    VAULT_KV_VERSION,
    VAULT_LIST_FAILED,
    VAULT_REQUEST_FAILED,
)

KV_TYPE = 'kv'
KV_VERSION = '2'
_TOKEN_END = re.compile(r'[ \t\r\n]')


class VaultCheckError(Exception):
    """A check failed; `check` names it (token_file, vault_mount), the message says what to do."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


# --- the token file --------------------------------------------------------------------------------


def token_from_text(text: str) -> tuple[str, bool]:
    """(the token pg_tde sends, whether anything after it is ignored)."""
    end = _TOKEN_END.search(text)
    token = text[:end.start()] if end else text
    return token, bool(text[len(token):].strip())


def read_token_file(path: str | None) -> tuple[str, bool]:
    """The token of vault_token_path as pg_tde reads it, and whether more text is ignored.
    Raises VaultCheckError('token_file', ...) naming the path and the fix."""
    if not path:
        raise VaultCheckError('token_file', 'vault_token_path is not set: it names the file whose first line '
                                            'is the Vault token.')
    try:
        with open(path, 'rb') as handle:
            text = handle.read().decode('utf-8', errors='replace')
    except FileNotFoundError:
        raise VaultCheckError('token_file', 'vault_token_path %s does not exist.' % path)
    except IsADirectoryError:
        raise VaultCheckError('token_file', 'vault_token_path %s is a directory, not a file.' % path)
    except OSError as exc:
        raise VaultCheckError('token_file', 'vault_token_path %s cannot be read here: %s. Run the task with '
                                            'become (root or the PostgreSQL OS user).' % (path, exc.strerror or exc))
    token, more = token_from_text(text)
    if not token:
        raise VaultCheckError('token_file', 'vault_token_path %s is empty or starts with a blank (space, tab or '
                                            'empty line): pg_tde reads the token from the start of the file up to '
                                            'the first blank and would send an empty token. Put the token alone on '
                                            'the first line.' % path)
    return token, more


# --- the mount ---------------------------------------------------------------------------------------


def kv_mount_problem(mount: str, answer: dict[str, Any]) -> str | None:
    """From Vault's answer to GET /v1/sys/mounts/<mount>: why pg_tde refuses the mount (it is
    not a KV version 2 secrets engine), or None when pg_tde accepts it."""
    data = answer.get('data') if isinstance(answer.get('data'), dict) else answer
    mtype = data.get('type')
    version = str((data.get('options') or {}).get('version') or '1')
    if mtype != KV_TYPE:
        always_v1 = ' (always KV version 1)' if mtype == 'generic' else ''
        return ('mount "%s" is a "%s" secrets engine%s, not KV version 2 (pg_tde: "%s")'
                % (mount, mtype, always_v1, VAULT_ENGINE_TYPE % (mount, mtype)))
    if version != KV_VERSION:
        return ('mount "%s" is KV version %s; pg_tde needs KV version 2 (pg_tde: "%s")'
                % (mount, version, VAULT_KV_VERSION % (mount, version)))
    return None


def vault_get(url: str, api_path: str, token: str, ca_path: str | None, timeout: int,
              namespace: str | None) -> tuple[int, dict[str, Any]]:
    """GET <url>/v1/<api_path> with the token, as pg_tde sends it; (status, JSON body). HTTP
    errors are returned; transport errors (refused, TLS, DNS) raise OSError/ValueError."""
    headers = {'X-Vault-Token': token}
    if namespace:
        headers['X-Vault-Namespace'] = namespace
    try:
        resp = open_url(url.rstrip('/') + '/v1/' + api_path, method='GET', headers=headers, timeout=timeout,
                        validate_certs=True, ca_path=ca_path, follow_redirects='none')
        return resp.getcode(), json.loads(resp.read() or b'{}')
    except Exception as exc:  # urllib's HTTPError carries the answer; anything else is raised on
        code = getattr(exc, 'code', None)
        if not isinstance(code, int):
            raise
        try:
            body = json.loads(exc.read() or b'{}')  # type: ignore[attr-defined]
        except ValueError:
            body = {}
        return code, body if isinstance(body, dict) else {}


def check_kv2_mount(url: str, mount: str, token: str, token_path: str, ca_path: str | None,
                    namespace: str | None = None, timeout: int = 15, provider: str = 'P') -> None:
    """The reads pg_tde makes when a vault_v2 provider is added or changed:
    GET sys/mounts/<mount> (must be KV version 2) and a list of <mount>/metadata (200, or 404
    while the mount is empty). Raises VaultCheckError('vault_mount', ...) with the fix."""
    mounts = '%s/v1/sys/mounts/%s' % (url.rstrip('/'), mount)
    policy = ('pg_tde needs a token policy with read on sys/mounts/%s, create and read on %s/data/* and list on '
              '%s/metadata' % (mount, mount, mount))
    try:
        status, answer = vault_get(url, 'sys/mounts/%s' % mount, token, ca_path, timeout, namespace)
        if status == 403:
            raise VaultCheckError('vault_mount', 'Vault refused GET %s (HTTP 403): the token in %s is invalid or '
                                                 'expired, or may not read sys/mounts/%s. %s.'
                                  % (mounts, token_path, mount, policy))
        if status != 200:
            errors = '; '.join(str(e) for e in answer.get('errors') or []) or 'no reason given'
            raise VaultCheckError('vault_mount', 'Vault answered HTTP %d to GET %s (%s). Check vault_url and '
                                                 'vault_mount_path: the bare KV version 2 mount (for example '
                                                 '"secret"), which must exist.' % (status, mounts, errors))
        problem = kv_mount_problem(mount, answer)
        if problem:
            raise VaultCheckError('vault_mount', 'Vault %s: %s. pg_tde stores keys in a KV version 2 mount only. '
                                                 'Enable one with "bao secrets enable -path=<mount> kv-v2" (or '
                                                 'vault) and set vault_mount_path.' % (url, problem))
        status, _answer = vault_get(url, '%s/metadata/?list=true' % mount, token, ca_path, timeout, namespace)
    except (OSError, ValueError) as exc:
        raise VaultCheckError('vault_mount', 'Cannot reach Vault at %s from this host: %s. Check vault_url, that '
                                             'vault_ca_path signs the server certificate, and the network; pg_tde '
                                             'would fail with "%s".' % (url, exc, VAULT_REQUEST_FAILED % provider))
    if status not in (200, 404):
        raise VaultCheckError('vault_mount', 'The token in %s cannot list %s/metadata (HTTP %d); pg_tde would fail '
                                             'with "%s". %s.' % (token_path, mount, status,
                                                                 VAULT_LIST_FAILED % (url, mount), policy))
