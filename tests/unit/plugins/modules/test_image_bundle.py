# SPDX-License-Identifier: GPL-3.0-or-later
"""The image_bundle module: exact argv through a mocked run_command that fakes the tools, bundle layout,
idempotence by recipe hash, refusal, force, check mode, atomic placement."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess

import pytest

from ansible.module_utils import basic
from ansible_collections.diskless.cluster.plugins.module_utils import image as img
from ansible_collections.diskless.cluster.plugins.modules import image_bundle


def newc(entries):
    """A newc cpio archive of {name: bytes}."""
    out = b""
    for ino, (name, data) in enumerate(list(entries.items()) + [("TRAILER!!!", b"")], start=1):
        raw = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (ino, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0))
        out += hdr.encode() + raw
        out += b"\0" * ((4 - len(out) % 4) % 4)
        out += data
        out += b"\0" * ((4 - len(out) % 4) % 4)
    return out


BOOT_SCRIPT = b"# diskless\nmountroot() {\n\tdl_mountroot\n}\n"
MODDIR = "usr/lib/modules/6.1.0-41-amd64/kernel/"
GOOD = {
    "scripts/diskless": BOOT_SCRIPT,
    "usr/sbin/iscsistart": b"\x7fELF",
    "usr/sbin/mdadm": b"\x7fELF",
    "usr/sbin/dmsetup": b"\x7fELF",
    "usr/sbin/mkfs.ext4": b"\x7fELF",
    "usr/bin/busybox": b"\x7fELF",
    "sbin/curl": b"\x7fELF",
    "usr/bin/sha256sum": b"\x7fELF",
    "etc/mdadm/mdadm.conf": b"# why\nAUTO -all\nHOMEHOST <none>\n",
    "etc/diskless": b"",
    MODDIR + "drivers/scsi/iscsi_tcp.ko": b"",
    MODDIR + "drivers/scsi/sd_mod.ko": b"",
    MODDIR + "drivers/net/virtio_net.ko": b"",
    MODDIR + "drivers/block/virtio_blk.ko": b"",
    MODDIR + "drivers/block/zram/zram.ko": b"",
    MODDIR + "drivers/block/loop.ko": b"",
    MODDIR + "fs/ext4/ext4.ko": b"",
    MODDIR + "fs/overlayfs/overlay.ko": b"",
    MODDIR + "fs/squashfs/squashfs.ko": b"",
    MODDIR + "drivers/md/md-mod.ko": b"",
    MODDIR + "drivers/md/raid1.ko": b"",
    MODDIR + "drivers/md/dm-multipath.ko": b"",
    MODDIR + "drivers/md/dm-service-time.ko": b"",
    "etc/initiatorname.iscsi": img.INITIATORNAME_PLACEHOLDER.encode(),
    # the LUKS root: cryptsetup and Clevis (hooks/diskless)
    "usr/sbin/cryptsetup": b"\x7fELF",
    MODDIR + "drivers/md/dm-crypt.ko": b"",
    MODDIR + "crypto/xts.ko": b"",
    MODDIR + "crypto/algif_skcipher.ko": b"",
}
GOOD.update(("usr/bin/" + name, b"\x7fELF") for name in (
    "bash", "jose", "pwmake", "cat", "base64", "clevis", "clevis-decrypt", "clevis-decrypt-tang", "clevis-decrypt-sss",
    "clevis-encrypt-sss", "clevis-encrypt-tang", "clevis-luks-bind", "clevis-luks-unlock", "clevis-luks-common-functions"))

KVER = "6.1.0-41-amd64"
KEY = "ssh-ed25519 AAAAC3Nza test@lab"


class FakeTools:
    """Plays mmdebstrap (makes a root with a kernel, an initramfs and a dpkg db), dpkg-query and mkfs.ext4."""

    def __init__(self, initrd=None, fail=None):
        self.calls = []
        self.environ = []
        self.initrd = initrd if initrd is not None else gzip.compress(newc(GOOD))
        self.fail = fail

    def __call__(self, module, args, **kwargs):
        args = list(args)
        self.calls.append(args)
        self.environ.append(dict(module.run_command_environ_update))
        tool = os.path.basename(args[0])
        if tool == self.fail:
            return 1, "", "E: %s exploded" % tool
        if tool == "mmdebstrap":
            root = args[-2]
            pre = args[-6].split()[1]
            assert os.path.isfile(os.path.join(pre, "etc/initramfs-tools/conf.d/diskless-cluster.conf"))
            node = args[-5].split()[1]
            assert args[-5] == "--customize-hook=sync-in %s /" % node
            self.node_files = img.node_files_manifest(node)
            for d in ("boot", "etc/ssh", "etc/iscsi", "var/lib/dpkg", "var/lib/dbus"):
                os.makedirs(os.path.join(root, d))
            with open(os.path.join(root, "boot", "vmlinuz-" + KVER), "wb") as f:
                f.write(b"MZ kernel")
            with open(os.path.join(root, "boot", "initrd.img-" + KVER), "wb") as f:
                f.write(self.initrd)
            for name in ("etc/hostname", "etc/ssh/ssh_host_ed25519_key", "etc/machine-id", "var/lib/dbus/machine-id"):
                with open(os.path.join(root, name), "w") as f:
                    f.write("from the build host\n")
            return 0, "", ""
        if tool == "dpkg-query":
            return 0, "ii  openssh-server 1:9.2p1-2+deb12u7\nii  bash 5.2.15-2+b7\n", ""
        if tool == "mksquashfs":
            assert os.path.isdir(os.path.join(args[1], "etc"))        # the root is still there
            with open(args[2], "wb") as f:
                f.write(b"hsqs")
            return 0, "", ""
        if tool == "mkfs.ext4":
            root, image = args[-3], args[-2]
            assert os.path.getsize(image) == 8 * 1024 * 1024
            assert args[-1] == str(4 * 1024 * 1024 // 4096)          # the fs leaves the last 4 MiB to md
            self.root_snapshot = {
                "fstab": open(os.path.join(root, "etc/fstab")).read(),
                "hostname": os.path.exists(os.path.join(root, "etc/hostname")),
                "hostkey": os.path.exists(os.path.join(root, "etc/ssh/ssh_host_ed25519_key")),
                "machine-id": open(os.path.join(root, "etc/machine-id")).read(),
                "keys": open(os.path.join(root, "root/.ssh/authorized_keys")).read(),
            }
            with open(image, "r+b") as f:
                f.write(b"ext4 superblock")
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (args,))


@pytest.fixture
def run(monkeypatch, run_main):
    """``run(args, tools=None, check=False) -> (ok, result, tools)``: image_bundle's main() with fake tools."""
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/usr/bin/" + name)

    def _run(args, tools=None, check=False):
        tools = tools or FakeTools()

        def run_command(self, argv, **kwargs):
            return tools(self, argv, **kwargs)

        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        ok, result = run_main(image_bundle.main, args, check=check)
        return ok, result, tools
    return _run


