#!/usr/bin/env bash
set -euo pipefail
ansible-lint --profile production --strict -q
