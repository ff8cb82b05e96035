# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of playbooks/rotate_keys.yml: rotation_suffix, rotated_key_name, rotation_summary
(documentation in the .yml files beside this one)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report, _rotation


def rotation_suffix(period: str, now: Any = None) -> str:
    stamp = _report.parse_time(now) if now else dt.datetime.now(dt.timezone.utc)
    if stamp is None:
        raise AnsibleFilterError('rotation_suffix: now must be an ISO 8601 time, not %r' % (now,))
    try:
        return _rotation.period_suffix(str(period), stamp)
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def rotated_key_name(name: str, suffix: str, strip: str = _rotation.DEFAULT_STRIP) -> str:
    problem = _rotation.suffix_problem(str(suffix))
    if problem:
        raise AnsibleFilterError(problem)
    if not name:
        raise AnsibleFilterError('rotated_key_name: the configured key name is empty')
    return _rotation.rotated_name(str(name), str(suffix), strip)


def rotation_summary(results: Any, check_mode: bool = False) -> list[dict[str, Any]]:
    return _rotation.summarize([dict(r) for r in results or [] if hasattr(r, 'items')], bool(check_mode))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {'rotation_suffix': rotation_suffix, 'rotated_key_name': rotated_key_name,
                'rotation_summary': rotation_summary}
