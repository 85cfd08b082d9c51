# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster_plan action plugin, run by real ansible-playbook against real inventories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="ansible-playbook not on PATH")


def run_playbook(*args, tmp_path):
    env = dict(os.environ)
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", sys.path[0])
    proc = subprocess.run(["ansible-playbook", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None


def task_result(output, name, host="localhost"):
    for play in output["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"][host]
    raise AssertionError("task %r not in output" % name)


def test_example_inventory_prints_redacted_plan(tmp_path):
    proc, out = run_playbook("-i", "inventories/example", "playbooks/plan.yml", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = task_result(out, "Print the summary")["diskless_plan.summary"]
    assert summary == {"nodes": 8, "storage_hosts": 2, "provisioning_hosts": 1, "exports": 11,
                       "root_modes": {"iscsi": 3, "mirror": 3, "image": 2}}
    plan = task_result(out, "Print the plan")["cluster_plan"]
    assert plan["nodes"]["gpu01"]["ip"] == "10.77.0.151"          # per-group cluster_node_ip_offset
    assert plan["nodes"]["gpu02"]["mac"] == "52:54:00:00:02:02"     # normalised
    assert plan["nodes"]["gpu02"]["paths"][0]["storage_host"] == "sch2"  # pinned
    assert plan["nodes"]["node001"]["chap_secret"] == "********"
    vault = (ROOT / "inventories/example/group_vars/all/vault.yml").read_text()
    secret = vault.split("secret: ", 1)[1].split()[0]
    assert secret not in proc.stdout


def test_invalid_inventory_fails_once_and_changes_nothing(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    proc, out = run_playbook("-i", str(FIXTURES / "broken" / "hosts.yml"), str(FIXTURES / "touch.yml"),
                             "-e", "marker_dir=%s" % marks, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert list(marks.iterdir()) == []
    assert task_result(out, "Compute the plan", host="ips1")["failed"] is True
    # no_log hides the message in the callback; run the same plan unredacted-without-no_log to read the lines
    proc, out = run_playbook("-i", str(FIXTURES / "broken" / "hosts.yml"), "playbooks/plan.yml", tmp_path=tmp_path)
    assert proc.returncode != 0
    errors = task_result(out, "Compute the plan (secrets redacted)")["errors"]
    assert errors == [
        "node001: node_root: 'mirror' needs two storage hosts; the inventory has 1",
        "node002: node_mac: 52:54:00:00:01:01 is also the MAC of node001",
        "node003: node_chap_mutual_secret: is required: the node's mutual CHAP secret (set it in vault, or cluster_chap_secrets.node003.mutual_secret)",
        "node003: node_chap_secret: is required: the node's CHAP secret (set it in vault, or cluster_chap_secrets.node003.secret)",
    ]


def test_valid_inventory_reaches_every_host(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    inventory = tmp_path / "hosts.yml"
    text = (FIXTURES / "broken" / "hosts.yml").read_text()
    text = text.replace('node002: {node_mac: "52:54:00:00:01:01"', 'node002: {node_mac: "52:54:00:00:01:02"')
    text = text.replace("node_root: mirror, ", "")
    text = text.replace("      node002: {secret", "      node003: {secret: node003-secret-a, mutual_secret: node003-mutual-a}\n      node002: {secret")
    inventory.write_text(text)
    proc = run_playbook("-i", str(inventory), str(FIXTURES / "touch.yml"), "-e", "marker_dir=%s" % marks, tmp_path=tmp_path)[0]
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(p.name for p in marks.iterdir()) == ["ips1", "node001", "node002", "node003", "sch1"]
    assert (marks / "node003").read_text() == "broken\n"
