# SPDX-License-Identifier: GPL-3.0-or-later
"""node.describe() over fake /sys and /proc trees laid out like a real kernel's."""

from __future__ import annotations

import os

from ansible_collections.diskless.cluster.plugins.module_utils.node import describe

TARGET = "iqn.2026-11.org.example.lab:%s.node001-root"
INITIATOR = "iqn.2026-11.org.example.lab:node001"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def iscsi_disk(sys, name, session, host, target, portal):
    device = sys / "devices/platform" / ("host%d" % host) / session / ("target%d:0:0" % host) / ("%d:0:0:0" % host) / "block" / name
    write(device / "size", "4194304")
    write(device / "device/state", "running")
    for where in ("class/block", "block"):
        (sys / where).mkdir(parents=True, exist_ok=True)
        os.symlink(device, sys / where / name)
    base = sys / "class/iscsi_session" / session
    write(base / "targetname", target)
    write(base / "initiatorname", INITIATOR)
    write(base / "state", "LOGGED_IN")
    write(base / "recovery_tmo", "5")
    conn = sys / "class/iscsi_connection" / ("connection%s:0" % session[len("session"):])
    write(conn / "persistent_address", portal)
    write(conn / "persistent_port", "3260")
    return device


def local_disk(sys, name):
    device = sys / "devices/pci0000:00/0000:00:04.0/virtio1/block" / name
    write(device / "size", "2048")
    for where in ("class/block", "block"):
        (sys / where).mkdir(parents=True, exist_ok=True)
        os.symlink(device, sys / where / name)


def md_raid1(sys, members, **attrs):
    """md127, RAID1 over ``members`` {disk: md member state}; ``attrs``: other md/ files (degraded, bitmap...)."""
    md = sys / "devices/virtual/block/md127"
    write(md / "md/level", "raid1")
    write(md / "md/array_state", "clean")
    for name, value in attrs.items():
        write(md / ("md/bitmap/location" if name == "bitmap" else "md/" + name), value)
    (md / "slaves").mkdir()
    for disk, state in members.items():
        write(md / ("md/dev-%s/state" % disk), state)
        os.symlink(sys / "class/block" / disk, md / "slaves" / disk)
    os.symlink(md, sys / "class/block/md127")
    os.symlink(md, sys / "block/md127")


def proc_with_root(tmp_path, source):
    proc = tmp_path / "proc"
    write(proc / "self/mounts", "sysfs /sys sysfs rw 0 0\nrootfs / rootfs rw 0 0\n%s / ext4 ro,noatime 0 0\n" % source)
    write(proc / "sys/kernel/random/boot_id", "3f2a9c1e-8c1b-4e5e-9a55-0b8f5d7c2a10")
    return proc


def test_single_lun_root(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "sch1", "10.77.0.11")
    facts = describe(str(sys), str(proc_with_root(tmp_path, "/dev/sda")))
    root = facts["root"]
    assert root["device"] == "sda" and root["fstype"] == "ext4" and root["on_iscsi"] is True
    assert root["disks"] == [{
        "name": "sda", "size_bytes": 4194304 * 512, "transport": "iscsi", "state": "running",
        "iscsi": {"session": "session1", "target": TARGET % "sch1", "initiator": INITIATOR, "state": "LOGGED_IN",
                  "recovery_tmo": "5", "portal": "10.77.0.11", "port": 3260},
    }]
    assert root["mode"] == "iscsi"
    assert root["paths"] == [{"disk": "sda", "portal": "10.77.0.11", "target": TARGET % "sch1",
                              "session_state": "LOGGED_IN", "device_state": "running", "md_member_state": None,
                              "ok": True}]
    assert facts["local_disks"] == []
    assert facts["boot_id"].startswith("3f2a9c1e")
    assert [s["session"] for s in facts["iscsi_sessions"]] == ["session1"]


