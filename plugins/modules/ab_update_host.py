#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ab_update_host
short_description: A storage host's own OS in GRUB A/B root slots - read, first install, write an update
version_added: 0.1.0
description:
  - The remote side of the role C(diskless.cluster.ab_update) (see its documentation and C(docs/ab_update.md)),
    one call per phase so that a run costs a few module start-ups on the host (a converged re-run, one).
  - Formerly C(diskless.cluster.ab_update_host), which still works as a deprecated redirect.
  - The A/B partitions are found by their GPT names C(<label_prefix>-bios), C(<label_prefix>-env) (the plain ext4
    boot env with GRUB, C(grub.cfg), C(grubenv) and the slot markers C(dl-ab/slots.json)) and
    C(<label_prefix>-<slot>); the booted slot by C(<slot_cmdline_key>=<slot>) on the kernel command line; this
    boot's health-gate verdict from C(/run/dl-ab/verdict.json) (written by the gate program of the role).
  - The grubenv is read and changed with the transitions of M(diskless.cluster.ab_update_slots) (the same code), with
    C(grub-editenv) only. C(grub.cfg) is C(render_grub_cfg) of module_utils C(grub) with one menu entry per slot
    by file-system UUID.
  - Every write is skipped when its result is already there, so a second run reports no change.
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - grub-editenv, grub-install (grub2-common, grub-pc-bin), parted, e2fsprogs, rsync, tar, util-linux, systemd.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: partial
    details:
      - O(state=present) reports what it would change. O(state=installed) and O(state=written) only check their
        refusals and report that they would change the host.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  state:
    description:
      - V(present) - every run. Reads the set-up and returns it. On an installed host (the booted slot is known and
        the env is initialised) it also settles what the last boot decided once the gate verdict is final - the
        booted slot's marker becomes C(booted) when its gate passed; another slot whose marker says C(written) and
        whose try GRUB used without a confirmation (state C(trying)) is marked bad and C(failed), because the host
        fell back from it - and keeps the running slot's O(slot_files), O(gate_library), O(gate_units) and the
        C(grub.cfg) current. With O(version) it also returns what an update to it would do (RV(update_plan)).
        When packages of O(packages) are missing it only returns RV(missing_packages).
      - V(installed) - the first install on O(disk) (GPT, file systems, C(grub-install), the running root copied
        into the first slot with rsync, its fstab and O(slot_files), the env with that slot good, C(grub.cfg)).
        Steps that are done are skipped. The caller boots the first slot afterwards.
      - V(written) - an update. Refuses unless the booted slot is good and its gate verdict is C(good), and refuses a
        O(version) that already failed in the inactive slot unless O(retry_failed). Marks the inactive slot bad, writes
        O(image) into it, carries O(carry_over) over, writes its fstab and O(slot_files), enables O(gate_units) and
        O(enable_units) in it, regenerates C(grub.cfg) and tries the slot once on the next boot (C(ab_update_slots
        state=try)). A slot that already holds O(version) intact is tried without being written again. The caller
        reboots and runs V(present).
    type: str
    choices: [present, installed, written]
    default: present
  name:
    description:
      - Ignored (it named the host in failure messages; Ansible names the host already). Will be removed in 1.0.0.
    type: str
  slots:
    description: The slot names (GRUB menu order).
    type: list
    elements: str
    default: [A, B]
  label_prefix:
    description: Prefix of the GPT partition names and file-system labels.
    type: str
    default: dl-ab
  env_mount:
    description: Where the boot-env partition is mounted (in every slot, from its fstab).
    type: path
    default: /boot/dl-ab
  slot_cmdline_key:
    description: Kernel argument that names the booted slot (added by the C(grub.cfg)).
    type: str
    default: dl.slot
  packages:
    description: Debian packages the module needs; missing ones are returned by O(state=present) (nothing else done).
    type: list
    elements: str
    default: []
  slot_files:
    description:
      - Files (absolute path in a root tree -> text) written into the running slot (V(present)) and into every slot
        that is written (the health gate program, its settings, its units, the watchdog drop-in).
    type: dict
    default: {}
  gate_library:
    description:
      - Absolute path in a root tree where the source of module_utils C(grub) (the code this module runs) is
        written along with O(slot_files), for the health gate to import. Empty - none.
    type: str
    default: ""
  gate_units:
    description: Units enabled in every slot (the health gate units).
    type: list
    elements: str
    default: []
  enable_units:
    description: Units also enabled in a newly written slot (C(systemctl --root)).
    type: list
    elements: str
    default: []
  kernel_args:
    description: Kernel command line of every slot; C(root=UUID=...), C(<slot_cmdline_key>=) and C(panic=) are added.
    type: list
    elements: str
    default: [ro]
  panic:
    description: C(panic=) seconds on the kernel command line (a panic resets, and GRUB falls back).
    type: int
    default: 30
  grub_timeout:
    description: GRUB menu timeout in seconds.
    type: int
    default: 3
  grub_serial:
    description: Arguments of GRUB's C(serial) command to put GRUB on a serial console too; empty for none.
    type: str
    default: ""
  grub_target:
    description: C(grub-install --target) of the first install.
    type: str
    default: i386-pc
  verdict_timeout:
    description: With V(present) on an installed host, wait up to this many seconds for this boot's gate verdict.
    type: int
    default: 0
  disk:
    description: V(installed) - the disk to lay out. Default the disk of an existing boot-env partition (resume).
    type: str
  force:
    description: V(installed) - wipe a disk that has partitions or file systems that are not the A/B layout.
    type: bool
    default: false
  env_size_mib:
    description: V(installed) - size of the boot-env partition.
    type: int
    default: 128
  slot_size_mib:
    description: V(installed) - size of each slot; V(0) splits the rest of the disk evenly.
    type: int
    default: 0
  initial_version:
    description: Version marker of the root copied into the first slot.
    type: str
    default: initial
  adopt_excludes:
    description: V(installed) - rsync C(--exclude) patterns left out when the running root is copied.
    type: list
    elements: str
    default: []
  image:
    description: V(written) - path ON THE HOST of the image (a root tar archive, or a raw ext4 image).
    type: path
  image_format:
    description: V(written) - V(tar) (any compression tar recognises) or V(raw) (an ext4 file system image).
    type: str
    choices: [tar, raw]
    default: tar
  version:
    description:
      - V(written) - the version of O(image) (recorded in the slot markers).
      - V(present) - the version an update would install; RV(update_plan) says what that update would do.
    type: str
  retry_failed:
    description: V(written) - write a version that already failed in the inactive slot.
    type: bool
    default: false
  carry_over:
    description: V(written) - paths of the running slot copied into the new slot (C(rsync -aR); missing ones skipped).
    type: list
    elements: path
    default: []
  remove_image:
    description: V(written) - delete O(image) once it is written (a staged copy).
    type: bool
    default: false
