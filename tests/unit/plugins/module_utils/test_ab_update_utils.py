# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/ab_update.py (the decisions) and _ab_update_host.py (the host): the A/B layout, the first
install's refusals, the kernel choice, the settling of a tried slot after a boot, the grub.cfg, and the update's
action and refusals (no host: the lab tests run the rest)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import _ab_update_host, ab_update, grub

SLOTS = ["A", "B"]
NAMES = ab_update.labels("dl-ab", SLOTS)
GIB = 1024 ** 3
SCRIPT_CHECK = shutil.which("grub-script-check")

# `lsblk --json --list --bytes --paths --output NAME,PKNAME,TYPE,SIZE,FSTYPE,UUID,PARTLABEL,MOUNTPOINTS` of the
# lab's storage VM booted from slot A (trimmed to the A/B disk and one other)
LSBLK = json.dumps({"blockdevices": [
    {"name": "/dev/vda", "pkname": None, "type": "disk", "size": 4294967296, "fstype": "ext4",
     "uuid": "7c4d4c2e-0000-4000-8000-000000000001", "partlabel": None, "mountpoints": [None]},
    {"name": "/dev/vdb", "pkname": None, "type": "disk", "size": 10737418240, "fstype": None, "uuid": None,
     "partlabel": None, "mountpoints": [None]},
    {"name": "/dev/vdb1", "pkname": "/dev/vdb", "type": "part", "size": 1048576, "fstype": None, "uuid": None,
     "partlabel": "dl-ab-bios", "mountpoints": [None]},
    {"name": "/dev/vdb2", "pkname": "/dev/vdb", "type": "part", "size": 134217728, "fstype": "ext4",
     "uuid": "5b1e0000-0000-4000-8000-00000000e2e2", "partlabel": "dl-ab-env", "mountpoints": ["/boot/dl-ab"]},
    {"name": "/dev/vdb3", "pkname": "/dev/vdb", "type": "part", "size": 5298454528, "fstype": "ext4",
     "uuid": "aaaa0000-0000-4000-8000-00000000000a", "partlabel": "dl-ab-A", "mountpoints": ["/"]},
    {"name": "/dev/vdb4", "pkname": "/dev/vdb", "type": "part", "size": 5298454528, "fstype": "ext4",
     "uuid": "bbbb0000-0000-4000-8000-00000000000b", "partlabel": "dl-ab-B", "mountpoints": [None]},
]})


def disk(devs, name):
    """lsblk of one disk: the disk, then its partitions."""
    return [d for d in devs if d["name"] == name or d.get("pkname") == name]


def env(order="A B", a=("1", "0"), b=("0", "0")):
    return {"ORDER": order, "A_OK": a[0], "A_TRY": a[1], "B_OK": b[0], "B_TRY": b[1]}


# --------------------------------------------------------------------------------------------- layout
def test_partitions_are_found_by_gpt_name():
    devs = ab_update.parse_lsblk(LSBLK)
    parts = ab_update.find_partitions(devs, NAMES)
    names = {k: v["name"] for k, v in parts.items()}
    assert names == {"bios": "/dev/vdb1", "env": "/dev/vdb2", "A": "/dev/vdb3", "B": "/dev/vdb4"}
    assert parts["env"]["mountpoints"] == ["/boot/dl-ab"] and devs[1]["mountpoints"] == []
    assert ab_update.duplicate_labels(devs, set(NAMES.values())) == []
    clone = dict(devs[4], name="/dev/sdc3", pkname="/dev/sdc")
    assert ab_update.duplicate_labels(devs + [clone], set(NAMES.values())) == ["dl-ab-A"]


def test_a_disk_with_the_ab_layout_is_resumed_and_an_empty_one_is_used():
    devs = ab_update.parse_lsblk(LSBLK)
    vdb = disk(devs, "/dev/vdb")
    assert ab_update.layout_ok(vdb, NAMES)
    own = ("/boot/dl-ab", "/run/dl-ab/slot")
    # the running root on slot A is a mount the first install did not make: refused
    assert "is in use (mounted at /)" in ab_update.disk_refusal(vdb, NAMES, False, own)
    unmounted = [dict(d, mountpoints=[m for m in d["mountpoints"] if m != "/"]) for d in vdb]
    assert ab_update.disk_refusal(unmounted, NAMES, False, own) is None
    assert ab_update.disk_refusal(vdb[:1], NAMES, False, own) is None   # empty disk


