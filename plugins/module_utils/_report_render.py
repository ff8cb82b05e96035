# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The compliance report as Markdown and as one self-contained HTML page (inline CSS and SVG,
nothing fetched from the network), from the document _report.fleet_report() builds."""
from __future__ import annotations

import html
from typing import Any

from ansible_collections.tdeops.pg_tde.plugins.module_utils._report import human_bytes

STATUS_LABEL = {'pass': 'PASS', 'warn': 'WARN', 'fail': 'FAIL', 'error': 'ERROR'}
COLORS = {'pass': '#1a7f37', 'warn': '#b35900', 'fail': '#c62828', 'error': '#6a1b9a',
          'encrypted': '#1a7f37', 'unencrypted': '#c62828', 'ok': '#1a7f37', 'warning': '#b35900',
          'violation': '#c62828', 'info': '#57606a'}


def _pct(value: Any) -> str:
    return '-' if value is None else ('%.1f %%' % value)


def _md_escape(text: Any) -> str:
    return str(text if text is not None else '-').replace('|', '\\|').replace('\n', ' ')


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def markdown(report: dict[str, Any]) -> str:
    s = report['summary']
    lines = [
        '# pg_tde compliance report',
        '',
        'Generated %s by %s (schema %s). Fleet status: **%s**.' % (
            report['generated_at'], report['generator'].get('name'), report['schema_version'],
            STATUS_LABEL[s['status']]),
        '',
        '| hosts | pass | warn | fail | error | violations | warnings | encrypted (bytes) | WAL encryption on | oldest key |',
        '|---|---|---|---|---|---|---|---|---|---|',
        '| %d | %d | %d | %d | %d | %d | %d | %s | %d of %d | %s |' % (
            s['hosts'], s['hosts_by_status']['pass'], s['hosts_by_status']['warn'], s['hosts_by_status']['fail'],
            s['hosts_by_status']['error'], s['findings']['violation'], s['findings']['warning'],
            _pct(s['coverage']['percent_bytes']), s['wal_encryption_on'],
            s['wal_encryption_on'] + s['wal_encryption_off'],
            '-' if s['oldest_key_days'] is None else '%.0f days' % s['oldest_key_days']),
        '',
        '## Hosts',
        '',
        '| host | status | encrypted | unencrypted | coverage (bytes) | WAL | keys (oldest) | KMS | backup |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for h in report['hosts']:
        if h['status'] == 'error':
            lines.append('| %s | ERROR | - | - | - | - | - | - | %s |' % (_md_escape(h['host']), _md_escape(h['error'])))
            continue
        cov = h['coverage']
        ages = [k['age_days'] for k in h['keys'] if k.get('age_days') is not None]
        kms = [p['kms'] for p in h['providers'] if p.get('kms')]
        kms_text = ('ok' if all(k['reachable'] and k['server_certificate_verified'] for k in kms) else 'PROBLEM') \
            if kms else ('file keyring' if any(p['type'] == 'file' for p in h['providers']) else '-')
        b = h['backup']
        backup_text = '-' if not b['configured'] else (
            '%s, %.1f h ago' % (b['last_backup']['label'], b['last_backup']['age_hours'])
            if b.get('last_backup') and b['last_backup'].get('age_hours') is not None else (b.get('error') or 'no backup'))
        lines.append('| %s | %s | %d (%s) | %d (%s) | %s | %s | %d (%s) | %s | %s |' % (
            _md_escape(h['host']), STATUS_LABEL[h['status']], cov['encrypted_count'], human_bytes(cov['encrypted_bytes']),
            cov['unencrypted_count'], human_bytes(cov['unencrypted_bytes']), _pct(cov['percent_bytes']),
            h['wal_encryption']['setting'] or '-', len(h['keys']),
            '-' if not ages else '%.0f d' % max(ages), kms_text, _md_escape(backup_text)))
    lines += ['', '## Findings', '']
    any_finding = False
    for h in report['hosts']:
        shown = [f for f in h['findings'] if f['severity'] != 'info']
        if not shown:
            continue
        any_finding = True
        lines.append('### %s (%s)' % (h['host'], STATUS_LABEL[h['status']]))
        lines.append('')
        for f in shown:
            lines.append('- **%s** `%s`: %s' % (f['severity'], f['id'], f['message']))
        lines.append('')
    if not any_finding:
        lines += ['No violations and no warnings.', '']
    lines += ['## Principal keys', '', '| host | target | key | provider | type | created | age (days) | status |',
              '|---|---|---|---|---|---|---|---|']
    for h in report['hosts']:
        for k in h.get('keys') or []:
            lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
                _md_escape(h['host']), k['target'] + (' ' + k['database'] if k.get('database') else ''),
                _md_escape(k.get('key_name')), _md_escape(k.get('provider_name')), _md_escape(k.get('provider_type')),
                _md_escape(k.get('created')), '-' if k.get('age_days') is None else '%.1f' % k['age_days'],
                k['status'] + (' (follows the default key)' if k.get('follows_default') else '')))
    lines += ['', '## Notes', ''] + ['- %s' % n for n in report['notes']]
    lines += ['- Policy: ' + ', '.join('%s=%s' % (k, v) for k, v in sorted(report['policy'].items())), '']
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif;margin:0;color:#1f2328;background:#f6f8fa;font-size:14px}
header{background:#24292f;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;color:#d0d7de;font-size:13px}
main{padding:20px 28px;max-width:1200px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:16px 20px;margin-bottom:18px}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:15px;margin:14px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 150px;border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;background:#fff}
.card .v{font-size:24px;font-weight:700}
.card .l{color:#57606a;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:700}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #d8dee4;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
ul.findings{margin:4px 0 8px;padding-left:18px}
ul.findings li{margin:3px 0}
.sev{font-weight:700;text-transform:uppercase;font-size:11px}
.muted{color:#57606a}
svg text{font-family:"DejaVu Sans",Arial,Helvetica,sans-serif}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
details{margin:2px 0 8px}
summary{cursor:pointer;font-size:13px}
"""


