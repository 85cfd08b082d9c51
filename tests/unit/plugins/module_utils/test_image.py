# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/image.py: recipe hash, argv lists, bundle text formats, initramfs inspection."""

from __future__ import annotations

import gzip
import hashlib
import json

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import image as img


def newc(entries):
    """A newc cpio archive of {name: bytes} (what mkinitramfs / iPXE produce)."""
    out = b""
    for ino, (name, data) in enumerate(list(entries.items()) + [("TRAILER!!!", b"")], start=1):
        raw = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (
            ino, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0))
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
    "usr/sbin/cryptsetup": b"\x7fELF",
    "usr/bin/bash": b"\x7fELF",
    "usr/bin/jose": b"\x7fELF",
    "usr/bin/pwmake": b"\x7fELF",
    "usr/bin/clevis": b"#!/bin/bash -e\n",
    "usr/bin/clevis-decrypt": b"#!/bin/bash -e\n",
    "usr/bin/clevis-decrypt-tang": b"#!/bin/bash -e\n",
    "usr/bin/clevis-decrypt-sss": b"\x7fELF",
    "usr/bin/clevis-encrypt-sss": b"\x7fELF",
    "usr/bin/clevis-encrypt-tang": b"#!/bin/bash -e\n",
    "usr/bin/clevis-luks-bind": b"#!/bin/bash -e\n",
    "usr/bin/clevis-luks-unlock": b"#!/bin/bash -e\n",
    "usr/bin/clevis-luks-common-functions": b"#!/bin/bash -e\n",
    "usr/bin/cat": b"\x7fELF",
    "usr/bin/base64": b"\x7fELF",
    MODDIR + "drivers/md/dm-crypt.ko": b"",
    MODDIR + "crypto/xts.ko": b"",
    MODDIR + "crypto/algif_skcipher.ko": b"",
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
}


NODE_FILES = [["usr/share/initramfs-tools/scripts/diskless", "0644", "a" * 64]]


def rec(**kw):
    args = dict(suite="bookworm", size_bytes=2147483648, label="dlroot", extra_packages=[], authorized_keys=["ssh-ed25519 AAAA k"],
                node_files=NODE_FILES)
    args.update(kw)
    return img.recipe(**args)


def test_recipe_hash_is_stable_and_pinned():
    h = img.recipe_hash(rec())
    assert h == img.recipe_hash(rec())
    assert len(h) == 64 and int(h, 16) >= 0
    # order of extra packages / duplicates does not matter
    assert img.recipe_hash(rec(extra_packages=["mdadm", "less", "mdadm"])) == img.recipe_hash(rec(extra_packages=["less", "mdadm"]))
    # the hash is sha256 of the canonical JSON (so anything can recompute it)
    blob = json.dumps(rec(), sort_keys=True, separators=(",", ":"))
    assert h == hashlib.sha256(blob.encode()).hexdigest()


@pytest.mark.parametrize("change", [
    {"suite": "trixie"}, {"size_bytes": 4294967296}, {"label": "other"}, {"extra_packages": ["less"]},
    {"authorized_keys": ["ssh-ed25519 BBBB other"]}, {"variant": "essential"},
    {"node_files": [["usr/share/initramfs-tools/scripts/diskless", "0644", "b" * 64]]},
    {"node_files": [["usr/share/initramfs-tools/scripts/diskless", "0755", "a" * 64]]},
    {"node_files": [["usr/share/initramfs-tools/scripts/other", "0644", "a" * 64]]},
])
def test_recipe_hash_changes_with_every_input(change):
    assert img.recipe_hash(rec(**change)) != img.recipe_hash(rec())


def test_recipe_hash_changes_with_format(monkeypatch):
    before = img.recipe_hash(rec())
    monkeypatch.setattr(img, "RECIPE_FORMAT", img.RECIPE_FORMAT + 1)
    assert img.recipe_hash(rec()) != before


def test_packages_have_the_required_set_and_no_network_manager():
    pkgs = img.packages(["mdadm"])
    for p in ("linux-image-amd64", "systemd-sysv", "udev", "initramfs-tools", "open-iscsi", "openssh-server",
              "python3", "iproute2", "procps", "chrony", "rsyslog", "kmod", "mdadm", "multipath-tools", "dmsetup",
              "busybox", "cryptsetup-bin", "clevis", "clevis-luks", "jose", "libpwquality-tools", "curl"):
        assert p in pkgs
    # Debian's own LUKS unlock in the initramfs is what scripts/diskless replaces
    assert not {"cryptsetup-initramfs", "clevis-initramfs", "cryptsetup", "clevis-dracut"} & set(pkgs)
    assert pkgs == sorted(pkgs)
    assert img.forbidden(pkgs) == []
    assert img.forbidden(["ifupdown", "less", "network-manager"]) == ["ifupdown", "network-manager"]


