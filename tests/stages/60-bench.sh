#!/usr/bin/env bash
# Benchmarks: figures printed side by side for the closing notes, never asserted (a bench fails the stage
# only when it cannot run at all). The lab's bench (bench/lio_scale.py) runs in the lab stage.
set -euo pipefail
cd "$DL_ROOT" || exit 1
echo "--- bench/plan_scale.py"
python bench/plan_scale.py
echo "--- bench/provisioning_scale.py"
python bench/provisioning_scale.py --sizes 10,100,1000