def _e(text: Any) -> str:
    return html.escape('-' if text is None else str(text))


def _badge(status: str) -> str:
    return '<span class="badge" style="background:%s">%s</span>' % (COLORS[status], STATUS_LABEL[status])


def _card(value: str, label: str, color: str | None = None) -> str:
    style = ' style="color:%s"' % color if color else ''
    return '<div class="card"><div class="v"%s>%s</div><div class="l">%s</div></div>' % (style, value, _e(label))


def coverage_chart(report: dict[str, Any]) -> str:
    """Horizontal stacked bars per host: encrypted / unencrypted share of the relation bytes."""
    hosts = report['hosts']
    if not hosts:
        return '<p class="muted">No host in the report.</p>'
    label_w, bar_w, row_h = 180, 560, 26
    height = row_h * len(hosts) + 34
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
             'aria-label="Encryption coverage per host">' % (label_w + bar_w + 190, height)]
    for i, h in enumerate(hosts):
        y = 8 + i * row_h
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>' % (label_w - 8, y + 14, _e(h['host'])))
        cov = h.get('coverage')
        if not cov:
            parts.append('<rect x="%d" y="%d" width="%d" height="18" fill="none" stroke="%s" stroke-dasharray="4,3"/>'
                         % (label_w, y, bar_w, COLORS['error']))
            parts.append('<text x="%d" y="%d" font-size="11" fill="%s">no report</text>' % (label_w + 6, y + 13, COLORS['error']))
            continue
        total = cov['encrypted_bytes'] + cov['unencrypted_bytes']
        enc_w = bar_w if total == 0 else round(bar_w * cov['encrypted_bytes'] / total, 1)
        if total == 0:
            parts.append('<rect x="%d" y="%d" width="%d" height="18" fill="#d0d7de"/>' % (label_w, y, bar_w))
            parts.append('<text x="%d" y="%d" font-size="11" fill="#57606a">no relations</text>' % (label_w + 6, y + 13))
        else:
            parts.append('<rect x="%d" y="%d" width="%s" height="18" fill="%s"><title>encrypted %s</title></rect>'
                         % (label_w, y, enc_w, COLORS['encrypted'], _e(human_bytes(cov['encrypted_bytes']))))
            if enc_w < bar_w:
                parts.append('<rect x="%s" y="%d" width="%s" height="18" fill="%s"><title>unencrypted %s</title></rect>'
                             % (label_w + enc_w, y, round(bar_w - enc_w, 1), COLORS['unencrypted'],
                                _e(human_bytes(cov['unencrypted_bytes']))))
        parts.append('<text x="%d" y="%d" font-size="12">%s of %s</text>' % (
            label_w + bar_w + 8, y + 14, _e(_pct(cov['percent_bytes'])), _e(human_bytes(total))))
    axis_y = 8 + len(hosts) * row_h + 4
    for frac in (0, 0.5, 1):
        x = label_w + bar_w * frac
        parts.append('<text x="%s" y="%d" font-size="10" fill="#57606a" text-anchor="middle">%d %%</text>'
                     % (x, axis_y + 10, int(frac * 100)))
    parts.append('</svg>')
    return ''.join(parts)


