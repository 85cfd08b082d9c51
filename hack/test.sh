#!/usr/bin/env bash
# The whole test suite: every stage in tests/stages/ in name order. Stages are plain scripts that
# exit non-zero on failure. Select some with STAGES="unit lint" (matches on the name after NN-).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/bootstrap.sh" || { echo "bootstrap failed"; exit 1; }
# shellcheck source=hack/env.sh
source "$here/env.sh"
cd "$DL_ROOT" || exit 1
passed=0; failed=0; failed_names=()
selected() { [ -z "${STAGES:-}" ] || grep -qw -- "$1" <<<"$STAGES"; }
# The lab's images (cold: the storage VM image ~15 min, mostly package downloads and the zfs DKMS build,
# and the nodes' bundle) build in the background while the first stages run; the lab stage waits for
# them and reuses them. With a warm cache this finds everything built and ends within a minute.
images_pid=""
if selected lab; then
  mkdir -p "$DL_CACHE/lab/logs"
  images_log="$DL_CACHE/lab/logs/images.log"
  bash hack/lab.sh images > "$images_log" 2>&1 &
  images_pid=$!
  echo "lab images: building in the background if needed (log: $images_log)"
fi
for stage in tests/stages/[0-9]*.sh; do
  name="$(basename "$stage" .sh)"; short="${name#*-}"
  selected "$short" || continue
  if [ "$short" = lab ] && [ -n "$images_pid" ]; then
    # (if the background build failed, the lab stage builds again and reports the error itself)
    wait "$images_pid" && echo "lab images: ready" || echo "lab images: background build failed (see $images_log)"
    images_pid=""
  fi
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