def test_mirror_root_over_two_sessions_and_a_local_disk(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "sch1", "10.77.0.11")
    iscsi_disk(sys, "sdb", "session2", 3, TARGET % "sch2", "10.77.0.12")
    local_disk(sys, "vda")
    md_raid1(sys, {"sda": "in_sync", "sdb": "faulty"}, degraded="1", sync_action="idle", bitmap="-16")
    write(sys / "class/iscsi_session/session2/state", "FAILED")
    facts = describe(str(sys), str(proc_with_root(tmp_path, "/dev/md127")))
    root = facts["root"]
    assert [(layer["name"], layer["kind"]) for layer in root["stack"]] == [("md127", "md"), ("sda", "disk"), ("sdb", "disk")]
    assert root["stack"][0]["level"] == "raid1" and root["stack"][0]["degraded"] == "1"
    assert root["stack"][0]["bitmap"] == "-16" and root["stack"][0]["members"] == {"sda": "in_sync", "sdb": "faulty"}
    assert [d["iscsi"]["portal"] for d in root["disks"]] == ["10.77.0.11", "10.77.0.12"]
    assert root["mode"] == "mirror"
    assert [(x["disk"], x["md_member_state"], x["session_state"], x["ok"]) for x in root["paths"]] == [
        ("sda", "in_sync", "LOGGED_IN", True), ("sdb", "faulty", "FAILED", False)]
    assert root["on_iscsi"] is True
    assert [d["name"] for d in facts["local_disks"]] == ["vda"]


def test_root_on_a_local_disk_is_not_iscsi(tmp_path):
    sys = tmp_path / "sys"
    local_disk(sys, "vda")
    facts = describe(str(sys), str(proc_with_root(tmp_path, "/dev/vda")))
    assert facts["root"]["on_iscsi"] is False
    assert facts["root"]["disks"][0]["transport"] == "local"


def test_root_not_on_a_block_device(tmp_path):
    sys = tmp_path / "sys"
    (sys / "block").mkdir(parents=True)
    facts = describe(str(sys), str(proc_with_root(tmp_path, "overlay")), str(tmp_path / "run"))
    assert facts["root"] == {"source": "overlay", "fstype": "ext4", "device": None, "stack": [], "disks": [],
                             "on_iscsi": False, "mode": None, "paths": [], "luks": None}
    assert facts["env"] == {}


def test_root_env_values_without_secrets(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "sch1", "10.77.0.11")
    write(tmp_path / "run/diskless/root.env",
          "DL_ROOT_MODE='iscsi'\nDL_ROOT_DEVICE='/dev/sda'\nDL_OVERLAY_SIZE='50%'\nDL_NODE='it'\\''s'\n"
          "DL_CHAP_SECRET='never'\nDL_LUKS_KEY='never'\nOTHER=x\n# DL_X='comment'")
    facts = describe(str(sys), str(proc_with_root(tmp_path, "/dev/sda")), str(tmp_path / "run"))
    assert facts["root"]["mode"] == "iscsi"
    assert facts["env"] == {"DL_ROOT_MODE": "iscsi", "DL_ROOT_DEVICE": "/dev/sda", "DL_OVERLAY_SIZE": "50%",
                            "DL_NODE": "it's"}


def overlay_proc(tmp_path, lower_source, lower_fstype):
    proc = tmp_path / "proc"
    write(proc / "self/mounts", "\n".join((
        "tmpfs /run tmpfs rw,nosuid,nodev 0 0",
        "%s /run/diskless/lower %s ro,relatime 0 0" % (lower_source, lower_fstype),
        "tmpfs /run/diskless/rw tmpfs rw,relatime,size=262144k 0 0",
        "overlay / overlay rw,relatime,lowerdir=/run/diskless/lower,upperdir=/run/diskless/rw/upper,"
        "workdir=/run/diskless/rw/work 0 0",
    )))
    write(proc / "sys/kernel/random/boot_id", "3f2a9c1e-8c1b-4e5e-9a55-0b8f5d7c2a10")
    return proc


def test_image_root_is_an_overlay_over_a_multipath_device(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "shared", "10.77.0.11")
    iscsi_disk(sys, "sdb", "session2", 3, TARGET % "shared", "10.77.0.12")
    write(sys / "class/iscsi_session/session2/state", "FAILED")
    dm = sys / "devices/virtual/block/dm-0"
    write(dm / "dm/name", "36001405abc")
    write(dm / "dm/uuid", "mpath-36001405abc")
    (dm / "slaves").mkdir(parents=True)
    os.symlink(sys / "class/block/sda", dm / "slaves/sda")
    os.symlink(sys / "class/block/sdb", dm / "slaves/sdb")
    os.symlink(dm, sys / "class/block/dm-0")
    os.symlink(dm, sys / "block/dm-0")
    dev = tmp_path / "dev"
    dev.mkdir()
    os.symlink("dm-0", dev / "mapper-x")
    facts = describe(str(sys), str(overlay_proc(tmp_path, "/dev/dm-0", "ext4")))
    root = facts["root"]
    assert root["fstype"] == "overlay" and root["device"] == "dm-0" and root["mode"] == "image"
    assert root["overlay"]["lower"] == {"dir": "/run/diskless/lower", "source": "/dev/dm-0", "fstype": "ext4"}
    assert root["overlay"]["upper"] == {"dir": "/run/diskless/rw/upper", "source": "tmpfs", "fstype": "tmpfs"}
    assert [(x["portal"], x["ok"]) for x in root["paths"]] == [("10.77.0.11", True), ("10.77.0.12", False)]


