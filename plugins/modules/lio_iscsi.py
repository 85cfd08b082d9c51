#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lio_iscsi
short_description: Reconcile every LIO iSCSI export of a storage host through rtslib-fb
version_added: 0.1.0
description:
  - Takes B(all) iSCSI exports of this host in one call (the C(exports) list of the cluster plan's
    storage slice) and reconciles the Linux kernel target (LIO) object by object through the
    rtslib-fb Python API - block backstores, targets, TPG 1 and its attributes, portals, LUNs, node
    ACLs, CHAP credentials and mapped LUNs.
  - The current state is read first with lookups only; the differences become an ordered list of
    actions; only those actions touch configfs. Objects that already match are not touched, so the
    sessions of unchanged nodes stay up.
  - iSCSI targets and block backstores that are not in O(exports) are removed, as are ACLs, LUNs,
    mapped LUNs, portals (including the C(0.0.0.0:3260)/C([::0]:3260) default portal) and TPGs other
    than 1 that are not wanted. Removing anything that carries a live session is refused, in one
    line naming the sessions, unless O(force=true).
  - Every managed TPG gets C(authentication=1), C(generate_node_acls=0) and
    C(demo_mode_write_protect=1) and is enabled.
  - The running configuration is saved with C(RTSRoot().save_to_file(save_file)) only when
    something changed. The configuration is never cleared or restored and the target service is
    never restarted (either would drop every node's root disk).
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - rtslib-fb 2.1.75 or later (C(python3-rtslib-fb) on Debian 12) in the Python that runs the module.
  - the C(target_core_mod) and C(iscsi_target_mod) kernel modules.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode the module only reads configfs and never saves.
  diff_mode:
    support: full
    details:
      - CHAP passwords are masked in the diff; a changed one shows as C(******** (changed)).
  idempotent:
    support: full
options:
  exports:
    description:
      - The complete set of iSCSI exports of this host. One target may appear more than once (its LUNs,
        portals and ACLs are merged).
    type: list
    elements: dict
    required: true
    suboptions:
      target_iqn:
        description:
          - Target IQN. Compared in lower case.
        type: str
        required: true
      backstore:
        description:
          - Name of the LIO block backstore (no C(/) or spaces).
        type: str
        required: true
      device:
        description:
          - Block device behind the backstore, for example V(/dev/zvol/tank/nodes/node001-root).
          - A backstore whose device differs is deleted and recreated (refused while it has live sessions).
        type: path
        required: true
      readonly:
        description:
          - Create the backstore read-only.
        type: bool
        default: false
      wwn:
        description:
          - T10 unit serial of the backstore. Give the same value on every storage host for a shared
            (multipath) image. When null, the kernel-generated serial is kept.
        type: str
      lun:
        description:
          - LUN index of the backstore in TPG 1.
        type: int
        default: 0
      portals:
        description:
          - Network portals of TPG 1.
        type: list
        elements: dict
        default: []
        suboptions:
          ip:
            description:
              - Address to listen on (IPv6 without brackets is fine).
            type: str
            required: true
          port:
            description:
              - TCP port.
            type: int
            default: 3260
      acls:
        description:
          - One node ACL per initiator, with mutual CHAP.
        type: list
        elements: dict
        default: []
        suboptions:
          node:
            description:
              - Inventory name of the node (informational).
            type: str
          initiator_iqn:
            description:
              - Initiator IQN of the node. Compared in lower case.
            type: str
            required: true
          userid:
            description:
              - CHAP user name the initiator logs in with.
            type: str
          password:
            description:
              - CHAP secret of the initiator.
            type: str
          mutual_userid:
            description:
              - User name the target answers with (mutual CHAP).
            type: str
          mutual_password:
            description:
              - Secret the target answers with (mutual CHAP).
            type: str
          mapped_lun:
            description:
              - LUN number the initiator sees. Defaults to the export's O(exports[].lun).
            type: int
          write_protect:
            description:
              - Map the LUN write-protected for this initiator.
            type: bool
            default: false
  force:
    description:
      - Remove or recreate objects even when that drops live sessions.
    type: bool
    default: false
  save_file:
    description:
      - Where to save the running configuration after a change.
      - Defaults to V(/etc/rtslib-fb-target/saveconfig.json) on Debian and V(/etc/target/saveconfig.json)
        elsewhere (where the distribution's restore unit reads it).
    type: path
  save:
    description:
      - Save the running configuration to O(save_file) when something changed.
    type: bool
    default: true
seealso:
  - module: diskless.cluster.zfs_volumes
  - module: diskless.cluster.storage_facts
notes:
  - The boot-time restore must run after the ZFS volumes exist; the C(diskless.cluster.storage_host)
    role orders it after C(zfs-volumes.target).
"""

EXAMPLES = r"""
- name: Export every planned volume of this storage host
  diskless.cluster.lio_iscsi:
    exports: "{{ cluster_plan.storage[inventory_hostname].exports }}"
  no_log: true

- name: One read-write root LUN for one node
  diskless.cluster.lio_iscsi:
    exports:
      - target_iqn: iqn.2026-11.org.example.lab:sch1.node001-root
        backstore: node001-root
        device: /dev/zvol/tank/nodes/node001-root
        lun: 0
        portals:
          - ip: 10.77.0.11
        acls:
          - node: node001
            initiator_iqn: iqn.2026-11.org.example.lab:node001
            userid: node001
            password: "{{ vault_node001_chap }}"
            mutual_userid: lab-storage
            mutual_password: "{{ vault_node001_mutual_chap }}"
"""

RETURN = r"""
actions:
  description: What was changed (or would be, in check mode), one line per action, in order. Never contains secrets.
  returned: always
  type: list
  elements: str
  sample:
    - delete target iqn.2026-11.org.example.lab:sch1.node009-root
    - create backstore node001-root on /dev/zvol/tank/nodes/node001-root
    - create target iqn.2026-11.org.example.lab:sch1.node001-root
    - set target iqn.2026-11.org.example.lab:sch1.node001-root acl iqn.2026-11.org.example.lab:node001 chap userid,password
saved:
  description: Whether the configuration was written to RV(save_file).
  returned: always
  type: bool
  sample: true
save_file:
  description: The file the configuration is (or would be) saved to.
  returned: always
  type: str
  sample: /etc/rtslib-fb-target/saveconfig.json
sessions:
  description: Live sessions seen before the run.
  returned: always
  type: list
  elements: dict
  sample:
    - target: iqn.2026-11.org.example.lab:sch1.node001-root
      tpg: 1
      initiator: iqn.2026-11.org.example.lab:node001
      state: LOGGED_IN
      addresses: [10.77.0.101]
diff:
  description: Managed LIO objects before and after, CHAP passwords masked.
  returned: when diff mode is on
  type: dict
  sample:
    before: {backstores: {}, targets: {}}
    after:
      backstores:
        node001-root: {plugin: block, dev: /dev/zvol/tank/nodes/node001-root, readonly: false, wwn: null}
      targets: {}
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.diskless.cluster.plugins.module_utils import lio


def main():
    portal_spec = dict(ip=dict(type="str", required=True), port=dict(type="int", default=3260))
    acl_spec = dict(
        node=dict(type="str"),
        initiator_iqn=dict(type="str", required=True),
        userid=dict(type="str"),
        password=dict(type="str", no_log=True),
        mutual_userid=dict(type="str"),
        mutual_password=dict(type="str", no_log=True),
        mapped_lun=dict(type="int"),
        write_protect=dict(type="bool", default=False),
    )
    export_spec = dict(
        target_iqn=dict(type="str", required=True),
        backstore=dict(type="str", required=True),
        device=dict(type="path", required=True),
        readonly=dict(type="bool", default=False),
        wwn=dict(type="str"),
        lun=dict(type="int", default=0),
        portals=dict(type="list", elements="dict", default=[], options=portal_spec),
        acls=dict(type="list", elements="dict", default=[], options=acl_spec),
    )
    module = AnsibleModule(
        argument_spec=dict(
            exports=dict(type="list", elements="dict", required=True, options=export_spec),
            force=dict(type="bool", default=False),
            save_file=dict(type="path"),
            save=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    rtslib, import_error = lio.import_rtslib()
    if rtslib is None:
        module.fail_json(msg=missing_required_lib("rtslib-fb (python3-rtslib-fb)"), exception=import_error)

    save_file = module.params["save_file"] or lio.default_save_file(os.path.exists("/etc/debian_version"))
    try:
        desired = lio.normalize_exports(module.params["exports"])
    except lio.LioError as exc:
        module.fail_json(msg="lio_iscsi: %s" % exc)

    rts_error = getattr(rtslib, "RTSLibError", Exception)
    if os.path.isdir(lio.CONFIGFS_TARGET):
        try:
            current = lio.read_state(lio.ReadOnlyRoot(rtslib))
        except rts_error as exc:
            module.fail_json(msg="lio_iscsi: cannot read the LIO configuration: %s" % exc)
    else:
        current = {"backstores": {}, "targets": {}}

    try:
        actions = lio.plan_lio_changes(current, desired, force=module.params["force"])
    except lio.LioError as exc:
        module.fail_json(msg="lio_iscsi: %s" % exc, sessions=lio.sessions(current))

    done = []
    result = dict(changed=bool(actions), actions=[a["text"] for a in actions], saved=False,
                  save_file=save_file, sessions=lio.sessions(current))
    if module._diff:
        result["diff"] = dict(
            before=lio.view(current),
            after=lio.view(lio.expected_after(current, desired), other=current),
            before_header="LIO (running)",
            after_header="LIO (wanted)",
        )

    if actions and not module.check_mode:
        if not os.path.isdir(lio.CONFIGFS_TARGET):
            rtslib.RTSRoot()  # mounts configfs and loads target_core_mod
        applier = lio.Applier(rtslib)
        failure = None
        for action in actions:
            try:
                applier.apply(action)
            except (rts_error, OSError, ValueError) as exc:
                failure = "lio_iscsi: %s failed: %s" % (action["text"], str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                break
            done.append(action["text"])
        if done and module.params["save"]:
            try:
                directory = os.path.dirname(save_file)
                if directory and not os.path.isdir(directory):
                    os.makedirs(directory, 0o700)
                rtslib.RTSRoot().save_to_file(save_file)
                result["saved"] = True
            except (rts_error, OSError, RuntimeError) as exc:
                failure = failure or "lio_iscsi: saving %s failed: %s" % (save_file, exc)
        if failure:
            result.update(changed=bool(done), actions=done)
            module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
