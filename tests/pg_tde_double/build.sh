#!/usr/bin/env bash
# Build and install the pg_tde TEST DOUBLE into Debian's PostgreSQL 15 (tests only, never shipped).
#   build.sh          build (out of tree, in build/) and install; a no-op when nothing changed
#   build.sh --dist   also write build/pg_tde_double-pg15.tar.gz: the installed files at their
#                     absolute paths (plus bin/* into /usr/lib/postgresql/15/bin), to unpack with
#                     `tar -xzf ... -C /` in Debian 12 containers that have postgresql-15,
#                     postgresql-plpython3-15 and python3-pykmip
#   build.sh --force  rebuild and reinstall even when nothing changed
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
build="$here/build"
dist=0
force=0
for arg in "$@"; do
  case $arg in
    --dist) dist=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { printf '== pg_tde double: %s\n' "$*"; }

if [ ! -x "$PG_CONFIG" ]; then
  echo "build.sh: $PG_CONFIG not found: install postgresql-server-dev-15" >&2
  exit 1
fi
bindir=$("$PG_CONFIG" --bindir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)

sources=(Makefile pg_tde.control src/pg_tde.c sql/pg_tde--2.2.0.sql python/pg_tde_double_impl.py)
bin_files=()
if [ -d "$here/bin" ]; then
  while IFS= read -r f; do bin_files+=("$f"); done < <(cd "$here" && find bin -maxdepth 1 -type f | sort)
fi
stamp_want=$(cd "$here" && cat "${sources[@]}" ${bin_files[@]+"${bin_files[@]}"} build.sh | sha256sum | cut -c1-16)
stamp="$build/.installed"

installed_ok() {
  [ -f "$pkglibdir/pg_tde.so" ] && [ -f "$sharedir/extension/pg_tde.control" ] &&
    [ -f "$sharedir/extension/pg_tde--2.2.0.sql" ] && [ -f "$sharedir/extension/pg_tde_double_impl.py" ] &&
    cmp -s "$here/sql/pg_tde--2.2.0.sql" "$sharedir/extension/pg_tde--2.2.0.sql" &&
    cmp -s "$here/python/pg_tde_double_impl.py" "$sharedir/extension/pg_tde_double_impl.py"
}

mkdir -p "$build"
# one build at a time (setup.sh and engineers may run this concurrently)
exec 9>"$build/.lock"
flock 9
if [ $force -eq 1 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$stamp_want" ] || ! installed_ok; then
  log "building in $build"
  src="$build/src-tree"
  rm -rf "$src"
  mkdir -p "$src"
  (cd "$here" && tar -cf - "${sources[@]}") | tar -xf - -C "$src"
  make -s -C "$src" PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s -C "$src" PG_CONFIG="$PG_CONFIG" install >/dev/null
  for f in ${bin_files[@]+"${bin_files[@]}"}; do
    install -m 0755 "$here/$f" "$bindir/$(basename "$f")"
  done
  echo "$stamp_want" > "$stamp"
  log "installed into $pkglibdir and $sharedir/extension"
else
  log "up to date"
fi

if [ $dist -eq 1 ]; then
  tarball="$build/pg_tde_double-pg15.tar.gz"
  if [ -f "$tarball" ] && [ "$(cat "$build/.dist" 2>/dev/null)" = "$stamp_want" ]; then
    log "dist up to date: $tarball"
    exit 0
  fi
  stage="$build/stage"
  rm -rf "$stage"
  mkdir -p "$stage"
  make -s -C "$build/src-tree" PG_CONFIG="$PG_CONFIG" install DESTDIR="$stage" >/dev/null
  if [ ${#bin_files[@]} -gt 0 ]; then
    mkdir -p "$stage$bindir"
    for f in "${bin_files[@]}"; do
      install -m 0755 "$here/$f" "$stage$bindir/$(basename "$f")"
    done
  fi
  (cd "$stage" && find . \( -type f -o -type l \) | sort | tar --owner=0 --group=0 -czf "$tarball" -T -)
  echo "$stamp_want" > "$build/.dist"
  log "wrote $tarball"
fi
