#!/usr/bin/env bash
# The podman lab (LAB AND TEST ONLY): a PyKMIP KMS and a database host that boot systemd,
# configured by playbooks/site.yml, then a status summary from tdeops.pg_tde.pg_tde_info.
#   scripts/lab.sh up       build/reuse images, start the hosts, run site.yml, print the status
#   scripts/lab.sh status   print the status summary (hosts up, pg_tde state)
#   scripts/lab.sh down     remove the containers and the network (the lab PKI in lab/state stays)
# LAB_INSTALL_PERCONA=true overrides lab_install_percona (lab/group_vars/all.yml) for one run.
# See docs/lab.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
# Fewer podman exec/cp round trips per task; also avoids temp-file permissions for become_user.
export ANSIBLE_PIPELINING=True

network=tdeops-lab
kms=tdeops-lab-kms
db=tdeops-lab-db
inventory=lab/inventory.yml
double_tarball=$here/tests/pg_tde_double/build/pg_tde_double-pg15.tar.gz

log() { printf '== lab: %s\n' "$*"; }
die() { printf '== lab: ERROR: %s\n' "$*" >&2; exit 1; }

# A variable of a lab host as the inventory sets it (jinja left unrendered), or a default.
inventory_var() {
  ansible-inventory -i "$inventory" --host "$1" 2>/dev/null \
    | python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print(sys.argv[2] if v is None else v)' "$2" "$3"
}

lab_percona() {
  local v=${LAB_INSTALL_PERCONA:-$(inventory_var "$db" lab_install_percona false)}
  case ${v,,} in true|yes|1|on) echo true ;; *) echo false ;; esac
}

# Percona's packages come from install_percona_repo_url; stop early when it cannot be reached.
check_percona_repo() {
  local url; url=$(inventory_var "$db" install_percona_repo_url https://repo.percona.com)
  [[ $url == *"{{"* ]] && die "install_percona_repo_url is templated in the inventory; set a plain URL for the lab"
  log "checking the Percona repository $url"
  if ! python3 - "$url" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=10)
except urllib.error.HTTPError:
    pass  # the server answered: reachable
except Exception as exc:
    print(f"   {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
  then
    die "the Percona repository $url cannot be reached from this machine, so the lab cannot install
   Percona Server for PostgreSQL with pg_tde. Point the install role's install_percona_repo_url
   (lab/group_vars/pg_tde_servers.yml) at a reachable mirror of it, or set lab_install_percona: false
   (lab/group_vars/all.yml) to use PostgreSQL 15 with the pg_tde test double."
  fi
}

container_state() { podman container inspect --format '{{.State.Status}}' "$1" 2>/dev/null || echo absent; }

start_host() {
  local name=$1 image=$2
  case $(container_state "$name") in
    running) log "$name is running" ;;
    absent)
      log "starting $name from $image"
      podman run -d --name "$name" --hostname "$name" --network "$network" \
        --label tdeops.lab=1 --systemd=always "$image" /sbin/init >/dev/null ;;
    *) log "starting the existing $name"; podman start "$name" >/dev/null ;;
  esac
}

status() {
  local name
  for name in "$kms" "$db"; do printf '%-16s %s\n' "$name" "$(container_state "$name")"; done
  [ "$(container_state "$db")" = running ] || return 0
  echo
  ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=ansible.builtin.json \
    ansible -i "$inventory" pg_tde_servers -m tdeops.pg_tde.pg_tde_info -a include_relations=false \
      --become --become-user postgres 2>/dev/null \
    | python3 "$here/lab/status.py"
}

up() {
  [ -f playbooks/site.yml ] || die "playbooks/site.yml does not exist yet (the install/configure roles
   and the site playbook come from the roles work); nothing to run on the lab hosts."
  local percona db_image=localhost/tdeops-pg15
  percona=$(lab_percona)
  if [ "$percona" = true ]; then
    check_percona_repo
    # Percona's server refuses to share a host with Debian's postgresql-15 (install role check).
    db_image=localhost/tdeops-debian12
    if [ "$(container_state "$db")" != absent ] \
       && [ "$(podman container inspect --format '{{.ImageName}}' "$db")" != "$db_image" ]; then
      die "$db runs Debian's PostgreSQL 15; run 'bash scripts/lab.sh down' before a Percona lab"
    fi
  fi

  bash scripts/images.sh
  podman network exists "$network" || podman network create "$network" >/dev/null
  start_host "$kms" localhost/tdeops-kms
  start_host "$db" "$db_image"

  local extra=(-e "lab_install_percona=$percona")
  ansible-playbook -i "$inventory" molecule/shared/prepare_systemd.yml
  if [ "$percona" = false ]; then
    if [ -f tests/pg_tde_double/build.sh ]; then
      bash tests/pg_tde_double/build.sh --dist
    fi
    ansible-playbook -i "$inventory" molecule/shared/prepare_pg_tde_double.yml \
      -e "pg_tde_double_tarball=$double_tarball"
  fi
  ansible-playbook -i "$inventory" playbooks/site.yml "${extra[@]}"
  echo
  status
  [ "$percona" = true ] || log "NOTE: pg_tde here is the TEST DOUBLE (PostgreSQL 15): it encrypts nothing."
}

down() {
  local name
  for name in "$db" "$kms"; do
    [ "$(container_state "$name")" = absent ] || { log "removing $name"; podman rm -f -t 10 "$name" >/dev/null; }
  done
  if podman network exists "$network"; then podman network rm "$network" >/dev/null; fi
  log "down (the lab PKI stays in lab/state/pki; delete it to start over)"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
