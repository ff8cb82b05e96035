#!/usr/bin/env bash
# Build (or reuse) the local podman images of the disposable test and lab hosts:
#   localhost/tdeops-debian12-rootfs  debootstrap minbase bookworm, imported (no registry here)
#   localhost/tdeops-debian12         + systemd as init, python3, the machine's mirror
#   localhost/tdeops-pg17             + the runtime libraries of the real pg_tde bundle, psycopg, PyKMIP
#                                       (molecule/shared/prepare_real_pg_tde.yml unpacks the bundle)
#   localhost/tdeops-pg17-roles       + what the roles would install in converge: cryptsetup, openssh,
#                                       Debian's pgbackrest (kept as pgbackrest.debian by the bundle)
#   localhost/tdeops-kms              + PyKMIP server
#   localhost/tdeops-ha               tdeops-pg17 + etcd (Debian) + Patroni (PyPI, /opt/patroni)
# Each image carries the label org.tdeops.inputs, a hash of its build inputs (Containerfile,
# mirror, parent's hash); an image is rebuilt only when that hash changes. Builds run under a
# machine-wide flock because several engineers and CI jobs share one podman storage.
#
# Usage: scripts/images.sh [--force] [debian12|pg17|pg17-roles|kms|ha ...]   (default: all)
#        scripts/images.sh --mirror                              (print the mirror it would use)
# TDEOPS_DEBIAN_MIRROR / TDEOPS_DEBIAN_SECURITY_MIRROR override the mirror from the apt sources.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/env.sh"

images_dir="$here/molecule/shared/images"
suite=bookworm
label=org.tdeops.inputs
lock=${TDEOPS_IMAGES_LOCK:-/run/lock/tdeops-images.lock}
[ -d "$(dirname "$lock")" ] || lock=/tmp/tdeops-images.lock
force=0

log() { printf '== images: %s\n' "$*" >&2; }
die() { printf '== images: ERROR: %s\n' "$*" >&2; exit 1; }

# First URI of an enabled "deb" source for the given suite, from the machine's own apt sources
# (deb822 *.sources and the one-line sources.list), so no mirror host is hard-coded here.
apt_uri_for_suite() {
  local want=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v want="$want" '
      function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ") && uri != "") { print uri; found=1; exit } types=""; suites=""; uri=""; enabled="" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      tolower($1) == "types:"   { $1=""; types=$0 }
      tolower($1) == "uris:"    { uri=$2 }
      tolower($1) == "suites:"  { $1=""; suites=$0 }
      tolower($1) == "enabled:" { enabled=tolower($2) }
      END { if (!found) flush() }
    ' "$f" | head -n1
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -E 's/\[[^]]*\]//' "$f" | awk -v want="$want" '$1 == "deb" && $3 == want { print $2; exit }'
  done
}

mirror=${TDEOPS_DEBIAN_MIRROR:-$(apt_uri_for_suite "$suite" | head -n1)}
security_mirror=${TDEOPS_DEBIAN_SECURITY_MIRROR-$(apt_uri_for_suite "$suite-security" | head -n1)}
[ -n "$mirror" ] || die "no 'deb' source for $suite in /etc/apt/sources.list or /etc/apt/sources.list.d/; set TDEOPS_DEBIAN_MIRROR"

hash_of() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }
file_hash() { sha256sum "$1" | cut -c1-16; }
current_label() { podman image inspect --format "{{index .Labels \"$label\"}}" "$1" 2>/dev/null || true; }

# Hashes chain: a child is rebuilt whenever its parent's inputs change.
rootfs_hash=$(hash_of rootfs v1 "$suite" minbase "$mirror")
debian12_hash=$(hash_of "$rootfs_hash" "$(file_hash "$images_dir/debian12.Containerfile")" "$mirror" "$security_mirror")
pg17_hash=$(hash_of "$debian12_hash" "$(file_hash "$images_dir/pg17.Containerfile")")
pg17_roles_hash=$(hash_of "$pg17_hash" "$(file_hash "$images_dir/pg17-roles.Containerfile")")
kms_hash=$(hash_of "$debian12_hash" "$(file_hash "$images_dir/kms.Containerfile")")
ha_hash=$(hash_of "$pg17_hash" "$(file_hash "$images_dir/ha.Containerfile")")