def key_age_chart(report: dict[str, Any]) -> str:
    """Bars per principal key: age in days against the policy's maximum (a dashed line)."""
    rows = [(h['host'], k) for h in report['hosts'] for k in h.get('keys') or []
            if k.get('age_days') is not None and not k.get('follows_default')]
    if not rows:
        return '<p class="muted">No readable principal key.</p>'
    max_age = float(report['policy'].get('max_key_age_days') or 365)
    scale_max = max([max_age * 1.15] + [k['age_days'] * 1.05 for _h, k in rows])
    label_w, bar_w, row_h = 260, 380, 24
    height = row_h * len(rows) + 40
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
             'aria-label="Age of the principal keys">' % (label_w + bar_w + 420, height)]
    for i, (host, k) in enumerate(rows):
        y = 8 + i * row_h
        width = max(2.0, round(bar_w * k['age_days'] / scale_max, 1))
        color = COLORS['ok'] if k['status'] == 'ok' else COLORS.get(k['status'], COLORS['violation'])
        label = '%s %s%s' % (host, k['target'], ' ' + k['database'] if k.get('database') else '')
        if len(label) > 38:
            label = label[:37] + '\u2026'
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>' % (label_w - 8, y + 13, _e(label)))
        parts.append('<rect x="%d" y="%d" width="%s" height="16" fill="%s"><title>%s</title></rect>'
                     % (label_w, y, width, color, _e(k.get('key_name'))))
        parts.append('<text x="%s" y="%d" font-size="12">%.0f d <tspan fill="#57606a">%s</tspan></text>'
                     % (label_w + width + 6, y + 13, k['age_days'], _e(k.get('key_name'))))
    limit_x = label_w + bar_w * max_age / scale_max
    bottom = 8 + len(rows) * row_h
    parts.append('<line x1="%.1f" y1="4" x2="%.1f" y2="%d" stroke="#c62828" stroke-width="1.5" stroke-dasharray="5,4"/>'
                 % (limit_x, limit_x, bottom))
    parts.append('<text x="%.1f" y="%d" font-size="11" fill="#c62828" text-anchor="middle">maximum %d days</text>'
                 % (limit_x, bottom + 16, max_age))
    parts.append('</svg>')
    return ''.join(parts)


