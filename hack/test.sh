#!/usr/bin/env bash
# The whole test suite: every stage in tests/stages/ in name order. Stages are plain scripts that
# exit non-zero on failure. Select some with STAGES="unit lint" (matches on the name after NN-).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/bootstrap.sh" || { echo "bootstrap failed"; exit 1; }
source "$here/env.sh"
cd "$DL_ROOT" || exit 1
passed=0; failed=0; failed_names=()
for stage in tests/stages/[0-9]*.sh; do
  name="$(basename "$stage" .sh)"; short="${name#*-}"
  if [ -n "${STAGES:-}" ] && ! grep -qw -- "$short" <<<"$STAGES"; then continue; fi
  echo "=== stage $name ==="
  start=$SECONDS
  if bash "$stage"; then
    passed=$((passed + 1)); echo "=== stage $name: ok ($((SECONDS - start)) s) ==="
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "=== stage $name: FAILED ($((SECONDS - start)) s) ==="
  fi
done
echo
[ "$failed" -eq 0 ] || echo "failed stages: ${failed_names[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
