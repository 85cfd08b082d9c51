#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as the action plugin plugins/action/cluster_plan.py; this file holds its documentation.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_plan
short_description: Validate the whole inventory as one diskless cluster plan
version_added: 0.1.0
description:
  - Reads the inventory groups C(provisioning), C(storage) and C(compute) and the variables the collection
    declares (the schema of U(https://example.invalid/diskless/cluster/docs/plan.md)), validates everything
    at once and derives the plan (per node its MAC, address, IQNs, volumes and their placement across the
    storage hosts, LUN ids, CHAP user names, the Tang servers a C(node_luks) root is bound to, iPXE script and
    initramfs file; per storage host its volumes and exports; per provisioning host its DHCP reservations, boot
    files and the addresses its Tang server answers).
  - If the inventory has problems, the task fails once with one line per problem, naming the host and the
    variable, before any host is changed. Run it first, with C(run_once) and C(any_errors_fatal).
  - Cluster variables (C(cluster_*)) are read, templated, from every planned host and must have one value
    (only C(cluster_node_ip_offset) may differ per group); vault indirections plan like literal values.
  - Only declared variables are read. Variables of other roles are ignored, even with the same prefix
    (C(node_exporter_version)); a name one or two keystrokes away from a declared one is reported with the
    name it probably means.
  - It sets no fact. Each host takes its own part of the plan with M(diskless.cluster.plan_slice), which is
    what the roles do; this task only validates and summarises (and returns the plan without secrets with
    O(redact=true)).
  - This is an action plugin; it runs on the controller only and never connects to a host.
options:
  redact:
    description:
      - Return the whole plan, every secret (CHAP secrets, secret boot files) replaced by C(********), in RV(plan).
        Register the result to print or inspect it.
      - A LUKS root (C(node_luks)) has no key in the plan, Clevis unlocks it with the provisioning hosts' Tang.
    type: bool
    default: false
extends_documentation_fragment:
  - diskless.cluster.attributes
  - diskless.cluster.attributes.ACTION
  - diskless.cluster.attributes.PLANNER
seealso:
  - module: diskless.cluster.plan_slice
  - name: The plan contract
    description: Every inventory variable and every field of the plan.
    link: https://example.invalid/diskless/cluster/docs/plan.md
author:
  - diskless.cluster developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Validate the inventory before any host is changed
  hosts: all
  gather_facts: false
  any_errors_fatal: true
  tasks:
    - name: Plan the cluster
      diskless.cluster.cluster_plan:
      run_once: true

- name: Print the plan without secrets
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Compute a redacted plan
      diskless.cluster.cluster_plan:
        redact: true
      register: plan

    - name: Show it
      ansible.builtin.debug:
        var: plan.plan
"""

RETURN = r"""
summary:
  description: Counts of what the plan holds.
  returned: success
  type: dict
  sample: {nodes: 6, storage_hosts: 2, provisioning_hosts: 1, exports: 9, root_modes: {iscsi: 2, mirror: 2, image: 2}}
images:
  description: The images of the plan (no secret), for the image builder.
  returned: success
  type: list
  elements: dict
  sample: [{name: debian12, version: "1", size_bytes: 2147483648, label: dlroot, http_path: /images/debian12/1}]
plan:
  description: The whole plan with every secret masked; see the plan contract for every key.
  returned: success and O(redact=true)
  type: dict
  sample:
    version: 1
    cluster: {name: lab, domain: lab.example.org, iqn_authority: iqn.2026-11.org.example.lab}
    images: {}
    nodes: {}
    storage: {}
    provisioning: {}
errors:
  description: "One line per problem, C(<host>: <variable>: <problem>), when the inventory is invalid."
  returned: failure
  type: list
  elements: str
  sample: ["node003: node_mac: '52:54:00:zz:00:03' is not a MAC address"]
"""
