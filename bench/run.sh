#!/usr/bin/env bash
# Benchmarks, run on demand (`make bench` or `bash bench/run.sh`), never part of the tests.
# pg_tde_table_encrypt against a raw psql ALTER TABLE loop; results in bench/results/<date>.md
# and bench/results/latest.md. Sizes: see bench/table_encrypt.py (BENCH_* variables).
# `bash bench/run.sh online`: method online against the ALTER, with and without a pgbench load
# (bench/online_encrypt.py, BENCH_ONLINE_* variables); results in bench/results/online.md.
# `bash bench/run.sh fleet`: site.yml, rotate_keys.yml and report.yml on 1, 5, 10 podman hosts with the
# real pg_tde (bench/fleet_scale.py, BENCH_FLEET_* variables); results in bench/results/fleet.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
if [ "${1:-}" = fleet ]; then
  shift
  exec python bench/fleet_scale.py "$@"
fi
if [ "${1:-}" = online ]; then
  shift
  exec python bench/online_encrypt.py "$@"
fi
exec python bench/table_encrypt.py "$@"
