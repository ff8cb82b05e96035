#!/usr/bin/env bash
# The molecule tier: build or reuse the host images, then `molecule test` every scenario under
# molecule/ (except shared/), MOLECULE_JOBS (default 2) at a time. The database hosts run the real
# pg_tde bundle (../shared/real-pg_tde, unpacked in prepare by molecule/shared/prepare_real_pg_tde.yml).
# A failed scenario does not stop the others; a table of times and results (in the order of the
# scenarios) closes the run and the exit status is non-zero when any scenario failed.
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

# Why a scenario failed, in a few lines: its step (converge, idempotence, verify...), then the
# last failing tasks' names and errors (ansible's "fatal:"/"failed:" lines not ignored; earlier
# ones are mostly failures a scenario provokes and rescues), else the last ERROR/CRITICAL lines.
scenario_why() {
  local s=$1
  # molecule writes "ha > verify: Executed: Failed" (CI=true) or "INFO [ha > verify] Executed: Failed"
  echo "[$s] failed in: $(grep -oE "$s > [a-z_]+(:|\]) Executed: Failed" "$logs/$s.log" | head -n 1 \
    | sed -E "s/^$s > ([a-z_]+).*/\1/")"
  if grep -qE '^(fatal|failed): ' "$logs/$s.log"; then
    awk 'grab > 0 {f[n] = f[n] " " $0; grab--; next}
         /^TASK \[/ {task=$0}
         /^(fatal|failed): / {n++; t[n]=task; f[n]=$0; if ($0 ~ /\{$/) grab=6}
         /^\.\.\.ignoring/ {if (n > 0) n--}
         END {for (i = (n > 3 ? n - 2 : 1); i <= n; i++) {print "  " t[i]; print "  " f[i]}}' \
      "$logs/$s.log" | cut -c1-400
  else
    grep -E 'ERROR|CRITICAL' "$logs/$s.log" | tail -n 6 | cut -c1-400
  fi
}

# One scenario: molecule test, destroy after a failure (a failure before destroy can leave
# containers behind), the result line in $logs/<scenario>.result.
run_scenario() {
  local s=$1 t0 res
  t0=$(date +%s)
  rm -f "$logs/$s.why"
  if molecule test -s "$s" >"$logs/$s.log" 2>&1; then
    res=ok
  else
    res="FAILED (tail $logs/$s.log)"
    scenario_why "$s" >"$logs/$s.why"
    molecule destroy -s "$s" >>"$logs/$s.log" 2>&1 || true
  fi
  printf '%-20s %5ss  %s\n' "$s" "$(( $(date +%s) - t0 ))" "$res" >"$logs/$s.result"
}

# MOLECULE_JOBS scenarios at a time (default 2): on these 2-core machines two scenarios overlap
# well (much of a scenario waits on podman exec, systemd and PostgreSQL starts); measured: server +
# pgbackrest 985 s one after another, 704 s two at once. MOLECULE_JOBS=1 runs them one by one.
jobs_max=${MOLECULE_JOBS:-2}
t_all=$(date +%s)
for s in "${scenarios[@]}"; do
  rm -f "$logs/$s.result"
  if [ ! -f "molecule/$s/molecule.yml" ]; then
    printf '%-20s %6s  %s\n' "$s" - 'MISSING (no molecule.yml)' >"$logs/$s.result"
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  log "scenario $s (log: $logs/$s.log)"
  run_scenario "$s" &
done
wait

failed=0
for s in "${scenarios[@]}"; do
  if ! grep -q '  ok$' "$logs/$s.result" 2>/dev/null; then
    failed=1
    [ -f "$logs/$s.log" ] && { log "tail of $logs/$s.log"; tail -n 40 "$logs/$s.log"; }
  fi
done

echo
printf '%-20s %6s  %s\n' scenario time result
for s in "${scenarios[@]}"; do
  cat "$logs/$s.result" 2>/dev/null || printf '%-20s %6s  %s\n' "$s" - 'NO RESULT'
done
printf '%-20s %5ss\n' total "$(( $(date +%s) - t_all ))"
exit "$failed"
