#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: luks_recovery
short_description: Give a booted node's LUKS root a recovery passphrase of its own
version_added: 0.1.0
description:
  - A C(node_luks) root is unlocked at every boot by Clevis bound to the provisioning hosts' Tang servers; no
    passphrase exists. This module adds one keyslot that opens with O(passphrase) (inventory
    C(node_luks_recovery), kept in vault), typed at the console the day no Tang answers
    (C(cryptsetup open DEVICE dlcrypt) in the initramfs shell, see docs/security.md).
  - Runs on the booted node. The existing key is recovered from Tang (C(clevis luks pass)) to authorise the new
    keyslot; both secrets go to cryptsetup through pipes, never on a command line or in a file.
  - A keyslot that no Clevis token names is a recovery keyslot. When O(passphrase) opens none, a keyslot is added
    for it and every other recovery keyslot is removed (a replaced passphrase stops working); keyslots bound to
    Tang are never touched.
  - Refuses when the device has no Clevis keyslot (its first boot has not finished binding it to Tang).
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - cryptsetup 2.4 or later and clevis-luks on the node; Tang reachable from it (only to add or replace the keyslot).
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - Only reads the LUKS2 metadata and tests the passphrase against the recovery keyslots.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  passphrase:
    description:
      - The recovery passphrase (SECRET). The planner checks its length (20 to 512 printable characters).
    type: str
    required: true
  iter_time:
    description:
      - Milliseconds of argon2id work to open the recovery keyslot (C(cryptsetup --iter-time)), measured on this
        node when the keyslot is added; it is the cost of each guess against a stolen LUKS header.
    type: int
    default: 2000
  name:
    description:
      - The dm-crypt mapping of the root, C(/dev/mapper/NAME), as the initramfs opened it; the LUKS device is the
        one under it.
    type: str
    default: dlcrypt
"""

EXAMPLES = r"""
- name: Add the node's recovery passphrase as a keyslot of its LUKS root
  diskless.cluster.luks_recovery:
    passphrase: "{{ node_luks_recovery }}"
"""

RETURN = r"""
device:
  description: The LUKS device (under the root's dm-crypt mapping).
  returned: success
  type: str
  sample: /dev/md/dlroot
keyslot:
  description: The keyslot the recovery passphrase opens (in check mode, null when it would be added).
  returned: success
  type: int
  sample: 2
added:
  description: Whether a keyslot was added (or would be, in check mode).
  returned: success
  type: bool
  sample: false
removed:
  description: The recovery keyslots of a former passphrase that were removed (or would be, in check mode).
  returned: success
  type: list
  elements: int
  sample: []
clevis_keyslots:
  description: The keyslots bound to Tang (never changed here).
  returned: success
  type: list
  elements: int
  sample: [1]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail
from ansible_collections.diskless.cluster.plugins.module_utils.luks import Luks, LuksError, recovery_plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            passphrase=dict(type="str", required=True, no_log=True),
            iter_time=dict(type="int", default=2000),
            name=dict(type="str", default="dlcrypt"),
        ),
        supports_check_mode=True,
    )
    run = Runner(module)
    passphrase = module.params["passphrase"]
    try:
        luks = Luks.of_mapping(run, module.params["name"])
        clevis, other = luks.slots()
        opens = luks.opens(passphrase, other)
        add, kill = recovery_plan(clevis, other, opens)
        slot = opens
        if (add or kill) and not module.check_mode:
            if add:
                luks.add(luks.clevis_key(clevis[0]), passphrase, module.params["iter_time"])
                clevis, after = luks.slots()
                new = [s for s in after if s not in other]
                if not new:
                    raise LuksError("cryptsetup added no keyslot to %s" % luks.device)
                slot = new[0]
            for old in kill:
                luks.kill(old)
    except (LuksError, CommandError) as exc:
        fail(module, exc)
    result = dict(changed=bool(add or kill), device=luks.device, keyslot=slot, added=add, removed=kill,
                  clevis_keyslots=clevis)
    if module._diff:
        result["diff"] = dict(before="recovery keyslots: %s\n" % (other or "none"),
                              after="recovery keyslots: %s\n" % ([slot] if slot is not None else ["new"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
