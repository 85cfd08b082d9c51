#!/usr/bin/env bash
# ansible-lint, production profile, over the whole collection (roles, playbooks, molecule, inventories);
# and shellcheck over the node's boot path and programs (roles/image_builder/files/node: no .sh suffix, so
# ansible-test's shellcheck does not see them).
set -euo pipefail
cd "$DL_ROOT"
mapfile -t node_scripts < <(grep -rlE '^#!/bin/sh|^# shellcheck shell=' roles/image_builder/files/node roles/provisioning_host/files | sort)
((${#node_scripts[@]} >= 6)) || { echo "30-lint: expected the node scripts under roles/image_builder/files/node" >&2; exit 1; }
echo "shellcheck: ${node_scripts[*]}"
shellcheck -x "${node_scripts[@]}"
ansible-lint --profile production --offline --nocolor
