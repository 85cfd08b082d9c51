#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as the action plugin plugins/action/plan_slice.py; this file holds its documentation.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan_slice
short_description: One host's part of the diskless cluster plan, shaped like its modules' arguments
version_added: 0.2.0
description:
  - Plans the cluster from the inventory (as M(diskless.cluster.cluster_plan) does) and returns only the part
    of the plan that belongs to one host, as a task result. Register it; it is never a fact, so a fact cache
    never stores it and no host's variables hold another host's part.
  - A storage host's slice has C(zfs_volumes) (the arguments of M(diskless.cluster.zfs_volumes)), C(lio_iscsi) (the
    arguments of M(diskless.cluster.lio_iscsi)), C(golden) (the images to write), C(partners) (the storage
    hosts holding the other paths of its nodes' roots) and C(pool).
  - A provisioning host's slice has C(public), C(restricted) and C(reservations) (each the arguments of
    M(diskless.cluster.file_set) but its path), C(allow) (the address each restricted file is served to),
    C(cluster) (network settings for dnsmasq and nginx), C(images) and C(nodes) (names, MACs, indexes), and
    C(tang) (the path its Tang server is served under and the C(clients), the addresses of the C(node_luks)
    nodes, the only ones it answers).
  - A compute node's slice has its identity and boot data (host name, address, IQN, root mode, paths, image,
    and for a C(node_luks) root the C(tang_urls) and C(tang_threshold) Clevis is bound with); its one secret is
    C(luks_recovery), the node's own recovery passphrase when the inventory sets C(node_luks_recovery) (use C(no_log)).
  - A compute node's slice is planned from its own variables, the cluster's and the storage and provisioning
    hosts' only (cheap for thousands of nodes); validate the whole inventory first with
    M(diskless.cluster.cluster_plan), as the playbooks of the collection do.
  - This is an action plugin; it runs on the controller only and never connects to a host.
  - A storage or provisioning host's slice holds the CHAP secrets of the nodes it serves; use C(no_log) on the
    task. No slice holds a LUKS key, there is none (Clevis unlocks a LUKS root with the provisioning hosts' Tang).
options:
  host:
    description:
      - The host whose slice to return. Defaults to the host the task runs for (C(inventory_hostname)).
    type: str
  volume_defaults:
    description:
      - For a storage host, the settings that shape its volumes (the role arguments of
        R(diskless.cluster.storage_host,ansible_collections.diskless.cluster.storage_host_role)).
    type: dict
    suboptions:
      volblocksize:
        description: C(volblocksize) of golden volumes.
        type: str
        default: 16K
      golden_readonly:
        description: Golden volumes are C(readonly=on).
        type: bool
        default: true
      golden_properties:
        description: Extra ZFS properties of golden volumes.
        type: dict
        default: {}
      golden_snapshot:
        description: Take the golden snapshot named by the plan when it is missing.
        type: bool
        default: true
      node_properties:
        description: Extra ZFS properties of node volumes.
        type: dict
        default: {}
extends_documentation_fragment:
  - diskless.cluster.attributes
  - diskless.cluster.attributes.ACTION
  - diskless.cluster.attributes.PLANNER
seealso:
  - module: diskless.cluster.cluster_plan
  - name: The plan contract
    description: Every inventory variable, the plan and the slices.
    link: https://example.invalid/diskless/cluster/docs/plan.md
author:
  - diskless.cluster developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Take this storage host's slice (it holds the CHAP secrets of its nodes)
  diskless.cluster.plan_slice:
  register: plan
  no_log: true

- name: Create its pool, golden volumes and node clones
  diskless.cluster.zfs_volumes:
    pool: "{{ plan.slice.zfs_volumes.pool }}"
    pool_devices: "{{ plan.slice.zfs_volumes.pool_devices }}"
    volumes: "{{ plan.slice.zfs_volumes.volumes }}"
    volmode: "{{ plan.slice.zfs_volumes.volmode }}"

- name: Export them over iSCSI
  diskless.cluster.lio_iscsi:
    exports: "{{ plan.slice.lio_iscsi.exports }}"
"""

RETURN = r"""
slice:
  description: The host's part of the plan; its keys depend on the host's group, see the description.
  returned: success
  type: dict
  sample:
    role: compute
    name: node001
    hostname: node001
    ip: 10.77.0.101
    root: iscsi
    initiator_iqn: iqn.2026-11.org.example.lab:node001
errors:
  description: "One line per problem, C(<host>: <variable>: <problem>), when the inventory is invalid."
  returned: failure
  type: list
  elements: str
  sample: ["node003: node_mac: '52:54:00:zz:00:03' is not a MAC address"]
"""
