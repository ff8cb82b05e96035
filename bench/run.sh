#!/usr/bin/env bash
# Benchmarks, run on demand (`make bench` or `bash bench/run.sh`), never part of the tests. Both
# run on PostgreSQL 17 with the real pg_tde (they stop when it is missing; there is no stand-in):
#   table_encrypt  pg_tde_table_encrypt against a raw psql ALTER TABLE loop (bench/table_encrypt.py)
#   runtime_tde    pgbench TPS, heap against tde_heap, WAL encryption off against on (bench/runtime_tde.py)
#   online         method online against the ALTER, with and without a pgbench load (bench/online_encrypt.py,
#                  BENCH_ONLINE_*; results in bench/results/online.md; run by name only)
#   fleet          site.yml, rotate_keys.yml and report.yml on 1, 5, 10 podman hosts with the real pg_tde
#                  (bench/fleet_scale.py, BENCH_FLEET_*; results in bench/results/fleet.md; run by name only)
#   noop_site      a no-op site.yml on a converged host (local connection, a pg_createcluster cluster, PyKMIP):
#                  tasks and seconds, the merge base with main against this checkout (bench/noop_site.py,
#                  BENCH_NOOP_*; results in bench/results/noop_site.md; run by name only)
#   noop_lab       the podman lab's site.yml run again (`make lab` twice): two labs side by side, the merge base
#                  with main against this checkout (bench/noop_lab.py, BENCH_NOOP_*; results in
#                  bench/results/noop_lab.md; run by name only)
# Results: bench/results/<date>-<name>.md, <name>.md, <name>.json and latest.md (both headlines).
# Usage: bash bench/run.sh [table_encrypt] [runtime_tde] [online] [fleet] [noop_site] [noop_lab]   (default: the first two). Sizes: BENCH_* in each script.
# Timings need a quiet machine: the load average is printed first and written into the results.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(table_encrypt runtime_tde)
printf '[bench] %s\n' "$(uptime)"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN { exit !(l > 1.0) }'; then
  printf '[bench] WARNING: load average %s > 1: other work shares the CPUs; the results will say so\n' "$load"
fi
for name in "${names[@]}"; do
  case $name in
    table_encrypt|runtime_tde) python "bench/$name.py" ;;
    online) python bench/online_encrypt.py ;;
    fleet) python bench/fleet_scale.py ;;
    noop_site) python bench/noop_site.py ;;
    noop_lab) python bench/noop_lab.py ;;
    *) echo "unknown benchmark $name (table_encrypt, runtime_tde, online, fleet, noop_site, noop_lab)" >&2; exit 2 ;;
  esac
done
