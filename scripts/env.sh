# Sourced by the scripts: the venv, the collection path and podman's settings for these machines.
here=${here:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export PATH="$here/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$here/.cache/collections"
export ANSIBLE_CONFIG="$here/ansible.cfg"
export CONTAINERS_CONF="$here/molecule/shared/containers.conf"
export PYTHONDONTWRITEBYTECODE=1
