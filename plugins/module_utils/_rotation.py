# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Key rotation across a fleet (playbooks/rotate_keys.yml): the new key names, the same for a
whole rotation period so that a second run in the same period finds the keys already in place
instead of rotating again, and the per-host summary of old and new names."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

PERIODS = ('day', 'week', 'month', 'quarter', 'year', 'minute')
# An earlier suffix of this playbook: -YYYYMMDD or -YYYYMMDDTHHMM[SS]
DEFAULT_STRIP = r'-[0-9]{8}(T[0-9]{4,6})?$'


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    """The first moment (UTC) of the rotation period that contains now."""
    now = now.astimezone(dt.timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == 'minute':
        return now.replace(second=0, microsecond=0)
    if period == 'day':
        return day
    if period == 'week':
        return day - dt.timedelta(days=day.weekday())  # ISO weeks start on Monday
    if period == 'month':
        return day.replace(day=1)
    if period == 'quarter':
        return day.replace(month=3 * ((day.month - 1) // 3) + 1, day=1)
    if period == 'year':
        return day.replace(month=1, day=1)
    raise ValueError('rotate_keys_period must be one of %s, not %r' % (', '.join(PERIODS), period))


def period_suffix(period: str, now: dt.datetime) -> str:
    """YYYYMMDD of the period's first day (YYYYMMDDTHHMM for 'minute', the old behaviour)."""
    start = period_start(period, now)
    return start.strftime('%Y%m%dT%H%M') if period == 'minute' else start.strftime('%Y%m%d')


def suffix_problem(suffix: str) -> str | None:
    """A suffix must survive the next run's strip and make a valid key name part."""
    if not re.fullmatch(r'[0-9]{8}(T[0-9]{4,6})?', suffix or ''):
        return ('rotate_keys_suffix must look like YYYYMMDD or YYYYMMDDTHHMM (it replaces the earlier suffix on '
                'the next rotation), not %r' % (suffix,))
    return None


def rotated_name(name: str, suffix: str, strip: str = DEFAULT_STRIP) -> str:
    """The configured name without an earlier suffix, plus -<suffix>."""
    return '%s-%s' % (re.sub(strip, '', name), suffix)


def _wanted(res: dict[str, Any]) -> dict[str, Any] | None:
    """name, targets and databases a pg_tde_key result was called with: `_rotate` added by the
    playbook, the loop item of a database key, or the invocation (verbose runs)."""
    args = res.get('_rotate') or (res.get('invocation') or {}).get('module_args')
    if not args and isinstance(res.get('item'), dict):
        args = dict(res['item'], targets=['database'])
    if not args or not args.get('name'):
        return None
    return {'name': args['name'], 'targets': list(args.get('targets') or []),
            'databases': list(args.get('databases') or [])}


def summarize(results: list[dict[str, Any]], check_mode: bool) -> list[dict[str, Any]]:
    """One line per target from registered pg_tde_key results (the wanted key from the
    invocation, what happened from the module's `set` and `principal_keys`). Loop results
    (with `results`) are flattened."""
    flat: list[dict[str, Any]] = []
    for res in results:
        if isinstance(res, dict) and isinstance(res.get('results'), list):
            flat += [r for r in res['results'] if isinstance(r, dict)]
        elif isinstance(res, dict):
            flat.append(res)
    out: list[dict[str, Any]] = []
    for res in flat:
        want = None if res.get('skipped') else _wanted(res)
        if want is None:
            continue
        if res.get('failed'):
            for target in want['targets']:
                out.append({'target': target, 'database': None, 'old_key': None, 'new_key': want['name'],
                            'action': 'failed', 'detail': res.get('msg')})
            continue
        changed = {(s.get('target'), s.get('database')): s for s in res.get('set') or []}
        keys = res.get('principal_keys') or {}
        places = [(t, None) for t in want['targets'] if t != 'database']
        places += [('database', db) for db in want.get('databases') or [] if 'database' in want['targets']]
        places += [k for k in changed if k not in places]
        for target, database in places:
            step = changed.get((target, database))
            if step is not None:
                action = ('would rotate' if check_mode else 'rotated') if step.get('old_key') else \
                    ('would set' if check_mode else 'set')
                if step.get('followed_default'):
                    action += ' (followed the default key)'
                out.append({'target': target, 'database': database, 'old_key': step.get('old_key'),
                            'new_key': step.get('new_key'), 'action': action, 'detail': None})
                continue
            now = keys.get(target) if target != 'database' else (keys.get('databases') or {}).get(database)
            name = (now or {}).get('key_name')
            out.append({'target': target, 'database': database, 'old_key': name, 'new_key': want['name'],
                        'action': 'already in place' if name == want['name'] else 'not set',
                        'detail': None if name == want['name'] else 'the key in place is %s' % name})
    return out
