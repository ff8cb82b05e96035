# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A KMIP client for the modules: the connection argspec (doc fragment tdeops.pg_tde.kmip),
a PyKMIP ProxyKmipClient that never reads /etc/pykmip/pykmip.conf, and locate / describe /
create / activate / revoke / destroy of symmetric keys by Name.

Identity rule: KMIP servers own objects by client identity. PyKMIP makes the CN of the client
certificate the owner of every object it registers, and only the owner may Locate or Get it
(Cosmian KMS: the CN is the user; Thales/Fortanix: the client or group the certificate maps to).
To see the keys that pg_tde creates, use the certificate of pg_tde's provider; keys pre-created
for pg_tde must be created with that identity too. pg_tde never activates keys: keys it creates
stay Pre-Active. No function here ever returns key bytes."""
from __future__ import annotations

import logging
import os
import traceback
from typing import Any

try:
    from kmip.core import enums as kmip_enums
    from kmip.pie import exceptions as kmip_exceptions
    from kmip.pie.client import ProxyKmipClient
except ImportError:
    kmip_enums = None  # type: ignore[assignment]
    kmip_exceptions = None  # type: ignore[assignment]
    ProxyKmipClient = None  # type: ignore[assignment,misc]
    PYKMIP_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    PYKMIP_IMPORT_ERROR = None

DEFAULT_KMIP_PORT = 5696
KEY_LENGTHS = (128, 256)
# States as the module reports them.
PRE_ACTIVE = 'pre-active'
ACTIVE = 'active'
DEACTIVATED = 'deactivated'
COMPROMISED = 'compromised'
DESTROYED = 'destroyed'
DESTROYED_COMPROMISED = 'destroyed-compromised'
REVOKED_STATES = (DEACTIVATED, COMPROMISED)
GONE_STATES = (DESTROYED, DESTROYED_COMPROMISED)
REVOCATION_REASONS = ('cessation_of_operation', 'superseded', 'key_compromise', 'affiliation_changed',
                      'privilege_withdrawn', 'unspecified')


class KmipError(Exception):
    """A KMIP failure with a message fit for the user."""


def kmip_argument_spec() -> dict[str, Any]:
    """The options of the tdeops.pg_tde.kmip doc fragment."""
    return dict(
        kmip_host=dict(type='str'),
        kmip_port=dict(type='int', default=DEFAULT_KMIP_PORT),
        kmip_cert=dict(type='path'),
        kmip_key=dict(type='path', no_log=False),
        kmip_ca=dict(type='path'),
        timeout=dict(type='int', default=10),
    )


def missing_connection_options(params: dict[str, Any]) -> list[str]:
    return [name for name in ('kmip_host', 'kmip_cert', 'kmip_key', 'kmip_ca') if not params.get(name)]


def state_name(value: Any) -> str:
    """kmip State enum (or its name) -> 'pre-active', 'active', ..."""
    name = getattr(value, 'name', str(value))
    return name.lower().replace('_', '-')


def _revocation_code(reason: str):
    return getattr(kmip_enums.RevocationReasonCode, reason.upper())


class KmipConnection:
    """One open PyKMIP client. Use as a context manager."""

    def __init__(self, host: str, port: int, cert: str, key: str, ca: str, timeout: int = 10) -> None:
        if PYKMIP_IMPORT_ERROR is not None:
            raise KmipError('PyKMIP is not installed on this host (pip install pykmip).')
        for what, path in (('client certificate (kmip_cert)', cert), ('client key (kmip_key)', key),
                           ('CA certificate (kmip_ca)', ca)):
            if not os.path.isfile(path):
                raise KmipError('%s: the %s file does not exist.' % (path, what))
            if not os.access(path, os.R_OK):
                raise KmipError('%s: the %s file is not readable by this user.' % (path, what))
        self.where = '%s:%s' % (host, port)
        # PyKMIP logs connection failures with tracebacks on the root logger: keep them quiet.
        logging.getLogger('kmip').setLevel(logging.CRITICAL)
        # config_file=os.devnull: every setting comes from here, nothing from
        # /etc/pykmip/pykmip.conf or ~/.pykmip/pykmip.conf.
        self.client = ProxyKmipClient(hostname=host, port=port, cert=cert, key=key, ca=ca,
                                      config='client', config_file=os.devnull)
        self.client.proxy.timeout = timeout

    def __enter__(self) -> KmipConnection:
        try:
            self.client.open()
        except Exception as exc:
            raise KmipError('Cannot open a KMIP connection to %s: %s. Check kmip_host/kmip_port, '
                            'that the KMS trusts the client certificate (its CA and clientAuth '
                            'usage) and that kmip_ca issued the server certificate; the module '
                            'kms_preflight names the exact problem.' % (self.where, _text(exc)))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.close()
        except Exception:
            pass

    def _call(self, what: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if kmip_exceptions is not None and isinstance(exc, kmip_exceptions.KmipOperationFailure):
                raise KmipError('KMIP %s failed on %s: %s' % (what, self.where, _text(exc)))
            raise KmipError('KMIP %s failed on %s: %s' % (what, self.where, _text(exc)))

    def locate(self, name: str) -> list[str]:
        """Unique identifiers of the objects with Name `name` visible to this identity."""
        attr = self.client.attribute_factory.create_attribute(kmip_enums.AttributeType.NAME, name)
        uids = self._call('Locate of "%s"' % name, self.client.locate, attributes=[attr])
        return sorted([str(u) for u in uids or []], key=_uid_sort_key)

    def describe(self, uid: str) -> dict[str, Any]:
        """uid, object_type, state, algorithm, length, names: never key bytes."""
        wanted = ['Object Type', 'State', 'Cryptographic Algorithm', 'Cryptographic Length', 'Name']
        _uid, attrs = self._call('Get Attributes of %s' % uid, self.client.get_attributes, uid, wanted)
        return describe_attributes(uid, attrs)

    def create(self, name: str, length: int) -> str:
        masks = [kmip_enums.CryptographicUsageMask.ENCRYPT, kmip_enums.CryptographicUsageMask.DECRYPT]
        return str(self._call('Create of "%s"' % name, self.client.create,
                              kmip_enums.CryptographicAlgorithm.AES, length, name=name,
                              cryptographic_usage_mask=masks))

    def activate(self, uid: str) -> None:
        self._call('Activate of %s' % uid, self.client.activate, uid)

    def revoke(self, uid: str, reason: str, message: str | None = None) -> None:
        self._call('Revoke of %s' % uid, self.client.revoke, _revocation_code(reason), uid, message)

    def destroy(self, uid: str) -> None:
        self._call('Destroy of %s' % uid, self.client.destroy, uid)


def _uid_sort_key(uid: str) -> tuple[int, Any]:
    return (0, int(uid)) if uid.isdigit() else (1, uid)


def _text(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _attr_value(value: Any) -> Any:
    """Plain Python value of a PyKMIP attribute value object."""
    if hasattr(value, 'name_value'):  # Name
        return str(value.name_value.value)
    inner = getattr(value, 'value', value)
    return inner


def describe_attributes(uid: str, attrs: list) -> dict[str, Any]:
    """Turn PyKMIP Attribute objects into the module's key description (pure)."""
    out: dict[str, Any] = {'uid': uid, 'object_type': None, 'state': None, 'algorithm': None,
                           'length': None, 'names': []}
    for attr in attrs or []:
        name = attr.attribute_name.value
        value = _attr_value(attr.attribute_value)
        if name == 'Name':
            out['names'].append(value)
        elif name == 'State':
            out['state'] = state_name(value)
        elif name == 'Cryptographic Algorithm':
            out['algorithm'] = getattr(value, 'name', str(value))
        elif name == 'Cryptographic Length':
            out['length'] = int(value)
        elif name == 'Object Type':
            out['object_type'] = getattr(value, 'name', str(value)).lower()
    return out


