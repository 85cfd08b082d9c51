#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: storage_facts
short_description: Report a storage host's ZFS pool, volumes, LIO exports and live iSCSI sessions
version_added: 0.1.0
description:
  - Reads (never changes) the ZFS pool with C(zpool list -Hp), its volumes with one C(zfs list -Hp),
    and the LIO iSCSI configuration through rtslib-fb lookups, including the initiator of every live
    session, and returns them as the fact C(diskless_storage).
  - CHAP passwords are never returned.
  - Without rtslib-fb, or when LIO is not loaded, the exports and sessions are empty and RV(ansible_facts.diskless_storage.lio) is V(false).
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - zfs and zpool command line tools.
  - rtslib-fb (optional) for exports and sessions.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so it runs normally in check mode.
  diff_mode:
    support: N/A
    details:
      - The module changes nothing.
  idempotent:
    support: full
options:
  pool:
    description:
      - ZFS pool to report.
    type: str
    default: tank
seealso:
  - module: diskless.cluster.zfs_volumes
  - module: diskless.cluster.lio_iscsi
"""

EXAMPLES = r"""
- name: Read the storage state
  diskless.cluster.storage_facts:
    pool: tank

- name: Show which node is logged in to which target
  ansible.builtin.debug:
    msg: "{{ ansible_facts.diskless_storage.sessions | map(attribute='initiator') | list }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about the storage host.
  returned: always
  type: complex
  contains:
    diskless_storage:
      description: Pool, volumes, exports and sessions.
      returned: always
      type: complex
      contains:
        pool:
          description: C(zpool list) of the pool (sizes in bytes), or null when the pool does not exist.
          returned: always
          type: dict
          sample: {name: tank, size: 10737418240, allocated: 1048576, free: 10736369664, health: ONLINE}
        volumes:
          description: Every volume of the pool with size, origin, volmode, readonly, sparseness and snapshots.
          returned: always
          type: dict
          sample:
            tank/nodes/node001-root:
              volsize: 4294967296
              origin: tank/golden/debian12@v1
              volmode: dev
              readonly: "off"
              sparse: true
              snapshots: []
        lio:
          description: Whether the LIO configuration could be read (rtslib-fb present and LIO loaded).
          returned: always
          type: bool
          sample: true
        exports:
          description: Backstores and iSCSI targets with TPGs, portals, LUNs and ACLs; passwords masked.
          returned: always
          type: dict
          sample:
            backstores:
              node001-root: {plugin: block, dev: /dev/zvol/tank/nodes/node001-root, readonly: false, wwn: 9f1c2a64-3d3b-4a53-9a51-0b8d6c1d2e11}
            targets: {}
        sessions:
          description: Live sessions, one per logged-in initiator.
          returned: always
          type: list
          elements: dict
          sample:
            - target: iqn.2026-11.org.example.lab:sch1.node001-root
              tpg: 1
              initiator: iqn.2026-11.org.example.lab:node001
              state: LOGGED_IN
              addresses: [10.77.0.101]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail, first_line
from ansible_collections.diskless.cluster.plugins.module_utils import lio
from ansible_collections.diskless.cluster.plugins.module_utils import zfs as zfsu


def main():
    module = AnsibleModule(argument_spec=dict(pool=dict(type="str", default="tank")), supports_check_mode=True)
    run = Runner(module)
    pool = module.params["pool"]
    facts = {"pool": None, "volumes": {}, "lio": False, "exports": {"backstores": {}, "targets": {}}, "sessions": []}

    zpool = module.get_bin_path("zpool", required=True)
    zfs = module.get_bin_path("zfs", required=True)
    argv = zfsu.argv_zpool_list(zpool, pool)
    rc, out, err = run.raw(argv)
    if rc == 0:
        facts["pool"] = zfsu.parse_zpool_list(out).get(pool)
        try:
            out = run(zfsu.argv_list(zfs, pool), "zfs list %s" % pool)
        except CommandError as exc:
            fail(module, exc)
        current = zfsu.parse_zfs_list(out, zfsu.list_columns())
        facts["volumes"] = {n: zfsu.volume_view(r, current) for n, r in sorted(current.items()) if r.get("type") == "volume"}
    elif not zfsu.dataset_missing(err):
        fail(module, CommandError("zpool list %s failed (zpool, rc %d): %s" % (pool, rc, first_line(err)), argv, rc,
                                  out, err))

    rtslib, dummy = lio.import_rtslib()
    if rtslib is not None and os.path.isdir(lio.CONFIGFS_TARGET):
        try:
            state = lio.read_state(lio.ReadOnlyRoot(rtslib))
        except getattr(rtslib, "RTSLibError", Exception) as exc:
            module.warn("cannot read the LIO configuration: %s" % exc)
        else:
            facts["lio"] = True
            facts["exports"] = lio.view(state)
            facts["sessions"] = lio.sessions(state)
    module.exit_json(changed=False, ansible_facts={"diskless_storage": facts})


if __name__ == "__main__":
    main()
