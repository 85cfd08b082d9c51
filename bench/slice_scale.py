# SPDX-License-Identifier: GPL-3.0-or-later
"""What do plan slices cost through ansible-playbook for 10 / 100 / 1,000 nodes?  (Not a test: prints figures.)

For each size, one playbook run against an inventory of 1 provisioning host, 4 storage hosts and N compute
nodes (all `connection: local`, nothing is changed anywhere):
  1. `diskless.cluster.cluster_plan`, run_once: the whole inventory validated once (what the playbooks do
     first; before slices this task also set the whole plan as a fact on every host);
  2. `diskless.cluster.plan_slice` for one storage host and for one node alone;
  3. a no-op action on every host (Ansible's own per-host cost), then `plan_slice` on every host.
Printed side by side (each task's wall time, ansible.posix.profile_tasks) with the whole run.
Run: source hack/env.sh && python bench/slice_scale.py [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

PLAYBOOK = """
- name: Validate
  hosts: all
  gather_facts: false
  tasks:
    - name: Validate the whole inventory
      diskless.cluster.cluster_plan:
      run_once: true

- name: One storage host
  hosts: sch1
  gather_facts: false
  tasks:
    - name: Slice of one storage host
      diskless.cluster.plan_slice:
      register: plan
      no_log: true

- name: One node
  hosts: node00001
  gather_facts: false
  tasks:
    - name: Slice of one node
      diskless.cluster.plan_slice:
      register: plan

- name: Every host
  hosts: all
  gather_facts: false
  tasks:
    - name: A no-op action on every host
      ansible.builtin.set_fact:
        bench_noop: true

    - name: Slice of every host
      diskless.cluster.plan_slice:
      register: plan
      no_log: true
"""
TASKS = ("Validate the whole inventory", "Slice of one storage host", "Slice of one node", "A no-op action on every host",
         "Slice of every host")
MODES = ("iscsi", "iscsi", "mirror", "image")


def inventory(n_nodes: int) -> dict:
    secrets = {}
    nodes = {}
    for i in range(1, n_nodes + 1):
        name = "node%05d" % i
        nodes[name] = {"node_mac": "52:54:00:%02x:%02x:%02x" % (i >> 16, (i >> 8) & 255, i & 255), "node_root": MODES[i % 4]}
        secrets[name] = {"secret": "s-%s-0123456789" % name, "mutual_secret": "m-%s-0123456789" % name}
    return {"all": {
        "vars": {
            "ansible_connection": "local", "cluster_name": "bench", "cluster_domain": "bench.example.org",
            "cluster_iqn_date": "2026-11", "cluster_boot_network": "10.80.0.0/16", "cluster_boot_gateway": "10.80.0.1",
            "cluster_images": {"debian12": {"version": "1", "size": "4G"}}, "cluster_chap_secrets": secrets,
        },
        "children": {
            "provisioning": {"hosts": {"ips1": {"ansible_host": "10.80.0.2"}}},
            "storage": {"hosts": {"sch%d" % i: {"ansible_host": "10.80.0.%d" % (10 + i), "storage_pool_devices": ["/dev/sdb"]}
                                  for i in range(1, 5)}},
            "compute": {"hosts": nodes},
        }}}


def run(n_nodes: int, work: Path) -> tuple[float, dict[str, float]]:
    directory = work / str(n_nodes)
    directory.mkdir()
    (directory / "hosts.yml").write_text(yaml.safe_dump(inventory(n_nodes)))
    (directory / "play.yml").write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_TASK_OUTPUT_LIMIT="100",
               PROFILE_TASKS_SORT_ORDER="none", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(directory / "tmp"))
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(directory / "hosts.yml"), str(directory / "play.yml")],
                          capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed for %d nodes:\n%s" % (n_nodes, proc.stdout[-3000:]))
    tasks = {}
    for match in re.finditer(r"^(.+?) -+ ([0-9.]+)s$", proc.stdout, re.M):
        tasks[match.group(1).strip()] = float(match.group(2))
    return wall, tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("plan slices through ansible-playbook (forks %s, %d cores); task wall times in s"
          % (os.environ.get("ANSIBLE_FORKS", "5"), os.cpu_count() or 0))
    print("%7s %10s %12s %10s %14s %14s %16s %10s" % ("nodes", "validate", "one storage", "one node", "no-op, all",
                                                      "slices, all", "slices - no-op", "whole run"))
    with tempfile.TemporaryDirectory(prefix="dl-slice-bench-") as tmp:
        for n in sizes:
            wall, tasks = run(n, Path(tmp))
            t = [tasks.get(name, float("nan")) for name in TASKS]
            print("%7d %10.2f %12.2f %10.2f %14.2f %14.2f %16.2f %10.1f" % (n, t[0], t[1], t[2], t[3], t[4], t[4] - t[3], wall))
    print("validate: the whole inventory once (run_once). one storage host: its slice, planned from every node it")
    print("serves. one node: its slice, planned from its own variables, the cluster's and the storage and provisioning")
    print("hosts' only. no-op, all: Ansible's own cost of one action on every host (the floor of any per-host task);")
    print("slices - no-op: what taking every host's slice adds to it.")


if __name__ == "__main__":
    main()
