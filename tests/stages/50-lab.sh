#!/usr/bin/env bash
# Lab stage: one lab bring-up (image build only when its recipe changed, one VM boot), the lab tests
# run INSIDE the lab namespace, then a CI-sized LIO/ZFS benchmark on the same lab (figures in the log),
# and the lab always comes down again.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
source hack/env.sh
trap 'hack/lab.sh down' EXIT
start=$SECONDS
hack/lab.sh up || { echo "lab stage: lab did not come up (console logs: $DL_CACHE/lab/logs/)"; exit 1; }
echo "lab stage: lab up after $((SECONDS - start)) s"
t=$SECONDS
hack/lab.sh exec -- python3 -m pytest tests/lab -ra --durations=0
rc=$?
echo "lab stage: tests took $((SECONDS - t)) s"
t=$SECONDS
hack/lab.sh exec -- python3 bench/lio_scale.py --ci
bench_rc=$?
echo "lab stage: bench/lio_scale.py --ci took $((SECONDS - t)) s (rc $bench_rc)"
echo "lab stage: total $((SECONDS - start)) s"
# the bench is not a test: its failure is reported above, the stage's verdict is the tests'
exit "$rc"
