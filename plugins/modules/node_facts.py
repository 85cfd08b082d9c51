#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_facts
short_description: What a booted diskless node's root stands on (iSCSI sessions, md, dm, local disks)
version_added: 0.1.0
description:
  - Reads C(/proc), C(/sys) and C(/run/diskless/root.env) only, runs no command and changes nothing.
  - Returns the source of the root file system, the chain of block devices under it (partitions, md RAID,
    dm-crypt, dm-multipath) down to the disks, and for each disk whether it is an iSCSI LUN and of which
    session (target IQN, initiator IQN, portal, state, recovery timeout).
  - A root that is an overlay (root modes V(image) and V(live)) is described through its lower layer (the
    multipath device of the shared image, or the squashfs in RAM); C(root.mode) names the root mode the
    stack adds up to and C(root.paths) the health of every path (md member state, iSCSI session state, SCSI device state).
  - An encrypted root (inventory C(node_luks)) is a LUKS dm-crypt device on top of the mode's device; C(root.luks) names
    it and what it decrypts, and C(root.mode) is the mode of the device under it.
  - Also lists every iSCSI session and the node's local disks, which a diskless node does not have.
  - Used by C(playbooks/verify.yml) to report the health of every node.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options: {}
author:
  - diskless.cluster developers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Read what the root stands on
  diskless.cluster.node_facts:

- name: The root must be on an iSCSI LUN logged in with this node's own initiator IQN
  ansible.builtin.assert:
    that:
      - ansible_facts.diskless_node.root.on_iscsi
      - ansible_facts.diskless_node.root.disks | map(attribute='iscsi.initiator') | unique | list
        == [cluster_plan.nodes[inventory_hostname].initiator_iqn]
"""

RETURN = r"""
ansible_facts:
  description: Facts about the node's storage.
  returned: always
  type: dict
  contains:
    diskless_node:
      description: What the root file system stands on.
      type: dict
      contains:
        root:
          description: The root file system, its device stack and the disks at the bottom of it.
          type: dict
          sample:
            source: /dev/sda
            fstype: ext4
            device: sda
            on_iscsi: true
            mode: iscsi
            paths: [{disk: sda, portal: 10.77.0.11, target: "iqn.2026-11.org.example.lab:sch1.node001-root",
                     session_state: LOGGED_IN, device_state: running, md_member_state: null, ok: true}]
            luks: null
            stack: [{name: sda, kind: disk, depth: 0}]
            disks:
              - name: sda
                size_bytes: 2147483648
                transport: iscsi
                state: running
                iscsi: {session: session1, target: "iqn.2026-11.org.example.lab:sch1.node001-root",
                        initiator: "iqn.2026-11.org.example.lab:node001", state: LOGGED_IN,
                        recovery_tmo: "120", portal: 10.77.0.11, port: 3260}
        iscsi_sessions:
          description: Every iSCSI session of the node.
          type: list
          elements: dict
          sample: [{session: session1, target: "iqn.2026-11.org.example.lab:sch1.node001-root", state: LOGGED_IN}]
        local_disks:
          description: Disks that are not iSCSI LUNs (empty on a diskless node).
          type: list
          elements: dict
          sample: []
        boot_id:
          description: The kernel's boot id (changes at every boot).
          type: str
          sample: 3f2a9c1e-8c1b-4e5e-9a55-0b8f5d7c2a10
        env:
          description:
            - The non-secret C(DL_*) values the initramfs booted with, from C(/run/diskless/root.env) (empty if
              the file is missing). Names holding a secret are never returned.
          type: dict
          sample: {DL_ROOT_MODE: iscsi, DL_ISCSI_REPLACEMENT_TIMEOUT: "86400", DL_ROOT_DEVICE: /dev/sda}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.diskless.cluster.plugins.module_utils.node import describe


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={"diskless_node": describe()})


if __name__ == "__main__":
    main()