seealso:
  - module: diskless.cluster.ab_update_slots
  - name: RAUC GRUB integration
    description: The variable convention (ORDER, <slot>_OK, <slot>_TRY).
    link: https://rauc.readthedocs.io/en/latest/integration.html#grub
notes:
  - Commands run as argv lists with C(LANG=C). Failures are one line naming the object, the step and the tool's
    error.
"""

EXAMPLES = r"""
- name: Read the A/B set-up, settle the last boot, keep the running slot's gate current
  diskless.cluster.ab_update_host:
    slot_files:
      /usr/local/lib/dl-ab/gate.json: "{{ gate_config | to_json }}"
    gate_library: /usr/local/lib/dl-ab/dl_ab_grub.py
    gate_units: [dl-ab-health.service, dl-ab-mark-good.service]
    version: "2026.12"
  register: ab

- name: First install on a spare disk
  diskless.cluster.ab_update_host:
    state: installed
    disk: /dev/sdb
  when: not ab.installed

- name: Write an update into the inactive slot and try it on the next boot
  diskless.cluster.ab_update_host:
    state: written
    image: /var/tmp/storage-2026.12.tar
    version: "2026.12"
  when: ab.update.action != 'none'
"""

RETURN = r"""
installed:
  description: Whether the host boots from an A/B slot of an initialised env.
  returned: always
  type: bool
  sample: true
booted:
  description: The booted slot (kernel command line), null when the host did not boot through the A/B C(grub.cfg).
  returned: always
  type: str
  sample: A
other:
  description: The slot that is not booted (null when not installed).
  returned: always
  type: str
  sample: B
partitions:
  description: The A/B partitions found (by role - C(bios), C(env), each slot) with device C(name), C(uuid), C(fstype).
  returned: always
  type: dict
  sample: {env: {name: /dev/vdb2, uuid: 5b1e..., fstype: ext4}}
grub:
  description: The grubenv as M(diskless.cluster.ab_update_slots) reports it (C(order), C(next_boot), C(slots) with C(state)).
  returned: always
  type: dict
markers:
  description: Per slot - C(version), C(status) (C(writing), C(written), C(booted), C(failed)), C(kernel), C(initrd),
    C(image), C(written_at).
  returned: always
  type: dict
  sample: {A: {version: initial, status: booted}, B: {version: "2026.12", status: failed}}
