# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter of playbooks/disaster_recovery.yml: checksum_compare (documentation in checksum_compare.yml)."""
from __future__ import annotations

from typing import Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _recovery


def checksum_compare(restored: Any, original: Any = None) -> list[dict[str, Any]]:
    def plain(tables: Any) -> list[dict[str, Any]] | None:
        return None if tables is None else [dict(t) for t in tables]
    return _recovery.compare_checksums(plain(restored) or [], plain(original))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {'checksum_compare': checksum_compare}
