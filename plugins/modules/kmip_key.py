#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: kmip_key
short_description: Manage symmetric keys by name on a KMIP server (for pg_tde)
version_added: 1.0.0
description:
  - Locates a symmetric key by its KMIP C(Name) attribute (the pg_tde key name) on any KMIP
    server (PyKMIP, Cosmian KMS, Thales CipherTrust, Fortanix DSM, ...) over TLS with client
    certificate authentication, and creates, activates, revokes or destroys it.
  - Never returns or logs key bytes. Returns the unique identifier, state, algorithm, length and
    names of the key.
  - Two objects with the same Name make pg_tde's key lookup fail; the module reports that as an
    error with the unique identifiers of all of them, before it changes anything.
  - "Identity rule: the KMS shows a key only to the client identity that created it (on PyKMIP the
    CN of the client certificate). Use the same certificate (or at least the same CN) as the
    pg_tde provider: to see keys pg_tde created, and to pre-create keys that pg_tde can fetch."
  - pg_tde never sends KMIP Activate, so keys it creates stay C(pre-active); O(state=present)
    does the same. Use O(state=active) only when your KMS policy needs active keys.
  - Optionally refuses to revoke or destroy a key that a PostgreSQL server still reports as its
    server (WAL) key, default key or a database key (O(protect_from_pg)).
  - Runs where the client certificate is, on the controller or on a database host with
    C(delegate_to).
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.kmip
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_kms
attributes:
  check_mode:
    support: full
    description: Locates and reads attributes; reports the operations it would run.
  diff_mode:
    support: full
    description: Before/after show uid, state, algorithm, length and names of the key.
options:
  name:
    description:
      - The KMIP Name of the key, that is the key name given to pg_tde (C(pg_tde_create_key_using_*),
        C(pg_tde_set_*_key_using_*)). At most 255 bytes.
    type: str
    required: true
  state:
    description:
      - V(present) creates an AES key in state pre-active when none has the name, as pg_tde does.
        An existing key is left in whatever state it is in.
      - V(active) creates when needed and activates a pre-active key. A revoked key cannot be
        activated again (KMIP), which is an error.
      - V(revoked) revokes the key with O(revocation_reason). KMIP servers revoke a pre-active key
        only for V(key_compromise); for other reasons the module activates it first, so the key
        ends C(deactivated). A key that is already deactivated or compromised is left alone
        (except that V(key_compromise) turns a deactivated key into a compromised one).
      - V(absent) destroys the key, revoking it first when it is active. Destroying a key makes
        every object encrypted with it unreadable for good.
    type: str
    choices: [ present, active, revoked, absent ]
    default: present
  length:
    description:
      - Key length in bits for new keys. pg_tde up to 2.1 accepts only 16-byte (128-bit) keys;
        256 needs pg_tde 2.2 or later with C(pg_tde.cipher = aes_256).
      - An existing key of another length is an error (keys are never replaced).
    type: int
    choices: [ 128, 256 ]
    default: 128
  uid:
    description:
      - Act on the object with this unique identifier among several objects with the same name,
        for example to destroy a duplicate. It must carry the Name O(name).
    type: str
  revocation_reason:
    description:
      - KMIP revocation reason for O(state=revoked) and for revoking an active key before
        O(state=absent) destroys it.
    type: str
    choices: [ cessation_of_operation, superseded, key_compromise, affiliation_changed, privilege_withdrawn, unspecified ]
    default: cessation_of_operation
  revocation_message:
    description:
      - Free text sent with a revocation.
    type: str
  protect_from_pg:
    description:
      - Before revoking or destroying, connect to this PostgreSQL server and refuse when its
        server key (C(pg_tde_server_key_info())), default key (C(pg_tde_default_key_info())) or
        the key of any database checked (C(pg_tde_key_info())) has the name O(name).
      - The match is by key name only, whatever provider the server uses; a key of the same name
        on another KMS also blocks. That is deliberate; name keys uniquely per KMS.
      - Needs psycopg 3 where the module runs, and pg_tde installed in O(protect_from_pg.login_db).
      - Check mode runs this check too.
    type: dict
    suboptions:
      login_user:
        description:
          - The PostgreSQL role to connect as.
        type: str
        default: postgres
        aliases: [ login ]
      login_password:
        description:
          - The password of O(protect_from_pg.login_user).
        type: str
      login_host:
        description:
          - Host name or IP address of the server; unset means the Unix socket.
        type: str
      login_port:
        description:
          - Port of the server.
        type: int
        default: 5432
        aliases: [ port ]
      login_unix_socket:
        description:
          - Directory of the server's Unix socket, when it is not libpq's default.
        type: str
      login_db:
        description:
          - Database to connect to first; it must have the pg_tde extension (server and default key).
        type: str
        default: postgres
      ssl_mode:
        description:
          - libpq C(sslmode).
        type: str
        default: prefer
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - CA certificate of the server's certificate (libpq C(sslrootcert)).
        type: path
        aliases: [ ssl_rootcert ]
      connect_params:
        description:
          - Further libpq connection parameters.
        type: dict
        default: {}
      databases:
        description:
          - Databases whose own key is checked. Default is every database that accepts
            connections, C(template1) included (it can carry the extension and a key of its own;
            C(template0) accepts no connections); databases without the pg_tde extension are skipped.
        type: list
        elements: str