verdict:
  description: This boot's health-gate verdict - C(verdict) (C(good), C(failed), C(not-ab), C(pending), C(checking),
    C(rebooting)) and C(problems).
  returned: always
  type: dict
  sample: {verdict: good, problems: []}
settled:
  description: The try settled by this run (V(present)) - C(slot), C(status) (C(booted) or C(failed)), C(version),
    C(fell_back_to) - or null.
  returned: always
  type: dict
  sample: {slot: B, status: failed, version: "2026.12", fell_back_to: A}
update_plan:
  description:
    - V(present) with O(version) - what an update to O(version) does. (Not named C(update) - in a template
      C(result.update) would be the dict method.) C(action) - C(none) (no version, the host
      does not boot from a slot yet, or the booted slot runs it), C(reuse) (the inactive slot holds it intact and
      is tried again without being written), C(write) (the image goes into the inactive slot); C(slot) - that slot.
  returned: always
  type: dict
  sample: {action: write, slot: B}
missing_packages:
  description: Packages of O(packages) that are not installed.
  returned: always
  type: list
  elements: str
  sample: []
old:
  description: V(written) - the booted slot (the one to fall back to).
  returned: when state is written
  type: str
  sample: A
new:
  description: V(written) - the slot tried on the next boot.
  returned: when state is written
  type: str
  sample: B
written:
  description: V(written) - whether the image was written (false - the slot already held that version).
  returned: when state is written
  type: bool
  sample: true
actions:
  description: One line per change made (or that would be made, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["grubenv: try B (ORDER=B A B_OK=1 B_TRY=0)"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.diskless.cluster.plugins.module_utils import grub
from ansible_collections.diskless.cluster.plugins.module_utils._ab_update_host import Host
from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail
from ansible_collections.diskless.cluster.plugins.module_utils.ab_update import AbError, update_action


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "installed", "written"]),
            name=dict(type="str", removed_in_version="1.0.0", removed_from_collection="diskless.cluster"),
            slots=dict(type="list", elements="str", default=["A", "B"]),
            label_prefix=dict(type="str", default="dl-ab"),
            env_mount=dict(type="path", default="/boot/dl-ab"),
            slot_cmdline_key=dict(type="str", default="dl.slot", no_log=False),
            packages=dict(type="list", elements="str", default=[]),
            slot_files=dict(type="dict", default={}),
            gate_library=dict(type="str", default=""),
            gate_units=dict(type="list", elements="str", default=[]),
            enable_units=dict(type="list", elements="str", default=[]),
            kernel_args=dict(type="list", elements="str", default=["ro"]),
            panic=dict(type="int", default=30),
            grub_timeout=dict(type="int", default=3),
            grub_serial=dict(type="str", default=""),
            grub_target=dict(type="str", default="i386-pc"),
            verdict_timeout=dict(type="int", default=0),
            disk=dict(type="str"),
            force=dict(type="bool", default=False),
            env_size_mib=dict(type="int", default=128),
            slot_size_mib=dict(type="int", default=0),
            initial_version=dict(type="str", default="initial"),
            adopt_excludes=dict(type="list", elements="str", default=[]),
            image=dict(type="path"),
            image_format=dict(type="str", default="tar", choices=["tar", "raw"]),
            version=dict(type="str"),
            retry_failed=dict(type="bool", default=False),
            carry_over=dict(type="list", elements="path", default=[]),
            remove_image=dict(type="bool", default=False),
        ),
        required_if=[("state", "written", ["image", "version"])],
        supports_check_mode=True,
    )
    params = module.params
    host = Host(params, Runner(module), check_mode=module.check_mode)
    result = {"changed": False, "settled": None, "missing_packages": []}
    try:
        state = params["state"]
        missing = host.missing_packages()
        if missing and state != "present":
            module.fail_json(msg="packages %s are missing: install them first (ab_update_manage_packages)"
                             % ", ".join(missing))
        host.probe()
        if missing:
            result["missing_packages"] = missing
        elif state == "present":
            result["settled"] = host.present()
        elif state == "installed":
            host.install()
        else:
            if host.env_ready():
                host.mount_env()
            host.read_state()
            if not host.installed:
                module.fail_json(msg="this host does not boot from an A/B slot yet: run the first install "
                                     "(ab_update_disk)")
            old, new, written = host.write()
            result.update(old=old, new=new, written=written)
        result.update(host.facts())
    except (AbError, CommandError, grub.GrubError) as exc:
        fail(module, exc, actions=host.actions)
    result["update_plan"] = update_action(host.slots, host.installed, host.booted, host.markers,
                                          params["version"] if state == "present" else None)
    result["actions"] = host.actions
    result["changed"] = bool(host.actions)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
