# SPDX-License-Identifier: GPL-3.0-or-later
"""The unit tests import this checkout as ``ansible_collections.diskless.cluster`` and the lab package as
``lab``: hack/env.sh puts both on PYTHONPATH (its per-checkout $DL_COLLECTIONS link, and the checkout's
root; pytest.ini adds the root too). Without it, say so once instead of failing every module's import."""

from __future__ import annotations

import importlib.util

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if importlib.util.find_spec("ansible_collections.diskless.cluster") is None:
        raise pytest.UsageError("ansible_collections.diskless.cluster is not importable: source hack/env.sh first "
                                "(it puts $DL_COLLECTIONS on PYTHONPATH)")
