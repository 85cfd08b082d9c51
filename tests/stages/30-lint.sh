#!/usr/bin/env bash
# ansible-lint, production profile, over the whole collection (roles, playbooks, molecule, inventories).
set -euo pipefail
cd "$DL_ROOT"
ansible-lint --profile production --offline --nocolor
