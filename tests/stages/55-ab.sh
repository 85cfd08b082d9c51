#!/usr/bin/env bash
# A/B update stage (docs/ab_update.md): a lab of its OWN (inventories/lab-ab: namespace dl-ab, bridge
# 10.78.0.1/24, lab state under $DL_AB_CACHE, default ~/.cache/dl-ab) so it never meets the main lab (dl-lab);
# it reuses the main cache's storage image (same recipe, same hash: built once, by `hack/lab.sh images`).
# Up, the A/B tests inside the namespace (first install, an update to a kernel that panics and falls back,
# a good update, a reboot, a re-run), the downtime bench on the figures the tests measured (DL_AB_BENCH=0
# skips it), and the lab always comes down again.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
source hack/env.sh
# the storage image (built or found in the main cache; `make test` built it in the background already) and
# the lab SSH keys baked into it: the A/B lab uses the same keys, so the same image
python3 -m lab build-image storage || { echo "ab stage: the storage image did not build"; exit 1; }
export DL_IMAGE_CACHE="$DL_CACHE/images"
main_ssh="$DL_CACHE/lab/ssh"
export DL_CACHE="${DL_AB_CACHE:-$HOME/.cache/dl-ab}"   # after env.sh: the venv and collections stay the usual ones
mkdir -p "$DL_CACHE/lab/ssh" && chmod 0700 "$DL_CACHE/lab/ssh"
for f in id_ed25519 id_ed25519.pub ssh_host_ed25519_key ssh_host_ed25519_key.pub; do
  cp -p "$main_ssh/$f" "$DL_CACHE/lab/ssh/$f" || exit 1
done
# the lab package directly, not hack/lab.sh: that one sources env.sh again, which would key the venv to this
# DL_CACHE
labctl() { python3 -m lab -i inventories/lab-ab "$@"; }
trap 'labctl down' EXIT
start=$SECONDS
labctl up || { echo "ab stage: lab did not come up (console logs: $DL_CACHE/lab/logs/)"; exit 1; }
echo "ab stage: lab up after $((SECONDS - start)) s"
t=$SECONDS
labctl exec -- python3 -m pytest tests/lab_ab -ra --durations=0
rc=$?
echo "ab stage: tests took $((SECONDS - t)) s (rc $rc)"
bench_rc=0
if [ "${DL_AB_BENCH:-1}" = 1 ]; then
  t=$SECONDS
  labctl exec -- python3 bench/ab_update.py --ci
  bench_rc=$?
  echo "ab stage: bench/ab_update.py --ci took $((SECONDS - t)) s (rc $bench_rc)"
fi
echo "ab stage: total $((SECONDS - start)) s"
[ "$rc" -eq 0 ] || exit "$rc"
exit "$bench_rc"
