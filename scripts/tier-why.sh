#!/usr/bin/env bash
# The few lines that say why a tier failed, printed at the end of scripts/test.sh: pytest's
# FAILED/ERROR summary lines, or for molecule each failed scenario's first failing task and error
# (written by tier-molecule.sh to .cache/molecule-logs/<scenario>.why). Lines are cut at 400 chars.
set -uo pipefail
tier=$1
log=.cache/tier-logs/$tier.log
cut_lines() { cut -c1-400; }
case $tier in
  molecule)
    shopt -s nullglob
    whys=(.cache/molecule-logs/*.why)
    if [ ${#whys[@]} -gt 0 ]; then cat "${whys[@]}" | cut_lines; exit 0; fi ;;
  unit|integration)
    grep -E '^(FAILED|ERROR) ' "$log" 2>/dev/null | tail -n 12 | cut_lines && exit 0 ;;
esac
grep -E 'fatal:|FAILED|ERROR|Error|error:' "$log" 2>/dev/null | tail -n 12 | cut_lines