requirements:
  - PyKMIP >= 0.10 (C(pip install pykmip)) on the host that runs the module
  - psycopg >= 3.1 when O(protect_from_pg) is set
seealso:
  - module: tdeops.pg_tde.kms_preflight
  - module: tdeops.pg_tde.pg_tde_key
'''

EXAMPLES = r'''
- name: Pre-create the server key for pg_tde (AES-128, pre-active, as pg_tde would create it)
  tdeops.pg_tde.kmip_key:
    name: db1-server-key-2026
    kmip_host: kms.example.com
    kmip_cert: /etc/pg_tde/kmip-client.crt     # the provider's certificate: same identity
    kmip_key: /etc/pg_tde/kmip-client.key
    kmip_ca: /etc/pg_tde/kmip-ca.crt
  delegate_to: db1.example.com
  become: true

- name: Retire an old key, but never one that db1 still uses
  tdeops.pg_tde.kmip_key:
    name: db1-server-key-2025
    state: absent
    kmip_host: kms.example.com
    kmip_cert: /etc/pg_tde/kmip-client.crt
    kmip_key: /etc/pg_tde/kmip-client.key
    kmip_ca: /etc/pg_tde/kmip-ca.crt
    protect_from_pg:
      login_unix_socket: /var/run/postgresql
  delegate_to: db1.example.com
  become: true
  become_user: postgres

- name: Remove one of two objects with the same name (pg_tde cannot use either while both exist)
  tdeops.pg_tde.kmip_key:
    name: db1-server-key-2026
    uid: "42"
    state: absent
    kmip_host: kms.example.com
    kmip_cert: certs/kmip-client.crt
    kmip_key: certs/kmip-client.key
    kmip_ca: certs/kmip-ca.crt
'''

RETURN = r'''
key:
  description: The key after the task (in check mode, as it would be); null when there is none.
  returned: always
  type: dict
  contains:
    uid:
      description: Unique identifier on the KMS.
      type: str
      sample: "7"
    state:
      description: KMIP state.
      type: str
      sample: pre-active
    algorithm:
      description: Cryptographic algorithm.
      type: str
      sample: AES
    length:
      description: Key length in bits.
      type: int
      sample: 128
    names:
      description: Values of the Name attribute.
      type: list
      elements: str
      sample: [ db1-server-key-2026 ]
    object_type:
      description: KMIP object type.
      type: str
      sample: symmetric_key
uid:
  description: Unique identifier of the key; null when there is none (after O(state=absent)).
  returned: always
  type: str
  sample: "7"
state:
  description: KMIP state of the key after the task, or V(absent).
  returned: always
  type: str
  sample: active
operations:
  description: The KMIP operations run (in check mode, the ones that would run).
  returned: always
  type: list
  elements: str
  sample: [ "Create AES-128 Name=db1-server-key-2026", "Activate 7" ]
