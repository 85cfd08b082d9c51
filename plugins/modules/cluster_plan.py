#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as the action plugin plugins/action/cluster_plan.py; this file holds its documentation.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cluster_plan
short_description: Compute the whole diskless cluster plan from the inventory
version_added: 0.1.0
description:
  - Reads the inventory groups C(provisioning), C(storage) and C(compute) and their variables, validates
    everything at once and derives the single plan every role of the collection works from, see
    U(https://example.invalid/diskless/cluster/docs/plan.md).
  - Per compute node it derives the normalised MAC, the IP address (allocated deterministically from the
    boot network unless given), the initiator IQN, the target IQNs, volume names and their placement
    across storage hosts (rendezvous hashing; the two halves of a C(mirror) root on two different hosts),
    LUN ids, CHAP user names, the iPXE boot script and the per-node initramfs configuration.
  - Per storage host it lists the golden volumes, node volumes and iSCSI exports with their ACLs; per
    provisioning host the DHCP reservations and per-MAC boot files.
  - The plan is stable. A node's addresses, names and placement depend only on its own variables and on
    the set of storage hosts, so adding, removing or reordering nodes never changes another node.
  - If the inventory has problems, the task fails once with one line per problem, naming the host and the
    variable, before any host is changed. Run it first, with C(ignore_errors=false) and
    C(any_errors_fatal), so nothing is touched when the plan is invalid.
  - This is an action plugin; it runs on the controller only and never connects to a host.
  - The plan holds CHAP secrets and LUKS keys; use C(no_log) on the task, or O(redact=true) to print it.
options:
  redact:
    description:
      - Replace every secret in the returned plan (CHAP secrets, LUKS keys, secret boot files) with C(********).
      - Use it to print or inspect the plan; roles need the unredacted plan.
    type: bool
    default: false
  fact:
    description:
      - Name of the fact the plan is stored in, on every host of the play when used with C(run_once).
    type: str
    default: cluster_plan
extends_documentation_fragment:
  - diskless.cluster.attributes
  - diskless.cluster.attributes.ACTION
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The plan is computed on the controller and nothing is changed, in check mode or not.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - netaddr (on the controller)
seealso:
  - name: The plan contract
    description: Every field of the plan and every inventory variable the planner reads.
    link: https://example.invalid/diskless/cluster/docs/plan.md
author:
  - diskless.cluster developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Compute the cluster plan once; every host of the play gets the fact cluster_plan
  diskless.cluster.cluster_plan:
  run_once: true
  no_log: true

- name: Print the plan without secrets
  hosts: all
  gather_facts: false
  any_errors_fatal: true
  tasks:
    - name: Compute a redacted plan
      diskless.cluster.cluster_plan:
        redact: true
        fact: cluster_plan_redacted
      run_once: true

    - name: Show it
      ansible.builtin.debug:
        var: cluster_plan_redacted
      run_once: true
"""

RETURN = r"""
ansible_facts:
  description: The plan, under the name given by O(fact).
  returned: success
  type: dict
  contains:
    cluster_plan:
      description: The plan; see the plan contract for every key.
      type: dict
      sample:
        version: 1
        cluster: {name: lab, domain: lab.example.org, iqn_authority: iqn.2026-11.org.example.lab}
        images: {}
        nodes: {}
        storage: {}
        provisioning: {}
summary:
  description: Counts of what the plan holds.
  returned: success
  type: dict
  sample: {nodes: 6, storage_hosts: 2, provisioning_hosts: 1, exports: 9, root_modes: {iscsi: 2, mirror: 2, image: 2}}
errors:
  description: "One line per problem, C(<host>: <variable>: <problem>), when the inventory is invalid."
  returned: failure
  type: list
  elements: str
  sample: ["node003: node_mac: '52:54:00:zz:00:03' is not a MAC address"]
"""