def test_mmdebstrap_argv_exact():
    r = rec(extra_packages=["mdadm"])
    argv = img.mmdebstrap_argv("/usr/bin/mmdebstrap", r, "/w/rootfs", "http://deb.debian.org/debian", "/w/pre")
    assert argv == [
        "/usr/bin/mmdebstrap", "--mode=root", "--format=directory", "--variant=minbase", "--architectures=amd64",
        "--components=main",
        '--aptopt=APT::Install-Recommends "false"', '--aptopt=APT::Install-Suggests "false"',
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        "--dpkgopt=path-exclude=/usr/share/lintian/*", "--dpkgopt=path-exclude=/usr/share/linda/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/sound/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/sound/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/media/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/media/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/net/wireless/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/net/wireless/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/bluetooth/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/bluetooth/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/iio/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/iio/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/staging/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/staging/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/isdn/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/isdn/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/input/joystick/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/input/joystick/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/drivers/input/touchscreen/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/drivers/input/touchscreen/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/net/wireless/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/net/wireless/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/net/mac80211/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/net/mac80211/*",
        "--dpkgopt=path-exclude=/lib/modules/*/kernel/net/bluetooth/*",
        "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/net/bluetooth/*",
        "--include=" + ",".join(img.packages(["mdadm"])),
        "--essential-hook=sync-in /w/pre /",
        "bookworm", "/w/rootfs", "http://deb.debian.org/debian",
    ]
    # with the node files: synced in after every package, then the initramfs made again (the bundle's initrd)
    argv = img.mmdebstrap_argv("/usr/bin/mmdebstrap", r, "/w/rootfs", "http://deb.debian.org/debian", "/w/pre", "/w/node")
    assert argv[-6:] == [
        "--essential-hook=sync-in /w/pre /",
        "--customize-hook=sync-in /w/node /",
        '--customize-hook=chroot "$1" update-initramfs -u -k all',
        "bookworm", "/w/rootfs", "http://deb.debian.org/debian",
    ]
    # a path with a space is quoted inside the hook (mmdebstrap runs it through sh)
    assert img.mmdebstrap_argv("m", r, "/r", "u", "/w x/pre")[-4] == "--essential-hook=sync-in '/w x/pre' /"


def test_bootstrap_argv_is_the_one_mmdebstrap_command_line():
    """What the lab's VM images use too: no architecture (mmdebstrap's native), hooks of any kind, in order."""
    argv = img.bootstrap_argv("mmdebstrap", "bookworm", "/w/rootfs", "http://m/debian", "minbase", ["main", "contrib"],
                              ["linux-image-amd64", "zfs-dkms"], apt_options=img.APT_OPTIONS,
                              dpkg_options=["path-exclude=/usr/share/doc/*"],
                              hooks=[("customize", 'chmod 0700 "$1/root/.ssh"'), ("customize", 'bash /h.sh "$1"')])
    assert argv == [
        "mmdebstrap", "--mode=root", "--format=directory", "--variant=minbase", "--components=main,contrib",
        '--aptopt=APT::Install-Recommends "false"', '--aptopt=APT::Install-Suggests "false"',
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--include=linux-image-amd64,zfs-dkms",
        '--customize-hook=chmod 0700 "$1/root/.ssh"', '--customize-hook=bash /h.sh "$1"',
        "bookworm", "/w/rootfs", "http://m/debian",
    ]


