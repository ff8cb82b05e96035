#!/usr/bin/env bash
# Benchmarks, run on demand (`make bench` or `bash bench/run.sh`), never part of the tests.
# pg_tde_table_encrypt against a raw psql ALTER TABLE loop; results in bench/results/<date>.md
# and bench/results/latest.md. Sizes: see bench/table_encrypt.py (BENCH_* variables).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
exec python bench/table_encrypt.py "$@"
