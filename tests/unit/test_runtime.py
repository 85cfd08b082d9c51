# SPDX-License-Identifier: GPL-3.0-or-later
"""meta/runtime.yml: every old name redirects to a plugin that exists, with a deprecation naming the new name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROUTING = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["plugin_routing"]
FILTERS = (ROOT / "plugins" / "filter" / "ab_update.py").read_text()


@pytest.mark.parametrize("kind, old", [(k, o) for k in ROUTING for o in ROUTING[k]])
def test_old_names_redirect_with_a_deprecation(kind, old):
    route = ROUTING[kind][old]
    new = route["redirect"].split(".")[-1]
    assert route["redirect"] == "diskless.cluster.%s" % new
    if kind == "modules":
        assert (ROOT / "plugins" / "modules" / ("%s.py" % new)).is_file()
        assert not (ROOT / "plugins" / "modules" / ("%s.py" % old)).exists()
    else:
        assert '"%s": ' % new in FILTERS and '"%s": ' % old not in FILTERS
    assert route["deprecation"]["removal_version"] == "1.0.0"
    assert route["deprecation"]["warning_text"].startswith("diskless.cluster.%s is now diskless.cluster.%s;" % (old, new))