def _host_section(h: dict[str, Any]) -> str:
    out = ['<h3>%s %s</h3>' % (_e(h['host']), _badge(h['status']))]
    if h['status'] == 'error':
        out.append('<p>%s</p>' % _e(h['error']))
        return ''.join(out)
    srv, wal = h['server'], h['wal_encryption']
    out.append('<p class="muted">PostgreSQL %s, pg_tde %s, WAL encryption <b>%s</b>, data directory %s, OS user %s</p>'
               % (_e(srv.get('postgresql_version')), _e(srv.get('pg_tde_version')), _e(wal['setting']),
                  _e(srv.get('data_directory')), _e(srv.get('os_user'))))
    shown = [f for f in h['findings'] if f['severity'] != 'info']
    infos = [f for f in h['findings'] if f['severity'] == 'info']

    def item(f: dict[str, Any]) -> str:
        return ('<li><span class="sev" style="color:%s">%s</span> <code>%s</code> %s</li>'
                % (COLORS[f['severity']], _e(f['severity']), _e(f['id']), _e(f['message'])))
    if shown:
        out.append('<ul class="findings">%s</ul>' % ''.join(item(f) for f in shown))
    if infos:
        out.append('<details><summary class="muted">%d note(s) for information</summary><ul class="findings">%s</ul>'
                   '</details>' % (len(infos), ''.join(item(f) for f in infos)))
    out.append('<table><tr><th>database</th><th>default AM</th><th>enforce</th>'
               + ''.join('<th class="n">%s</th>' % _e(k) for k in ('tables', 'indexes', 'TOAST', 'mat. views'))
               + '<th class="n">coverage</th><th class="n">sequences (never encrypted)</th></tr>')
    for db in h['databases']:
        cells = []
        for kind in ('table', 'index', 'toast', 'materialized view'):
            c = db['kinds'].get(kind) or {'encrypted': {'count': 0, 'bytes': 0}, 'unencrypted': {'count': 0, 'bytes': 0}}
            unenc = c['unencrypted']['count']
            cells.append('<td class="n">%d enc%s</td>' % (
                c['encrypted']['count'],
                ('' if not unenc else ' / <b style="color:%s">%d not</b>' % (COLORS['unencrypted'], unenc))))
        out.append('<tr><td>%s</td><td>%s</td><td>%s</td>%s<td class="n">%s</td><td class="n">%d</td></tr>' % (
            _e(db['name']), _e(db['default_table_access_method']), _e(db['enforce_encryption']), ''.join(cells),
            _e(_pct(db['totals']['percent_bytes'])), db['not_encryptable']['sequences']))
    out.append('</table>')
    gaps = [(db['name'], g) for db in h['databases'] for g in db['gaps']]
    if gaps:
        out.append('<p><b>Largest unencrypted relations:</b> %s</p>' % ', '.join(
            '%s.%s (%s, %s)' % (_e(d), _e(g['name']), _e(g['kind']), _e(human_bytes(g['bytes']))) for d, g in gaps[:10]))
    if h['providers']:
        out.append('<table><tr><th>provider</th><th>type</th><th>in use</th><th>KMS</th><th>client certificate</th>'
                   '<th>files (owner, mode)</th></tr>')
        for p in h['providers']:
            kms = p.get('kms') or {}
            if p['type'] == 'file':
                kms_text = '<b style="color:%s">file keyring: not for production</b>' % COLORS['violation']
            elif kms:
                ok = kms.get('reachable') and kms.get('server_certificate_verified')
                kms_text = '<span style="color:%s">%s</span> %s' % (
                    COLORS['ok'] if ok else COLORS['violation'], 'verified' if ok else 'PROBLEM', _e(p['address']))
            else:
                kms_text = '-'
            cert = kms.get('client_certificate') or {}
            if not cert:
                cert_text = '-'
            elif cert.get('error'):
                cert_text = _e(cert['error'])
            else:
                cert_text = '%s, %s days left' % (_e(cert.get('not_after')), _e(cert.get('days_left')))
            files = '<br>'.join('%s %s (%s, %s)' % (_e(f['role']), _e(f['path']), _e(f.get('owner')), _e(f.get('mode')))
                                if f.get('exists') else '%s %s <b>missing</b>' % (_e(f['role']), _e(f['path']))
                                for f in p['files'])
            out.append('<tr><td>%s%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
                _e(p['name']), ' (%s)' % _e(p['database']) if p.get('database') else '', _e(p['type']),
                'yes' if p['in_use'] else 'no', kms_text, cert_text, files or '-'))
        out.append('</table>')
    hard, back = h['hardening'], h['backup']
    hard_text = 'core dumps %s, swap %s%s%s' % (
        _e(hard['core_dumps']['status']), _e(hard['swap']['status']), ' (container)' if hard['container'] else '',
        '' if hard['applies'] else ' - reported only')
    if back['configured']:
        last = back.get('last_backup') or {}
        back_text = 'stanza %s: %s, %d backup(s), last %s (%s h ago), cipher %s, archiver %s failed / %s archived%s' % (
            _e(back['stanza']), _e(back.get('status')), back['backups'], _e(last.get('label')), _e(last.get('age_hours')),
            _e(back.get('cipher')), _e(back['archiver'].get('failed_count')), _e(back['archiver'].get('archived_count')),
            '' if back['applies'] else ' - reported only')
    else:
        back_text = 'not configured%s' % ('' if back['applies'] else ' (not required)')
    out.append('<p><b>Hardening:</b> %s<br><b>Backup:</b> %s</p>' % (hard_text, back_text))
    return ''.join(out)