def test_a_disk_with_other_content_needs_force_and_a_partition_is_refused():
    devs = ab_update.parse_lsblk(LSBLK)
    vda = disk(devs, "/dev/vda")
    vda = [dict(vda[0], mountpoints=[])]
    msg = ab_update.disk_refusal(vda, NAMES, False, ())
    assert msg == ("/dev/vda has ext4 and not the A/B layout: refusing to wipe it (set ab_update_force: true "
                   "to destroy its content)")
    assert ab_update.disk_refusal(vda, NAMES, True, ()) is None
    part = ab_update.parse_lsblk(LSBLK)[5:6]
    assert ab_update.disk_refusal(part, NAMES, True, ()).startswith("/dev/vdb4 is a part, not a whole disk")


def test_parted_layout_splits_the_rest_of_the_disk():
    argv = ab_update.parted_argv("/dev/vdb", 10 * GIB, NAMES, SLOTS, 128, 0)
    assert argv[:7] == ["parted", "--script", "--align=optimal", "/dev/vdb", "--", "mklabel", "gpt"]
    text = " ".join(argv[7:])
    assert text == ("mkpart dl-ab-bios 1MiB 2MiB set 1 bios_grub on mkpart dl-ab-env ext4 2MiB 130MiB "
                    "mkpart dl-ab-A ext4 130MiB 5184MiB mkpart dl-ab-B ext4 5184MiB 10238MiB")  # 1 MiB left: backup GPT
    assert ab_update.parted_argv("/dev/vdb", 10 * GIB, NAMES, SLOTS, 128, 2048)[-2:] == ["2178MiB", "4226MiB"]
    with pytest.raises(ab_update.AbError, match="too small"):
        ab_update.parted_argv("/dev/vdb", 2 * GIB, NAMES, SLOTS, 128, 0)
    with pytest.raises(ab_update.AbError, match="smaller than the layout"):
        ab_update.parted_argv("/dev/vdb", 10 * GIB, NAMES, SLOTS, 128, 6000)


# --------------------------------------------------------------------------------------------- slots
def test_the_newest_kernel_with_an_initrd_is_booted():
    names = ["vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "config-6.1.0-10-amd64",
             "vmlinuz-6.1.0-8-amd64", "initrd.img-6.1.0-8-amd64"]
    assert ab_update.pick_kernel(names) == ("6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-9-amd64",
                                            "/boot/initrd.img-6.1.0-9-amd64")
    assert ab_update.pick_kernel(names + ["initrd.img-6.1.0-10-amd64"])[0] == "6.1.0-10-amd64"  # 10 > 9
    assert ab_update.pick_kernel(["vmlinuz-6.1.0-9-amd64", "grub"]) is None


def test_fstab_mounts_root_and_boot_env_by_uuid():
    text = ab_update.fstab_text("aaaa", "e2e2", "/boot/dl-ab", "A")
    lines = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert lines == [["UUID=aaaa", "/", "ext4", "errors=remount-ro", "0", "1"],
                     ["UUID=e2e2", "/boot/dl-ab", "ext4", "defaults", "0", "2"]]


def test_missing_packages_from_dpkg_query():
    out = "grub-pc-bin ii \nrsync ii \nparted un \n"
    assert ab_update.dpkg_missing(out, ["grub-pc-bin", "rsync", "parted", "e2fsprogs"]) == ["parted", "e2fsprogs"]


