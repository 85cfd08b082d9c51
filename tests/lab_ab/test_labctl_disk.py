"""labctl's additions for the A/B lab, without a lab: `lab_boot: disk` (BIOS boot from the first lab disk,
device names as in kernel boot, watchdog) and the `restart` command line. Runs anywhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("labctl_ab", REPO / "lab" / "labctl.py")
labctl = importlib.util.module_from_spec(_spec)
sys.modules["labctl_ab"] = labctl
_spec.loader.exec_module(labctl)


def write_inventory(tmp_path: Path, text: str) -> Path:
    inv = tmp_path / "hosts.yml"
    inv.write_text(text)
    return inv


def test_disk_boot_keeps_device_names_and_boots_the_first_lab_disk(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, """
all:
  vars: {cluster_boot_network: 10.78.0.0/24, lab_bridge_address: 10.78.0.1/24}
  children:
    storage:
      hosts:
        sab1: {ansible_host: 10.78.0.11, lab_image: storage, lab_disks: [10G, 8G]}
""")
    lab = labctl.load_inventory(inv)
    vm = lab.vms[0]
    p = labctl.Paths(tmp_path / "cache")
    image = labctl.Image("storage", tmp_path / "img", {})
    kernel = labctl.qemu_argv(p, lab, vm, image, "tcg")
    disk = labctl.qemu_argv(p, lab, labctl.dataclasses.replace(vm, boot="disk"), image, "tcg")
    assert "-kernel" in kernel and "-kernel" not in disk and "-append" not in disk
    blk = [a for a in disk if a.startswith("virtio-blk-pci")]
    assert blk == ["virtio-blk-pci,drive=vd0", "virtio-blk-pci,drive=vd1,bootindex=1", "virtio-blk-pci,drive=vd2"]
    drives = [a.split(",")[0] for a in disk if a.startswith("file=")]
    assert [Path(d).name for d in drives] == ["root.qcow2", "disk1.raw", "disk2.raw"]  # vda, vdb, vdc as before
    assert disk[disk.index("-action") + 1] == "watchdog=reset" and "i6300esb" in disk
    assert "i6300esb" not in kernel


def test_disk_boot_in_the_inventory_needs_an_image_and_a_disk(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, """
all:
  vars: {cluster_boot_network: 10.78.0.0/24, lab_bridge_address: 10.78.0.1/24}
  children:
    storage:
      hosts:
        sab1: {ansible_host: 10.78.0.11, lab_boot: disk}
        sab2: {ansible_host: 10.78.0.12, lab_boot: floppy}
""")
    with pytest.raises(labctl.LabError) as exc:
        labctl.load_inventory(inv)
    lines = [line.strip() for line in str(exc.value).splitlines()[1:]]
    assert lines == [
        "sab1: lab_disks: lab_boot 'disk' boots the first lab disk: give at least one",
        "sab1: lab_image: required for lab_boot 'disk' (an image recipe in lab/images/)",
        "sab2: lab_boot: 'floppy': must be 'kernel' (image kernel + disk), 'network' (iPXE, no disk) or 'disk' "
        "(BIOS boot from the first lab disk)",
    ]


def test_the_lab_ab_inventory(tmp_path: Path) -> None:
    lab = labctl.load_inventory(REPO / "inventories" / "lab-ab")
    assert (lab.netns, lab.bridge_address) == ("dl-ab", "10.78.0.1/24")
    vms = {vm.name: vm for vm in lab.vms}
    assert sorted(vms) == ["node001", "sab1"] and "ipsab1" not in vms   # lab_kind: none
    assert vms["sab1"].boot == "kernel" and vms["sab1"].start and len(vms["sab1"].disks) == 2
    assert not vms["node001"].start


def test_restart_command_line() -> None:
    with pytest.raises(SystemExit):
        labctl.main(["restart"])               # a host is required
    with pytest.raises(SystemExit):
        labctl.main(["restart", "sab1", "--boot", "network"])   # restart keeps disks: not network