def test_live_root_is_an_overlay_over_a_squashfs_in_ram(tmp_path):
    sys = tmp_path / "sys"
    loop = sys / "devices/virtual/block/loop0"
    write(loop / "size", "400000")
    write(loop / "loop/backing_file", "/run/diskless/live/root.squashfs")
    for where in ("class/block", "block"):
        (sys / where).mkdir(parents=True, exist_ok=True)
        os.symlink(loop, sys / where / "loop0")
    facts = describe(str(sys), str(overlay_proc(tmp_path, "/dev/loop0", "squashfs")))
    root = facts["root"]
    assert root["mode"] == "live" and root["on_iscsi"] is False and root["paths"] == []
    assert root["overlay"]["lower"]["backing_file"] == "/run/diskless/live/root.squashfs"


def crypt(sys, name, slaves, dm_name="dlcrypt", uuid="CRYPT-LUKS2-0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6-dlcrypt"):
    dm = sys / "devices/virtual/block" / name
    write(dm / "dm/name", dm_name)
    write(dm / "dm/uuid", uuid)
    (dm / "slaves").mkdir(parents=True)
    for slave in slaves:
        os.symlink(sys / "class/block" / slave, dm / "slaves" / slave)
    os.symlink(dm, sys / "class/block" / name)
    os.symlink(dm, sys / "block" / name)


def test_luks_over_one_lun_is_an_iscsi_root(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "sch1", "10.77.0.11")
    crypt(sys, "dm-0", ["sda"])
    root = describe(str(sys), str(proc_with_root(tmp_path, "/dev/dm-0")))["root"]
    assert root["mode"] == "iscsi" and root["on_iscsi"] is True
    assert root["luks"] == {"device": "dm-0", "dm_name": "dlcrypt", "backing": "sda"}
    assert [(x["disk"], x["ok"]) for x in root["paths"]] == [("sda", True)]


def test_luks_over_md_is_a_mirror_root(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "sch1", "10.77.0.11")
    iscsi_disk(sys, "sdb", "session2", 3, TARGET % "sch2", "10.77.0.12")
    md_raid1(sys, {"sda": "in_sync", "sdb": "in_sync"})
    crypt(sys, "dm-1", ["md127"])
    root = describe(str(sys), str(proc_with_root(tmp_path, "/dev/dm-1")))["root"]
    assert [(layer["name"], layer["kind"]) for layer in root["stack"]] == [
        ("dm-1", "dm"), ("md127", "md"), ("sda", "disk"), ("sdb", "disk")]
    assert root["mode"] == "mirror"
    assert root["luks"]["backing"] == "md127"
    assert [x["md_member_state"] for x in root["paths"]] == ["in_sync", "in_sync"]


def test_a_dm_device_that_is_not_luks_is_not_a_root_mode(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "sch1", "10.77.0.11")
    crypt(sys, "dm-0", ["sda"], dm_name="plain", uuid="CRYPT-PLAIN-plain")
    root = describe(str(sys), str(proc_with_root(tmp_path, "/dev/dm-0")))["root"]
    assert root["mode"] is None and root["luks"] is None


def test_luks_over_multipath_under_an_overlay_is_an_image_root(tmp_path):
    sys = tmp_path / "sys"
    iscsi_disk(sys, "sda", "session1", 2, TARGET % "shared", "10.77.0.11")
    iscsi_disk(sys, "sdb", "session2", 3, TARGET % "shared", "10.77.0.12")
    crypt(sys, "dm-0", ["sda", "sdb"], dm_name="36001405abc", uuid="mpath-36001405abc")
    crypt(sys, "dm-1", ["dm-0"])
    root = describe(str(sys), str(overlay_proc(tmp_path, "/dev/dm-1", "ext4")))["root"]
    assert [(layer["name"], layer["kind"]) for layer in root["stack"]] == [
        ("dm-1", "dm"), ("dm-0", "dm"), ("sda", "disk"), ("sdb", "disk")]
    assert root["mode"] == "image" and root["fstype"] == "overlay"
    assert root["luks"] == {"device": "dm-1", "dm_name": "dlcrypt", "backing": "dm-0"}
    assert [x["portal"] for x in root["paths"]] == ["10.77.0.11", "10.77.0.12"]