def test_grub_cfg_has_both_slots_by_uuid_and_the_serial_console():
    parts = ab_update.find_partitions(ab_update.parse_lsblk(LSBLK), NAMES)
    markers = {"A": {"version": "initial", "kernel": "/boot/vmlinuz-6.1.0-50-amd64",
                     "initrd": "/boot/initrd.img-6.1.0-50-amd64"}, "B": {}}
    text = ab_update.grub_cfg_text(SLOTS, parts, markers, parts["env"]["uuid"], ["ro", "console=ttyS0,115200"],
                                   "dl.slot", 3, 5, "--unit=0 --speed=115200")
    assert text.startswith("serial --unit=0 --speed=115200\nterminal_input serial console\n")
    assert "search --no-floppy --fs-uuid --set=dl_ab_env 5b1e0000-0000-4000-8000-00000000e2e2" in text
    assert ("linux /boot/vmlinuz-6.1.0-50-amd64 root=UUID=aaaa0000-0000-4000-8000-00000000000a ro "
            "console=ttyS0,115200 dl.slot=A panic=5") in text
    assert 'menuentry "diskless A/B slot B (empty)" --id dl_ab_B {' in text
    assert "search --no-floppy --fs-uuid --set=root bbbb0000-0000-4000-8000-00000000000b" in text


@pytest.mark.skipif(SCRIPT_CHECK is None, reason="grub-script-check (grub-common) is not installed")
def test_grub_cfg_passes_grubs_own_script_check(tmp_path):
    parts = ab_update.find_partitions(ab_update.parse_lsblk(LSBLK), NAMES)
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(ab_update.grub_cfg_text(SLOTS, parts, {}, parts["env"]["uuid"], ["ro"], "dl.slot", 3, 30,
                                           "--unit=0 --speed=115200"))
    subprocess.run([SCRIPT_CHECK, str(cfg)], check=True)


# --------------------------------------------------------------------------------------------- settling a boot
def test_a_new_slot_that_passed_its_gate_becomes_booted():
    markers = {"A": {"version": "initial", "status": "booted"}, "B": {"version": "v3", "status": "written"}}
    out, transitions, outcome = ab_update.settle_plan(env("B A", b=("1", "0")), SLOTS, "B", {"verdict": "good"},
                                                      markers, "initial", "6.1.0-50-amd64")
    assert transitions == []
    assert outcome == {"slot": "B", "status": "booted", "version": "v3"}
    assert out["B"]["status"] == "booted" and out["A"] == markers["A"]
    assert out["B"]["kernel"] == "/boot/vmlinuz-6.1.0-50-amd64"   # completed from the running kernel
    assert markers["B"]["status"] == "written"                       # the input is not changed


def test_a_tried_slot_the_host_fell_back_from_is_marked_bad_and_failed():
    markers = {"A": {"version": "initial", "status": "booted"}, "B": {"version": "v2", "status": "written"}}
    # GRUB used B's try (B_TRY=1), B never confirmed it, the host runs A again and A passed its gate
    out, transitions, outcome = ab_update.settle_plan(env("A B", b=("1", "1")), SLOTS, "A", {"verdict": "good"},
                                                      markers, "initial", "6.1.0-50-amd64")
    assert transitions == [("bad", "B")]
    assert outcome == {"slot": "B", "status": "failed", "version": "v2", "fell_back_to": "A"}
    assert out["B"]["status"] == "failed"


def test_a_pending_try_and_an_unconfirmed_boot_are_left_alone():
    markers = {"A": {"version": "initial", "status": "booted"}, "B": {"version": "v2", "status": "written"}}
    # B written and put first, the reboot has not happened yet (B_TRY=0)
    out, transitions, outcome = ab_update.settle_plan(env("B A", b=("1", "0")), SLOTS, "A", {"verdict": "good"},
                                                      markers, "initial", "6.1.0-50-amd64")
    assert (transitions, outcome, out["B"]["status"]) == ([], None, "written")
    # the booted slot failed its own gate: nothing is decided about the other one
    out, transitions, outcome = ab_update.settle_plan(env("A B", b=("1", "1")), SLOTS, "A", {"verdict": "failed"},
                                                      markers, "initial", "6.1.0-50-amd64")
    assert (transitions, outcome, out["B"]["status"]) == ([], None, "written")


def test_lost_markers_are_completed_from_the_running_system():
    out, _t, outcome = ab_update.settle_plan(env(), SLOTS, "A", {"verdict": "good"}, {}, "initial", "6.1.0-50-amd64")
    assert out["A"] == {"version": "initial", "status": "booted", "kernel": "/boot/vmlinuz-6.1.0-50-amd64",
                        "initrd": "/boot/initrd.img-6.1.0-50-amd64"}
    assert outcome is None and out["B"] == {}
    out, _t, _o = ab_update.settle_plan(env("B A", b=("1", "0")), SLOTS, "B", {"verdict": "good"}, {}, "initial", "x")
    assert out["B"]["version"] == "unknown"