def node_tree(tmp_path):
    node = tmp_path / "node-files"
    if not node.exists():
        (node / "usr/share/initramfs-tools/scripts").mkdir(parents=True)
        (node / "usr/share/initramfs-tools/scripts/diskless").write_text("mountroot() { :; }\n")
        (node / "etc/mdadm").mkdir(parents=True)
        (node / "etc/mdadm/mdadm.conf").write_text("AUTO -all\n")
    return node


def params(tmp_path, **kw):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    p = {"name": "debian12", "version": "1", "size_bytes": 8 * 1024 * 1024, "label": "dlroot",
         "output_dir": str(out), "authorized_keys": [KEY], "node_files": str(node_tree(tmp_path))}
    p.update(kw)
    return p


def test_build_exact_argv_layout_and_files(run, tmp_path):
    ok, result, tools = run(params(tmp_path))
    assert ok and result["changed"] is True and result["action"] == "built"
    bundle = tmp_path / "out/debian12" / "1"
    assert result["bundle_dir"] == str(bundle)
    assert sorted(os.listdir(bundle)) == ["SHA256SUMS", "initrd.img", "manifest.json", "packages.txt", "root.img",
                                          "root.squashfs", "vmlinuz"]
    # nothing else left next to the bundle (work dir removed)
    assert os.listdir(tmp_path / "out/debian12") == ["1"]

    node_files = img.node_files_manifest(str(tmp_path / "node-files"))
    rec = img.recipe("bookworm", 8 * 1024 * 1024, "dlroot", [], [KEY], node_files=node_files)
    work = os.path.dirname(tools.calls[0][-2])
    assert tools.calls[0] == img.mmdebstrap_argv("/usr/bin/mmdebstrap", rec, os.path.join(work, "rootfs"),
                                                 "http://deb.debian.org/debian", os.path.join(work, "pre"),
                                                 os.path.join(work, "node"))
    assert tools.node_files == node_files                      # what was synced in is what was hashed
    assert [os.path.basename(c[0]) for c in tools.calls] == ["mmdebstrap", "dpkg-query", "mkfs.ext4", "mksquashfs"]
    assert tools.calls[2][:-3] == ["/usr/bin/mkfs.ext4", "-q", "-F", "-t", "ext4", "-L", "dlroot", "-m", "1", "-b", "4096", "-d"]
    assert tools.calls[3] == img.squashfs_argv("/usr/bin/mksquashfs", os.path.join(work, "rootfs"),
                                               tools.calls[3][2])
    assert tools.calls[3][2].endswith("/root.squashfs")
    assert all(e["LANG"] == "C" and e["LC_ALL"] == "C" for e in tools.environ)

    # the root as mkfs saw it: identity removed, fstab by label, keys in
    snap = tools.root_snapshot
    assert snap["fstab"].splitlines()[-1] == "LABEL=dlroot / ext4 defaults,noatime 0 1"
    assert snap["hostname"] is False and snap["hostkey"] is False and snap["machine-id"] == ""
    assert snap["keys"] == KEY + "\n"

    assert (bundle / "packages.txt").read_text() == "bash 5.2.15-2+b7\nopenssh-server 1:9.2p1-2+deb12u7\n"
    assert (bundle / "vmlinuz").read_bytes() == b"MZ kernel"
    assert (bundle / "root.img").stat().st_size == 8 * 1024 * 1024

    sums = img.parse_sha256sums((bundle / "SHA256SUMS").read_text())
    assert sorted(sums) == ["initrd.img", "manifest.json", "packages.txt", "root.img", "root.squashfs", "vmlinuz"]
    for name, digest in sums.items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
    # sha256sum(1) itself accepts the file
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle, check=False).returncode == 0

    man = json.loads((bundle / "manifest.json").read_text())
    assert man == result["manifest"]
    assert man["name"] == "debian12" and man["version"] == "1" and man["kernel_version"] == KVER
    assert man["recipe_hash"] == img.recipe_hash(rec) == result["recipe_hash"]
    assert man["files"]["root.img"]["size"] == 8 * 1024 * 1024
    assert man["files"]["root.img"]["used_bytes"] < 8 * 1024 * 1024      # sparse
    assert man["files"]["vmlinuz"]["sha256"] == sums["vmlinuz"]
    assert man["files"]["root.squashfs"]["sha256"] == sums["root.squashfs"]
    assert man["initramfs"]["boot_script"] == "scripts/diskless" and man["initramfs"]["compression"] == "gzip"
    assert man["built_at"].endswith("Z")


