#!/usr/bin/env bash
# ansible-test sanity must run from an ansible_collections/<ns>/<name> path: copy the tracked
# files (and new, not ignored ones) there. Arguments: optional targets (paths) to test.
# SANITY_TAG keeps parallel runs apart.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
dest=.cache/sanity-${SANITY_TAG:-all}/ansible_collections/tdeops/pg_tde
rm -rf "$dest"; mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
pyver=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --venv --python "$pyver" --color no \
  --exclude tests/pg_tde_double/ --exclude bench/ --exclude molecule/ --exclude scripts/ "$@"
