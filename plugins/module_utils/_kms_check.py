# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What one KMS check (kms_preflight) looked at, as one string: the endpoint, the client files and
the OS user that must read them. The same string checked once in a run needs no second check (the
configure role skips providers the certificates role just checked with the same files)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

FIELDS = {
    'kmip': ('kmip_host', 'kmip_port', 'kmip_ca', 'kmip_cert', 'kmip_key'),
    'vault_v2': ('vault_url', 'vault_ca_path', 'vault_token_path', 'vault_mount_path', 'vault_namespace'),
}
DEFAULTS = {'kmip_port': 5696}


def check_id(options: Mapping[str, Any], readable_by: str | None) -> str:
    """`type|field...|readable_by`; an unknown type gets an id no check returns."""
    kind = str(options.get('type') or 'kmip')
    values = [options.get(name) if options.get(name) not in (None, '') else DEFAULTS.get(name, '')
              for name in FIELDS.get(kind, ('?',))]
    return '|'.join([kind] + [str(v) for v in values] + [str(readable_by or '')])


def unchecked(providers: Iterable[Mapping[str, Any]], results: Iterable[Any], readable_by: str | None) -> list[Any]:
    """The providers whose check id no successful result in `results` carries."""
    done = set()
    for result in results or []:
        if isinstance(result, Mapping) and result.get('check_id') and not result.get('failed') \
                and not result.get('skipped'):
            done.add(result['check_id'])
    return [p for p in providers or [] if check_id(p, readable_by) not in done]
