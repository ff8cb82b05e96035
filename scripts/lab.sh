#!/usr/bin/env bash
# The podman lab (LAB AND TEST ONLY): a KMS host (PyKMIP or OpenBao) and a database host with
# PostgreSQL 17 and the REAL pg_tde, both booting systemd, configured by playbooks/site.yml, then
# a status summary (lab/status.yml + lab/status.py).
#   scripts/lab.sh up       build/reuse images, start the hosts, run site.yml, print the status
#   scripts/lab.sh status   print the status summary
#   scripts/lab.sh down     remove the containers and the network (the lab PKI in lab/state stays)
# Settings (environment; see docs/lab.md):
#   LAB_KMS=kmip|openbao        the lab KMS (default kmip; lab_kms_kind in lab/group_vars/all.yml)
#   LAB_PG_TDE=auto|percona|bundle
#                               where pg_tde comes from (default auto: Percona's repository when it
#                               answers, else the local build at TDEOPS_REAL_PG_TDE_BUNDLE)
#   TDEOPS_REAL_PG_TDE_BUNDLE   the local build (default ../shared/real-pg_tde next to the checkout)
#   LAB_PGBACKREST=true         pgBackRest with encrypted WAL on the database host
#   LAB_PREFIX=name             container and network names (default tdeops-lab)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
# Fewer podman exec/cp round trips per task; also avoids temp-file permissions for become_user.
export ANSIBLE_PIPELINING=True

prefix=${LAB_PREFIX:-tdeops-lab}
network=$prefix
kms=$prefix-kms
db=$prefix-db
# Names of the hosts inside the lab network (inventory names, host names, network aliases).
kms_name=tdeops-lab-kms
db_name=tdeops-lab-db
inventory=lab/inventory.yml
kms_kind=${LAB_KMS:-kmip}
bundle=${TDEOPS_REAL_PG_TDE_BUNDLE:-$here/../shared/real-pg_tde}

log() { printf '== lab: %s\n' "$*"; }
die() { printf '== lab: ERROR: %s\n' "$*" >&2; exit 1; }

case $kms_kind in
  kmip|openbao) ;;
  *) die "LAB_KMS is \"$kms_kind\": use kmip (PyKMIP) or openbao (OpenBao KV v2)" ;;
esac
export LAB_PREFIX=$prefix LAB_KMS=$kms_kind

# A variable of a lab host as the inventory sets it (jinja left unrendered), or a default.
inventory_var() {
  ansible-inventory -i "$inventory" --host "$1" 2>/dev/null \
    | python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print(sys.argv[2] if v is None else v)' "$2" "$3"
}

percona_repo_url() {
  local url; url=$(inventory_var "$db_name" install_percona_repo_url https://repo.percona.com)
  [[ $url == *"{{"* ]] && die "install_percona_repo_url is templated in the inventory; set a plain URL for the lab"
  echo "$url"
}

# Exit 0 when the URL answers (any HTTP status), else print why and exit 1.
reachable() {
  python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError:
    pass  # the server answered: reachable
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(1)
PY
}

bundle_ok() { [ -f "$bundle/install.sh" ] && compgen -G "$bundle/pg17-tde-*.tar.xz" >/dev/null; }

# percona or bundle, from LAB_PG_TDE (auto: Percona's repository first, then the local build).
pg_tde_source() {
  local want=${LAB_PG_TDE:-auto} url why
  case $want in
    percona|bundle|auto) ;;
    *) die "LAB_PG_TDE is \"$want\": use auto, percona or bundle" ;;
  esac
  url=$(percona_repo_url)
  if [ "$want" != bundle ]; then
    log "checking the Percona repository $url" >&2
    if why=$(reachable "$url"); then echo percona; return; fi
    log "the Percona repository $url cannot be reached ($why)" >&2
    [ "$want" = percona ] && die "LAB_PG_TDE=percona, but the Percona repository $url cannot be reached
   from this machine ($why). Point install_percona_repo_url (lab/group_vars/pg_tde_servers.yml)
   at a reachable mirror, or use the local build of pg_tde: LAB_PG_TDE=bundle with
   TDEOPS_REAL_PG_TDE_BUNDLE=<directory with install.sh and pg17-tde-*.tar.xz>."
  fi
  if bundle_ok; then echo bundle; return; fi
  die "no real pg_tde for the lab database host. Either
   1. Percona's repository: make $url reachable, or point install_percona_repo_url
      (lab/group_vars/pg_tde_servers.yml) at a mirror of it (the install role installs
      percona-postgresql-17 with pg_tde); or
   2. a local build: set TDEOPS_REAL_PG_TDE_BUNDLE to the directory with install.sh and
      pg17-tde-*.tar.xz (now: $bundle, which has no such files)."
}