up_to_date() { [ "$force" = 0 ] && [ "$(current_label "$1")" = "$2" ]; }

build_rootfs() {
  local name=localhost/tdeops-debian12-rootfs
  up_to_date "$name" "$rootfs_hash" && { log "$name is current"; return; }
  local tmp; tmp=$(mktemp -d /var/tmp/tdeops-rootfs.XXXXXX)
  log "debootstrap --variant=minbase $suite from $mirror"
  if ! debootstrap --variant=minbase "$suite" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -n 20 "$tmp/debootstrap.log" >&2
    rm -rf "$tmp"
    die "debootstrap failed"
  fi
  tar -C "$tmp/root" -c . | podman import --quiet --change "LABEL $label=$rootfs_hash" - "$name" >/dev/null
  rm -rf "$tmp"
  log "$name imported"
}

build_layer() {
  local short=$1 hash=$2 base=$3 name=localhost/tdeops-$1
  shift 3
  up_to_date "$name" "$hash" && { log "$name is current"; return; }
  local old; old=$(podman image inspect --format '{{.Id}}' "$name" 2>/dev/null || true)
  log "building $name"
  podman build --pull=never --quiet --layers=false \
    -f "$images_dir/$short.Containerfile" \
    --build-arg "BASE=$base" "$@" \
    --label "$label=$hash" -t "$name" "$images_dir" >/dev/null
  # The replaced image is removed when no container still uses it.
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$name")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
  log "$name built"
}

want=()
for a in "$@"; do
  case $a in
    --force) force=1 ;;
    --mirror) echo "$mirror${security_mirror:+ $security_mirror}"; exit 0 ;;
    debian12|pg17|pg17-roles|kms|ha) want+=("$a") ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument $a (debian12, pg17, pg17-roles, kms, ha, --force, --mirror)" ;;
  esac
done
[ ${#want[@]} -gt 0 ] || want=(debian12 pg17 pg17-roles kms ha)

command -v podman >/dev/null || die "podman is missing: bash scripts/setup.sh installs it"
command -v debootstrap >/dev/null || die "debootstrap is missing: bash scripts/setup.sh installs it"
# netavark needs iptables for container networks (it fails with "No such file or directory").
command -v iptables >/dev/null || die "iptables is missing (netavark needs it): apt-get install iptables"

exec 9>"$lock"
if ! flock -n 9; then
  log "waiting for another image build ($lock)"
  flock -w 1800 9 || die "timed out waiting for $lock"
fi

t0=$(date +%s)
build_rootfs
build_layer debian12 "$debian12_hash" localhost/tdeops-debian12-rootfs \
  --build-arg "MIRROR=$mirror" --build-arg "SECURITY_MIRROR=$security_mirror"
for w in "${want[@]}"; do
  case $w in
    pg17) build_layer pg17 "$pg17_hash" localhost/tdeops-debian12 ;;
    # the child needs its parent current first
    pg17-roles) build_layer pg17 "$pg17_hash" localhost/tdeops-debian12
                build_layer pg17-roles "$pg17_roles_hash" localhost/tdeops-pg17 ;;
    kms) build_layer kms "$kms_hash" localhost/tdeops-debian12 ;;
    # The HA scenario's hosts: tdeops-pg17 first (its parent).
    ha) build_layer pg17 "$pg17_hash" localhost/tdeops-debian12
        build_layer ha "$ha_hash" localhost/tdeops-pg17 \
          --secret "id=cacert,src=${TDEOPS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" ;;
  esac
done
log "done in $(( $(date +%s) - t0 ))s"
