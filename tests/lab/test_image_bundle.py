"""The compute-node image bundle (docs/images.md), checked on the real artefacts.

Needs a built bundle: $DL_IMAGE_BUNDLE (a bundle directory) or the newest $DL_CACHE/bundles/<name>/<version>/.
Build one (3-5 min, once; cached by recipe hash) with:
    ansible-playbook -i inventories/lab playbooks/images.yml -e image_builder_output_dir=$DL_CACHE/bundles \
        -e image_builder_manage_packages=false
or let this module build it with DL_IMAGE_BUILD=1. Without a bundle every test here skips.

The boot test needs no lab and no network: QEMU TCG boots vmlinuz + initrd.img with a qcow2 overlay of
root.img as a local virtio disk (`-nic none`) and waits for systemd's multi-user target on the serial console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import image as img

from lab.client import record_timing

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DL_CACHE") or Path.home() / ".cache/diskless-cluster")
BOOT_TIMEOUT = int(os.environ.get("DL_IMAGE_BOOT_TIMEOUT", "420"))


def _find_bundle() -> Path | None:
    if os.environ.get("DL_IMAGE_BUNDLE"):
        return Path(os.environ["DL_IMAGE_BUNDLE"])
    found = sorted((CACHE / "bundles").glob("*/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def bundle() -> Path:
    path = _find_bundle()
    if path is None and os.environ.get("DL_IMAGE_BUILD") == "1":
        t0 = time.monotonic()
        key = CACHE / "lab/ssh/id_ed25519.pub"
        extra = ["-e", json.dumps({"image_builder_authorized_keys": [key.read_text().strip()]})] if key.exists() else []
        subprocess.run(["ansible-playbook", "-i", str(ROOT / "inventories/lab"), str(ROOT / "playbooks/images.yml"),
                        "-e", "image_builder_output_dir=%s" % (CACHE / "bundles"),
                        "-e", "image_builder_manage_packages=false"] + extra, check=True, cwd=ROOT)
        record_timing("image bundle build", time.monotonic() - t0)
        path = _find_bundle()
    if path is None or not (path / "manifest.json").exists():
        pytest.skip("no image bundle under %s/bundles (build it: see this module's docstring, or DL_IMAGE_BUILD=1)" % CACHE)
    return path


@pytest.fixture(scope="module")
def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


@pytest.fixture(scope="module")
def initramfs(bundle: Path, tmp_path_factory) -> dict:
    head, tail, kind = img.split_initramfs((bundle / "initrd.img").read_bytes())
    if kind == "zstd":
        tail = subprocess.run(["zstd", "-q", "-d", "-c"], input=tail, stdout=subprocess.PIPE, check=True).stdout
    elif kind == "gzip":
        tail = img.gunzip(tail)
    entries = img.list_cpio(head)
    entries.update(img.list_cpio(tail or b""))
    return entries


def test_bundle_layout_and_checksums(bundle: Path, manifest: dict) -> None:
    assert sorted(p.name for p in bundle.iterdir()) == [
        "SHA256SUMS", "initrd.img", "manifest.json", "packages.txt", "root.img", "root.squashfs", "vmlinuz"]
    assert (bundle / "root.squashfs").read_bytes()[:4] == b"hsqs"
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle, check=False).returncode == 0
    assert manifest["name"] == bundle.parent.name and manifest["version"] == bundle.name
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["recipe_hash"])
    root = bundle / "root.img"
    st = root.stat()
    assert st.st_size == manifest["size_bytes"] == manifest["files"]["root.img"]["size"]
    assert st.st_blocks * 512 < st.st_size, "root.img is not sparse"
    pkgs = dict(line.split(" ", 1) for line in (bundle / "packages.txt").read_text().splitlines())
    for p in ("linux-image-amd64", "systemd-sysv", "udev", "initramfs-tools", "open-iscsi", "openssh-server",
              "python3", "iproute2", "procps", "chrony", "rsyslog", "kmod", "dbus", "mdadm", "multipath-tools",
              "dmsetup", "busybox"):
        assert p in pkgs
    for p in ("ifupdown", "ifupdown2", "network-manager", "netplan.io", "isc-dhcp-client"):
        assert p not in pkgs
    print("\nbundle %s: kernel %s, root.img %d bytes apparent / %d used, initrd %d bytes, vmlinuz %d bytes" % (
        bundle, manifest["kernel_version"], st.st_size, st.st_blocks * 512,
        (bundle / "initrd.img").stat().st_size, (bundle / "vmlinuz").stat().st_size))


def test_initramfs_has_the_diskless_boot_path(initramfs: dict) -> None:
    names = list(initramfs)
    script = initramfs["scripts/diskless"].decode()
    assert "mountroot()" in script and "/etc/diskless/node.conf" in script
    for tool in ("sbin/iscsistart", "sbin/mdadm", "sbin/dmsetup", "sbin/mkfs.ext4", "bin/busybox", "bin/wget"):
        assert any(n == tool or n.endswith("/" + tool) for n in names), tool
    assert "AUTO -all" in initramfs["etc/mdadm/mdadm.conf"].decode()
    assert not any(n.endswith("64-md-raid-assembly.rules") for n in names)
    assert "etc/diskless/node.conf" not in names, "a per-node file must come from iPXE, never from the image"
    iname = initramfs["etc/initiatorname.iscsi"].decode()
    assert re.search(r"^InitiatorName=$", iname, re.M), iname
    facts, problems = img.check_initramfs(initramfs)
    assert problems == [], problems
    for mod in ("virtio_net.ko", "virtio_blk.ko", "sd_mod.ko", "e1000.ko", "e1000e.ko", "igb.ko"):
        assert any(n.endswith("/" + mod) for n in names), mod


def _debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=True).stdout


def test_root_image_identity_and_network(bundle: Path, manifest: dict) -> None:
    if not shutil.which("debugfs"):
        pytest.skip("debugfs (e2fsprogs) not installed")
    root = bundle / "root.img"
    stats = _debugfs(root, "stats")
    blocks = int(re.search(r"^Block count:\s+(\d+)", stats, re.M).group(1))
    bsize = int(re.search(r"^Block size:\s+(\d+)", stats, re.M).group(1))
    assert blocks * bsize == manifest["size_bytes"] - img.MD_TAIL_BYTES, "the fs must leave the md tail free"
    fstab = _debugfs(root, "cat /etc/fstab")
    assert "LABEL=%s / ext4 defaults,noatime 0 1" % manifest["label"] in fstab
    etc = _debugfs(root, "ls -l /etc")
    assert not re.search(r"\shostname\s*$", etc, re.M), "image carries /etc/hostname"
    assert "ssh_host_" not in _debugfs(root, "ls /etc/ssh")
    mid = _debugfs(root, "stat /etc/machine-id")
    assert "Type: regular" in mid and re.search(r"\bSize: 0\b", mid), "machine-id not empty: " + mid
    masked = _debugfs(root, "stat /etc/systemd/system/systemd-networkd.service")
    assert 'Fast link dest: "/dev/null"' in masked
    assert "InitiatorName=\n" in _debugfs(root, "cat /etc/iscsi/initiatorname.iscsi")
    assert "id_ed25519" not in _debugfs(root, "ls /root/.ssh") and "authorized_keys" in _debugfs(root, "ls /root/.ssh")
    # dpkg path-exclude leaves the (empty) directories of the excluded module trees
    kernel = "/usr/lib/modules/%s/kernel" % manifest["kernel_version"]
    assert "iscsi_tcp.ko" in _debugfs(root, "ls %s/drivers/scsi" % kernel)
    for tree in ("sound", "drivers/media", "drivers/net/wireless"):
        names = set(re.findall(r"\(\d+\) (\S+)", _debugfs(root, "ls %s/%s" % (kernel, tree)))) - {".", ".."}
        assert not names, "module excludes not applied in %s: %s" % (tree, sorted(names))


@pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="no qemu-system-x86_64")
def test_boots_from_a_local_virtio_disk(bundle: Path, manifest: dict, tmp_path: Path) -> None:
    overlay = tmp_path / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(bundle / "root.img"),
                    str(overlay)], check=True)
    log = tmp_path / "serial.log"
    argv = ["timeout", str(BOOT_TIMEOUT + 30), "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "qemu64",
            "-m", "512", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(bundle / "vmlinuz"), "-initrd", str(bundle / "initrd.img"),
            "-append", "root=LABEL=%s ro console=ttyS0 panic=-1 diskless.node=imagetest" % manifest["label"],
            "-drive", "file=%s,if=virtio,format=qcow2" % overlay,
            "-nic", "none", "-serial", "file:%s" % log]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    text = ""
    try:
        while time.monotonic() - t0 < BOOT_TIMEOUT and proc.poll() is None:
            text = log.read_text(errors="replace") if log.exists() else ""
            if re.search(r"Reached target .*Multi-User System|login: ", text):
                break
            time.sleep(1)
        elapsed = time.monotonic() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = log.read_text(errors="replace") if log.exists() else ""
    (CACHE / "bundles").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log, CACHE / "bundles" / "last-local-boot.log")
    assert re.search(r"Reached target .*Multi-User System|login: ", text), (
        "no multi-user target within %d s; serial log tail:\n%s" % (BOOT_TIMEOUT, "\n".join(text.splitlines()[-40:])))
    record_timing("image bundle: local virtio boot to multi-user (TCG)", elapsed)
    print("\nlocal boot to multi-user: %.1f s" % elapsed)
    assert "Kernel panic" not in text
    assert not re.search(r"Failed to start .*(ssh|diskless)", text), "a unit of ours failed:\n" + text[-3000:]
