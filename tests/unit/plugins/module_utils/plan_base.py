# SPDX-License-Identifier: GPL-3.0-or-later
"""A small valid inventory the planner tests start from, and a helper to mutate it."""

from __future__ import annotations

import copy

BASE_CLUSTER = {
    "cluster_name": "lab",
    "cluster_domain": "lab.example.org",
    "cluster_iqn_date": "2026-11",
    "cluster_boot_network": "10.77.0.0/24",
    "cluster_boot_gateway": "10.77.0.1",
    "cluster_images": {"debian12": {"version": "1", "size": "2G", "label": "dlroot"}},
    "cluster_chap_secrets": {
        "node001": {"secret": "node001-secret-a", "mutual_secret": "node001-mutual-a"},
        "node002": {"secret": "node002-secret-a", "mutual_secret": "node002-mutual-a"},
        "node003": {"secret": "node003-secret-a", "mutual_secret": "node003-mutual-a"},
    },
}

BASE_HOSTS = {
    "ips1": ("provisioning", {"ansible_host": "10.77.0.2"}),
    "sch1": ("storage", {"ansible_host": "10.77.0.11", "storage_pool_devices": ["/dev/vdb"], "storage_pool_size": "100G"}),
    "sch2": ("storage", {"ansible_host": "10.77.0.12", "storage_pool_devices": ["/dev/vdb"], "storage_pool_size": "100G"}),
    "node001": ("compute", {"node_mac": "52:54:00:00:01:01"}),
    "node002": ("compute", {"node_mac": "52:54:00:00:01:02", "node_root": "mirror"}),
    "node003": ("compute", {"node_mac": "52:54:00:00:01:03", "node_root": "image"}),
}

DELETE = object()


def inventory(cluster=None, hosts=None, groups=None):
    """Base inventory with changes: ``cluster``/``hosts`` values of None delete a variable (or a whole host).

    ``hosts`` maps a host to a dict of variable changes, or to ``{"group": g, "vars": {...}}`` to add a host.
    ``groups`` replaces whole group lists. Returns ``(cluster_vars, hostvars, groups)`` as build_plan takes them.
    """
    cluster_vars = copy.deepcopy(BASE_CLUSTER)
    for key, value in (cluster or {}).items():
        if value is None:
            cluster_vars.pop(key, None)
        else:
            cluster_vars[key] = value
    members = {"provisioning": [], "storage": [], "compute": []}
    hostvars = {}
    for host, (group, hv) in BASE_HOSTS.items():
        members[group].append(host)
        hostvars[host] = copy.deepcopy(hv)
    for host, change in (hosts or {}).items():
        if change is None:
            hostvars.pop(host)
            for names in members.values():
                if host in names:
                    names.remove(host)
        elif "group" in change:
            members[change["group"]].append(host)
            hostvars[host] = dict(change.get("vars", {}))
        else:
            for key, value in change.items():
                if value is None:
                    hostvars[host].pop(key, None)
                else:
                    hostvars[host][key] = value
    for group, names in (groups or {}).items():
        members[group] = list(names)
    return cluster_vars, hostvars, members
