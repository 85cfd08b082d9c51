"""lab/vm.py without a running lab: the QEMU command lines of every boot mode (kernel, network, disk)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from lab import vm as labvm
from lab.images import Image
from lab.inventory import Lab
from lab.paths import Paths


def test_qemu_command_lines(tmp_path: Path, lab_of: Callable[[str], Lab]) -> None:
    lab = lab_of("""
all:
  vars: {cluster_boot_network: 10.77.0.0/24}
  children:
    storage:
      hosts:
        sch1: {ansible_host: 10.77.0.11, lab_image: storage, lab_memory_mib: 2048, lab_disks: [16G, 1G]}
    compute:
      hosts:
        node001: {ansible_host: 10.77.0.101, node_mac: "52:54:00:00:01:01"}
""")
    vms = {vm.name: vm for vm in lab.vms}
    p = Paths(tmp_path / "cache")
    image = Image("storage", tmp_path / "img", {})
    argv = labvm.qemu_argv(p, lab, vms["sch1"], image, "tcg")
    joined = " ".join(argv)
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi,tb-size=512"
    assert argv[argv.index("-cpu") + 1] == "qemu64,+aes,+pclmulqdq,+ssse3,+sse4.1,+sse4.2,+popcnt"
    assert argv[argv.index("-kernel") + 1] == str(image.kernel)
    append = argv[argv.index("-append") + 1].split()
    assert "ip=10.77.0.11:::255.255.255.0:sch1:eth0:off" in append
    assert "systemd.hostname=sch1" in append and "root=/dev/vda" in append
    # under TCG a hung guest panics and resets (soft lockup detector) instead of hanging for good
    assert {"softlockup_panic=1", "panic=10"} <= set(append)
    assert joined.count("if=virtio") == 3  # root overlay + two pool disks
    assert "root.qcow2" in joined and "disk1.raw" in joined and "disk2.raw" in joined
    assert "mac=52:54:00:4d:00:0b" in joined and "ifname=t-sch1" in joined
    node = labvm.qemu_argv(p, lab, vms["node001"], None, "tcg")
    assert vms["node001"].boot == "network" and vms["node001"].memory_mib == 512
    assert node[node.index("-boot") + 1] == "n"
    assert "-kernel" not in node and "-drive" not in node
    assert "mac=52:54:00:00:01:01" in " ".join(node)
    assert node[node.index("-accel") + 1] == "tcg,thread=multi,tb-size=128"
    kvm = labvm.qemu_argv(p, lab, vms["sch1"], image, "kvm")
    assert kvm[kvm.index("-accel") + 1] == "kvm"
    assert "softlockup_panic=1" not in kvm[kvm.index("-append") + 1]


def test_disk_boot_keeps_device_names_and_boots_the_first_lab_disk(tmp_path: Path,
                                                                   lab_of: Callable[[str], Lab]) -> None:
    lab = lab_of("""
all:
  vars: {cluster_boot_network: 10.78.0.0/24, lab_bridge_address: 10.78.0.1/24}
  children:
    storage:
      hosts:
        sab1: {ansible_host: 10.78.0.11, lab_image: storage, lab_disks: [10G, 8G]}
""")
    vm = lab.vms[0]
    p = Paths(tmp_path / "cache")
    image = Image("storage", tmp_path / "img", {})
    kernel = labvm.qemu_argv(p, lab, vm, image, "tcg")
    disk = labvm.qemu_argv(p, lab, dataclasses.replace(vm, boot="disk"), image, "tcg")
    assert "-kernel" in kernel and "-kernel" not in disk and "-append" not in disk
    blk = [a for a in disk if a.startswith("virtio-blk-pci")]
    assert blk == ["virtio-blk-pci,drive=vd0", "virtio-blk-pci,drive=vd1,bootindex=1", "virtio-blk-pci,drive=vd2"]
    drives = [a.split(",")[0] for a in disk if a.startswith("file=")]
    assert [Path(d).name for d in drives] == ["root.qcow2", "disk1.raw", "disk2.raw"]  # vda, vdb, vdc as before
    assert disk[disk.index("-action") + 1] == "watchdog=reset" and "i6300esb" in disk
    assert "i6300esb" not in kernel
