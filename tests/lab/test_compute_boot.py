"""Disk-less compute nodes boot from their own iSCSI root, end to end, from the lab inventory.

`playbooks/site.yml` (images, the provisioning container, the storage VM, the compute nodes powered on
by `cluster_power_on_command` = the lab's `up <node>`) has been applied (the `converged` fixture: `hack/lab.sh
up` applies it; the fixture does when the nodes do not run), and is applied once more: that re-run must change
nothing and leave the nodes' iSCSI sessions alone. The facts are read from inside the booted nodes
(testinfra over SSH, and the collection's own `node_facts` module) and on the storage VM (rtslib). The nodes
stay up.

Facts only; timings are recorded (terminal summary), never asserted.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from typing import Any, Callable

import pytest

from lab.client import (INVENTORY, REPO, LabInfo, ansible_json, labctl, no_json, record_timing,
                        run_site, wait_ssh)

STORAGE = "sch1"
BOOT_TIMEOUT = 900


# ------------------------------------------------------------------------------------------ helpers
def ssh(lab: LabInfo, host: str, script: str, timeout: float = 300, check: bool = True) -> str:
    proc = subprocess.run(["ssh", "-F", str(lab.ssh_config), host, "sh -euc " + _q(script)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f"on {host} (rc {proc.returncode}):\n{script}\n{proc.stdout[-2000:]}\n" \
                                     f"{proc.stderr[-2000:]}"
    return proc.stdout


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def wait_for_ssh(lab: LabInfo, host: str, timeout: float = BOOT_TIMEOUT) -> float:
    return wait_ssh(lab.ssh_config, host, timeout)


SESSIONS_SH = ("for s in /sys/class/iscsi_session/session*; do [ -e $s ] || continue; "
               "echo \"$(basename $s) $(cat $s/state) $(cat $s/targetname) $(cat $s/initiatorname)\"; done; "
               "for m in /sys/block/md*/md/dev-*; do [ -e $m ] || continue; echo \"md ${m##*/dev-} $(cat $m/state)\"; done; "
               "echo boot_id $(cat /proc/sys/kernel/random/boot_id)")


def node_sessions(lab: LabInfo, node: str) -> dict[str, Any]:
    lines = ssh(lab, node, SESSIONS_SH).splitlines()
    return {"sessions": sorted(line for line in lines if line.startswith("session")),
            "md": sorted(line for line in lines if line.startswith("md ")),
            "boot_id": next(line.split()[1] for line in lines if line.startswith("boot_id"))}


LIO_SESSIONS_PY = r"""
import json
from rtslib_fb import RTSRoot
out = []
for t in RTSRoot().targets:
    for tpg in t.tpgs:
        for acl in tpg.node_acls:
            s = acl.session
            if s:
                out.append({"target": t.wwn, "initiator": acl.node_wwn, "state": s["state"],
                            "addresses": sorted(c["address"] for c in s["connections"])})
