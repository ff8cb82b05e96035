#!/usr/bin/env bash
# ansible-test sanity on the collection. ansible-test must run from an
# ansible_collections/<ns>/<name> path outside any other git checkout, so the tracked files
# (and new, not ignored ones) are copied to a scratch path first. Arguments: optional targets.
# SANITY_TAG keeps parallel runs apart.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
root=/tmp/tdeops-sanity-${SANITY_TAG:-all}
dest=$root/ansible_collections/tdeops/pg_tde
rm -rf "$root"; mkdir -p "$dest"
git ls-files -co --exclude-standard -z | rsync -a --ignore-missing-args --from0 --files-from=- ./ "$dest/"
cd "$dest"
# The sanity venv (scripts/setup.sh) holds ansible-test's pinned requirements for each test.
pyver=$("$here/.cache/sanity-venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$here/.cache/sanity-venv/bin/ansible-test" sanity --python "$pyver" --color no \
  --exclude bench/ --exclude lab/ --exclude molecule/ --exclude scripts/ \
  --exclude tests/support/ --exclude tests/integration/ "$@"