def test_same_recipe_is_unchanged_and_runs_nothing(run, tmp_path):
    run(params(tmp_path))
    before = (tmp_path / "out/debian12/1/manifest.json").read_text()
    ok, result, tools = run(params(tmp_path))
    assert ok and result["changed"] is False and result["action"] == "exists"
    assert tools.calls == []
    assert result["manifest"]["recipe_hash"] == result["recipe_hash"]
    assert (tmp_path / "out/debian12/1/manifest.json").read_text() == before
    # mirror is not part of the recipe
    ok, result, tools = run(params(tmp_path, mirror="http://mirror.example.org/debian"))
    assert ok and result["changed"] is False and tools.calls == []


def test_other_recipe_is_refused_in_one_line(run, tmp_path):
    run(params(tmp_path))
    for check in (False, True):
        ok, result, tools = run(params(tmp_path, extra_packages=["less"]), check=check)
        assert not ok and tools.calls == []
        assert result["msg"] == ("image debian12 v1 exists with another recipe; bump cluster_images.debian12.version"
                                 " (or force=true to rebuild it)")


def test_force_replaces_the_bundle(run, tmp_path):
    run(params(tmp_path))
    ok, result, tools = run(params(tmp_path, extra_packages=["less"], force=True))
    assert ok and result["changed"] is True and result["action"] == "built"
    assert "less" in tools.calls[0][-7]
    man = json.loads((tmp_path / "out/debian12/1/manifest.json").read_text())
    assert man["recipe_hash"] == result["recipe_hash"] and "less" in man["packages"]
    assert os.listdir(tmp_path / "out/debian12") == ["1"]


def test_check_mode_builds_nothing(run, tmp_path):
    ok, result, tools = run(params(tmp_path), check=True)
    assert ok and result["changed"] is True and result["action"] == "would_build"
    assert tools.calls == [] and not (tmp_path / "out/debian12").exists()


def test_failed_build_leaves_no_bundle(run, tmp_path):
    ok, result, tools = run(params(tmp_path), tools=FakeTools(fail="mkfs.ext4"))
    assert not ok and "image debian12 v1: mkfs.ext4 failed (mkfs.ext4, rc 1): E: mkfs.ext4 exploded" == result["msg"]
    assert result["rc"] == 1 and result["stderr"] == "E: mkfs.ext4 exploded" and result["cmd"][0].endswith("mkfs.ext4")
    assert os.listdir(tmp_path / "out/debian12") == []


def test_node_files_change_the_recipe(run, tmp_path):
    run(params(tmp_path))
    (tmp_path / "node-files/etc/mdadm/mdadm.conf").write_text("AUTO +all\n")
    ok, result, tools = run(params(tmp_path))
    assert not ok and tools.calls == [] and "exists with another recipe" in result["msg"]


def test_node_files_outside_etc_usr_are_refused(run, tmp_path):
    (node_tree(tmp_path) / "lib").mkdir()
    (node_tree(tmp_path) / "lib/x").write_text("")
    ok, result, tools = run(params(tmp_path))
    assert not ok and tools.calls == [] and "node files: lib/x is not below etc or usr" in result["msg"]


def test_initramfs_without_the_boot_script_fails_the_build(run, tmp_path):
    entries = dict(GOOD)
    del entries["scripts/diskless"]
    ok, result, tools = run(params(tmp_path), tools=FakeTools(initrd=gzip.compress(newc(entries))))
    assert not ok and "initramfs lacks scripts/diskless" in result["msg"]
    assert os.listdir(tmp_path / "out/debian12") == []


def test_network_manager_in_extra_packages_is_refused(run, tmp_path):
    ok, result, tools = run(params(tmp_path, extra_packages=["ifupdown"]))
    assert not ok and tools.calls == [] and "ifupdown" in result["msg"]
