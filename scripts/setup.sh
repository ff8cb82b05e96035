#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine for the lab and the tests: system packages,
# the Python venv (controller on Python 3.12+), the collection on a collections path,
# and the REAL pg_tde (PostgreSQL 17 + pg_tde 2.2.0 + pgBackRest 2.59.1, from the bundle).
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# No Debian PostgreSQL and no Debian pgbackrest: the real pg_tde bundle below brings PostgreSQL 17
# and the pgBackRest that handles it (Debian's 2.45 cannot), and its install.sh the libraries.
APT_PACKAGES=(
  podman runc debootstrap netavark aardvark-dns iptables uidmap fuse-overlayfs
  build-essential rsync git jq openssl shellcheck make
  # headless rendering of the compliance report's HTML page (tests look at a screenshot)
  chromium fonts-dejavu-core
)

log() { printf '== setup: %s\n' "$*"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Controller Python: newest ansible-core needs 3.12+.
pick_python() {
  # pyenv shims answer `command -v` for versions that are not selected: run each candidate.
  # 3.12 first: the version the tiers are measured with.
  local c
  for c in python3.12 \
           $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V) \
           python3.13 /usr/bin/python3.12 /usr/bin/python3.13; do
    if "$c" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      echo "$c"; return
    fi
  done
  echo "setup: no Python 3.12+ found; the newest ansible-core needs it" >&2
  echo python3
}
if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  log "venv with $py"
  "$py" -m venv .venv
fi
stamp=.venv/.requirements-dev.sha
want=$(sha256sum requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "pip install requirements-dev.txt"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# ansible-test sanity: its own venv with the pinned requirements of each sanity test, and a
# local stand-in for the pip bootstrap script it would download from a host we cannot reach.
sanity_venv=.cache/sanity-venv
core_version=$(.venv/bin/python -c 'from ansible.release import __version__; print(__version__)')
if [ "$(cat "$sanity_venv/.stamp" 2>/dev/null)" != "$core_version" ]; then
  log "sanity venv for ansible-core $core_version"
  rm -rf "$sanity_venv"
  "$(readlink -f .venv/bin/python)" -m venv "$sanity_venv"
  reqs=$(.venv/bin/python -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data", "requirements"))')
  "$sanity_venv/bin/pip" install -q "ansible-core==$core_version"
  for f in "$reqs"/sanity.*.txt; do "$sanity_venv/bin/pip" install -q -r "$f"; done
  echo "$core_version" > "$sanity_venv/.stamp"
fi
# The same for the oldest ansible-core the collection claims (meta/runtime.yml requires_ansible;
# 2.16 is what Automation Platform 2.5 ships). 2.16 runs on a controller Python 3.10 to 3.12.
oldest_core=$(sed -n 's/^requires_ansible: *">=\([0-9]*\.[0-9]*\).*/\1/p' meta/runtime.yml)
sanity_old=.cache/sanity-venv-$oldest_core
pick_python_for_oldest() {
  local c
  for c in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[0-2]*/bin/python3 2>/dev/null | sort -Vr) \
           /usr/bin/python3.12 /usr/bin/python3.11 /usr/bin/python3.10; do
    if "$c" -c 'import sys, venv; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' >/dev/null 2>&1; then
      echo "$c"; return
    fi
  done
  echo "setup: ansible-core $oldest_core needs a Python 3.10 to 3.12 for its sanity venv; none found" >&2
  return 1
}
if [ -n "$oldest_core" ] && [ "$(cat "$sanity_old/.stamp" 2>/dev/null)" != "$oldest_core" ]; then
  py_old=$(pick_python_for_oldest)
  log "sanity venv for ansible-core $oldest_core with $py_old"
  rm -rf "$sanity_old"
  "$py_old" -m venv "$sanity_old"
  "$sanity_old/bin/pip" install -q --upgrade pip
  "$sanity_old/bin/pip" install -q "ansible-core>=$oldest_core,<${oldest_core%.*}.$(( ${oldest_core#*.} + 1 ))"
  reqs=$("$sanity_old/bin/python" -c 'import ansible_test, os; print(os.path.join(os.path.dirname(ansible_test.__file__), "_data", "requirements"))')
  for f in "$reqs"/sanity.*.txt; do "$sanity_old/bin/pip" install -q -r "$f"; done
  echo "$oldest_core" > "$sanity_old/.stamp"
fi

# Each ansible-test downloads a pip bootstrap of its pinned pip version: put the stand-in there.
mkdir -p ~/.ansible/test/cache
for v in "$sanity_venv" "$sanity_old"; do
  [ -x "$v/bin/python" ] || continue
  pip_version=$("$v/bin/python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
class Python:
    version = '.'.join(map(str, __import__('sys').version_info[:2]))
print(get_venv_packages(Python())['pip'])
PY
)
  cp scripts/ansible-test-get-pip.py ~/.ansible/test/cache/get_pip_${pip_version//./_}.py
done

# The publish tier's tools (requirements-publish.txt: galaxy-importer, ansible-builder,
# antsibull-docs) in a venv of their own, so that they never move the main venv's ansible-core
# or ansible-lint.
publish_venv=.cache/publish-venv
want=$(sha256sum requirements-publish.txt | cut -c1-16)
if [ "$(cat "$publish_venv/.stamp" 2>/dev/null)" != "$want" ]; then
  log "publish venv (requirements-publish.txt)"
  rm -rf "$publish_venv"
  "$(readlink -f .venv/bin/python)" -m venv "$publish_venv"
  "$publish_venv/bin/pip" install -q --upgrade pip
  "$publish_venv/bin/pip" install -q -r requirements-publish.txt
  echo "$want" > "$publish_venv/.stamp"
fi

# The collection must be importable as ansible_collections.tdeops.pg_tde.
mkdir -p .cache/collections/ansible_collections/tdeops
ln -sfn "$here" .cache/collections/ansible_collections/tdeops/pg_tde

# The REAL pg_tde (PostgreSQL 17 with Percona's server patches, pg_tde 2.2.0 and its tools,
# pgBackRest 2.59.1) for the integration tier and the benchmarks: the bundle in
# ../shared/real-pg_tde, or TDEOPS_REAL_PG_TDE_BUNDLE. CI must have it; elsewhere the real tier
# skips loudly with the reason.
real_bundle=${TDEOPS_REAL_PG_TDE_BUNDLE:-$here/../shared/real-pg_tde}
if [ -f "$real_bundle/install.sh" ]; then
  log "real pg_tde bundle from $real_bundle"
  bash "$real_bundle/install.sh" | sed 's/^/   /'
elif [ "${CI:-}" = true ]; then
  echo "== setup: ERROR: no real pg_tde bundle at $real_bundle (install.sh missing). CI runs the real" >&2
  echo "   pg_tde tier and cannot without it: put the bundle there or set TDEOPS_REAL_PG_TDE_BUNDLE." >&2
  exit 1
else
  log "WARNING: no real pg_tde bundle at $real_bundle (set TDEOPS_REAL_PG_TDE_BUNDLE): every test that"
  log "WARNING: needs the real pg_tde will SKIP LOUDLY"
fi

log "ready"
