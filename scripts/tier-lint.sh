#!/usr/bin/env bash
# ansible-lint, production profile, on the whole collection (.ansible-lint).
# --offline: without it ansible-lint installs a COPY of this collection into
# ~/.ansible/collections, which then shadows the working tree for later runs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
source scripts/env.sh
rm -rf ~/.ansible/collections/ansible_collections/tdeops
ansible-lint --offline --profile production -q