def test_root_img_fs_leaves_the_md_tail_free():
    r = rec()
    assert r["fs_bytes"] == 2147483648 - 4 * 1024 * 1024 and r["fs_bytes"] % 4096 == 0
    assert img.fs_bytes(8 * 1024 * 1024 + 1000) == 4 * 1024 * 1024
    assert img.mkfs_argv("/sbin/mkfs.ext4", "dlroot", "/w/rootfs", "/w/root.img", fs_size=r["fs_bytes"]) == [
        "/sbin/mkfs.ext4", "-q", "-F", "-t", "ext4", "-L", "dlroot", "-m", "1", "-b", "4096", "-d", "/w/rootfs",
        "/w/root.img", str((2147483648 - 4 * 1024 * 1024) // 4096)]


def test_squashfs_argv():
    assert img.squashfs_argv("/usr/bin/mksquashfs", "/w/rootfs", "/w/bundle/root.squashfs") == [
        "/usr/bin/mksquashfs", "/w/rootfs", "/w/bundle/root.squashfs", "-comp", "zstd", "-noappend", "-no-progress",
        "-quiet"]


def test_node_files_manifest_and_stage(tmp_path):
    src = tmp_path / "node"
    (src / "usr/lib/diskless-cluster").mkdir(parents=True)
    (src / "etc").mkdir()
    (src / "usr/lib/diskless-cluster/md-readd").write_text("#!/bin/sh\n")
    (src / "usr/lib/diskless-cluster/md-readd").chmod(0o775)
    (src / "etc/mdadm.conf").write_text("AUTO -all\n")
    (src / "etc/mdadm.conf").chmod(0o664)
    (src / "etc").chmod(0o775)
    rows = img.node_files_manifest(str(src))
    assert rows == [
        ["etc/mdadm.conf", "0644", hashlib.sha256(b"AUTO -all\n").hexdigest()],
        ["usr/lib/diskless-cluster/md-readd", "0755", hashlib.sha256(b"#!/bin/sh\n").hexdigest()],
    ]
    dest = tmp_path / "stage"
    dest.mkdir()
    img.node_files_stage(str(src), str(dest))
    assert img.node_files_manifest(str(dest)) == rows
    assert (dest / "etc").stat().st_mode & 0o777 == 0o755          # not the checkout's umask
    assert (dest / "etc/mdadm.conf").stat().st_mode & 0o777 == 0o644
    # the recipe hash covers the tree: content, mode and path
    h = img.recipe_hash(rec(node_files=rows))
    (src / "etc/mdadm.conf").write_text("AUTO +all\n")
    assert img.recipe_hash(rec(node_files=img.node_files_manifest(str(src)))) != h
    # only etc/ and usr/ (tar would replace the usr-merge symlinks), only regular files
    (src / "lib").mkdir()
    (src / "lib/x").write_text("")
    with pytest.raises(ValueError, match="lib/x is not below etc or usr"):
        img.node_files_manifest(str(src))
    (src / "lib/x").unlink()
    (src / "lib").rmdir()
    (src / "etc/link").symlink_to("/dev/null")
    with pytest.raises(ValueError, match="etc/link is not a regular file"):
        img.node_files_manifest(str(src))


def test_the_collection_node_files_tree():
    """The real tree: what the boot path needs is there, and executable where it must be."""
    import os
    root = os.path.join(os.path.dirname(__file__), "../../../../roles/image_builder/files/node")
    rows = {r[0]: r[1] for r in img.node_files_manifest(root)}
    assert rows["usr/share/initramfs-tools/hooks/diskless"] == "0755"
    assert rows["usr/share/initramfs-tools/scripts/diskless"] == "0644"
    for prog in ("initiatorname", "ssh-hostkeys", "iscsi-timeouts", "md-readd"):
        assert rows["usr/lib/diskless-cluster/" + prog] == "0755"
    for unit in ("diskless-initiatorname.service", "diskless-iscsi-timeouts.service", "diskless-md-readd.service",
                 "diskless-md-readd.timer", "iscsid.service.d/50-diskless.conf", "ssh.service.d/50-diskless-hostkeys.conf"):
        assert "etc/systemd/system/" + unit in rows
    assert "etc/mdadm/mdadm.conf" in rows and "etc/initramfs-tools/conf.d/diskless-busybox" in rows
    for _target, unit, path in img.ENABLED_UNITS:
        assert path.startswith("/lib/systemd/system/") or path.lstrip("/") in rows, unit


def test_mkfs_argv_reserved_blocks():
    assert img.mkfs_argv("mkfs.ext4", "dl-storage", "/r", "/d.raw", 5)[7:9] == ["-m", "5"]


def test_mkfs_and_dpkg_query_argv_exact():
    assert img.mkfs_argv("/sbin/mkfs.ext4", "dlroot", "/w/rootfs", "/w/bundle/root.img") == [
        "/sbin/mkfs.ext4", "-q", "-F", "-t", "ext4", "-L", "dlroot", "-m", "1", "-d", "/w/rootfs", "/w/bundle/root.img"]
    assert img.dpkg_query_argv("/usr/bin/dpkg-query", "/w/rootfs") == [
        "/usr/bin/dpkg-query", "--admindir=/w/rootfs/var/lib/dpkg", "-W", "-f=${db:Status-Abbrev} ${Package} ${Version}\\n"]


def test_packages_txt_keeps_installed_only_sorted():
    out = "ii  zstd 1.5.4+dfsg2-5\nrc  old 1.0\nii  bash 5.2.15-2+b7\n"
    assert img.packages_txt(out) == "bash 5.2.15-2+b7\nzstd 1.5.4+dfsg2-5\n"


def test_sha256sums_format_round_trip():
    text = img.sha256sums_text({"vmlinuz": "a" * 64, "initrd.img": "b" * 64})
    assert text == "%s  initrd.img\n%s  vmlinuz\n" % ("b" * 64, "a" * 64)
    assert img.parse_sha256sums(text) == {"vmlinuz": "a" * 64, "initrd.img": "b" * 64}


def test_manifest_fields():
    r = rec()
    doc = img.manifest("debian12", 1, "h" * 64, r, "6.1.0-41-amd64", "2026-11-01T00:00:00Z",
                       {"root.img": {"size": 2147483648, "used_bytes": 5, "sha256": "c" * 64}}, build_seconds=12.345)
    assert doc["name"] == "debian12" and doc["version"] == "1" and doc["recipe_hash"] == "h" * 64
    assert doc["kernel_version"] == "6.1.0-41-amd64" and doc["label"] == "dlroot" and doc["size_bytes"] == 2147483648
    assert doc["build_seconds"] == 12.3 and doc["files"]["root.img"]["sha256"] == "c" * 64
    assert json.loads(img.manifest_text(doc)) == doc


def test_refusal_is_one_line_and_says_what_to_do():
    msg = img.refusal("debian12", "1")
    assert "\n" not in msg
    assert msg.startswith("image debian12 v1 exists with another recipe; bump cluster_images.debian12.version")


def test_image_files_identity_and_network():
    pre = img.pre_files()
    assert "MODULES=netboot" in pre["/etc/initramfs-tools/conf.d/diskless-cluster.conf"][1]
    assert pre["/etc/iscsi/initiatorname.iscsi"][1].splitlines()[-1] == "InitiatorName="
    assert "/etc/iscsi/iscsi.initramfs" not in pre and "/etc/iscsi/iscsi.initramfs" in img.REMOVE_PATHS
    post = img.post_files("dlroot", ["ssh-ed25519 AAAA k", " "])
    assert post["/etc/fstab"][1].splitlines()[-1] == "LABEL=dlroot / ext4 defaults,noatime 0 1"
    assert post["/root/.ssh/authorized_keys"] == (0o600, "ssh-ed25519 AAAA k\n")
    assert post["/etc/systemd/system/systemd-networkd.service"] == (None, "/dev/null")
    assert post["/etc/systemd/system/sysinit.target.wants/iscsid.service"] == (None, "/lib/systemd/system/iscsid.service")
    assert post["/etc/systemd/system/timers.target.wants/diskless-md-readd.timer"] == (
        None, "/etc/systemd/system/diskless-md-readd.timer")
    assert post["/etc/systemd/system/mdcheck_start.timer"] == (None, "/dev/null")
    assert "/etc/diskless/node.conf" in img.REMOVE_PATHS
    assert "/etc/hostname" in img.REMOVE_PATHS and "/etc/machine-id" in img.TRUNCATE_PATHS


def test_write_tree(tmp_path):
    img.write_tree(str(tmp_path), img.post_files("dlroot", ["k1"]))
    assert (tmp_path / "etc/fstab").read_text().endswith("LABEL=dlroot / ext4 defaults,noatime 0 1\n")
    assert (tmp_path / "root/.ssh").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
    link = tmp_path / "etc/systemd/system/systemd-networkd.service"
    assert link.is_symlink() and str(link.readlink()) == "/dev/null"
    # rewriting over existing files and links works (second build into the same tree)
    img.write_tree(str(tmp_path), img.post_files("other", ["k1"]))
    assert "LABEL=other" in (tmp_path / "etc/fstab").read_text()


def test_cpio_listing_of_early_plus_compressed_initramfs():
    early = newc({"kernel/x86/microcode/GenuineIntel.bin": b"ucode"})
    main = newc(GOOD)
    data = early + b"\0" * 512 + gzip.compress(main)
    head, tail, kind = img.split_initramfs(data)
    assert kind == "gzip"
    entries = img.list_cpio(head)
    entries.update(img.list_cpio(img.gunzip(tail)))
    assert entries["kernel/x86/microcode/GenuineIntel.bin"] == b"ucode"
    assert entries["scripts/diskless"] == BOOT_SCRIPT
    assert img.split_initramfs(b"\x28\xb5\x2f\xfd rest")[2] == "zstd"
    with pytest.raises(ValueError):
        img.split_initramfs(b"BZh9 not supported")


def test_check_initramfs_good():
    facts, problems = img.check_initramfs(GOOD)
    assert problems == []
    assert facts["boot_script"] == "scripts/diskless"
    assert facts["found"]["iscsi_tcp"].endswith("drivers/scsi/iscsi_tcp.ko")
    assert facts["found"]["sbin/mdadm"] == "usr/sbin/mdadm"


def test_check_initramfs_accepts_builtin_modules():
    entries = dict(GOOD)
    del entries[MODDIR + "fs/overlayfs/overlay.ko"]
    del entries[MODDIR + "drivers/md/md-mod.ko"]
    del entries[MODDIR + "crypto/xts.ko"]
    entries["usr/lib/modules/6.1.0-41-amd64/modules.builtin"] = (
        b"kernel/fs/overlayfs/overlay.ko\nkernel/drivers/md/md-mod.ko\nkernel/crypto/xts.ko\n")
    facts, problems = img.check_initramfs(entries)
    assert problems == [] and facts["found"]["overlay"] == "(built in)" and facts["found"]["xts"] == "(built in)"
    assert facts["initiator_name_fallback"] == ""


@pytest.mark.parametrize("mutate, problem", [
    (lambda e: e.pop("usr/sbin/iscsistart"), "initramfs lacks sbin/iscsistart"),
    (lambda e: e.pop("scripts/diskless"), "initramfs lacks scripts/diskless"),
    (lambda e: e.pop("usr/sbin/mdadm"), "initramfs lacks sbin/mdadm"),
    (lambda e: e.pop("sbin/curl"), "initramfs lacks sbin/curl"),
    (lambda e: e.pop(MODDIR + "drivers/scsi/iscsi_tcp.ko"), "initramfs lacks the module iscsi_tcp"),
    (lambda e: e.pop(MODDIR + "drivers/md/raid1.ko"), "initramfs lacks the module raid1"),
    (lambda e: e.pop(MODDIR + "drivers/md/dm-multipath.ko"), "initramfs lacks the module dm-multipath"),
    (lambda e: e.pop(MODDIR + "fs/squashfs/squashfs.ko"), "initramfs lacks the module squashfs"),
    (lambda e: e.pop("usr/sbin/cryptsetup"), "initramfs lacks sbin/cryptsetup"),
    (lambda e: e.pop("usr/bin/clevis-decrypt-tang"), "initramfs lacks bin/clevis-decrypt-tang"),
    (lambda e: e.pop("usr/bin/clevis-luks-common-functions"), "initramfs lacks bin/clevis-luks-common-functions"),
    (lambda e: e.pop("usr/bin/bash"), "initramfs lacks bin/bash"),
    (lambda e: e.pop("usr/bin/pwmake"), "initramfs lacks bin/pwmake"),
    (lambda e: e.pop(MODDIR + "drivers/md/dm-crypt.ko"), "initramfs lacks the module dm-crypt"),
    (lambda e: e.pop(MODDIR + "crypto/algif_skcipher.ko"), "initramfs lacks the module algif_skcipher"),
    (lambda e: e.update({"scripts/local-top/cryptroot": b"#!/bin/sh\n"}),
     "initramfs carries scripts/local-top/cryptroot (cryptsetup-initramfs or clevis-initramfs installed?)"),
    (lambda e: e.update({"usr/share/initramfs-tools/scripts/local-top/clevis": b"#!/bin/bash\n"}),
     "initramfs carries usr/share/initramfs-tools/scripts/local-top/clevis"),
    (lambda e: e.update({"scripts/diskless": b"#!/bin/sh\necho no mountroot\n"}),
     "scripts/diskless does not define mountroot()"),
    (lambda e: e.update({"etc/mdadm/mdadm.conf": b"HOMEHOST <system>\n"}), "initramfs mdadm.conf lacks 'AUTO -all'"),
    (lambda e: e.update({"etc/diskless/node.conf": b"DL_NODE='x'"}), "initramfs carries a baked etc/diskless/node.conf"),
    (lambda e: e.update({"etc/initiatorname.iscsi": b"InitiatorName=iqn.1993-08.org.debian:01:abc\n"}),
     "initramfs carries a fixed InitiatorName=iqn.1993-08.org.debian:01:abc"),
])
def test_check_initramfs_problems(mutate, problem):
    entries = dict(GOOD)
    mutate(entries)
    _facts, problems = img.check_initramfs(entries)
    assert any(p.startswith(problem) for p in problems), problems
