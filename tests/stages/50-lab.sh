#!/usr/bin/env bash
# Lab stage: the whole lab cluster comes up the way `make lab` brings it up (image builds only when a
# recipe changed; the provisioning container, the storage VM, site.yml with the disk-less nodes booting
# from iSCSI, verify.yml), then the lab tests INSIDE the lab namespace, then CI-sized benchmarks on the
# same lab: boot time (a local-disk boot now, next to the iSCSI power cycle and the site.yml re-run the
# tests measured) and LIO/ZFS. The lab always comes down again.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
source hack/env.sh
trap 'hack/lab.sh down' EXIT
start=$SECONDS
hack/lab.sh up || { echo "lab stage: lab cluster did not come up (console logs: $DL_CACHE/lab/logs/)"; exit 1; }
echo "lab stage: lab cluster up after $((SECONDS - start)) s"
t=$SECONDS
hack/lab.sh exec -- python3 -m pytest tests/lab -ra --durations=0
rc=$?
echo "lab stage: tests took $((SECONDS - t)) s"
t=$SECONDS
hack/lab.sh exec -- python3 bench/boot_time.py --ci
boot_rc=$?
echo "lab stage: bench/boot_time.py --ci took $((SECONDS - t)) s (rc $boot_rc)"
t=$SECONDS
hack/lab.sh exec -- python3 bench/lio_scale.py --ci
bench_rc=$?
echo "lab stage: bench/lio_scale.py --ci took $((SECONDS - t)) s (rc $bench_rc)"
echo "lab stage: total $((SECONDS - start)) s"
# the benches are not tests, but a bench that cannot run means the lab is broken: both fail the stage
[ "$rc" -eq 0 ] || exit "$rc"
[ "$boot_rc" -eq 0 ] || exit "$boot_rc"
exit "$bench_rc"
