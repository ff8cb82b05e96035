#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

DOCUMENTATION = r'''
module: pg_tde_host_check
short_description: Check that a host has PostgreSQL, the pg_tde library and the Python libraries (read-only)
version_added: 1.0.0
description:
  - Looks for the server binaries (C(postgres), C(pg_ctl)) in O(bindir), asks C(pg_config --pkglibdir)
    for the library directory (or takes C(lib) next to the binaries), looks for C(pg_tde.so) there,
    imports each of O(python_modules) in the Python that runs the module (the one the collection's
    modules run with), and says whether a cluster exists in O(datadir) (C(PG_VERSION)),
    whether its server runs (C(postmaster.pid) names a live process, as C(pg_ctl status) decides)
    and, with O(service), whether its systemd unit already runs enabled as wanted.
  - Fails with everything that is missing and O(fix) when something is; RV(missing) lists it.
  - Never changes anything; C(changed) is always false.
author:
  - tdeops maintainers (@tdeops)
extends_documentation_fragment:
  - tdeops.pg_tde.attributes
  - tdeops.pg_tde.attributes.info_module
  - tdeops.pg_tde.attributes.actiongroup_none
options:
  bindir:
    description: Directory of the PostgreSQL binaries (C(pg_layout_bindir)).
    type: path
    required: true
  datadir:
    description: Data directory of the cluster (C(pg_layout_datadir)).
    type: path
    required: true
  python_modules:
    description: Python modules that must import.
    type: list
    elements: str
    default: [psycopg, kmip, cryptography]
  fix:
    description: What the user can do, appended to the failure message.
    type: str
    default: ""
  service:
    description:
      - A systemd unit of the server (C(pg_layout_service)). When set, RV(service) says what
        C(systemctl is-enabled) and C(systemctl is-active) print for it and RV(service_settled)
        whether it already runs and is enabled as O(service_enabled) wants, so a task that enables
        and starts it can be skipped. Empty (default) asks nothing.
    type: str
    default: ""
  service_enabled:
    description: Whether the unit should be enabled at boot (for RV(service_settled)).
    type: bool
    default: true
seealso:
  - module: tdeops.pg_tde.pg_tde_info
'''

EXAMPLES = r'''
- name: Check binaries, the pg_tde library and the Python libraries
  tdeops.pg_tde.pg_tde_host_check:
    bindir: /usr/lib/postgresql/17/bin
    datadir: /var/lib/postgresql/17/main
    fix: Install percona-pg-tde and python3-psycopg.
  register: host_check
'''

RETURN = r'''
pkglibdir:
  description: The library directory of the server.
  returned: always
  type: str
  sample: /usr/lib/postgresql/17/lib
missing:
  description: What is missing (paths, or C(Python module NAME for PYTHON)); empty when all is there.
  returned: always
  type: list
  elements: str
python_module_errors:
  description: The import error of each Python module that does not import.
  returned: always
  type: dict
cluster_exists:
  description: Whether O(datadir) holds a cluster (C(PG_VERSION)).
  returned: always
  type: bool
server_running:
  description: Whether the server of O(datadir) runs (C(postmaster.pid) names a live process).
  returned: always
  type: bool
service:
  description:
    - The unit and systemctl's words for it (C(enabled), C(active)); empty strings where systemctl
      said nothing usable. Empty when O(service) is not set.
  returned: always
  type: dict
  sample: {name: postgresql@17-main, enabled: enabled, active: active}
service_settled:
  description:
    - True only when O(service) runs (C(active)) and is C(enabled) (or C(disabled)) as O(service_enabled)
      wants. False when O(service) is not set or in any other state (C(indirect), C(static), failed, unknown).
  returned: always
  type: bool
'''

import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.tdeops.pg_tde.plugins.module_utils._host_check import check_host


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            bindir=dict(type='path', required=True),
            datadir=dict(type='path', required=True),
            python_modules=dict(type='list', elements='str', default=['psycopg', 'kmip', 'cryptography']),
            fix=dict(type='str', default=''),
            service=dict(type='str', default=''),
            service_enabled=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = check_host(p['bindir'], p['datadir'], p['python_modules'], sys.executable,
                        module.run_command, p['service'], p['service_enabled'])
    if result['missing']:
        module.fail_json(msg=('Missing: %s. %s' % ('; '.join(result['missing']), p['fix'])).strip(), **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
