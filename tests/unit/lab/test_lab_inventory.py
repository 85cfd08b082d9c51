"""lab/inventory.py and lab/ssh.py without a running lab: the lab inventories, validation (every error at
once), the ssh_config `up` writes. Reads inventories with ansible-inventory (in the project venv)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from lab import inventory, ssh
from lab.paths import DEFAULT_INVENTORY, Paths
from lab.util import LabError


def test_lab_inventory_defines_the_storage_vm() -> None:
    lab = inventory.load_inventory(DEFAULT_INVENTORY)
    assert (lab.netns, lab.bridge, lab.bridge_address) == ("dl-lab", "br0", "10.77.0.1/24")
    sch1 = {vm.name: vm for vm in lab.vms}["sch1"]
    assert (sch1.ip, sch1.prefixlen, sch1.boot, sch1.image) == ("10.77.0.11", 24, "kernel", "storage")
    assert sch1.disks == [16 * 1024 ** 3, 1024 ** 3]
    assert sch1.groups == ["storage"]


def test_lab_inventory_starts_the_storage_vm_and_the_provisioning_container_by_default() -> None:
    """ips1 is a podman container in the lab namespace; compute VMs start only when named."""
    lab = inventory.load_inventory(DEFAULT_INVENTORY)
    assert lab.skipped == {} and "ips1" not in {vm.name for vm in lab.vms}
    assert [(ct.name, ct.ip, ct.container, ct.groups) for ct in lab.containers] == [
        ("ips1", "10.77.0.2", "dl-lab-ips1", ["provisioning"])]
    nodes = {vm.name: vm for vm in lab.vms if "compute" in vm.groups}
    assert sorted(nodes) == ["node001", "node002", "node003", "node004", "node005", "node006"]
    assert all(not vm.start and vm.boot == "network" and not vm.disks for vm in nodes.values())
    assert nodes["node004"].memory_mib > nodes["node001"].memory_mib      # live: the root is in RAM
    assert [vm.name for vm in lab.select([])] == ["sch1", "sch2"]
    assert [ct.name for ct in lab.select_containers([])] == ["ips1"]
    assert [vm.name for vm in lab.select(["node002"])] == ["node002"]
    assert lab.select_containers(["node002"]) == []
    assert lab.select(["ips1"]) == [] and [ct.name for ct in lab.select_containers(["ips1"])] == ["ips1"]
    with pytest.raises(LabError, match="not lab hosts"):
        lab.select(["node009"])


def test_ssh_config_accepts_node_host_keys_once_and_pins_the_image_vms(tmp_path: Path) -> None:
    """Image VMs carry the lab host key (strict); disk-less nodes make theirs at first boot."""
    lab = inventory.load_inventory(DEFAULT_INVENTORY)
    p = Paths(tmp_path / "cache")
    p.ssh.mkdir(parents=True)
    p.host_key.with_suffix(".pub").write_text("ssh-ed25519 AAAA diskless-lab-host\n")
    ssh.write_ssh_client_files(p, lab.vms)
    blocks = {b.split()[1]: b for b in p.ssh_config.read_text().split("\nHost ")[1:] for b in ["Host " + b]}
    assert f"UserKnownHostsFile {p.known_hosts}\n" in blocks["sch1"]
    assert "StrictHostKeyChecking yes" in blocks["sch1"]
    for node in ("node001", "node002"):
        assert f"UserKnownHostsFile {p.ssh / ssh.NODE_KNOWN_HOSTS}\n" in blocks[node]
        assert "StrictHostKeyChecking accept-new" in blocks[node]
    assert [line.split()[0] for line in p.known_hosts.read_text().splitlines()][0] == "node001,10.77.0.101"


def test_container_hosts_are_validated_with_the_vms(lab_errors: Callable[[str], list[str]]) -> None:
    assert lab_errors("""
all:
  vars: {cluster_boot_network: 10.77.0.0/24}
  children:
    provisioning:
      hosts:
        ips1: {ansible_host: 10.77.0.11, lab_kind: container}
        ips2: {ansible_host: 10.78.0.2, lab_kind: container}
        ips3: {ansible_host: 10.77.0.3, lab_kind: jail}
    storage:
      hosts:
        sch1: {ansible_host: 10.77.0.11, lab_image: storage}
""") == [
        "ips1: ansible_host: 10.77.0.11 is also used by sch1",
        "ips2: ansible_host: 10.78.0.2 is not a host address of cluster_boot_network 10.77.0.0/24",
        "ips3: lab_kind: 'jail': must be 'vm', 'container' (a podman systemd container) or 'none'",
    ]


def test_inventory_errors_are_reported_all_at_once(lab_errors: Callable[[str], list[str]]) -> None:
    assert lab_errors("""
all:
  vars: {cluster_boot_network: 10.77.0.0/24}
  children:
    storage:
      hosts:
        sch1: {ansible_host: 10.77.0.11, lab_image: storage, storage_pool_devices: [/dev/vdc], lab_disks: [8G]}
        sch2: {ansible_host: 10.77.0.11, lab_image: storage, lab_memory_mib: 128}
    compute:
      hosts:
        node001: {ansible_host: 10.78.0.101, node_mac: "52:54:00:00:01:01", lab_disks: [8G]}
""") == [
        "node001: ansible_host: 10.78.0.101 is not a host address of cluster_boot_network 10.77.0.0/24",
        "node001: lab_disks: a network-booted (disk-less) lab host has no disks",
        "sch1: storage_pool_devices: /dev/vdc is not a lab disk (lab_disks gives /dev/vdb)",
        "sch2: ansible_host: 10.77.0.11 is also used by sch1",
        "sch2: lab_mac: 52:54:00:4d:00:0b is also used by sch1",
        "sch2: lab_memory_mib: 128: must be an integer >= 512",
    ]


def test_disk_boot_in_the_inventory_needs_an_image_and_a_disk(
        lab_errors: Callable[[str], list[str]]) -> None:
    assert lab_errors("""
all:
  vars: {cluster_boot_network: 10.78.0.0/24, lab_bridge_address: 10.78.0.1/24}
  children:
    storage:
      hosts:
        sab1: {ansible_host: 10.78.0.11, lab_boot: disk}
        sab2: {ansible_host: 10.78.0.12, lab_boot: floppy}
""") == [
        "sab1: lab_disks: lab_boot 'disk' boots the first lab disk: give at least one",
        "sab1: lab_image: required for lab_boot 'disk' (an image recipe in lab/images/)",
        "sab2: lab_boot: 'floppy': must be 'kernel' (image kernel + disk), 'network' (iPXE, no disk) or 'disk' "
        "(BIOS boot from the first lab disk)",
    ]


def test_the_lab_a_b_host_is_sch2() -> None:
    """The A/B update runs in the main lab: sch2 boots the image first, its first lab disk is the A/B disk."""
    lab = inventory.load_inventory(DEFAULT_INVENTORY)
    sch2 = {vm.name: vm for vm in lab.vms}["sch2"]
    assert sch2.boot == "kernel" and sch2.start and sch2.disks == [10 * 1024 ** 3, 16 * 1024 ** 3]