keys_in_use:
  description: Keys in use found on the PostgreSQL server of O(protect_from_pg).
  returned: when O(protect_from_pg) is set and a revocation or destruction was planned
  type: list
  elements: dict
  sample: [ { kind: server, database: null, key_name: db1-server-key-2026, provider_name: kms } ]
'''

from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.tdeops.pg_tde.plugins.module_utils._kmip import (
    GONE_STATES,
    PYKMIP_IMPORT_ERROR,
    REVOCATION_REASONS,
    KmipConnection,
    KmipError,
    attribute_problem,
    duplicates_message,
    kmip_argument_spec,
    missing_connection_options,
    plan,
    state_after,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._connection import (
    Sessions,
    ensure_psycopg,
    open_session,
    postgres_argument_spec,
)
from ansible_collections.tdeops.pg_tde.plugins.module_utils._keys import database_keys
from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import (
    KEY_NAME_MAX_BYTES,
    connectable_databases,
    has_extension,
    try_key_info,
)


class _SubModule:
    """What open_session() needs from a module, with the protect_from_pg sub-options as params.
    Only reads run through it."""

    def __init__(self, module: AnsibleModule, params: dict[str, Any]) -> None:
        self._module = module
        self.params = params
        self.check_mode = True

    def fail_json(self, **kwargs: Any) -> None:
        kwargs['msg'] = 'protect_from_pg: %s' % kwargs.get('msg', '')
        self._module.fail_json(**kwargs)


def keys_in_use(module: AnsibleModule, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Server, default and database keys of the server in protect_from_pg. A key that cannot be
    read fails the module: a key that might be in use is never revoked or destroyed."""
    sub = _SubModule(module, params)
    ensure_psycopg(sub)
    found: list[dict[str, Any]] = []
    with Sessions(lambda db: open_session(sub, db)) as sessions:
        main = sessions(params['login_db'])
        if not has_extension(main):
            sub.fail_json(msg='the pg_tde extension does not exist in database "%s", so the server '
                              'and default keys cannot be read. Set protect_from_pg.login_db to a '
                              'database with the extension.' % main.database)
        for kind in ('server', 'default'):
            info, err = try_key_info(main, kind)
            if err:
                sub.fail_json(msg='cannot read the %s key: %s' % (kind, err))
            if info:
                found.append(dict(kind=kind, database=None, key_name=info['key_name'],
                                  provider_name=info['provider_name']))
        databases = params.get('databases') or connectable_databases(main)
        for database, (info, err) in database_keys(sessions, databases).items():
            if err:
                sub.fail_json(msg='cannot read the key of database "%s": %s' % (database, err))
            if info:
                found.append(dict(kind='database', database=database, key_name=info['key_name'],
                                  provider_name=info['provider_name']))
    return found


def protection_message(name: str, users: list[dict[str, Any]]) -> str:
    where = '; '.join('%s key%s (provider %s)' % (
        u['kind'], ' of database "%s"' % u['database'] if u['database'] else '', u['provider_name'])
        for u in users)
    return ('Refusing to revoke or destroy key "%s": PostgreSQL still uses it as %s. Rotate to a new '
            'key first (tdeops.pg_tde.pg_tde_key), then retire this one.' % (name, where))


def describe_op(op: str, name: str, length: int, uid: str | None, reason: str) -> str:
    if op == 'create':
        return 'Create AES-%d Name=%s' % (length, name)
    if op == 'revoke':
        return 'Revoke %s (%s)' % (uid or '<new>', reason)
    return '%s %s' % (op.capitalize(), uid or '<new>')


def public(desc: dict[str, Any] | None) -> dict[str, Any] | None:
    if desc is None:
        return None
    return {k: desc.get(k) for k in ('uid', 'state', 'algorithm', 'length', 'names', 'object_type')}


def main() -> None:
    argument_spec = kmip_argument_spec()
    pg_spec = postgres_argument_spec()
    pg_spec['databases'] = dict(type='list', elements='str')
    argument_spec.update(
        name=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'active', 'revoked', 'absent']),
        length=dict(type='int', default=128, choices=[128, 256]),
        uid=dict(type='str'),
        revocation_reason=dict(type='str', default='cessation_of_operation', choices=list(REVOCATION_REASONS)),
        revocation_message=dict(type='str'),
        protect_from_pg=dict(type='dict', options=pg_spec),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if PYKMIP_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('PyKMIP (pip install pykmip)'), exception=PYKMIP_IMPORT_ERROR)
    missing = missing_connection_options(p)
    if missing:
        module.fail_json(msg='kmip_key needs %s: the KMIP server and the client certificate, key and '
                             'CA of the identity that owns the key.' % ', '.join(missing))
    if len(p['name'].encode('utf-8')) > KEY_NAME_MAX_BYTES:
        module.fail_json(msg='name is longer than %d bytes, the limit of pg_tde key names.' % KEY_NAME_MAX_BYTES)

    name, state, length, reason = p['name'], p['state'], p['length'], p['revocation_reason']
    result: dict[str, Any] = dict(changed=False, operations=[])
    try:
        with KmipConnection(p['kmip_host'], p['kmip_port'], p['kmip_cert'], p['kmip_key'],
                            p['kmip_ca'], p['timeout']) as kmip:
            uids = kmip.locate(name)
            objects = [kmip.describe(uid) for uid in uids]
            live = [o for o in objects if o['state'] not in GONE_STATES]
            if p['uid'] is not None:
                chosen = [o for o in objects if o['uid'] == p['uid']]
                if not chosen:
                    module.fail_json(msg='No object with uid %s carries the Name "%s" for this client '
                                         'identity; objects with that Name: %s.'
                                     % (p['uid'], name, ', '.join(uids) or 'none'))
                current: dict[str, Any] | None = chosen[0]
            else:
                if len(live) > 1:
                    module.fail_json(msg=duplicates_message(name, live), uids=[o['uid'] for o in live],
                                     objects=[public(o) for o in live])
                current = live[0] if live else None
            if state in ('present', 'active'):
                problem = attribute_problem(current, length)
                if problem:
                    module.fail_json(msg='Key "%s" cannot be used as requested: %s.' % (name, problem),
                                     key=public(current))
            ops = plan(current, state, length, reason)

            if p['protect_from_pg'] and ('revoke' in ops or 'destroy' in ops):
                users = [u for u in keys_in_use(module, p['protect_from_pg']) if u['key_name'] == name]
                result['keys_in_use'] = users
                if users:
                    module.fail_json(msg=protection_message(name, users), keys_in_use=users, key=public(current))

            uid = current['uid'] if current else None
            final: dict[str, Any] | None = public(current)
            for op in ops:
                result['operations'].append(describe_op(op, name, length, uid, reason))
                if module.check_mode:
                    continue
                if op == 'create':
                    uid = kmip.create(name, length)
                elif op == 'activate':
                    kmip.activate(uid)
                elif op == 'revoke':
                    kmip.revoke(uid, reason, p['revocation_message'])
                elif op == 'destroy':
                    kmip.destroy(uid)
            if ops:
                result['changed'] = True
                if module.check_mode:
                    after = state_after(current, ops, reason)
                    final = None if after is None else dict(
                        public(current) or {'uid': None, 'algorithm': 'AES', 'length': length,
                                            'names': [name], 'object_type': 'symmetric_key'},
                        state=after)
                elif 'destroy' in ops:
                    remaining = [u for u in kmip.locate(name) if u == uid]
                    final = public(kmip.describe(uid)) if remaining else None
                else:
                    final = public(kmip.describe(uid))
    except KmipError as exc:
        module.fail_json(msg=str(exc), **result)

    if final is not None and final.get('state') in GONE_STATES:
        final = None
    result['key'] = final
    result['uid'] = final['uid'] if final else None
    result['state'] = final['state'] if final else 'absent'
    if module._diff:
        result['diff'] = dict(before=_diff_view(name, public(current)), after=_diff_view(name, final))
    module.exit_json(**result)


def _diff_view(name: str, desc: dict[str, Any] | None) -> dict[str, Any]:
    if desc is None:
        return {'name': name, 'state': 'absent'}
    return {'name': name, 'uid': desc.get('uid'), 'state': desc.get('state'),
            'algorithm': desc.get('algorithm'), 'length': desc.get('length'), 'names': desc.get('names')}


if __name__ == '__main__':
    main()