def html_page(report: dict[str, Any]) -> str:
    s = report['summary']
    cov = s['coverage']
    cards = ''.join([
        _card(STATUS_LABEL[s['status']], 'fleet status', COLORS[s['status']]),
        _card('%d' % s['hosts'], 'hosts'),
        _card('%d / %d / %d / %d' % (s['hosts_by_status']['pass'], s['hosts_by_status']['warn'],
                                     s['hosts_by_status']['fail'], s['hosts_by_status']['error']),
              'pass / warn / fail / error'),
        _card('%d' % s['findings']['violation'], 'violations', COLORS['violation'] if s['findings']['violation'] else None),
        _card('%d' % s['findings']['warning'], 'warnings', COLORS['warning'] if s['findings']['warning'] else None),
        _card(_e(_pct(cov['percent_bytes'])), 'bytes encrypted (%s)' % human_bytes(
            cov['encrypted_bytes'] + cov['unencrypted_bytes'])),
        _card('%d / %d' % (s['wal_encryption_on'], s['wal_encryption_on'] + s['wal_encryption_off']), 'WAL encryption on'),
        _card('-' if s['oldest_key_days'] is None else '%.0f d' % s['oldest_key_days'], 'oldest key'),
    ])
    host_rows = ''.join(
        '<tr><td>%s</td><td>%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td>%s</td>'
        '<td class="n">%d</td><td class="n">%d</td></tr>' % (
            _e(h['host']), _badge(h['status']),
            _e(h['coverage']['encrypted_count']) if h.get('coverage') else '-',
            _e(h['coverage']['unencrypted_count']) if h.get('coverage') else '-',
            _e(_pct(h['coverage']['percent_bytes'])) if h.get('coverage') else '-',
            _e((h.get('wal_encryption') or {}).get('setting')),
            sum(1 for f in h['findings'] if f['severity'] == 'violation'),
            sum(1 for f in h['findings'] if f['severity'] == 'warning'))
        for h in report['hosts'])
    notes = ''.join('<li>%s</li>' % _e(n) for n in report['notes'])
    policy = ', '.join('%s=%s' % (_e(k), _e(v)) for k, v in sorted(report['policy'].items()))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>pg_tde compliance report</title><style>%s</style></head><body>'
        '<header><h1>pg_tde compliance report %s</h1><p>Generated %s by %s - schema %s - %d host(s)</p></header><main>'
        '<section><h2>Fleet overview</h2><div class="cards">%s</div></section>'
        '<section><h2>Encryption coverage per host (relation bytes)</h2>'
        '<div class="legend"><span><i style="background:%s"></i>encrypted</span>'
        '<span><i style="background:%s"></i>not encrypted</span></div>%s</section>'
        '<section><h2>Principal key age</h2>%s</section>'
        '<section><h2>Hosts</h2><table><tr><th>host</th><th>status</th><th class="n">encrypted</th>'
        '<th class="n">unencrypted</th><th class="n">coverage</th><th>WAL</th><th class="n">violations</th>'
        '<th class="n">warnings</th></tr>%s</table></section>'
        '<section><h2>Details</h2>%s</section>'
        '<section><h2>Notes</h2><ul>%s</ul><p class="muted">Policy: %s</p></section>'
        '</main></body></html>\n' % (
            CSS, _badge(s['status']), _e(report['generated_at']), _e(report['generator'].get('name')),
            _e(report['schema_version']), s['hosts'], cards, COLORS['encrypted'], COLORS['unencrypted'],
            coverage_chart(report), key_age_chart(report), host_rows,
            ''.join(_host_section(h) for h in report['hosts']), notes, policy))
