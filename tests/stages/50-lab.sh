#!/usr/bin/env bash
# Lab stage: ONE lab for every lab test and bench. The whole lab cluster comes up the way `make lab` brings
# it up (image builds only when a recipe changed; the provisioning container, two storage VMs, site.yml with
# one disk-less node per root mode booting concurrently, verify.yml), then the lab tests INSIDE the lab
# namespace (destructive ones last: storage hosts killed under the nodes; then the A/B install and updates of
# sch2 under the running nodes), then CI-sized benchmarks on the same lab: boot time, LIO/ZFS, the root modes
# side by side (fio, stalls, resync, boots) and the A/B downtime. The lab always comes down again.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
source hack/env.sh
trap 'hack/lab.sh down' EXIT
start=$SECONDS
# ONE fresh lab per run: a lab left running by an earlier run (a cut-off session, a crashed job) would be
# taken as "already up" with its old state (configured pools, a stale provisioning container)
hack/lab.sh down
hack/lab.sh up || { echo "lab stage: lab cluster did not come up (console logs: $DL_CACHE/lab/logs/)"; exit 1; }
echo "lab stage: lab cluster up after $((SECONDS - start)) s"
# hack/test.sh starts the controller-only stages (molecule, bench) beside the tests from here on
[ -z "${DL_LAB_UP_FLAG:-}" ] || touch "$DL_LAB_UP_FLAG"
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
t=$SECONDS
hack/lab.sh exec -- python3 bench/root_modes.py --ci
modes_rc=$?
echo "lab stage: bench/root_modes.py --ci took $((SECONDS - t)) s (rc $modes_rc)"
t=$SECONDS
hack/lab.sh exec -- python3 bench/ab_update.py --ci
ab_rc=$?
echo "lab stage: bench/ab_update.py --ci took $((SECONDS - t)) s (rc $ab_rc)"
echo "lab stage: total $((SECONDS - start)) s"
# the benches are not tests, but a bench that cannot run means the lab is broken: both fail the stage
[ "$rc" -eq 0 ] || exit "$rc"
[ "$boot_rc" -eq 0 ] || exit "$boot_rc"
[ "$modes_rc" -eq 0 ] || exit "$modes_rc"
[ "$ab_rc" -eq 0 ] || exit "$ab_rc"
exit "$bench_rc"
