#!/usr/bin/env bash
# ansible-test sanity on the collection, on the newest ansible-core (the main venv's) and on the
# oldest one the collection claims (meta/runtime.yml requires_ansible; 2.16 = Automation
# Platform 2.5). ansible-test must run from an ansible_collections/<ns>/<name> path outside any
# other git checkout, so the tracked files (and new, not ignored ones) are copied to a scratch
# path first. Arguments: optional ansible-test arguments (e.g. --test validate-modules).
# SANITY_TAG keeps parallel runs apart; SANITY_CORES="newest" (or "oldest") runs one of the two.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
root=/tmp/tdeops-sanity-${SANITY_TAG:-all}
dest=$root/ansible_collections/tdeops/pg_tde
rm -rf "$root"; mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --ignore-missing-args --from0 --files-from=- ./ "$dest/"
cd "$dest"

oldest=$(sed -n 's/^requires_ansible: *">=\([0-9]*\.[0-9]*\).*/\1/p' meta/runtime.yml)
declare -A venvs=([newest]="$here/.cache/sanity-venv" [oldest]="$here/.cache/sanity-venv-$oldest")
failed=()
for core in ${SANITY_CORES:-newest oldest}; do
  venv=${venvs[$core]}
  if [ ! -x "$venv/bin/ansible-test" ]; then
    echo "== sanity: no venv $venv (scripts/setup.sh creates it)"; failed+=("$core"); continue
  fi
  # The sanity venvs (scripts/setup.sh) hold ansible-test's pinned requirements for each test.
  version=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
  pyver=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  echo "== sanity: ansible-core $version ($core claimed) on Python $pyver"
  t0=$(date +%s)
  if "$venv/bin/ansible-test" sanity --python "$pyver" --color no \
      --exclude bench/ --exclude lab/ --exclude molecule/ --exclude scripts/ \
      --exclude tests/support/ --exclude tests/integration/ "$@"; then
    echo "== sanity: ansible-core $version passed in $(( $(date +%s) - t0 ))s"
  else
    echo "== sanity: ansible-core $version FAILED"; failed+=("$version")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "== sanity failed on: ${failed[*]}"; exit 1; }
