# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of the compliance report (playbooks/report.yml): the fleet document from the
host sections of tdeops.pg_tde.pg_tde_report, its Markdown and HTML renderings and the gate.
Documentation: fleet_report.yml, report_markdown.yml, report_html.yml, report_gate.yml."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.tdeops.pg_tde.plugins.module_utils import _report, _report_render


def _plain(value: Any) -> Any:
    """Ansible's lazy/templated containers as plain dicts and lists (JSON types)."""
    if isinstance(value, dict) or hasattr(value, 'items'):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def fleet_report(sections: Any, hosts: Any = None, policy: Any = None, now: Any = None,
                 generator: Any = None) -> dict[str, Any]:
    """sections: {host: host section or None}; hosts: every host of the play (a host without a
    section is reported as an error: unreachable, or failed before its report was built)."""
    sections = _plain(sections or {})
    if not isinstance(sections, dict):
        raise AnsibleFilterError('fleet_report: the input must be a dict of host name -> pg_tde_report result')
    problems = _report.policy_problems(_plain(policy or {}))
    if problems:
        raise AnsibleFilterError('Invalid report policy: %s.' % '; '.join(problems))
    effective = _report.effective_policy(_plain(policy or {}))
    stamp = _report.parse_time(now) if now else dt.datetime.now(dt.timezone.utc)
    if stamp is None:
        raise AnsibleFilterError('fleet_report: now must be an ISO 8601 time, not %r' % (now,))
    names = list(dict.fromkeys(list(_plain(hosts or [])) + list(sections)))
    out = []
    for name in names:
        section = sections.get(name)
        error = 'no report from this host (unreachable, or a task before the report failed)'
        if isinstance(section, dict) and 'host' not in section:
            # a registered result: its report, or why there is none
            if section.get('unreachable'):
                error = 'unreachable: %s' % section.get('msg', '')
            elif section.get('msg'):
                error = str(section['msg'])
            section = section.get('report')
        if not isinstance(section, dict) or 'host' not in section:
            section = _report.evaluate_host(name, None, None, effective, stamp, error=error)
        out.append(section)
    return _report.fleet_report(out, effective, stamp, _plain(generator) if generator else None)


def report_markdown(report: Any) -> str:
    return _report_render.markdown(_plain(report))


def report_html(report: Any) -> str:
    return _report_render.html_page(_plain(report))


def report_gate(report: Any, fail_on: str = 'none') -> list[str]:
    if fail_on not in ('none', 'violation', 'warning'):
        raise AnsibleFilterError('report_fail_on must be none, violation or warning, not %r' % (fail_on,))
    return _report.gate(_plain(report), fail_on)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            'fleet_report': fleet_report,
            'report_markdown': report_markdown,
            'report_html': report_html,
            'report_gate': report_gate,
        }
