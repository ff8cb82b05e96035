#!/usr/bin/env python3
"""Print the lab's status from `ansible-playbook lab/status.yml` JSON output (stdin).

The first lines say what runs where: the PostgreSQL server and pg_tde versions and where they
come from, the KMS (host:port, kind, version, service state) and that the lab KMS is not for
production. Then the pg_tde state of each database host."""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

SOURCES = {
    'bundle': 'local build installed by other means (TDEOPS_REAL_PG_TDE_BUNDLE=%s)',
    'percona': "Percona's packages (install role)",
}
KMS_WARNINGS = {
    'kmip': 'the lab PyKMIP keeps its keys UNENCRYPTED in a sqlite file and the lab CA key lies on '
            'the controller: NOT for production keys',
    'vault_v2': 'the lab OpenBao unseals itself with a key file next to its data and keeps its root '
                'token on the host, so its keys are effectively unprotected; the lab CA key lies on '
                'the controller: NOT for production keys',
}
KMS_KINDS = {'kmip': 'KMIP (PyKMIP)', 'vault_v2': 'Vault KV v2 (OpenBao)'}


def key_text(key: dict[str, Any] | None) -> str:
    if not key:
        return 'none'
    if key.get('error'):
        return f"{key.get('key_name')} ERROR {key['error']}"
    return f"{key['key_name']} (provider {key['provider_name']})"


def task_results(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task name: {host: result}} over every play."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for play in data.get('plays', []):
        for task in play.get('tasks', []):
            out.setdefault(task['task']['name'], {}).update(task.get('hosts', {}))
    return out


def kms_services(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """{'unit pykmip-server': 'active', 'pykmip': '0.10.0-6', 'openbao': 'OpenBao v2.7.2 ...'}"""
    out: dict[str, str] = {}
    for res in results.values():
        for line in res.get('stdout_lines') or []:
            parts = line.split(' ', 2) if line.startswith('unit ') else line.split(' ', 1)
            if line.startswith('unit ') and len(parts) == 3:
                out['unit ' + parts[1]] = parts[2] or 'unknown'
            elif len(parts) == 2:
                out[parts[0]] = parts[1].strip()
    return out


def kms_line(provider: dict[str, Any], services: dict[str, str]) -> str:
    opts = provider.get('options') or {}
    ptype = provider.get('type')
    if ptype == 'kmip':
        where = f"{opts.get('host')}:{opts.get('port')}"
        version = services.get('pykmip') or '?'
        state = services.get('unit pykmip-server', 'unknown')
        return f"{where}, {KMS_KINDS[ptype]} {version}, pykmip-server.service {state}"
    if ptype == 'vault_v2':
        url = opts.get('url') or '?'
        where = url.split('://', 1)[-1].rstrip('/')
        found = re.match(r'OpenBao v\S+', services.get('openbao') or '')
        version = found.group(0) if found else 'OpenBao ?'
        state = services.get('unit openbao', 'unknown')
        return (f"{where}, {KMS_KINDS[ptype]}, mount {opts.get('mountPath')}, {version}, "
                f"openbao.service {state}")
    return f"provider type {ptype}: {json.dumps(opts)}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--source', default='')
    parser.add_argument('--bundle', default='')
    parser.add_argument('--kms-container', default='')
    parser.add_argument('--db-container', default='')
    args = parser.parse_args()
    try:
        data = json.load(sys.stdin)
    except ValueError:
        print('status: no JSON from ansible (are the lab hosts reachable?)')
        return 1
    tasks = task_results(data)
    services = kms_services(tasks.get('Which KMS service runs, and its version', {}))
    servers = tasks.get('PostgreSQL server version', {})
    infos = tasks.get('The pg_tde state', {})
    rc = 0
    print('== tdeops lab - LAB AND TEST ONLY')
    for host in sorted(set(servers) | set(infos)):
        server = servers.get(host, {})
        res = infos.get(host, {})
        rows = server.get('query_result') or []
        version = rows[0]['version'].split(' on ')[0] if rows else f"unknown ({server.get('msg', 'not reached')})"
        container = f' (container {args.db_container})' if args.db_container else ''
        print(f'   database   {host}{container}')
        print(f'   server     {version}')
        if res.get('failed') or res.get('unreachable') or 'pg_tde' not in res:
            print(f"   pg_tde     pg_tde_info failed: {res.get('msg')}")
            rc = 1
            continue
        tde = res['pg_tde']
        source = SOURCES.get(args.source, args.source or 'unknown source').replace('%s', args.bundle or '?')
        print(f"   pg_tde     {tde.get('version_text') or 'not installed'}, {source}")
        providers = (tde.get('providers') or {}).get('global', [])
        kms_kinds = set()
        for provider in providers:
            kms_kinds.add(provider.get('type'))
            print(f"   KMS        {kms_line(provider, services)} (provider {provider['name']})")
        if not providers:
            print('   KMS        no global key provider yet')
        for kind in sorted(k for k in kms_kinds if k in KMS_WARNINGS):
            print(f'   WARNING    {KMS_WARNINGS[kind]}')
        keys = tde.get('principal_keys') or {}
        wal = tde.get('wal_encryption') or {}
        print()
        print(f"   preloaded      {tde.get('preloaded')} "
              f"(shared_preload_libraries: {', '.join(tde.get('shared_preload_libraries') or [])})")
        names = ', '.join('%s (%s, %s)' % (p['name'], p['type'], p['scope']) for p in providers)
        print(f"   providers      {names or 'none'}")
        print(f"   server key     {key_text(keys.get('server'))}")
        print(f"   default key    {key_text(keys.get('default'))}")
        for db, key in (keys.get('databases') or {}).items():
            # No key of its own: the database uses the default key.
            own = ('%s: the default key' % key_text(key) if key and key.get('same_as_default')
                   else key_text(key) if key else 'none of its own (uses the default key)')
            print(f'   database {db}: {own}')
        print(f"   wal_encrypt    {wal.get('setting')}"
              f"{' (pending restart)' if wal.get('pending_restart') else ''}")
        for warning in res.get('warnings', []):
            print(f'   WARNING        {warning}')
    if not servers and not infos:
        print('   no database host answered')
        rc = 1
    return rc


if __name__ == '__main__':
    sys.exit(main())
