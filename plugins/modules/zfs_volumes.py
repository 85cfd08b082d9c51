#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zfs_volumes
short_description: Reconcile the whole set of ZFS volumes of a storage host
version_added: 0.1.0
description:
  - Takes B(every) ZFS volume this host should have in one call and reconciles them against one
    C(zfs list -Hp) of the pool.
  - Formerly C(diskless.cluster.zvol), which still works as a deprecated redirect.
  - Golden volumes are created sparse (C(zfs create -s -V)); node volumes are thin C(zfs clone)s of a
    golden snapshot. Volumes are grown (never shrunk), properties are set, and missing snapshots of
    golden volumes are taken.
  - Optionally creates the pool when it does not exist yet (O(pool_devices)); an existing pool's
    layout is never changed.
  - Volumes present on the host but not in O(volumes) are left alone unless O(prune=true).
  - Refuses, with one line that says what to do, to shrink a volume, to destroy a volume that has
    snapshots or is exported by LIO (unless O(force=true)), and to destroy anything other volumes that
    stay are cloned from (never, not even with O(force=true); C(zfs destroy -R) is never used).
  - Sizes are compared as numbers of bytes (V(10G), V(512M) and V(10737418240) are the same), so a
    second run reports no change.
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - zfs and zpool command line tools (OpenZFS 2.1 or later) on the managed host.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - Only C(zfs list) runs in check mode; every change is predicted from its output.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  pool:
    description:
      - Name of the ZFS pool that holds the volumes. It is listed recursively once per run.
    type: str
    required: true
  pool_devices:
    description:
      - Block devices to create O(pool) on (a plain stripe of these devices) when the pool does not exist.
      - When the pool exists this option is ignored; the module never adds or removes vdevs.
      - When the pool does not exist and this is empty, the module fails.
    type: list
    elements: path
    default: []
  pool_properties:
    description:
      - Pool properties (C(zpool create -o)) used only when the pool is created, for example C(ashift=12).
    type: dict
    default: {}
  filesystem_properties:
    description:
      - Properties of the pool's root dataset (C(zpool create -O)) used only when the pool is created,
        for example C(compression=lz4).
    type: dict
    default: {}
  volumes:
    description:
      - The complete set of volumes of this host.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Full dataset name, for example V(tank/nodes/node001-root). Parents are created as needed.
        type: str
        required: true
      size:
        description:
          - Volume size in bytes or with a suffix (V(2G), V(512M)).
          - Required for volumes that are not clones. For a clone, a size larger than the origin
            grows the clone after it is cloned.
          - A size smaller than the current size is refused (ZFS volumes are never shrunk).
        type: raw
      origin:
        description:
          - Snapshot to clone the volume from, for example V(tank/golden/debian12@v1).
          - An existing volume with a different origin is refused unless O(force=true), which destroys
            and re-clones it (its data is lost).
        type: str
      sparse:
        description:
          - Create the volume without a reservation (C(zfs create -s)). Clones are always sparse.
        type: bool
        default: true
      volblocksize:
        description:
          - Block size, chosen at creation only (clones inherit their origin's). A different block size
            on an existing volume gives a warning and is left alone.
        type: str
      properties:
        description:
          - Extra ZFS properties, for example C(readonly=on) or C(compression=zstd). Booleans become
            V(on)/V(off). They override O(volmode).
        type: dict
        default: {}
      snapshots:
        description:
          - Snapshot names (the part after C(@)) that must exist on this volume. Missing ones are taken;
            others are left alone.
        type: list
        elements: str
        default: []
  volmode:
    description:
      - C(volmode) set on every volume. V(dev) exposes only the raw device, so the storage host never
        assembles the partitions, md arrays or LVM inside node volumes.
    type: str
    choices: [default, full, geom, dev, none]
    default: dev
  prune:
    description:
      - Destroy volumes of O(pool) (within O(prune_scope)) that are not in O(volumes).
      - A volume with snapshots, or one exported by LIO, also needs O(force=true).
    type: bool
    default: false
  prune_scope:
    description:
      - Dataset prefixes that O(prune) may touch, for example V(tank/nodes). Default is the whole pool.
    type: list
    elements: str
    default: []
  exported_devices:
    description:
      - Device paths currently exported by LIO backstores. When not given, the module reads
        C(/sys/kernel/config/target/core/*/*/udev_path) (read only).
      - Used only to refuse destroying an exported volume.
    type: list
    elements: path
  force:
    description:
      - Allow destroying volumes that have snapshots or are exported, re-cloning a volume whose origin
        differs, and creating the pool with C(zpool create -f).
    type: bool
    default: false
seealso:
  - module: diskless.cluster.lio_iscsi
  - module: diskless.cluster.storage_facts
  - module: community.general.zfs
notes:
  - Commands run as argv lists with C(LANG=C); nothing goes through a shell.
"""

EXAMPLES = r"""
- name: Golden image volume, its snapshot and two node clones
  diskless.cluster.zfs_volumes:
    pool: tank
    pool_devices: [/dev/vdb]
    filesystem_properties:
      compression: lz4
      mountpoint: none
    volumes:
      - name: tank/golden/debian12
        size: 2G
        volblocksize: 16K
        properties:
          readonly: true
        snapshots: [v1]
      - name: tank/nodes/node001-root
        origin: tank/golden/debian12@v1
        size: 4G
      - name: tank/nodes/node002-root
        origin: tank/golden/debian12@v1

- name: Retire volumes that are no longer planned (refuses exported ones)
  diskless.cluster.zfs_volumes:
    pool: tank
    prune: true
    prune_scope: [tank/nodes]
    volumes: "{{ storage_volumes }}"
"""

RETURN = r"""
actions:
  description: What was changed (or would be, in check mode), one line per action, in order.
  returned: always
  type: list
  elements: str
  sample:
    - create tank/golden/debian12 sparse (2147483648 bytes)
    - snapshot tank/golden/debian12@v1
    - clone tank/nodes/node001-root from tank/golden/debian12@v1
    - grow tank/nodes/node001-root to 4294967296 bytes
commands:
  description: The argv lists that were run (or would be run, in check mode) for the actions.
  returned: always
  type: list
  elements: list
  sample:
    - [/usr/sbin/zfs, create, -p, -s, -V, "2147483648", -o, volmode=dev, tank/golden/debian12]
pool_created:
  description: Whether the pool was created (or would be, in check mode).
  returned: always
  type: bool
  sample: false
volumes:
  description: State of every volume in O(volumes) after the run (predicted in check mode).
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
diff:
  description: Before and after views of the volumes that change.
  returned: when diff mode is on
  type: dict
  sample:
    before: {tank/nodes/node001-root: null}
    after: {tank/nodes/node001-root: {volsize: 4294967296, origin: tank/golden/debian12@v1}}
"""

import glob
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail, first_line
from ansible_collections.diskless.cluster.plugins.module_utils import zfs as zfsu

CONFIGFS_CORE = "/sys/kernel/config/target/core"


def exported_datasets(devices, names) -> set:
    """Dataset names among ``names`` whose /dev/zvol device is in ``devices`` (paths or real paths)."""
    wanted = set(devices)
    wanted |= {os.path.realpath(d) for d in devices}
    result = set()
    for name in names:
        path = "/dev/zvol/" + name
        if path in wanted or os.path.realpath(path) in wanted:
            result.add(name)
    return result


def read_exported_devices() -> list:
    """udev_path of every LIO backstore (read only; empty when LIO is not loaded)."""
    devices = []
    for path in sorted(glob.glob(CONFIGFS_CORE + "/*/*/udev_path")):
        try:
            with open(path) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value:
            devices.append(value)
    return devices


def wait_for_devices(module, names, timeout=120.0) -> list:
    """Wait until udev made /dev/zvol/<name> of every new volume (zfs returns before that, and the next
    task, lio_iscsi, opens the device). Returns the names still missing after ``timeout`` seconds."""
    udevadm = module.get_bin_path("udevadm")
    run = Runner(module)
    deadline = time.monotonic() + timeout
    missing = [n for n in names if not os.path.exists("/dev/zvol/" + n)]
    while missing and time.monotonic() < deadline:
        if udevadm:
            run.raw([udevadm, "settle", "--timeout=%d" % max(1, int(deadline - time.monotonic()))])
        else:
            time.sleep(0.5)
        missing = [n for n in missing if not os.path.exists("/dev/zvol/" + n)]
        if missing:
            time.sleep(0.2)
    return missing


def main():
    volume_spec = dict(
        name=dict(type="str", required=True),
        size=dict(type="raw"),
        origin=dict(type="str"),
        sparse=dict(type="bool", default=True),
        volblocksize=dict(type="str"),
        properties=dict(type="dict", default={}),
        snapshots=dict(type="list", elements="str", default=[]),
    )
    module = AnsibleModule(
        argument_spec=dict(
            pool=dict(type="str", required=True),
            pool_devices=dict(type="list", elements="path", default=[]),
            pool_properties=dict(type="dict", default={}),
            filesystem_properties=dict(type="dict", default={}),
            volumes=dict(type="list", elements="dict", required=True, options=volume_spec),
            volmode=dict(type="str", default="dev", choices=["default", "full", "geom", "dev", "none"]),
            prune=dict(type="bool", default=False),
            prune_scope=dict(type="list", elements="str", default=[]),
            exported_devices=dict(type="list", elements="path"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    run = Runner(module)
    params = module.params
    pool = params["pool"]

    try:
        desired = [zfsu.normalize_volume(v, {"volmode": params["volmode"]}) for v in params["volumes"]]
    except zfsu.ZfsError as exc:
        module.fail_json(msg=str(exc))
    names = [v["name"] for v in desired]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        module.fail_json(msg="volumes listed twice: %s" % ", ".join(dupes))
    outside = [n for n in names if n.split("/", 1)[0] != pool]
    if outside:
        module.fail_json(msg="volumes outside pool %s: %s" % (pool, ", ".join(outside)))

    zfs = module.get_bin_path("zfs", required=True)
    extra = sorted({k for v in desired for k in v["properties"]} - set(zfsu.LIST_COLUMNS))
    columns = zfsu.list_columns(extra)
    list_argv = zfsu.argv_list(zfs, pool, extra)
    rc, out, err = run.raw(list_argv)
    commands = []
    actions_text = []
    pool_created = False
    if rc != 0:
        if not zfsu.dataset_missing(err):
            fail(module, CommandError("zfs list %s failed (zfs, rc %d): %s" % (pool, rc, first_line(err)),
                                      list_argv, rc, out, err))
        if not params["pool_devices"]:
            module.fail_json(msg="pool %s does not exist: import it or give pool_devices to create it" % pool)
        zpool = module.get_bin_path("zpool", required=True)
        create_argv = zfsu.argv_zpool_create(zpool, pool, params["pool_devices"], params["force"],
                                             params["pool_properties"], params["filesystem_properties"])
        commands.append(create_argv)
        actions_text.append("create pool %s on %s" % (pool, " ".join(params["pool_devices"])))
        pool_created = True
        if not module.check_mode:
            try:
                run(create_argv, "zpool create %s" % pool)
            except CommandError as exc:
                hint = "" if params["force"] else " (set force: true to overwrite devices that hold old labels)"
                fail(module, CommandError(str(exc) + hint, exc.argv, exc.rc, exc.out, exc.err))
        current = {}
    else:
        try:
            current = zfsu.parse_zfs_list(out, columns)
        except ValueError as exc:
            module.fail_json(msg="cannot parse the output of zfs list: %s" % exc, stdout=out)

    exported_devs = params["exported_devices"]
    if exported_devs is None:
        exported_devs = read_exported_devices()
    volume_names = [n for n, r in current.items() if r.get("type") == "volume"]
    exported = exported_datasets(exported_devs, volume_names) if exported_devs else set()

    try:
        actions = zfsu.plan_zvol_changes(current, desired, force=params["force"], prune=params["prune"],
                                         exported=exported, scope=params["prune_scope"])
    except zfsu.ZfsError as exc:
        module.fail_json(msg=str(exc))

    for action in actions:
        if action["action"] == "warn":
            module.warn(action["text"])
            continue
        argv = zfsu.action_argv(zfs, action)
        commands.append(argv)
        actions_text.append(action["text"])
        if module.check_mode:
            continue
        try:
            run(argv, "zfs %s %s" % (argv[1], action["name"]))
        except CommandError as exc:
            fail(module, exc, actions=actions_text[:-1])

    real = [a for a in actions if a["action"] != "warn"]
    after = zfsu.simulate(current, real)
    if not module.check_mode and params["volmode"] != "none":
        new = [a["name"] for a in real if a["action"] in ("create", "clone")
               and (after.get(a["name"]) or {}).get("volmode", params["volmode"]) != "none"]
        missing = wait_for_devices(module, new)
        if missing:
            module.fail_json(msg="no device /dev/zvol/%s appeared after creating it (is udev running and "
                                 "the zfs udev rule installed?)" % missing[0], actions=actions_text, changed=True)
    props = extra
    result = dict(
        changed=bool(actions_text),
        actions=actions_text,
        commands=commands,
        pool_created=pool_created,
        volumes={n: zfsu.volume_view(after[n], after, props) for n in names if n in after},
    )
    if module._diff:
        touched = sorted({a["name"].split("@", 1)[0] for a in real})
        result["diff"] = dict(
            before={n: (zfsu.volume_view(current[n], current, props) if n in current else None) for n in touched},
            after={n: (zfsu.volume_view(after[n], after, props) if n in after else None) for n in touched},
            before_header="zfs pool %s" % pool,
            after_header="zfs pool %s" % pool,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
