#!/usr/bin/env bash
# Benchmarks, run on demand (`make bench` or `bash bench/run.sh`), never part of the tests.
# pg_tde_table_encrypt against a raw psql ALTER TABLE loop; results in bench/results/<date>.md
# and bench/results/latest.md. Sizes: see bench/table_encrypt.py (BENCH_* variables).
# `bash bench/run.sh online`: method online against the ALTER, with and without a pgbench load
# (bench/online_encrypt.py, BENCH_ONLINE_* variables); results in bench/results/online.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
if [ "${1:-}" = online ]; then
  shift
  exec python bench/online_encrypt.py "$@"
fi
exec python bench/table_encrypt.py "$@"
