# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter of playbooks/site.yml: site_restart_reasons (documentation in site_restart_reasons.yml)."""
from __future__ import annotations

from typing import Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _site


def site_restart_reasons(probe: Any, want: Any) -> list[str]:
    row = None
    if isinstance(probe, dict) or hasattr(probe, 'items'):
        rows = probe.get('query_result') if 'query_result' in probe else [probe]
        row = dict(rows[0]) if rows and not probe.get('failed') and not probe.get('unreachable') else None
    return _site.restart_reasons(row, dict(want or {}))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {'site_restart_reasons': site_restart_reasons}
