"""The lab harness itself: the storage VM is a real Debian machine the project's tools can use.

Facts only (timings are reported by conftest, never asserted). Every storage host of the lab
inventory is checked; they all share the session's one lab bring-up.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from typing import Any, Callable

import pytest

from lab.client import INVENTORY, REPO, LabInfo, ansible_json, no_json, record_timing


def test_ansible_reaches_storage_hosts_as_root_on_the_image_kernel(lab: LabInfo) -> None:
    """The lab inventory works unchanged with Ansible from inside the namespace (key, known_hosts)."""
    t0 = time.monotonic()
    proc, data = ansible_json(["ansible", "-i", str(INVENTORY), "storage", "-m", "ansible.builtin.setup",
                               "-a", "gather_subset=!all,!min,platform,distribution,user"])
    record_timing("ansible setup (3 fact subsets) on storage", time.monotonic() - t0)
    assert proc.returncode == 0 and data, no_json("ansible setup", proc)
    results = data["plays"][0]["tasks"][0]["hosts"]
    storage = sorted(h for h, v in lab.hosts.items() if "storage" in v["groups"])
    assert sorted(results) == storage
    for host, res in results.items():
        facts = res["ansible_facts"]
        assert facts["ansible_distribution"] == "Debian"
        assert facts["ansible_distribution_major_version"] == "12"
        assert facts["ansible_user_id"] == "root"
        assert facts["ansible_kernel"] == lab.hosts[host]["kernel_version"], "not the image's own kernel"


def test_vm_identity_comes_from_the_inventory(lab: LabInfo, lab_host: Callable[[str], Any],
                                              storage_host: str) -> None:
    host = lab_host(storage_host)
    hv = lab.hostvars[storage_host]
    prefix = ipaddress.ip_network(hv["cluster_boot_network"]).prefixlen
    assert host.check_output("hostname") == storage_host
    link = json.loads(host.check_output("ip -j addr show dev eth0"))[0]
    inet = {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["family"] == "inet"}
    assert inet == {f"{hv['ansible_host']}/{prefix}"}
    assert link["address"] == lab.hosts[storage_host]["mac"]


def test_debian_kernel_with_lio_configfs(lab: LabInfo, lab_host: Callable[[str], Any],
                                         storage_host: str) -> None:
    host = lab_host(storage_host)
    assert host.check_output("uname -r") == lab.hosts[storage_host]["kernel_version"]
    assert "Debian" in host.file("/proc/version").content_string
    host.run_test("modprobe target_core_mod")
    assert host.file("/sys/kernel/config/target").is_directory
    # the LIO Python API the storage modules use can open the configfs tree
    host.run_test("python3 -c 'import rtslib_fb; print(rtslib_fb.RTSRoot().path)'")


def test_a_hung_tcg_guest_would_panic_and_reset(lab: LabInfo, lab_host: Callable[[str], Any],
                                                storage_host: str) -> None:
    """Under TCG, a guest stuck for 60 s panics (soft lockup detector) and reboots 10 s later (the lab's kernel arguments)."""
    host = lab_host(storage_host)
    sysctl = {k: host.file(f"/proc/sys/kernel/{k}").content_string.strip()
              for k in ("softlockup_panic", "watchdog_thresh", "panic")}
    if lab.accel == "tcg":
        assert sysctl == {"softlockup_panic": "1", "watchdog_thresh": "30", "panic": "10"}
    else:
        assert sysctl["softlockup_panic"] == "0"


def test_zfs_loads_and_creates_a_pool_on_a_scratch_disk(lab: LabInfo, lab_host: Callable[[str], Any],
                                                        storage_host: str) -> None:
    """On a lab disk that is NOT in storage_pool_devices, so it never meets the storage role's pool
    (tests/lab/test_storage_host.py), whatever the test order."""
    host = lab_host(storage_host)
    hv = lab.hostvars[storage_host]
    disks = [f"/dev/vd{chr(ord('b') + i)}" for i in range(len(hv.get("lab_disks", [])))]
    scratch = [d for d in disks if d not in hv.get("storage_pool_devices", []) and d != hv.get("ab_update_disk")]
    if not scratch and hv.get("ab_update_disk"):
        pytest.skip(f"{storage_host}: its lab disks are its pool and its A/B disk (the other storage host has a scratch disk)")
    assert scratch, f"{storage_host}: give it a lab disk outside storage_pool_devices for this test"
    device = scratch[-1]
    pool = "dllabtest"
    t0 = time.monotonic()
    host.run_test("modprobe zfs")
    record_timing(f"{storage_host}: modprobe zfs", time.monotonic() - t0)
    assert host.file("/sys/module/zfs").is_directory
    host.run_test(f"test -b {device}")
    # the disk must be free: nothing of another test or an earlier run on it
    assert host.run(f"zpool status -P {pool}").rc != 0
    try:
        host.run_test(f"zpool create -f {pool} {device}")
        assert host.check_output(f"zpool list -H -o name,health {pool}").split() == [pool, "ONLINE"]
        host.run_test(f"zfs create -s -V 64M {pool}/probe")
        assert host.check_output(f"zfs get -Hp -o value volsize {pool}/probe") == str(64 * 1024 * 1024)
        assert device in host.check_output(f"zpool status -P {pool}")
    finally:
        # leave the disk blank for later lab tests: pool gone, partitions and signatures wiped
        host.run(f"zpool destroy -f {pool}")
        host.run(f"lsblk -nrpo NAME {device} | tac | xargs -r wipefs -q -a && partprobe {device}")
    assert host.run(f"zpool status {pool}").rc != 0
    assert host.check_output(f"lsblk -nrpo NAME {device}") == device
    assert host.check_output(f"wipefs -n {device}") == ""


def test_vm_has_no_route_out(lab: LabInfo, lab_host: Callable[[str], Any], storage_host: str) -> None:
    host = lab_host(storage_host)
    assert host.check_output("ip -4 route show default") == ""
    # a route lookup only: no packet is sent
    assert host.run("ip route get 1.1.1.1").rc != 0
    bridge_ip = lab.hostvars[storage_host]["lab_bridge_address"].split("/")[0]
    host.run_test(f"ping -c 1 -W 5 {bridge_ip}")


def test_lab_namespace_has_no_uplink_and_no_route_out(lab: LabInfo) -> None:
    """This test process runs inside the lab namespace: only lo, the bridge and the VMs' taps."""
    links = json.loads(subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True,
                                      check=True).stdout)
    kinds = {l["ifname"]: l.get("linkinfo", {}).get("info_kind", l.get("link_type")) for l in links}
    # taps of the VMs this session started, and of the disk-less nodes (playbooks/compute.yml powers
    # them on through the lab's `up NODE`; named t-<host>)
    taps = {h["tap"] for h in lab.hosts.values()} | {f"t-{h}" for h in lab.hostvars if len(f"t-{h}") <= 15}
    bridge = lab.hostvars[next(iter(lab.hostvars))]["lab_bridge"]
    assert kinds.pop("lo") == "loopback"
    assert kinds.pop(bridge) == "bridge"
    assert set(kinds) <= taps and set(kinds.values()) <= {"tun"}, kinds
    assert subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True,
                          check=True).stdout == ""
    assert subprocess.run(["ip", "route", "get", "1.1.1.1"], capture_output=True, check=False).returncode != 0
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        assert fh.read().strip() == "0"


def test_lab_playbook_up_is_idempotent(lab: LabInfo) -> None:
    """playbooks/lab.yml against a lab that is up: nothing to do."""
    t0 = time.monotonic()
    proc = subprocess.run(["ansible-playbook", "-i", str(INVENTORY), str(REPO / "playbooks" / "lab.yml"),
                           "-e", "lab_state=up"], capture_output=True, text=True, check=False)
    record_timing("playbooks/lab.yml lab_state=up (already up)", time.monotonic() - t0)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):]
    assert "changed=0" in recap and "failed=0" in recap, recap
