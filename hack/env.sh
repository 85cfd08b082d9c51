# shellcheck shell=bash
# Source me: puts the project's pinned toolchain on PATH and makes this checkout importable as
# the collection diskless.cluster. Everything lives under $DL_CACHE (outside the repo).
DL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DL_CACHE="${DL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/diskless-cluster}"
DL_REQ_HASH="$(sha256sum "$DL_ROOT/requirements.txt" | cut -c1-12)"
DL_VENV="$DL_CACHE/venv-$DL_REQ_HASH"
# one collections root per checkout (keyed by its path), so that several checkouts (worktrees) can be
# used side by side, each importable as diskless.cluster from its own files
DL_COLLECTIONS="${DL_COLLECTIONS:-$DL_CACHE/collections/$(printf '%s' "$DL_ROOT" | sha256sum | cut -c1-12)}"
export DL_ROOT DL_CACHE DL_VENV DL_COLLECTIONS
export PATH="$DL_VENV/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$DL_COLLECTIONS"
if [ "$(readlink "$DL_COLLECTIONS/ansible_collections/diskless/cluster" 2>/dev/null)" != "$DL_ROOT" ]; then
  mkdir -p "$DL_COLLECTIONS/ansible_collections/diskless"
  ln -sfn "$DL_ROOT" "$DL_COLLECTIONS/ansible_collections/diskless/cluster"
fi
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=true
# Python imports, with no sys.path edits in code: the lab package (`import lab`, `python3 -m lab`) from this
# checkout's root, and this checkout as ansible_collections.diskless.cluster (unit tests, benches)
export PYTHONPATH="$DL_ROOT:$DL_COLLECTIONS${PYTHONPATH:+:$PYTHONPATH}"
export CONTAINERS_CONF="$DL_CACHE/containers.conf"
export ANSIBLE_NOCOWS=1
export ANSIBLE_FORCE_COLOR="${ANSIBLE_FORCE_COLOR:-0}"
export PYTHONDONTWRITEBYTECODE=1
