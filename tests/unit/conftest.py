# SPDX-License-Identifier: GPL-3.0-or-later
"""Make this checkout importable as ``ansible_collections.diskless.cluster`` for the unit tests.

hack/env.sh links the checkout to $DL_COLLECTIONS/ansible_collections/diskless/cluster; when the tests
run inside an ansible-test tree the package is already importable and nothing is added.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[2]
if _root.parent.name == "diskless" and _root.parents[1].name == "ansible_collections":
    _path = str(_root.parents[2])
else:
    _path = os.environ.get("DL_COLLECTIONS") or str(Path.home() / ".cache/diskless-cluster/collections")
if _path not in sys.path:
    sys.path.insert(0, _path)
