# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Comparison of a restored server's tables with the original's (playbooks/disaster_recovery.yml),
from two pg_tde_checksum results."""
from __future__ import annotations

from typing import Any


def compare_checksums(restored: list[dict[str, Any]], original: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One row per table of the original (or of the restore when there is no original): row
    counts, checksums and encryption on both sides and `equal` (None without an original). A table
    the restore lacks, or one that is not encrypted any more, is not equal."""
    got = {(t['database'], t['table']): t for t in restored or []}
    if original is None:
        return [{'database': t['database'], 'table': t['table'], 'rows_restored': t['rows'],
                 'encrypted_restored': t.get('encrypted'), 'equal': None} for t in restored or []]
    rows = []
    for want in original:
        have = got.get((want['database'], want['table']))
        row = {'database': want['database'], 'table': want['table'], 'rows_original': want['rows'],
               'rows_restored': have['rows'] if have else None,
               'encrypted_original': want.get('encrypted'), 'encrypted_restored': have.get('encrypted') if have else None,
               'checksum_equal': bool(have) and (want['rows'], want['hash_sum'], want.get('checksum_method'))
               == (have['rows'], have['hash_sum'], have.get('checksum_method'))}
        row['equal'] = row['checksum_equal'] and row['encrypted_original'] == row['encrypted_restored']
        if not have:
            row['problem'] = 'missing on the restored server'
        elif not row['checksum_equal']:
            row['problem'] = 'rows or checksum differ'
        elif not row['equal']:
            row['problem'] = 'encryption differs'
        rows.append(row)
    return rows
