# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter verify_function (documentation in verify_function.yml): the one map of pg_tde's verify
functions (module_utils/_pg_tde.py) for task files that call them through SQL."""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.tdeops.pg_tde.plugins.module_utils._pg_tde import VERIFY_FUNCTION


def verify_function(kind: str) -> str:
    try:
        return VERIFY_FUNCTION[str(kind)]
    except KeyError:
        raise AnsibleFilterError('verify_function: "%s" is not a key kind; use one of %s'
                                 % (kind, ', '.join(sorted(VERIFY_FUNCTION))))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {'verify_function': verify_function}