print(json.dumps(out))
"""


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def cluster(lab: LabInfo, converged: None, nodes: list[str]) -> dict[str, Any]:
    """The converged lab, site.yml applied again: the re-run's changes and the nodes' sessions around it."""
    before = {n: node_sessions(lab, n) for n in nodes}
    rerun = run_site(lab.inventory, "re-run (idempotent)", key="site_rerun")
    after = {n: node_sessions(lab, n) for n in nodes}
    return {"rerun": rerun, "before": before, "after": after}


@pytest.fixture(scope="module")
def host(lab_host: Callable[[str], Any]) -> Callable[[str], Any]:
    return lab_host


# ------------------------------------------------------------------------------------------ tests
def test_site_rerun_changes_nothing_and_keeps_the_iscsi_sessions(cluster: dict[str, Any], nodes: list[str]) -> None:
    rerun = cluster["rerun"]
    assert rerun["changed"] == [], rerun["changed"]
    assert all(s["changed"] == 0 and s["failures"] == 0 and s["unreachable"] == 0
               for s in rerun["stats"].values()), rerun["stats"]
    assert set(nodes) <= set(rerun["stats"]), "site.yml did not reach every node"
    for node in nodes:
        before, after = cluster["before"][node], cluster["after"][node]
        assert before["boot_id"] == after["boot_id"], f"{node} rebooted during the re-run"
        assert before["sessions"] == after["sessions"], (node, before, after)
        assert before["md"] == after["md"], (node, before, after)             # no md member dropped
        assert all(line.split()[1] == "LOGGED_IN" for line in after["sessions"]), after
        assert all("in_sync" in line.split()[2] for line in after["md"]), after


def test_node_vm_has_no_disk_device(converged: None, lab: LabInfo, host: Callable[[str], Any],
                                    nodes: list[str], slices: dict[str, Any]) -> None:
    run_dir = lab.ssh_config.parent.parent / "run" / "vms"
    for node in nodes:
        argv = json.loads((run_dir / node / "vm.json").read_text())["argv"]
        assert not {"-drive", "-hda", "-cdrom", "-blockdev"} & set(argv), argv       # QEMU has no disk
        assert argv[argv.index("-boot") + 1] == "n"
        # inside: every block device that is a disk hangs off an iSCSI session; md, dm-multipath and dm-crypt
        # devices (mirror, image, LUKS over either) are built only from such disks, through one another
        out = host(node).check_output(
            "for d in /sys/block/*; do n=${d##*/}; case $n in loop*|ram*|zram*|sr*) continue;; esac; "
            "if [ -e $d/device ]; then echo \"disk $n $(readlink -f $d/device)\"; "
            "else echo \"virtual $n $(ls $d/slaves | tr '\\n' ' ')\"; fi; done").splitlines()
        disks = {line.split()[1]: line.split(" ", 2)[2] for line in out if line.startswith("disk ")}
        virtual = {line.split()[1]: line.split()[2:] for line in out if line.startswith("virtual ")}
        assert disks or slices[node]["root"] == "live", f"{node}: no block device at all"  # live: RAM only
        assert all("/session" in path for path in disks.values()), disks
        assert not any(name.startswith(("vd", "hd", "nvme")) for name in disks), disks

        def leaves(name: str, seen: tuple[str, ...] = ()) -> set[str]:
            if name in disks:
                return {name}
            assert name in virtual and name not in seen and virtual[name], (node, name, virtual, disks)
            return set().union(*(leaves(s, seen + (name,)) for s in virtual[name]))
        assert all(leaves(name) <= set(disks) for name in virtual), (virtual, disks)


def test_root_is_the_nodes_own_iscsi_lun(converged: None, lab: LabInfo, slices: dict[str, Any],
                                         nodes: list[str]) -> None:
    proc, data = ansible_json(["ansible", "-i", str(INVENTORY), "compute", "-m", "diskless.cluster.node_facts"])
    assert proc.returncode == 0 and data, no_json("node_facts", proc)
    facts = {h: r["ansible_facts"]["diskless_node"] for h, r in data["plays"][0]["tasks"][0]["hosts"].items()}
    lio = json.loads(ssh(lab, STORAGE, f"python3 -c {_q(LIO_SESSIONS_PY)}"))
    for node in [n for n in nodes if slices[n]["root"] == "iscsi"]:     # the other modes: tests/lab/test_root_modes.py
        want = slices[node]
        root = facts[node]["root"]
        assert root["on_iscsi"] and root["fstype"] == "ext4", root
        assert facts[node]["local_disks"] == []
        [disk] = root["disks"]
        path = want["paths"][0]
        assert (disk["iscsi"]["target"], disk["iscsi"]["initiator"], disk["iscsi"]["portal"], disk["iscsi"]["state"]) \
            == (path["target_iqn"], want["initiator_iqn"], path["portal"], "LOGGED_IN"), disk
        # the storage side agrees: this node's ACL holds the one session of its target, from its address
        mine = [s for s in lio if s["target"] == path["target_iqn"]]
        assert mine == [{"target": path["target_iqn"], "initiator": want["initiator_iqn"], "state": "LOGGED_IN",
                         "addresses": [want["ip"]]}], lio


def test_a_file_survives_the_nodes_reboot_and_stays_private(converged: None, lab: LabInfo,
                                                            nodes: list[str], slices: dict[str, Any]) -> None:
    a = next(n for n in nodes if slices[n]["root"] == "iscsi" and not slices[n]["luks"])   # the plain one
    b = next(n for n in nodes if slices[n]["root"] == "mirror")
    token = secrets.token_hex(16)
    path = f"/var/lib/dl-test-{token}"
    boot_before = ssh(lab, a, f"echo {token} > {path}; sync; cat /proc/sys/kernel/random/boot_id").strip()
    assert ssh(lab, b, f"test -e {path} && echo visible || echo absent").strip() == "absent"
    # power cycle (as hard as a power cut: the data was synced, nothing else was shut down)
    labctl("down", a)
    t0 = time.monotonic()
    labctl("up", a)
    wait_for_ssh(lab, a)
    record_timing(f"{a}: power-on to SSH (iSCSI root, reboot)", time.monotonic() - t0, key="boot_iscsi", node=a)
    out = ssh(lab, a, f"cat {path}; cat /proc/sys/kernel/random/boot_id").split()
    assert out[0] == token, out
    assert out[1] != boot_before, "the node did not reboot"
    assert ssh(lab, b, f"test -e {path} && echo visible || echo absent").strip() == "absent"
    # it is back on its own iSCSI root (not on something else that happens to carry the label)
    sessions = node_sessions(lab, a)["sessions"]
    assert len(sessions) == 1 and sessions[0].split()[1] == "LOGGED_IN", sessions


def test_verify_reports_every_node_with_its_mode_and_paths(converged: None, nodes: list[str],
                                                           slices: dict[str, Any]) -> None:
    proc, data = ansible_json(["ansible-playbook", "-i", str(INVENTORY), str(REPO / "playbooks" / "verify.yml")])
    assert proc.returncode == 0 and data, no_json("verify.yml", proc)
    msgs = {h: r.get("msg", "") for play in data["plays"] for t in play["tasks"] for h, r in t["hosts"].items()
            if t["task"]["name"].startswith("The root is the planned mode")}
    assert sorted(msgs) == nodes
    for node, msg in msgs.items():
        mode = slices[node]["root"]
        assert f"{node}: / is {mode} (" in msg, msg
        for path in slices[node]["paths"]:
            assert f"{path['portal']} ok" in msg, msg                  # every path reported, and healthy
        if mode == "mirror":
            assert "bitmap" in msg and "idle" in msg, msg
        assert ("+ luks dlcrypt over " in msg) == slices[node]["luks"], msg
