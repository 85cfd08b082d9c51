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
import yaml

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.skipif(shutil.which("ansible-playbook") is None, reason="ansible-playbook not on PATH")


def run_playbook(*args, tmp_path):
    env = dict(os.environ)
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_PYTHON_INTERPRETER=sys.executable)
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
    assert summary == {"nodes": 10, "storage_hosts": 2, "provisioning_hosts": 1, "exports": 11,
                       "root_modes": {"iscsi": 3, "mirror": 3, "image": 2, "live": 2}}
    plan = task_result(out, "Print the plan")["diskless_plan.plan"]
    assert plan["nodes"]["gpu01"]["ip"] == "10.77.0.151"          # per-group cluster_node_ip_offset
    assert plan["nodes"]["gpu02"]["mac"] == "52:54:00:00:02:02"     # normalised
    assert plan["nodes"]["gpu02"]["paths"][0]["storage_host"] == "sch2"  # pinned
    assert plan["nodes"]["node001"]["chap_secret"] == "********"
    assert plan["nodes"]["node007"]["paths"] == [] and plan["nodes"]["node008"]["overlay"] == "zram"   # live
    assert {name: i["live"] for name, i in plan["images"].items()} == {"debian12": True, "debian12-cuda": False}
    # node004's LUKS root: bound to the provisioning host's Tang, no key anywhere; its clone is the image + 32M
    assert (plan["nodes"]["node004"]["tang_urls"], plan["nodes"]["node004"]["tang_threshold"]) == (["http://10.77.0.2/tang"], 1)
    assert plan["nodes"]["node004"]["root_size_bytes"] == (4 << 30) + (32 << 20)
    assert plan["provisioning"]["ips1"]["tang_clients"] == ["10.77.0.104"]
    assert "luks_key" not in json.dumps(plan)
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
    errors = task_result(out, "Compute the plan", host="ips1")["errors"]
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
    assert (marks / "node003").read_text() == "compute\n"
    assert (marks / "sch1").read_text() == "storage\n"


# ------------------------------------------------------------------------- inventories of real users
EXAMPLE = ROOT / "inventories" / "example"


def write_inventory(tmp_path, name, hosts_text, all_vars=None, vault=True):
    """A copy of the example inventory under tmp_path/name with another hosts.yml and extra group_vars/all."""
    inv = tmp_path / name
    shutil.copytree(EXAMPLE, inv)
    (inv / "hosts.yml").write_text(hosts_text)
    if all_vars:
        (inv / "group_vars" / "all" / "zz-extra.yml").write_text(all_vars)
    if not vault:
        (inv / "group_vars" / "all" / "vault.yml").unlink()
    return inv


def slices_of(inv, tmp_path, *extra):
    out = tmp_path / ("out-" + inv.name)
    out.mkdir()
    proc, output = run_playbook("-i", str(inv), str(FIXTURES / "slices.yml"), "-e", "out_dir=%s" % out, *extra,
                                tmp_path=tmp_path)
    held = json.loads((out / "all.json").read_text()) if (out / "all.json").exists() else {"slice": {}}
    return proc, output, {host: {key: held[key][host] for key in held} for host in held["slice"]}


def plan_errors(output):
    return task_result(output, "Compute the plan", host=sorted(output["stats"])[0])["errors"]


EXAMPLE_HOSTS = (EXAMPLE / "hosts.yml").read_text()


def test_other_roles_variables_and_the_playbooks_own_plan_cleanly(tmp_path):
    hosts = EXAMPLE_HOSTS.replace(
        "        gpu:\n          vars:\n",
        "        gpu:\n          vars:\n            node_exporter_version: 1.8.2\n            node_exporter_port: 9100\n"
        "            storage_class: fast\n")
    inv = write_inventory(tmp_path, "others", hosts, all_vars=(
        "cluster_fqdn: cluster.example.org\n"          # another collection's name
        "node_exporter_enabled: true\n"
        "cluster_power_on_command: [ipmi-power-on]\n"  # read by playbooks/compute.yml
        "cluster_boot_timeout: 1200\n"))
    proc, out, held = slices_of(inv, tmp_path, "-e", "cluster_http_port=8080")
    assert proc.returncode == 0, json.dumps(out)[-3000:]
    assert held["ips1"]["slice"]["cluster"]["http_base"] == "http://10.77.0.2:8080"
    assert held["ips1"]["slice"]["cluster"]["http_port"] == 8080
    assert "10.77.0.2:8080/images/debian12-cuda/3/vmlinuz" in held["ips1"]["slice"]["restricted"]["files"]["52-54-00-00-02-01.ipxe"]


def test_a_near_miss_typo_is_one_line_with_the_name_it_means(tmp_path):
    hosts = EXAMPLE_HOSTS.replace('node001: {node_mac: "52:54:00:00:01:01"}',
                                  'node001: {node_mac: "52:54:00:00:01:01", node_rooot: mirror}')
    inv = write_inventory(tmp_path, "typo", hosts, all_vars="cluster_iscsi_prot: 3261\n")
    proc, out, held = slices_of(inv, tmp_path)
    assert proc.returncode != 0 and held == {}
    assert plan_errors(out) == ["all: cluster_iscsi_prot: unknown variable; did you mean cluster_iscsi_port?",
                                "node001: node_rooot: unknown variable; did you mean node_root?"]


