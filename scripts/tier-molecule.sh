#!/usr/bin/env bash
# The molecule tier: build or reuse the host images, then `molecule test` every scenario under
# molecule/ (except shared/) one after another. The database hosts run the real pg_tde bundle
# (../shared/real-pg_tde, unpacked in prepare by molecule/shared/prepare_real_pg_tde.yml).
# A failed scenario does not stop the others; a table of times and results closes the run and
# the exit status is non-zero when any scenario failed.
# MOLECULE_SCENARIOS="server pgbackrest" selects scenarios. Logs: .cache/molecule-logs/<scenario>.log
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
source scripts/env.sh
# A copy of the collection in ~/.ansible/collections (left by a molecule prerun or ansible-lint)
# would shadow the checkout.
rm -rf ~/.ansible/collections/ansible_collections/tdeops

# Scenarios live in molecule/, not in molecule 26's collection default extensions/molecule/.
export MOLECULE_GLOB="molecule/*/molecule.yml"
export NO_COLOR=1
logs=.cache/molecule-logs
mkdir -p "$logs"

log() { printf '== molecule tier: %s\n' "$*"; }

if [ -n "${MOLECULE_SCENARIOS:-}" ]; then
  read -r -a scenarios <<<"$MOLECULE_SCENARIOS"
else
  scenarios=()
  for f in molecule/*/molecule.yml; do
    [ -f "$f" ] || continue
    s=$(basename "$(dirname "$f")")
    [ "$s" = shared ] || scenarios+=("$s")
  done
fi
if [ ${#scenarios[@]} -eq 0 ]; then
  log "no scenarios under molecule/"
  exit 0
fi

if ! bash scripts/images.sh; then
  log "image build failed: no scenario can run"
  exit 1
fi

results=()
failed=0
t_all=$(date +%s)
for s in "${scenarios[@]}"; do
  if [ ! -f "molecule/$s/molecule.yml" ]; then
    results+=("$(printf '%-20s %6s  %s' "$s" - 'MISSING (no molecule.yml)')")
    failed=1
    continue
  fi
  log "scenario $s (log: $logs/$s.log)"
  t0=$(date +%s)
  if molecule test -s "$s" >"$logs/$s.log" 2>&1; then
    res=ok
  else
    res="FAILED (tail $logs/$s.log)"
    failed=1
    tail -n 40 "$logs/$s.log"
    # A failure before destroy can leave containers behind; do not let them pile up.
    molecule destroy -s "$s" >>"$logs/$s.log" 2>&1 || true
  fi
  results+=("$(printf '%-20s %5ss  %s' "$s" "$(( $(date +%s) - t0 ))" "$res")")
done

echo
printf '%-20s %6s  %s\n' scenario time result
printf '%s\n' "${results[@]}"
printf '%-20s %5ss\n' total "$(( $(date +%s) - t_all ))"
exit "$failed"
