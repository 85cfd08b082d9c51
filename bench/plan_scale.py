# SPDX-License-Identifier: GPL-3.0-or-later
"""Planner time for 100 / 1,000 / 10,000 compute nodes (not a test: prints figures).

Each size is planned several times; the best and the median wall time are printed, with the time per node
and the ratio to the smallest size. The inventory mixes every root mode over 4 storage hosts in a /16.
Run: source hack/env.sh && python bench/plan_scale.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from ansible_collections.diskless.cluster.plugins.module_utils.plan import build_plan

MODES = ("iscsi", "iscsi", "mirror", "image")


def inventory(n_nodes: int):
    cluster = {
        "cluster_name": "bench", "cluster_domain": "bench.example.org", "cluster_iqn_date": "2026-11",
        "cluster_boot_network": "10.80.0.0/16", "cluster_boot_gateway": "10.80.0.1",
        "cluster_images": {"debian12": {"version": "1", "size": "4G"}},
        "cluster_chap_secrets": {}, "cluster_kernel_args": ["console=ttyS0,115200n8"],
    }
    hostvars = {"ips1": {"ansible_host": "10.80.0.2"}}
    groups = {"provisioning": ["ips1"], "storage": [], "compute": []}
    for i in range(4):
        hostvars["sch%d" % (i + 1)] = {"ansible_host": "10.80.0.%d" % (11 + i), "storage_pool_devices": ["/dev/sdb", "/dev/sdc"]}
        groups["storage"].append("sch%d" % (i + 1))
    for i in range(1, n_nodes + 1):
        name = "node%05d" % i
        hostvars[name] = {"node_mac": "52:54:00:%02x:%02x:%02x" % (i >> 16, (i >> 8) & 255, i & 255), "node_root": MODES[i % 4]}
        cluster["cluster_chap_secrets"][name] = {"secret": "s-%s-0123456789" % name, "mutual_secret": "m-%s-0123456789" % name}
        groups["compute"].append(name)
    return cluster, hostvars, groups


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 10000]
    print("planner scale: %d cores, python %s" % (os.cpu_count() or 0, sys.version.split()[0]))
    print("%8s %6s %10s %10s %12s %8s %9s" % ("nodes", "runs", "best s", "median s", "us/node", "ratio", "exports"))
    base = None
    for n in sizes:
        inv = inventory(n)
        runs = 7 if n <= 1000 else 3
        times = []
        for _run in range(runs):
            start = time.perf_counter()
            plan = build_plan(*inv)
            times.append(time.perf_counter() - start)
        best = min(times)
        base = base or best / n
        exports = sum(len(s["exports"]) for s in plan["storage"].values())
        print("%8d %6d %10.3f %10.3f %12.1f %8.2f %9d" % (n, runs, best, statistics.median(times), best / n * 1e6,
                                                          (best / n) / base, exports))
    print("ratio = time per node relative to the smallest size (1.00 = linear scaling)")


if __name__ == "__main__":
    main()
