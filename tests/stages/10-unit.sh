#!/usr/bin/env bash
# Unit tests: planner, module_utils parsers (fixtures captured from the real tools), modules with mocked runners.
set -euo pipefail
cd "$DL_ROOT"
python -m pytest tests/unit -q -p no:randomly