container_state() { podman container inspect --format '{{.State.Status}}' "$1" 2>/dev/null || echo absent; }
container_label() { podman container inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

start_host() {
  local name=$1 alias=$2 image=$3
  shift 3
  case $(container_state "$name") in
    running) log "$name is running" ;;
    absent)
      log "starting $name ($alias in the lab network) from $image"
      podman run -d --name "$name" --hostname "$alias" --network "$network" --network-alias "$alias" \
        --label tdeops.lab=1 "$@" --systemd=always "$image" /sbin/init >/dev/null ;;
    *) log "starting the existing $name"; podman start "$name" >/dev/null ;;
  esac
}

# An existing lab must be of the same kind: the keys live on its KMS, its server on its image.
check_existing() {
  local source=$1 have
  if [ "$(container_state "$db")" != absent ]; then
    have=$(container_label "$db" tdeops.lab.pg_tde)
    [ "$have" = "$source" ] || die "$db runs pg_tde from \"${have:-an older lab}\", this run wants \"$source\":
   run 'bash scripts/lab.sh down' first (or LAB_PG_TDE=${have:-bundle})"
    have=$(container_label "$db" tdeops.lab.kms)
    [ "$have" = "$kms_kind" ] || die "$db keeps its keys on a \"${have:-kmip}\" KMS, this run wants \"$kms_kind\":
   run 'bash scripts/lab.sh down' first, or LAB_KMS=${have:-kmip}"
  fi
}

status() {
  local name
  for name in "$kms" "$db"; do printf '%-20s %s\n' "$name" "$(container_state "$name")"; done
  [ "$(container_state "$db")" = running ] || return 0
  echo
  ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json \
    ansible-playbook -i "$inventory" lab/status.yml 2>/dev/null \
    | python3 "$here/lab/status.py" --source "$(container_label "$db" tdeops.lab.pg_tde)" \
        --bundle "$(container_label "$db" tdeops.lab.bundle)" \
        --kms-container "$kms" --db-container "$db"
}

up() {
  local source db_image
  source=$(pg_tde_source)
  check_existing "$source"
  if [ "$source" = percona ]; then
    log "pg_tde: Percona's packages from $(percona_repo_url) (install role)"
    db_image=localhost/tdeops-debian12
  else
    bundle=$(cd "$bundle" && pwd)
    export TDEOPS_REAL_PG_TDE_BUNDLE=$bundle
    log "pg_tde: the local build in $bundle (installed by other means; install role checks it)"
    db_image=localhost/tdeops-pg17
  fi
  log "KMS: $kms_kind"

  bash scripts/images.sh debian12 kms "$([ "$source" = bundle ] && echo pg17 || echo debian12)"
  podman network exists "$network" || podman network create "$network" >/dev/null
  start_host "$kms" "$kms_name" localhost/tdeops-kms --label "tdeops.lab.kms=$kms_kind"
  start_host "$db" "$db_name" "$db_image" --label "tdeops.lab.pg_tde=$source" --label "tdeops.lab.kms=$kms_kind" \
    --label "tdeops.lab.bundle=$([ "$source" = bundle ] && echo "$bundle")"

  ansible-playbook -i "$inventory" molecule/shared/prepare_systemd.yml
  if [ "$source" = bundle ]; then
    ansible-playbook -i "$inventory" molecule/shared/prepare_real_pg_tde.yml
  fi
  ansible-playbook -i "$inventory" playbooks/site.yml -e "lab_pg_tde_source=$source"
  echo
  status
}

down() {
  local name
  for name in "$db" "$kms"; do
    [ "$(container_state "$name")" = absent ] || { log "removing $name"; podman rm -f -t 10 "$name" >/dev/null; }
  done
  if podman network exists "$network"; then podman network rm "$network" >/dev/null; fi
  log "down (the lab PKI and tokens stay in lab/state; delete it to start over)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
