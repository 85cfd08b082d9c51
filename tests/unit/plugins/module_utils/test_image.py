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


LOCAL_TOP = (b"#!/bin/sh\nparse_iscsi_ops ()\n{\n\t[ -r /etc/iscsi.initramfs ] && . /etc/iscsi.initramfs\n}\n")
GOOD = {
    "scripts/local-top/iscsi": LOCAL_TOP,
    "usr/sbin/iscsistart": b"\x7fELF",
    "usr/lib/modules/6.1.0-41-amd64/kernel/drivers/scsi/iscsi_tcp.ko": b"",
    "usr/lib/modules/6.1.0-41-amd64/kernel/drivers/scsi/sd_mod.ko": b"",
    "usr/lib/modules/6.1.0-41-amd64/kernel/drivers/net/virtio_net.ko": b"",
    "usr/lib/modules/6.1.0-41-amd64/kernel/drivers/block/virtio_blk.ko": b"",
    "usr/lib/modules/6.1.0-41-amd64/kernel/fs/ext4/ext4.ko": b"",
    "etc/initiatorname.iscsi": img.INITIATORNAME_PLACEHOLDER.encode(),
}


def rec(**kw):
    args = dict(suite="bookworm", size_bytes=2147483648, label="dlroot", extra_packages=[], authorized_keys=["ssh-ed25519 AAAA k"])
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
    {"suite": "trixie"}, {"size_bytes": 4294967296}, {"label": "other"}, {"extra_packages": ["mdadm"]},
    {"authorized_keys": ["ssh-ed25519 BBBB other"]}, {"variant": "essential"},
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
              "python3", "iproute2", "procps", "chrony", "rsyslog", "kmod", "mdadm"):
        assert p in pkgs
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
    sshd = post["/etc/ssh/sshd_config.d/50-diskless-cluster.conf"][1]
    assert "PasswordAuthentication no" in sshd and "PermitRootLogin prohibit-password" in sshd
    assert "ssh-hostkeys" in post["/etc/systemd/system/ssh.service.d/50-diskless-hostkeys.conf"][1]
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
    assert entries["scripts/local-top/iscsi"] == LOCAL_TOP
    assert img.split_initramfs(b"\x28\xb5\x2f\xfd rest")[2] == "zstd"
    with pytest.raises(ValueError):
        img.split_initramfs(b"BZh9 not supported")


def test_check_initramfs_good():
    facts, problems = img.check_initramfs(GOOD)
    assert problems == []
    assert facts["sources_iscsi_initramfs"] is True
    assert facts["found"]["/iscsi_tcp.ko"].endswith("drivers/scsi/iscsi_tcp.ko")
    assert facts["initiator_name_fallback"] == ""


@pytest.mark.parametrize("mutate, problem", [
    (lambda e: e.pop("usr/sbin/iscsistart"), "initramfs lacks sbin/iscsistart"),
    (lambda e: e.pop("usr/lib/modules/6.1.0-41-amd64/kernel/drivers/scsi/iscsi_tcp.ko"), "initramfs lacks /iscsi_tcp.ko"),
    (lambda e: e.update({"scripts/local-top/iscsi": b"#!/bin/sh\necho no config\n"}),
     "scripts/local-top/iscsi does not source /etc/iscsi.initramfs"),
    (lambda e: e.update({"etc/iscsi.initramfs": b"ISCSI_INITIATOR=x"}), "initramfs carries a baked etc/iscsi.initramfs"),
    (lambda e: e.update({"etc/initiatorname.iscsi": b"InitiatorName=iqn.1993-08.org.debian:01:abc\n"}),
     "initramfs carries a fixed InitiatorName=iqn.1993-08.org.debian:01:abc"),
])
def test_check_initramfs_problems(mutate, problem):
    entries = dict(GOOD)
    mutate(entries)
    _facts, problems = img.check_initramfs(entries)
    assert any(p.startswith(problem) for p in problems), problems
