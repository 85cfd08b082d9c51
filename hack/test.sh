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
# Stages that use the controller only (molecule, bench: ~10 min at about one core of the two) run BESIDE the lab's
# tests when the lab stage runs too: started once the lab cluster is up (50-lab.sh touches $DL_LAB_UP_FLAG), not
# during its bring-up, which keeps both cores busy, while the tests leave about a core idle. Each writes a log of
# its own, printed when the lab stage ends; a lab that never comes up runs them after it.
beside_lab=(molecule bench)
deferred=()
run_stage() {   # run_stage NAME: "=== stage NAME: ok|FAILED (N s) ===" at its end, its exit status
  local name=$1 t=$SECONDS rc=0
  echo "=== stage $name ==="
  bash "tests/stages/$name.sh" || rc=$?
  echo "=== stage $name: $([ "$rc" -eq 0 ] && echo ok || echo FAILED) ($((SECONDS - t)) s) ==="
  return "$rc"
}
count() {       # count NAME RC
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names+=("$1"); fi
}
for stage in tests/stages/[0-9]*.sh; do
  name="$(basename "$stage" .sh)"; short="${name#*-}"
  selected "$short" || continue
  if selected lab && grep -qw -- "$short" <<<"${beside_lab[*]}"; then
    deferred+=("$name"); continue
  fi
  beside_pid=""
  if [ "$short" = lab ] && [ "${#deferred[@]}" -gt 0 ]; then
    beside_dir="$DL_CACHE/lab/logs/beside"
    rm -rf "$beside_dir"; mkdir -p "$beside_dir"
    export DL_LAB_UP_FLAG="$beside_dir/lab-up"
    (
      until [ -e "$DL_LAB_UP_FLAG" ] || [ -e "$beside_dir/lab-done" ]; do sleep 5; done
      for d in "${deferred[@]}"; do
        rc=0; run_stage "$d" > "$beside_dir/$d.log" 2>&1 || rc=$?
        echo "$d $rc" >> "$beside_dir/results"
      done
    ) &
    beside_pid=$!
    if [ -n "$images_pid" ] && kill -0 "$images_pid" 2>/dev/null; then
      # a cold cache: the images are still building (downloads, the zfs DKMS build); these stages overlap that
      touch "$DL_LAB_UP_FLAG"
      echo "stages ${deferred[*]}: run now, beside the lab images' build (logs: $beside_dir/)"
    else
      echo "stages ${deferred[*]}: run beside the lab's tests once the lab is up (logs: $beside_dir/)"
    fi
  fi
  if [ "$short" = lab ] && [ -n "$images_pid" ]; then
    # (if the background build failed, the lab stage builds again and reports the error itself)
    wait "$images_pid" && echo "lab images: ready" || echo "lab images: background build failed (see $images_log)"
    images_pid=""
  fi
  rc=0; run_stage "$name" || rc=$?
  count "$name" "$rc"
  if [ -n "$beside_pid" ]; then
    touch "$beside_dir/lab-done"
    wait "$beside_pid"
    for d in "${deferred[@]}"; do
      echo; echo "--- output of stage $d (run beside the lab stage) ---"
      cat "$beside_dir/$d.log" 2>/dev/null
      rc=$(awk -v d="$d" '$1 == d {print $2}' "$beside_dir/results" 2>/dev/null)
      count "$d" "${rc:-1}"
    done
    deferred=()
  fi
done
echo
[ "$failed" -eq 0 ] || echo "failed stages: ${failed_names[*]}"
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
