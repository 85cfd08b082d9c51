#!/usr/bin/env bash
# Benchmarks: figures printed side by side for the closing notes, never asserted (a bench fails the stage
# only when it cannot run at all). The lab's benches (boot_time, lio_scale, root_modes, ab_update) run in the lab
# stage. Under `make test` this stage runs beside the lab's tests (hack/test.sh), or beside the lab images' build
# on a cold cache: that can slow its wall times; the CPU times printed beside them are the figures to compare.
set -euo pipefail
cd "$DL_ROOT" || exit 1
echo "--- bench/plan_scale.py"
python bench/plan_scale.py
echo "--- bench/provisioning_scale.py"
python bench/provisioning_scale.py --sizes 10,1000
echo "--- bench/slice_scale.py"
python bench/slice_scale.py --sizes 10,100,1000
