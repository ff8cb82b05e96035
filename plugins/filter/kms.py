# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter of the configure role: kms_unchecked (documentation in kms_unchecked.yml)."""
from __future__ import annotations

from typing import Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _kms_check


def kms_unchecked(providers: Any, results: Any, readable_by: Any = None) -> list[Any]:
    return _kms_check.unchecked(list(providers or []), list(results or []), readable_by)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {'kms_unchecked': kms_unchecked}
