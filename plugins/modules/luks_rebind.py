#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: luks_rebind
short_description: Bind a booted node's LUKS root to the keys its Tang servers advertise now
version_added: 0.1.0
description:
  - One step of a Tang key rotation (C(playbooks/tang_rotate.yml)). After the provisioning hosts hid their old
    Tang keys and made new ones, each C(node_luks) node's Clevis binding still needs the old keys (Tang still
    answers with hidden keys). This module finds every Clevis keyslot of the root whose binding needs a key that is
    not in O(advertised) and binds it anew (C(clevis luks regen)); the binding then needs only advertised keys, and
    the old keys can be retired.
  - Runs on the booted node and reads the bindings from the LUKS2 metadata (the C(kid) of each Tang binding, the
    SHA-256 thumbprint of the exchange key). A binding that needs only advertised keys is left alone.
  - Fails, in one line, when C(clevis luks regen) fails (a Tang server is down; every server of an C(sss) binding must
    answer to bind), or when a keyslot still needs a key that is not advertised afterwards.
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - cryptsetup 2.4 or later and clevis-luks on the node; every Tang server of its binding reachable.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - Only reads the LUKS2 metadata.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  advertised:
    description:
      - The SHA-256 thumbprints of the keys the Tang servers advertise now (C(diskless-tang-keys list) on each
        provisioning host). A binding that needs any other key is renewed.
    type: list
    elements: str
    required: true
  name:
    description:
      - The dm-crypt mapping of the root, C(/dev/mapper/NAME); the LUKS device is the one under it.
    type: str
    default: dlcrypt
"""

EXAMPLES = r"""
- name: Bind the LUKS root to the new Tang keys
  diskless.cluster.luks_rebind:
    advertised: ["Dv7F2xkP8s1Lr0-Zq9nW3cQe5tYbH4uJm6gVa2oKfXs", "l3nqgkH7Ptc6i2xRz8Yw0SbVf1uQdJ5oMa9eKr4TsW0"]
"""

RETURN = r"""
device:
  description: The LUKS device under the root's dm-crypt mapping.
  returned: success
  type: str
  sample: /dev/sda
rebound:
  description: The keyslots bound anew (in check mode, the ones that would be).
  returned: success
  type: list
  elements: int
  sample: [1]
bindings:
  description: For each Clevis keyslot, the thumbprints of the Tang keys its binding needs (after the change).
  returned: success
  type: dict
  sample: {"1": ["l3nqgkH7Ptc6i2xRz8Yw0SbVf1uQdJ5oMa9eKr4TsW0"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail
from ansible_collections.diskless.cluster.plugins.module_utils.luks import Luks, LuksError, stale_bindings


def _lines(bindings):
    return "".join("keyslot %d: %s\n" % (slot, " ".join(kids) or "no Tang key") for slot, kids in sorted(bindings.items()))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            advertised=dict(type="list", elements="str", required=True, no_log=False),
            name=dict(type="str", default="dlcrypt"),
        ),
        supports_check_mode=True,
    )
    advertised = set(module.params["advertised"])
    run = Runner(module)
    try:
        if not advertised:
            raise LuksError("advertised is empty: give the thumbprints the Tang servers advertise (diskless-tang-keys list)")
        luks = Luks.of_mapping(run, module.params["name"])
        before = luks.bindings()
        if not before:
            raise LuksError("%s has no Clevis keyslot (is its first boot finished?): nothing to bind anew" % luks.device)
        stale = stale_bindings(before, advertised)
        after = before
        if stale and not module.check_mode:
            for slot in stale:
                luks.regen(slot)
            after = luks.bindings()
            left = stale_bindings(after, advertised)
            if left:
                raise LuksError("keyslot %s of %s still needs Tang keys that are not advertised (%s) after clevis luks "
                                "regen: is a provisioning host serving old keys?"
                                % (left[0], luks.device, ", ".join(sorted(set(after[left[0]]) - advertised))))
    except (LuksError, CommandError) as exc:
        fail(module, exc)
    result = dict(changed=bool(stale), device=luks.device, rebound=stale,
                  bindings={str(k): v for k, v in sorted(after.items())})
    if module._diff:
        result["diff"] = dict(before=_lines(before), after=_lines(after))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
