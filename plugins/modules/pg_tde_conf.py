#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_conf
short_description: The pg_tde include file - merged shared_preload_libraries, settings, restart decision
version_added: 1.0.0
description:
  - Computes the merged C(shared_preload_libraries) (the server's own list, parsed once, with
    C(pg_tde) added first or last and the extra libraries appended) and the pg_tde settings, and
    writes them into one include file atomically, with a backup of the previous file.
  - Returns the undo entry of the write (RV(undo)) for the collection's one safe restart
    (M(tdeops.pg_tde.pg_restart)) and whether the new preload list needs a restart
    (RV(restart_reasons)); settings of O(settings) that need one are found by the role through
    C(pending_restart) after the reload.
  - Used by the C(tdeops.pg_tde.configure) role; runs on the database host.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.actiongroup_none
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  path:
    description: The include file.
    type: path
    required: true
  owner:
    description: Owner of the file.
    type: str
  group:
    description: Group of the file.
    type: str
  mode:
    description: Mode of the file.
    type: raw
    default: '0644'
  dir_mode:
    description:
      - Mode of the directory of O(path) (C(configure_conf_dir)), created when missing with O(owner)
        and O(group) like the file; an existing directory gets the owner, group and mode too.
    type: raw
    default: '0755'
  base_preload:
    description:
      - The server's own C(shared_preload_libraries) (the last value in a configuration file other
        than O(path)); empty when none sets it.
    type: str
    default: ''
  running_preload:
    description: C(current_setting('shared_preload_libraries')) of the running server (restart decision).
    type: str
  preload_position:
    description: Where C(pg_tde) goes when the list lacks it.
    type: str
    choices: [first, last]
    default: first
  preload_extra:
    description: Further libraries appended when missing.
    type: list
    elements: str
    default: []
  settings:
    description: Other settings of the file (C(shared_preload_libraries) and the pg_tde switches are refused here).
    type: dict
    default: {}
  wal_encrypt:
    description: C(pg_tde.wal_encrypt).
    type: bool
    default: false
  enforce_encryption:
    description: C(pg_tde.enforce_encryption).
    type: bool
    default: false
  default_table_access_method:
    description: C(default_table_access_method) to write; empty - not written.
    type: str
    default: ''
seealso:
  - module: tdeops.pg_tde.pg_restart
'''

EXAMPLES = r'''
- name: The include file
  tdeops.pg_tde.pg_tde_conf:
    path: /etc/postgresql/17/main/conf.d/90-tdeops-pg_tde.conf
    owner: postgres
    group: postgres
    base_preload: pg_stat_statements
    running_preload: pg_stat_statements
    settings:
      pg_tde.cipher: aes_256
  register: conf
'''

RETURN = r'''
preload:
  description: The merged shared_preload_libraries written.
  returned: always
  type: list
  elements: str
undo:
  description: C([{path, backup}]) when the content changed (C(backup) empty - the file was new); else empty.
  returned: always
  type: list
  elements: dict
content_changed:
  description: The text of the file changed (in check mode - would change); the server must read it again.
  returned: always
  type: bool
rendered:
  description:
    - What the file sets - C(preload) (list), C(wal_encrypt), C(enforce_encryption) (bool) and
      C(default_table_access_method) (empty when not written).
  returned: always
  type: dict
  sample: {preload: [pg_tde], wal_encrypt: true, enforce_encryption: false, default_table_access_method: ''}
restart_reasons:
  description: The preload list differs from the running server's (one entry naming the running list), else empty.
  returned: always
  type: list
  elements: str
'''

import os
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _settings as S


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            owner=dict(type='str'),
            group=dict(type='str'),
            mode=dict(type='raw', default='0644'),
            dir_mode=dict(type='raw', default='0755'),
            base_preload=dict(type='str', default=''),
            running_preload=dict(type='str'),
            preload_position=dict(type='str', default='first', choices=['first', 'last']),
            preload_extra=dict(type='list', elements='str', default=[]),
            settings=dict(type='dict', default={}),
            wal_encrypt=dict(type='bool', default=False),
            enforce_encryption=dict(type='bool', default=False),
            default_table_access_method=dict(type='str', default=''),
        ),
        supports_check_mode=True,
    )
    p = module.params
    refused = S.refused_settings(p['settings'])
    if refused:
        module.fail_json(msg='configure_settings must not set %s: the role has its own variables for them '
                             '(configure_preload_extra, configure_wal_encrypt, configure_enforce_encryption).'
                             % ', '.join(refused))
    preload = S.merged_preload(p['base_preload'], p['preload_position'], p['preload_extra'])
    content = S.render(preload, p['settings'], p['wal_encrypt'], p['enforce_encryption'],
                       p['default_table_access_method'], p['preload_position'])
    path = p['path']
    directory = os.path.dirname(path)
    dir_changed = False
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            module.fail_json(msg='%s exists and is not a directory: configure_conf_dir must name a directory.' % directory)
        dir_changed = True
        if not module.check_mode:
            try:
                os.makedirs(directory)
            except OSError as exc:
                module.fail_json(msg='cannot create %s (configure_conf_dir): %s. Create it or point '
                                     'configure_conf_dir at a directory the server reads.' % (directory, exc))
    if os.path.isdir(directory):
        dir_args = module.load_file_common_arguments(dict(path=directory, owner=p['owner'], group=p['group'],
                                                          mode=p['dir_mode']))
        dir_changed = module.set_fs_attributes_if_different(dir_args, dir_changed)
    try:
        with open(path, encoding='utf-8') as handle:
            before: str | None = handle.read()
    except FileNotFoundError:
        before = None
    reason = S.preload_restart_reason(p['running_preload'], preload) if p['running_preload'] is not None else None
    result: dict[str, Any] = dict(changed=before != content or dir_changed, content_changed=before != content,
                                  preload=preload, undo=[],
                                  restart_reasons=[reason] if reason else [],
                                  rendered=dict(preload=preload, wal_encrypt=p['wal_encrypt'],
                                                enforce_encryption=p['enforce_encryption'],
                                                default_table_access_method=p['default_table_access_method']))
    if module._diff:
        result['diff'] = dict(before=before or '', after=content, before_header=path, after_header=path)
    if before != content and not module.check_mode:
        backup = module.backup_local(path) if before is not None else ''
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.pg_tde_conf.')
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(content)
        module.atomic_move(tmp, path)
        result['undo'] = [{'path': path, 'backup': backup}]
    if os.path.exists(path) or not module.check_mode:
        file_args = module.load_file_common_arguments(dict(path=path, owner=p['owner'], group=p['group'],
                                                           mode=p['mode']))
        result['changed'] = module.set_fs_attributes_if_different(file_args, result['changed'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
