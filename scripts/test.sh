#!/usr/bin/env bash
# Run the test tiers one after another, time each, and fail at the end if any failed.
# TIERS selects tiers (default: all). Per-tier wall times go to .cache/test-times.txt, each tier's
# output also to .cache/tier-logs/<tier>.log. A failed run ends with why each failed tier failed
# (its failing tests or tasks), because CI's record keeps only the last lines of the output.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh

TIERS=${TIERS:-"sanity lint publish unit integration molecule"}
mkdir -p .cache/tier-logs
times=.cache/test-times.txt
: > "$times"
failed=()
passed=()
start_all=$(date +%s)

run_tier() {
  local tier=$1; shift
  local t0; t0=$(date +%s)
  echo
  echo "================ tier: $tier ================"
  if "$@" 2>&1 | tee ".cache/tier-logs/$tier.log"; then passed+=("$tier"); res=ok; else failed+=("$tier"); res=FAILED; fi
  local dt=$(( $(date +%s) - t0 ))
  printf '%-12s %5ss %s\n' "$tier" "$dt" "$res" | tee -a "$times"
}

for tier in $TIERS; do
  case $tier in
    sanity)      run_tier sanity bash scripts/tier-sanity.sh ;;
    lint)        run_tier lint bash scripts/tier-lint.sh ;;
    publish)     run_tier publish bash scripts/tier-publish.sh ;;
    unit)        run_tier unit python -m pytest -q tests/unit ;;
    integration) run_tier integration python -m pytest -q -rs tests/integration ;;
    molecule)    run_tier molecule bash scripts/tier-molecule.sh ;;
    *) echo "unknown tier $tier"; failed+=("$tier") ;;
  esac
done

total=$(( $(date +%s) - start_all ))
printf '%-12s %5ss\n' total "$total" | tee -a "$times"
echo
echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  for tier in "${failed[@]}"; do
    echo "---- why $tier failed (whole output: .cache/tier-logs/$tier.log)"
    bash scripts/tier-why.sh "$tier"
  done
  echo "FAILED tiers: ${failed[*]}"
  exit 1
fi
