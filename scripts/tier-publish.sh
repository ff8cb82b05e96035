#!/usr/bin/env bash
# The publish tier: the collection as Galaxy, Automation Hub, the docsite and an execution
# environment build take it.
#  1. build the artifact from the tracked files (ansible-galaxy collection build);
#  2. galaxy-importer (what Galaxy and Automation Hub run on an upload) on it, with Automation
#     Hub's stricter settings (a required tag, version >= 1.0.0); any warning or error fails.
#     Its ansible-lint step is off here: the lint tier runs ansible-lint on the same files with
#     the same production profile and without the rules the importer skips (2 minutes saved);
#     RUN_IMPORTER_LINT=1 turns it on;
#  3. antsibull-changelog lint; docs/docsite in step with docs/*.md (scripts/docsite.py --check);
#     antsibull-docs lint-collection-docs --plugin-docs (plugin and role docs, the docsite guides)
#     and the docsite's RST rendered by antsibull-docs;
#  4. ansible-builder create on awx/execution-environment.yml (a build needs a registry) and
#     ansible-builder introspect of the installed artifact: the Python requirements an execution
#     environment build installs for it.
# The tools come from .cache/publish-venv (scripts/setup.sh, requirements-publish.txt).
# PUBLISH_TAG keeps parallel runs apart.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
source scripts/env.sh
pv=$here/.cache/publish-venv
work=/tmp/tdeops-publish-${PUBLISH_TAG:-all}
src=$work/src/ansible_collections/tdeops/pg_tde
failed=()

log() { printf '== publish: %s\n' "$*"; }
step() {  # name, command...
  local name=$1; shift
  local t0; t0=$(date +%s)
  if "$@"; then log "$name: ok ($(( $(date +%s) - t0 ))s)"; else log "$name: FAILED"; failed+=("$name"); fi
}

[ -x "$pv/bin/python" ] || { log "no $pv (run scripts/setup.sh)"; exit 1; }
rm -rf "$work"; mkdir -p "$src" "$work/dist"
git ls-files -co --exclude-standard -z | rsync -a --ignore-missing-args --from0 --files-from=- ./ "$src/"
version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
tarball=$work/dist/tdeops-pg_tde-$version.tar.gz

build() { (cd "$src" && ansible-galaxy collection build --output-path "$work/dist" . >/dev/null) && [ -f "$tarball" ]; }

importer() {
  # The main venv first on PATH: the importer runs ansible-doc and ansible-lint, which must see
  # the dependency collections (the `ansible` package there), as on Galaxy.
  (cd "$work" && PATH="$here/.venv/bin:$pv/bin:$PATH" \
    GALAXY_IMPORTER_CHECK_REQUIRED_TAGS=true GALAXY_IMPORTER_REQUIRE_V1_OR_GREATER=true \
    GALAXY_IMPORTER_RUN_ANSIBLE_LINT=$([ "${RUN_IMPORTER_LINT:-0}" = 1 ] && echo true || echo false) \
    "$pv/bin/python" -m galaxy_importer.main "$tarball" >"$work/importer.log" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] || grep -qE '^(WARNING|ERROR)' "$work/importer.log"; then
    grep -vE '^Loading ' "$work/importer.log" | tail -n 40
    return 1
  fi
  grep -E 'completed successfully' "$work/importer.log"
}

changelog() { (cd "$src" && antsibull-changelog lint); }

docsite_in_step() { "$pv/bin/python" scripts/docsite.py --check; }

docs_lint() {
  # The scratch copy sits in an ansible_collections tree: ansible-doc finds it there.
  PATH="$pv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$work/src" "$pv/bin/antsibull-docs" lint-collection-docs \
    --plugin-docs --check-extra-docs-refs --validate-collection-refs self "$src"
}

docs_render() {
  mkdir -m 0700 "$work/docsite"
  PATH="$pv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$work/src" "$pv/bin/antsibull-docs" collection \
    --use-current --dest-dir "$work/docsite" tdeops.pg_tde >"$work/docsite.log" 2>&1 \
    || { tail -n 20 "$work/docsite.log"; return 1; }
  local dir=$work/docsite/collections/tdeops/pg_tde guides
  guides=$(find "$dir/docsite" -name '*.rst' 2>/dev/null | wc -l)
  log "docsite RST: $(find "$dir" -maxdepth 1 -name '*_module.rst' | wc -l) modules," \
    "$(find "$dir" -maxdepth 1 -name '*_role.rst' | wc -l) roles, $guides guides"
  [ "$guides" -gt 0 ] && grep -q 'pg_tde_info_module' "$dir/index.rst"
}

ee_create() {
  "$pv/bin/ansible-builder" create -f "$src/awx/execution-environment.yml" -c "$work/ee-context" >/dev/null \
    && [ -f "$work/ee-context/Containerfile" ]
}

ee_introspect() {
  ansible-galaxy collection install --force --no-deps -p "$work/ee-collections" "$tarball" >/dev/null 2>&1 || return 1
  "$pv/bin/ansible-builder" introspect --sanitize "$work/ee-collections" >"$work/introspect.yml" || return 1
  local missing=0 p
  for p in 'psycopg\[binary\]' PyKMIP cryptography; do
    grep -q "$p" "$work/introspect.yml" || { log "introspect lacks $p"; missing=1; }
  done
  [ $missing -eq 0 ] || cat "$work/introspect.yml"
  return $missing
}

step "build $version" build || true
if [ -f "$tarball" ]; then
  step galaxy-importer importer
  step ee-introspect ee_introspect
fi
step antsibull-changelog changelog
step docsite-in-step docsite_in_step
step antsibull-docs-lint docs_lint
step antsibull-docs-render docs_render
step ansible-builder-create ee_create

if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all passed"
