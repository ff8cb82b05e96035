# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations


class ModuleDocFragment:
    # The attributes every module of the collection documents. A module states its own support
    # (check_mode, diff_mode); the descriptions, the platform and the action group come from here.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and report the changed status it predicts without changing the target.
  diff_mode:
    description: Returns what changed (or would change in check mode) when run with C(--diff).
  platform:
    description: Target operating systems the module runs on.
    support: full
    platforms: posix
'''

    # Modules that only read: check mode runs them unchanged, there is nothing to diff.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs in check mode as in a normal run.
  diff_mode:
    support: N/A
    details: The module only reads.
'''

    # Membership in meta/runtime.yml action_groups: module_defaults with group/tdeops.pg_tde.<group>.
    ACTIONGROUP_PG_TDE = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/tdeops.pg_tde.pg_tde) in C(module_defaults) to set defaults (the C(login_*) options) for this module.
    support: full
    membership:
      - tdeops.pg_tde.pg_tde
'''

    ACTIONGROUP_KMS = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/tdeops.pg_tde.kms) in C(module_defaults) to set defaults (the C(kmip_*) options) for this module.
    support: full
    membership:
      - tdeops.pg_tde.kms
'''

    # Modules that take no login_* or kmip_* options: in no action group.
    ACTIONGROUP_NONE = r'''
options: {}
attributes:
  action_group:
    description: Not in an action group (the module takes no C(login_*) or C(kmip_*) options).
    support: none
    membership: []
'''
