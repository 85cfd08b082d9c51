"""lab/labctl.py without a running lab: inventory validation, QEMU command lines, image cache keys."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from lab_support import INVENTORY, REPO

_spec = importlib.util.spec_from_file_location("labctl", REPO / "lab" / "labctl.py")
labctl = importlib.util.module_from_spec(_spec)
sys.modules["labctl"] = labctl
_spec.loader.exec_module(labctl)


def write_inventory(tmp_path: Path, text: str) -> Path:
    (tmp_path / "hosts.yml").write_text(text)
    return tmp_path


def test_lab_inventory_defines_the_storage_vm() -> None:
    lab = labctl.load_inventory(INVENTORY)
    assert (lab.netns, lab.bridge, lab.bridge_address) == ("dl-lab", "br0", "10.77.0.1/24")
    sch1 = {vm.name: vm for vm in lab.vms}["sch1"]
    assert (sch1.ip, sch1.prefixlen, sch1.boot, sch1.image) == ("10.77.0.11", 24, "kernel", "storage")
    assert sch1.disks == [16 * 1024 ** 3, 1024 ** 3]
    assert sch1.groups == ["storage"]


def test_lab_inventory_starts_the_storage_vm_and_the_provisioning_container_by_default() -> None:
    """ips1 is a podman container in the lab namespace; compute VMs start only when named."""
    lab = labctl.load_inventory(INVENTORY)
    assert lab.skipped == {} and "ips1" not in {vm.name for vm in lab.vms}
    assert [(ct.name, ct.ip, ct.container, ct.groups) for ct in lab.containers] == [
        ("ips1", "10.77.0.2", "dl-lab-ips1", ["provisioning"])]
    nodes = {vm.name: vm for vm in lab.vms if "compute" in vm.groups}
    assert sorted(nodes) == ["node001", "node002"]
    assert all(not vm.start and vm.boot == "network" and not vm.disks for vm in nodes.values())
    assert [vm.name for vm in lab.select([])] == ["sch1"]
    assert [ct.name for ct in lab.select_containers([])] == ["ips1"]
    assert [vm.name for vm in lab.select(["node002"])] == ["node002"]
    assert lab.select_containers(["node002"]) == []
    assert lab.select(["ips1"]) == [] and [ct.name for ct in lab.select_containers(["ips1"])] == ["ips1"]
    with pytest.raises(labctl.LabError, match="not lab hosts"):
        lab.select(["node009"])


def test_ssh_config_accepts_node_host_keys_once_and_pins_the_image_vms(tmp_path: Path) -> None:
    """Image VMs carry the lab host key (strict); disk-less nodes make theirs at first boot."""
    lab = labctl.load_inventory(INVENTORY)
    p = labctl.Paths(tmp_path / "cache")
    p.ssh.mkdir(parents=True)
    p.host_key.with_suffix(".pub").write_text("ssh-ed25519 AAAA diskless-lab-host\n")
    labctl.write_ssh_client_files(p, lab.vms)
    blocks = {b.split()[1]: b for b in p.ssh_config.read_text().split("\nHost ")[1:] for b in ["Host " + b]}
    assert f"UserKnownHostsFile {p.known_hosts}\n" in blocks["sch1"]
    assert "StrictHostKeyChecking yes" in blocks["sch1"]
    for node in ("node001", "node002"):
        assert f"UserKnownHostsFile {p.ssh / labctl.NODE_KNOWN_HOSTS}\n" in blocks[node]
        assert "StrictHostKeyChecking accept-new" in blocks[node]
    assert [line.split()[0] for line in p.known_hosts.read_text().splitlines()][0] == "node001,10.77.0.101"


def test_container_hosts_are_validated_with_the_vms(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, """
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
""")
    with pytest.raises(labctl.LabError) as exc:
        labctl.load_inventory(inv)
    lines = [line.strip() for line in str(exc.value).splitlines()[1:]]
    assert lines == [
        "ips1: ansible_host: 10.77.0.11 is also used by sch1",
        "ips2: ansible_host: 10.78.0.2 is not a host address of cluster_boot_network 10.77.0.0/24",
        "ips3: lab_kind: 'jail': must be 'vm', 'container' (a podman systemd container) or 'none'",
    ]


def test_inventory_errors_are_reported_all_at_once(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, """
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
""")
    with pytest.raises(labctl.LabError) as exc:
        labctl.load_inventory(inv)
    lines = [line.strip() for line in str(exc.value).splitlines()[1:]]
    assert lines == [
        "node001: ansible_host: 10.78.0.101 is not a host address of cluster_boot_network 10.77.0.0/24",
        "node001: lab_disks: a network-booted (disk-less) lab host has no disks",
        "sch1: storage_pool_devices: /dev/vdc is not a lab disk (lab_disks gives /dev/vdb)",
        "sch2: ansible_host: 10.77.0.11 is also used by sch1",
        "sch2: lab_mac: 52:54:00:4d:00:0b is also used by sch1",
        "sch2: lab_memory_mib: 128: must be an integer >= 512",
    ]


def test_qemu_command_lines(tmp_path: Path) -> None:
    inv = write_inventory(tmp_path, """
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
    lab = labctl.load_inventory(inv)
    vms = {vm.name: vm for vm in lab.vms}
    p = labctl.Paths(tmp_path / "cache")
    image = labctl.Image("storage", tmp_path / "img", {})
    argv = labctl.qemu_argv(p, lab, vms["sch1"], image, "tcg")
    joined = " ".join(argv)
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi,tb-size=512"
    assert argv[argv.index("-cpu") + 1] == "qemu64"
    assert argv[argv.index("-kernel") + 1] == str(image.kernel)
    append = argv[argv.index("-append") + 1].split()
    assert "ip=10.77.0.11:::255.255.255.0:sch1:eth0:off" in append
    assert "systemd.hostname=sch1" in append and "root=/dev/vda" in append
    # under TCG a hung guest panics and resets (soft lockup detector) instead of hanging for good
    assert {"softlockup_panic=1", "panic=10"} <= set(append)
    assert joined.count("if=virtio") == 3  # root overlay + two pool disks
    assert "root.qcow2" in joined and "disk1.raw" in joined and "disk2.raw" in joined
    assert "mac=52:54:00:4d:00:0b" in joined and "ifname=t-sch1" in joined
    node = labctl.qemu_argv(p, lab, vms["node001"], None, "tcg")
    assert vms["node001"].boot == "network" and vms["node001"].memory_mib == 512
    assert node[node.index("-boot") + 1] == "n"
    assert "-kernel" not in node and "-drive" not in node
    assert "mac=52:54:00:00:01:01" in " ".join(node)
    assert node[node.index("-accel") + 1] == "tcg,thread=multi,tb-size=128"
    kvm = labctl.qemu_argv(p, lab, vms["sch1"], image, "kvm")
    assert kvm[kvm.index("-accel") + 1] == "kvm"
    assert "softlockup_panic=1" not in kvm[kvm.index("-append") + 1]


def test_image_cache_key_follows_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "images"
    shutil.copytree(REPO / "lab" / "images", src)
    monkeypatch.setattr(labctl, "IMAGES_SRC", src)
    monkeypatch.setattr(labctl, "REPO", tmp_path)
    p = labctl.Paths(tmp_path / "cache")
    p.ssh.mkdir(parents=True)
    for key in (p.ssh_key, p.host_key):
        key.write_text("private\n")
        key.with_suffix(".pub").write_text(f"ssh-ed25519 AAAA {key.name}\n")

    def key() -> str:
        return labctl.Recipe.load("storage").cache_key(p)

    first = key()
    assert key() == first
    hook = src / "hooks" / "vm-base.sh"
    hook.write_text(hook.read_text() + "\n# changed\n")
    second = key()
    assert second != first
    p.ssh_key.with_suffix(".pub").write_text("ssh-ed25519 BBBB other\n")
    assert key() not in (first, second)
    assert labctl.image_dir(p, labctl.Recipe.load("storage")).name.startswith("storage-")
