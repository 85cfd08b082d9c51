#!/usr/bin/env bash
# Benchmarks: figures printed side by side for the closing notes, never asserted (a bench fails the stage
# only when it cannot run at all). The lab's benches (boot_time, lio_scale, ab_update) run in the lab stages.
# It runs before them: on a cold cache it overlaps the lab images' build (hack/test.sh, in the background),
# which can slow its wall times; the CPU times printed beside them are the figures to compare then.
set -euo pipefail
cd "$DL_ROOT" || exit 1
echo "--- bench/plan_scale.py"
python bench/plan_scale.py
echo "--- bench/provisioning_scale.py"
python bench/provisioning_scale.py --sizes 10,1000
echo "--- bench/slice_scale.py"
python bench/slice_scale.py --sizes 10,100,1000
