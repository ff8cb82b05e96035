#!/usr/bin/env python3
"""Print the lab's pg_tde status from `ansible -m tdeops.pg_tde.pg_tde_info` JSON output (stdin)."""
import json
import sys


def key_text(key):
    if not key:
        return "none"
    if key.get("error"):
        return f"{key.get('key_name')} ERROR {key['error']}"
    return f"{key['key_name']} (provider {key['provider_name']})"


def main() -> int:
    try:
        data = json.load(sys.stdin)
    except ValueError:
        print("status: no JSON from ansible (is the database host reachable?)")
        return 1
    rc = 0
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for host, res in task.get("hosts", {}).items():
                print(f"== {host}")
                if res.get("failed") or res.get("unreachable"):
                    print(f"   pg_tde_info failed: {res.get('msg')}")
                    rc = 1
                    continue
                tde = res["pg_tde"]
                keys = tde.get("principal_keys") or {}
                wal = tde.get("wal_encryption") or {}
                providers = [f"{p['name']} ({p['type']}, {p['scope']})"
                             for p in (tde.get("providers") or {}).get("global", [])]
                print(f"   version        {tde.get('version_text') or 'not installed'}")
                print(f"   preloaded      {tde.get('preloaded')} "
                      f"(shared_preload_libraries: {', '.join(tde.get('shared_preload_libraries') or [])})")
                print(f"   providers      {', '.join(providers) or 'none'}")
                print(f"   server key     {key_text(keys.get('server'))}")
                print(f"   default key    {key_text(keys.get('default'))}")
                for db, key in (keys.get("databases") or {}).items():
                    # No key of its own: the database uses the default key.
                    own = key_text(key) if key else "none of its own (uses the default key)"
                    print(f"   database {db}: {own}")
                print(f"   wal_encrypt    {wal.get('setting')}"
                      f"{' (pending restart)' if wal.get('pending_restart') else ''}")
                for warning in res.get("warnings", []):
                    print(f"   WARNING        {warning}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
