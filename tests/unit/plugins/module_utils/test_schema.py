# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventory schema is declared once: the docs' tables, the planner and the roles agree with it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.diskless.cluster.plugins.module_utils import _schema as schema
from ansible_collections.diskless.cluster.plugins.module_utils import plan

ROOT = Path(__file__).resolve().parents[4]
DOC = ROOT / "docs" / "plan.md"
BEGIN, END = "<!-- schema:begin -->\n", "<!-- schema:end -->\n"


def test_docs_tables_are_the_schema():
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    want = head + BEGIN + schema.markdown_tables() + END + tail
    if os.environ.get("DL_WRITE_DOCS") == "1":
        DOC.write_text(want)
    assert text == want, "docs/plan.md's variable tables differ from _schema.py: run DL_WRITE_DOCS=1 pytest %s" % __file__


def test_no_other_doc_restates_the_schema():
    # the README and the other docs link to docs/plan.md instead of keeping tables of their own
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if doc == DOC:
            continue
        rows = [line for line in doc.read_text().splitlines()
                if re.match(r"^\| `(cluster|node|storage|provisioning)_[a-z_]+` \|", line)
                and line.split("`")[1] in schema.BY_NAME]
        assert rows == [], "%s restates schema variables; link to docs/plan.md instead: %s" % (doc.name, rows[:3])


def test_the_planner_reads_what_the_schema_declares():
    assert plan.CLUSTER_VARS == {v.name for v in schema.VARIABLES if v.scope == "cluster"}
    assert plan.NODE_VARS == {v.name for v in schema.VARIABLES if v.scope == "compute"}
    source = (ROOT / "plugins" / "module_utils" / "plan.py").read_text()
    read = set(re.findall(r"""["']((?:cluster|node|storage|provisioning)_[a-z_]+)["']""", source)) - {"storage_host"}  # a plan key
    assert read <= set(schema.BY_NAME), read - set(schema.BY_NAME)
    planner = {v.name for v in schema.VARIABLES if v.scope in schema.PLANNER_SCOPES}
    assert planner - read == set(), "declared but never read by the planner: %s" % (planner - read)


def role_options():
    for spec in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            for name, option in (entry.get("options") or {}).items():
                yield spec.parts[-3], name, option


@pytest.mark.parametrize("role, name, option", list(role_options()), ids=lambda x: x if isinstance(x, str) else "")
def test_role_arguments_are_not_inventory_variables_nor_near_misses_of_them(role, name, option):
    assert name not in schema.BY_NAME, "%s: %s is an inventory variable of the schema, not a role argument" % (role, name)
    assert name.startswith(role + "_"), "%s: role arguments carry the role's name: %s" % (role, name)
    assert schema.near_miss(name) is None, "%s: %s looks like a typo of %s" % (role, name, schema.near_miss(name))


def test_playbook_variables_are_declared():
    used = set()
    for book in (ROOT / "playbooks").glob("*.yml"):
        used |= set(re.findall(r"(?<![.\w])((?:cluster|node|storage|provisioning)_[a-z_]+)\b", book.read_text()))
    ours = {n for n in used if n.startswith(schema.PREFIXES) and not n.startswith(("storage_host", "provisioning_host"))}
    assert ours <= set(schema.BY_NAME), ours - set(schema.BY_NAME)


def test_near_miss_is_only_for_typos():
    assert schema.near_miss("node_exporter_version") is None
    assert schema.near_miss("cluster_fqdn") is None
    assert schema.near_miss("node_imgae") == "node_image"
    assert schema.near_miss("storage_pool_szie") == "storage_pool_size"
    assert schema.near_miss("ansible_host") is None