def test_a_retired_luks_key_is_one_line_each_and_never_printed(tmp_path):
    hosts = EXAMPLE_HOSTS.replace('node004: {node_mac: "52:54:00:00:01:04", node_root: mirror, node_luks: true}',
                                  'node004: {node_mac: "52:54:00:00:01:04", node_root: mirror, node_luks: true, '
                                  'node_luks_key: "{{ vault_node004_luks_key }}"}')
    assert hosts != EXAMPLE_HOSTS
    inv = write_inventory(tmp_path, "retired", hosts, all_vars="vault_node004_luks_key: host-var-luks-key-0123\n")
    vault = inv / "group_vars" / "all" / "vault.yml"
    vault.write_text(vault.read_text().replace("  node004:\n", "  node004:\n    luks_key: vault-luks-key-0123\n"))
    proc, out, held = slices_of(inv, tmp_path)
    assert proc.returncode != 0 and held == {}
    why = ("is retired: a LUKS root is unlocked by Clevis bound to the provisioning hosts' Tang (docs/security.md); "
           "remove it from the inventory and vault (a recovery passphrase is node_luks_recovery)")
    assert plan_errors(out) == ["node004: cluster_chap_secrets.node004.luks_key: " + why, "node004: node_luks_key: " + why]
    assert "luks-key-0123" not in proc.stdout + proc.stderr


def test_templated_and_vault_indirected_cluster_variables_plan_like_literal_ones_whatever_the_group_order(
        tmp_path, monkeypatch):
    literal = write_inventory(tmp_path, "literal", EXAMPLE_HOSTS)
    vault = (EXAMPLE / "group_vars" / "all" / "vault.yml").read_text().replace("cluster_chap_secrets:", "vault_cluster_chap_secrets:")
    cluster = (EXAMPLE / "group_vars" / "all" / "cluster.yml").read_text()
    cluster = cluster.replace("cluster_domain: hpc.example.org", "cluster_domain: \"{{ site_domain }}\"")
    cluster += 'cluster_chap_secrets: "{{ vault_cluster_chap_secrets }}"\ncluster_iscsi_port: "{{ 3000 + 260 }}"\nsite_domain: hpc.example.org\n'
    # the same groups, compute first and provisioning last
    head, body = EXAMPLE_HOSTS.split("  children:\n", 1)
    prov, rest = body.split("    storage:\n", 1)
    storage, compute = rest.split("    compute:\n", 1)
    reordered = head + "  children:\n    compute:\n" + compute + "    storage:\n" + storage + prov
    templated = write_inventory(tmp_path, "templated", reordered)
    (templated / "group_vars" / "all" / "vault.yml").write_text(vault)
    (templated / "group_vars" / "all" / "cluster.yml").write_text(cluster)
    # and one secret encrypted inline with ansible-vault
    password = tmp_path / "vault-password"
    password.write_text("bench-only-password\n")
    secret = yaml.safe_load(vault.replace("vault_cluster_chap_secrets:", "x:"))["x"]["node001"]["secret"]
    encrypted = subprocess.run(["ansible-vault", "encrypt_string", "--vault-password-file", str(password), secret,
                                "--name", "node_chap_secret"], capture_output=True, text=True, check=True).stdout
    host_vars = templated / "host_vars"
    host_vars.mkdir()
    (host_vars / "node001.yml").write_text(encrypted)
    proc_a, out_a, held_a = slices_of(literal, tmp_path)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password))
    proc_b, out_b, held_b = slices_of(templated, tmp_path)
    assert proc_a.returncode == 0 and proc_b.returncode == 0, json.dumps(out_b)[-3000:]
    assert sorted(held_a) == sorted(held_b) == ["gpu01", "gpu02", "ips1", "node001", "node002", "node003",
                                                "node004", "node005", "node006", "node007", "node008", "sch1", "sch2"]
    for host in held_a:
        assert held_a[host]["slice"] == held_b[host]["slice"], host


def test_a_cluster_variable_with_two_values_is_one_line(tmp_path):
    hosts = EXAMPLE_HOSTS.replace("        gpu:\n          vars:\n", "        gpu:\n          vars:\n            cluster_iscsi_port: 3261\n")
    inv = write_inventory(tmp_path, "two-values", hosts)
    proc, out, held = slices_of(inv, tmp_path)
    assert proc.returncode != 0 and held == {}
    assert plan_errors(out) == [
        "all: cluster_iscsi_port: has different values on different hosts (3261 on gpu01, gpu02; not set on ips1, node001, "
        "node002 and 8 more); a cluster variable has one value: set it once, in group_vars/all"]


def test_no_host_holds_another_hosts_secret_and_no_plan_data_is_a_fact(tmp_path, monkeypatch):
    cache = tmp_path / "facts"
    inv = write_inventory(tmp_path, "example", EXAMPLE_HOSTS)
    monkeypatch.setenv("ANSIBLE_CACHE_PLUGIN", "ansible.builtin.jsonfile")
    monkeypatch.setenv("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(cache))
    proc, out, held = slices_of(inv, tmp_path)
    assert proc.returncode == 0, json.dumps(out)[-3000:]
    secrets = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "vault.yml").read_text())["cluster_chap_secrets"]
    owned = {node: set(values.values()) for node, values in secrets.items()}
    every = set().union(*owned.values())
    for host, data in held.items():
        text = json.dumps(data)
        assert data["facts"] == {}, host                       # the plan is no fact
        assert "nodes" not in data["plan_check"] and "plan" not in data["plan_check"]
        found = {s for s in every if s in text}
        if data["slice"]["role"] == "compute":
            assert found == set(), host                         # a node holds no secret at all
        elif data["slice"]["role"] == "storage":
            served = {a["node"] for e in data["slice"]["lio_iscsi"]["exports"] for a in e["acls"]}
            assert found == set().union(*(owned[n] for n in served))
            assert served and served != set(secrets)           # sch1 and sch2 each serve only some nodes
    cached = "".join(p.read_text() for p in cache.rglob("*") if p.is_file()) if cache.exists() else ""
    assert not any(s in cached for s in every)
    assert "initiator_iqn" not in cached