# --------------------------------------------------------------------------------------------- update refusals
def params(**kw):
    p = {"slots": SLOTS, "label_prefix": "dl-ab", "env_mount": "/boot/dl-ab", "slot_cmdline_key": "dl.slot",
         "version": "v2", "retry_failed": False, "image": "/var/tmp/v2.tar", "image_format": "tar"}
    p.update(kw)
    return p


class NoCommands:
    def __call__(self, argv, what, ok=(0,), data=None):
        raise AssertionError("no command may run before the refusals: %s" % argv)

    raw = __call__


def host_booted_a(p, env_, verdict, markers):
    host = _ab_update_host.Host(p, NoCommands())
    host.booted, host.env, host.verdict = "A", env_, verdict
    host.markers = markers
    return host


def test_a_version_that_failed_is_refused_unless_retried():
    markers = {"A": {"version": "initial", "status": "booted"},
               "B": {"version": "v2", "status": "failed", "written_at": "2026-11-22T03:00:00Z"}}
    host = host_booted_a(params(), env(), {"verdict": "good"}, markers)
    with pytest.raises(ab_update.AbError) as exc:
        host.write()
    assert str(exc.value) == ("version v2 already failed in slot B (written 2026-11-22T03:00:00Z): set "
                              "ab_update_retry_failed: true to try it again")


def test_no_update_while_the_booted_slot_is_not_confirmed():
    markers = {"A": {"version": "initial", "status": "booted"}, "B": {}}
    host = host_booted_a(params(), env(a=("1", "1")), {"verdict": "failed", "problems": ["ZFS pool tank is FAULTED"]},
                         markers)
    with pytest.raises(ab_update.AbError) as exc:
        host.write()
    assert str(exc.value) == ("the booted slot A is not confirmed (state trying, gate verdict failed: ZFS pool "
                              "tank is FAULTED): no update before it is healthy")
    assert grub.slot_state(host.env, "A") == "trying"


# ------------------------------------------------------------------------------------------------ the update's action
MARKERS = {"A": {"version": "v1", "status": "booted"}, "B": {"version": "v2", "status": "written"}}


@pytest.mark.parametrize("installed, booted, markers, version, expected", [
    (True, "A", MARKERS, None, {"action": "none", "slot": None}),          # no image asked
    (False, None, {}, "v2", {"action": "none", "slot": None}),              # not installed yet: first install
    (True, "A", MARKERS, "v1", {"action": "none", "slot": "A"}),            # the booted slot runs it
    (True, "A", MARKERS, "v2", {"action": "reuse", "slot": "B"}),           # B holds it intact
    (True, "A", dict(MARKERS, B={"version": "v2", "status": "booted"}), "v2", {"action": "reuse", "slot": "B"}),
    (True, "A", dict(MARKERS, B={"version": "v2", "status": "writing"}), "v2", {"action": "write", "slot": "B"}),
    (True, "A", dict(MARKERS, B={"version": "v2", "status": "failed"}), "v2", {"action": "write", "slot": "B"}),
    (True, "A", MARKERS, "v3", {"action": "write", "slot": "B"}),
    (True, "B", MARKERS, "v3", {"action": "write", "slot": "A"}),
])
def test_update_action(installed, booted, markers, version, expected):
    assert ab_update.update_action(SLOTS, installed, booted, markers, version) == expected


def test_update_refusal_allows_a_confirmed_slot_and_a_retried_version():
    failed = dict(MARKERS, B={"version": "v2", "status": "failed"})
    assert ab_update.update_refusal(env(), "A", "B", {"verdict": "good"}, MARKERS, "v3", False) is None
    assert ab_update.update_refusal(env(), "A", "B", {"verdict": "good"}, failed, "v2", True) is None
    assert ab_update.update_refusal(env(), "A", "B", {"verdict": "pending"}, MARKERS, "v3", False) == (
        "the booted slot A is not confirmed (state good, gate verdict pending): no update before it is healthy")


def test_the_gate_library_is_the_grub_module_utils_file():
    from pathlib import Path
    assert _ab_update_host.grub_source() == Path(grub.__file__).read_text()
