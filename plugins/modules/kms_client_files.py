#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: kms_client_files
short_description: Compare the KMS client files on a host with the wanted content, owner and mode (read-only)
version_added: 1.0.0
description:
  - One look at every KMS client file (CA, client certificate and key, Vault token) and their
    directory - in one module run instead of a C(stat) per file. For each file it compares the
    SHA-1 of the content with the wanted one (computed on the controller) and the owner, group
    and mode with the wanted ones.
  - Returns which files must be replaced (RV(pending)), which live files only need their owner,
    group or mode put back (RV(drift)), and whether the directory is as wanted (RV(directory_ok)),
    and the further O(directories) that are not (RV(directories_drift)).
  - Reads checksums and metadata only; nothing of a file's content is returned. Never changes
    anything; C(changed) is always false. Used by the C(tdeops.pg_tde.certificates) role and by
    C(tdeops.pg_tde.lab_kms) for the lab KMS server's own files.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_none
options:
  files:
    description: The files, each C({name, path, checksum, mode}).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: A name for the file in RV(pending) (the role uses the provider option, for example C(kmip_key)).
        type: str
        required: true
      path:
        description: The live file.
        type: path
        required: true
      checksum:
        description: SHA-1 (hex) of the wanted content.
        type: str
        required: true
      mode:
        description: The wanted mode (octal string, for example C('0600')).
        type: str
        required: true
      owner:
        description: The wanted owner of this file, where it differs from O(owner).
        type: str
      group:
        description: The wanted group of this file, where it differs from O(group).
        type: str
  directory:
    description: The directory of the files, wanted as a directory with O(owner), O(group) and O(directory_mode).
    type: path
    required: true
  directory_mode:
    description: The wanted mode of O(directory).
    type: str
    default: '0700'
  directories:
    description:
      - Further directories, each wanted with its own owner, group and mode (the lab KMS keeps its
        data and log directories under its service user); RV(directories_drift) lists those that differ.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The directory.
        type: path
        required: true
      owner:
        description: The wanted owner (name or uid).
        type: str
        required: true
      group:
        description: The wanted group (name or gid).
        type: str
        required: true
      mode:
        description: The wanted mode (octal string).
        type: str
        required: true
  owner:
    description: The wanted owner (name or uid) of the files and the directory.
    type: str
    required: true
  group:
    description: The wanted group (name or gid).
    type: str
    required: true
seealso:
  - module: tdeops.pg_tde.kms_preflight
'''

EXAMPLES = r'''
- name: Which KMS client files differ
  tdeops.pg_tde.kms_client_files:
    directory: /etc/postgresql/pg_tde
    owner: postgres
    group: postgres
    files:
      - {name: kmip_ca, path: /etc/postgresql/pg_tde/kmip-ca.crt, mode: '0644',
         checksum: "{{ lookup('ansible.builtin.file', 'files/ca.crt', rstrip=false) | hash('sha1') }}"}
  register: live
'''

RETURN = r'''
pending:
  description: Names of the files that are missing or whose content differs from the wanted one.
  returned: always
  type: list
  elements: str
  sample: [kmip_cert]
drift:
  description: C([path, mode]) of existing files whose owner, group or mode differs.
  returned: always
  type: list
  elements: list
  sample: [[/etc/postgresql/pg_tde/kmip-client.key, '0600']]
directory_ok:
  description: O(directory) is a directory with the wanted owner, group and mode.
  returned: always
  type: bool
directories_drift:
  description: The paths of O(directories) that are missing, not directories, or differ in owner, group or mode.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/pykmip]
'''

import grp
import hashlib
import os
import pwd
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def user_id(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def group_id(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def sha1_of(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(65536), b''):
            digest.update(block)
    return digest.hexdigest()


def metadata_differs(st: os.stat_result, uid: int | None, gid: int | None, mode: str) -> bool:
    """Owner, group or permission bits not as wanted (an unknown user or group always differs)."""
    return st.st_uid != uid or st.st_gid != gid or stat.S_IMODE(st.st_mode) != int(mode, 8)


def directory_as_wanted(path: str, uid: int | None, gid: int | None, mode: str) -> bool:
    try:
        st: Any = os.stat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and not metadata_differs(st, uid, gid, mode)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            files=dict(type='list', elements='dict', required=True, options=dict(
                name=dict(type='str', required=True),
                path=dict(type='path', required=True),
                # SHA-1 of a client key: not the key, but nothing a log needs either.
                checksum=dict(type='str', required=True, no_log=True),
                mode=dict(type='str', required=True),
                owner=dict(type='str'),
                group=dict(type='str'),
            )),
            directory=dict(type='path', required=True),
            directory_mode=dict(type='str', default='0700'),
            directories=dict(type='list', elements='dict', default=[], options=dict(
                path=dict(type='path', required=True),
                owner=dict(type='str', required=True),
                group=dict(type='str', required=True),
                mode=dict(type='str', required=True),
            )),
            owner=dict(type='str', required=True),
            group=dict(type='str', required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    uid, gid = user_id(p['owner']), group_id(p['group'])
    pending: list[str] = []
    drift: list[list[str]] = []
    for item in p['files']:
        try:
            st = os.stat(item['path'])
        except FileNotFoundError:
            pending.append(item['name'])
            continue
        except OSError as exc:
            module.fail_json(msg='cannot look at %s (%s): %s' % (item['path'], item['name'], exc))
        try:
            same = stat.S_ISREG(st.st_mode) and sha1_of(item['path']) == item['checksum'].lower()
        except OSError as exc:
            module.fail_json(msg='cannot read %s (%s) to compare it: %s' % (item['path'], item['name'], exc))
        if not same:
            pending.append(item['name'])
        f_uid = uid if item['owner'] is None else user_id(item['owner'])
        f_gid = gid if item['group'] is None else group_id(item['group'])
        if metadata_differs(st, f_uid, f_gid, item['mode']):
            drift.append([item['path'], item['mode']])
    directory_ok = directory_as_wanted(p['directory'], uid, gid, p['directory_mode'])
    directories_drift = [d['path'] for d in p['directories']
                         if not directory_as_wanted(d['path'], user_id(d['owner']), group_id(d['group']), d['mode'])]
    module.exit_json(changed=False, pending=pending, drift=drift, directory_ok=directory_ok,
                     directories_drift=directories_drift)


if __name__ == '__main__':
    main()