# --- decisions (pure) ------------------------------------------------------------------------


def duplicates_message(name: str, objects: list[dict[str, Any]]) -> str:
    listing = ', '.join('%s (%s)' % (o['uid'], o.get('state') or 'state unknown') for o in objects)
    return ('%d objects on the KMS carry the Name "%s": %s. pg_tde locates keys by Name and fails '
            'when it finds more than one. Destroy the extra objects on the KMS (or use the option '
            'uid of this module to act on one of them) so that exactly one remains.'
            % (len(objects), name, listing))


def plan(current: dict[str, Any] | None, state: str, length: int,
         revocation_reason: str = 'cessation_of_operation') -> list[str]:
    """The KMIP operations that bring one key (or no key) to `state`, in order.

    current: None when no object has the Name (or only destroyed ones), else a describe() dict.
    Returns a list of 'create', 'activate', 'revoke', 'destroy'; raises KmipError when the
    state cannot be reached (KMIP never reactivates a revoked key)."""
    cur = None if current is None or current.get('state') in GONE_STATES else current.get('state')
    if state == 'present':
        return ['create'] if cur is None else []
    if state == 'active':
        if cur is None:
            return ['create', 'activate']
        if cur == PRE_ACTIVE:
            return ['activate']
        if cur == ACTIVE:
            return []
        raise KmipError('Key %s is %s: KMIP does not allow a revoked key to become active again. '
                        'Create a key with a new name instead.' % (current['uid'], cur))
    if state == 'revoked':
        if cur is None:
            raise KmipError('There is no key to revoke: no object with this Name is visible to '
                            'this client identity (certificate CN).')
        compromise = revocation_reason == 'key_compromise'
        if cur == COMPROMISED or (cur == DEACTIVATED and not compromise):
            return []
        if cur == PRE_ACTIVE and not compromise:
            # KMIP servers revoke a Pre-Active key only for key compromise: activate first,
            # then revoke, which leaves it Deactivated.
            return ['activate', 'revoke']
        return ['revoke']
    if state == 'absent':
        if cur is None:
            return []
        if cur == ACTIVE:
            return ['revoke', 'destroy']
        return ['destroy']
    raise ValueError('unknown state %r' % state)


def attribute_problem(current: dict[str, Any] | None, length: int) -> str | None:
    """Why an existing object cannot stand for the requested AES key (None when it can)."""
    if current is None or current.get('state') in GONE_STATES:
        return None
    if current.get('object_type') and current['object_type'] != 'symmetric_key':
        return 'object %s is a %s, not a symmetric key' % (current['uid'], current['object_type'])
    if current.get('algorithm') and current['algorithm'] != 'AES':
        return 'key %s uses %s, not AES' % (current['uid'], current['algorithm'])
    if current.get('length') and current['length'] != length:
        return ('key %s is %d bits long, not %d; keys are never replaced by this module. Set length '
                'to %d, or use another name' % (current['uid'], current['length'], length, current['length']))
    return None


def state_after(current: dict[str, Any] | None, ops: list[str], revocation_reason: str) -> str | None:
    """The state a key ends in after `ops` (for check mode and the diff)."""
    state = None if current is None or current.get('state') in GONE_STATES else current.get('state')
    for op in ops:
        if op == 'create':
            state = PRE_ACTIVE
        elif op == 'activate':
            state = ACTIVE
        elif op == 'revoke':
            state = COMPROMISED if revocation_reason == 'key_compromise' else DEACTIVATED
        elif op == 'destroy':
            state = None
    return state
