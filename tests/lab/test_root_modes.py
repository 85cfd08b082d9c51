"""Every root mode boots in the lab, and a node outlives the death of a storage host.

The lab inventory has one node per root mode (`iscsi` on sch1 only, `mirror` over sch1 + sch2, `image`
multipath over both, `live` from HTTP into RAM) and two storage hosts. The facts are read inside the nodes
(sysfs, dmsetup, fio) and on the storage hosts (zfs). The fault tests (`destructive`: they kill storage
hosts the other tests share, so they run last) kill a storage host with QEMU `quit` (no shutdown) while fio
writes with verification on the mirror node and reads on the image node, keep it away, start it again on its
own disks, and watch the nodes heal with no Ansible run. Figures (stalls, resync) are recorded, never
asserted; bench/root_modes.py prints them side by side.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from lab.client import LabInfo, console_text, labctl, record_timing, ssh_answers, wait_until as wait_for
from lab.client import wait_ssh as _wait_ssh
from lab.faults import (device_sha256, disks_by_portal, io_errors, mark_kernel_log, md_state, multipath_device,
                        multipath_paths, root_options, ssh, start_fio, wait_fio)

BOOT_TIMEOUT = 900
HEAL_TIMEOUT = 600
SINGLE_LUN_AWAY_S = 180     # well past open-iscsi's default 120 s replacement_timeout
HTTP_ROOT = "/srv/diskless/http"  # provisioning_host_http_root (the role's default; the lab keeps it)


# ------------------------------------------------------------------------------------------ helpers
def node_of(slices: dict[str, Any], mode: str) -> str:
    found = sorted(h for h, s in slices.items() if s.get("role") == "compute" and s.get("root") == mode)
    assert found, f"the lab inventory has no node with root mode {mode!r}"
    return found[0]


def portals(slices: dict[str, Any], node: str) -> dict[str, str]:
    """storage host -> portal IP of a node's paths."""
    return {p["storage_host"]: p["portal"] for p in slices[node]["paths"]}


def wait_ssh(lab: LabInfo, host: str, timeout: float = BOOT_TIMEOUT) -> float:
    return _wait_ssh(lab.ssh_config, host, timeout)


def md_healthy(lab: LabInfo, node: str) -> bool:
    md = md_state(lab.ssh_config, node)
    return (md.get("degraded") == "0" and md.get("action") == "idle" and len(md["members"]) == 2
            and all("in_sync" in s.split(",") for s in md["members"].values()))


def mp_healthy(lab: LabInfo, node: str, want: int) -> bool:
    paths = multipath_paths(lab.ssh_config, node)
    return len(paths) == want and set(paths.values()) == {"A"}


# ------------------------------------------------------------------------------------------ each mode
def test_mirror_root_is_md_raid1_over_both_storage_hosts(converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    node = node_of(slices, "mirror")
    hosts = portals(slices, node)
    assert len(set(hosts)) == 2, hosts
    md = md_state(lab.ssh_config, node)
    assert md_healthy(lab, node), md
    assert md["bitmap"] not in ("none", ""), md          # write-intent bitmap: a returning half resyncs little
    assert all("failfast" in s.split(",") for s in md["members"].values()), md
    # each member is a LUN of a session to a different storage host
    out = ssh(lab.ssh_config, node, "for m in /sys/block/md*/md/dev-*; do d=${m##*/dev-}; "
              "s=$(readlink -f /sys/block/$d/device | grep -o 'session[0-9]*'); "
              "echo $d $(cat /sys/class/iscsi_connection/connection${s#session}:0/persistent_address); done")
    assert sorted(line.split()[1] for line in out.splitlines()) == sorted(hosts.values()), out
    # / is the md array, or (node_luks) the LUKS device over it
    under = ssh(lab.ssh_config, node, 'd=$(basename "$(readlink -f "$(findmnt -no SOURCE /)")"); '
                'if [ -d /sys/block/$d/dm ]; then ls /sys/block/$d/slaves; else echo $d; fi').split()
    assert len(under) == 1 and under[0].startswith("md"), f"root is not the md: {under}"


def test_image_root_is_a_ram_overlay_over_multipath_and_the_golden_bytes_stay(
        converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    node = node_of(slices, "image")
    hosts = portals(slices, node)
    assert len(hosts) == 2, hosts
    assert ssh(lab.ssh_config, node, "findmnt -no FSTYPE /").strip() == "overlay"
    assert mp_healthy(lab, node, 2), multipath_paths(lab.ssh_config, node)
    # the shared volume as each storage host has it: written since its origin, and its export read-only
    volume = next(v["name"] for h in hosts for v in slices[h]["zfs_volumes"]["volumes"] if "/shared/" in v["name"])
    written_before = {h: ssh(lab.ssh_config, h, f"zfs get -Hpo value written {volume}").strip() for h in hosts}
    token = f"dl-image-{time.time_ns()}"
    ident_before = ssh(lab.ssh_config, node, f"echo {token} > /etc/dl-test-token; sync; "
                       "cat /etc/machine-id /etc/hostname; findmnt -no FSTYPE /run/diskless/rw; "
                       "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2").split()
    assert ident_before[1] == slices[node]["hostname"], ident_before
    assert ident_before[2] in ("tmpfs", "ext4"), ident_before           # the upper layer is RAM (tmpfs or zram)
    written_after = {h: ssh(lab.ssh_config, h, f"zfs get -Hpo value written {volume}").strip() for h in hosts}
    assert written_after == written_before, (written_before, written_after)
    # power cycle: the write was in RAM, the identity comes from the boot data again
    labctl("down", node)
    t0 = time.monotonic()
    labctl("up", node)
    wait_ssh(lab, node)
    record_timing(f"{node}: power-on to SSH (image root, reboot)", time.monotonic() - t0, key="boot_image", node=node)
    # (SSH checks the host key: the lab's known_hosts has the node's key from its first boot)
    after = ssh(lab.ssh_config, node, "cat /etc/dl-test-token 2>/dev/null || echo gone; cat /etc/machine-id /etc/hostname; "
                "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2").split()
    assert after == ["gone", ident_before[0], ident_before[1], ident_before[3]], (ident_before, after)
    assert mp_healthy(lab, node, 2)


def test_every_node_runs_clean_with_its_root_modes_iscsi_timeouts(converged: None, lab: LabInfo,
                                                                  slices: dict[str, Any]) -> None:
    """No failed unit on any node (iscsid, the timeouts, remount-fs on an overlay, ...), and every root session
    has its mode's replacement timeout in the kernel: 86400 s on one LUN, seconds under md or multipath."""
    nodes = sorted(h for h, s in slices.items() if s.get("role") == "compute")
    for node in nodes:
        out = ssh(lab.ssh_config, node, "timeout 300 systemctl is-system-running --wait >/dev/null || true; "
                  "systemctl --failed --no-legend --plain | cut -d' ' -f1; echo --; "
                  "cat /sys/class/iscsi_session/session*/recovery_tmo 2>/dev/null || true; echo --; "
                  "systemctl is-active iscsid.service || true")
        failed, tmo, iscsid = (part.split() for part in out.split("--\n"))
        assert failed == [], f"{node}: failed units {failed}"
        want = [str(slices[node]["iscsi_replacement_timeout"])] * len(slices[node]["paths"])
        assert tmo == want, f"{node} (root {slices[node]['root']}): recovery_tmo {tmo}, want {want}"
        assert iscsid == (["active"] if slices[node]["paths"] else ["inactive"]), f"{node}: iscsid {iscsid}"


def test_live_root_is_a_hash_checked_squashfs_in_ram(converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    node = node_of(slices, "live")
    assert slices[node]["paths"] == []
    out = ssh(lab.ssh_config, node, "findmnt -no FSTYPE /; findmnt -no FSTYPE /run/diskless/lower; "
              "ls /sys/class/iscsi_session 2>/dev/null | wc -l; "
              "l=$(findmnt -no SOURCE /run/diskless/lower); f=$(cat /sys/block/${l##*/}/loop/backing_file); "
              "echo $f; findmnt -no FSTYPE -T $f; sha256sum $f").split()
    assert out[0] == "overlay" and out[1] == "squashfs", out
    assert out[2] == "0", "a live node has no iSCSI session"
    assert out[3].startswith("/run/") and out[4] == "tmpfs", out          # the squashfs is in RAM
    digest = out[5]
    sums = ssh(lab.ssh_config, node, ". /run/diskless/root.env; python3 -c 'import sys, urllib.request; "
               "print(urllib.request.urlopen(sys.argv[1]).read().decode())' \"$DL_LIVE_SUMS_URL\"")
    assert f"{digest}  root.squashfs" in sums, (digest, sums)


LIVE_DAMAGE_SH = """f=$1; cp -p "$f" "$f.good" && printf damaged | dd of="$f" bs=1 seek=4096 conv=notrunc status=none"""


def podman_sh(container: str, script: str, *args: str) -> str:
    proc = subprocess.run(["podman", "exec", container, "sh", "-euc", script, "sh", *args],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{container}: {script}: {proc.stderr}"
    return proc.stdout


@pytest.mark.destructive
def test_live_node_refuses_a_squashfs_that_does_not_match_its_hash(converged: None, lab: LabInfo,
                                                                   slices: dict[str, Any]) -> None:
    """The provisioning host serves a damaged root.squashfs: the node says so on its console and does not
    boot; with the good file back it boots again."""
    node = node_of(slices, "live")
    prov = next(h for h, s in slices.items() if s.get("role") == "provisioning")
    image = next(i for i in slices[prov]["images"] if i["name"] == slices[node]["image"])
    web = f"{HTTP_ROOT}{image['http_path']}/root.squashfs"
    container = f"dl-lab-{prov}"
    podman_sh(container, LIVE_DAMAGE_SH, web)
    try:
        labctl("down", node)
        labctl("up", node)
        wait_for(f"{node}: the console says the squashfs does not match",
                 lambda: "does not match SHA256SUMS" in console_text(node), 600)
        assert not ssh_answers(lab.ssh_config, node)
    finally:
        podman_sh(container, 'mv "$1.good" "$1"', web)
    labctl("down", node)
    t0 = time.monotonic()
    labctl("up", node)
    wait_ssh(lab, node)
    record_timing(f"{node}: power-on to SSH (live root, reboot)", time.monotonic() - t0, key="boot_live", node=node)


# ------------------------------------------------------------------------------------------ death of a storage host
def kill_and_heal(lab: LabInfo, slices: dict[str, Any], victim: str, away_s: float) -> dict[str, Any]:
    """fio on the mirror node (writes, verified) and the image node (reads, verified against the golden data
    laid out before), and on the iscsi node when its one storage host is the victim; kill the victim, keep it
    away `away_s`, start it on its disks, and wait until every node is whole again without Ansible."""
    mirror, image, single = node_of(slices, "mirror"), node_of(slices, "image"), node_of(slices, "iscsi")
    single_hit = victim in portals(slices, single)
    # the state this test needs: every node whole (an earlier fault's resync done). Killing a host while the
    # mirror still resyncs onto the other one would lose the node's root: never do that, not even in a test
    wait_for(f"{mirror}: md whole before {victim} is killed", lambda: md_healthy(lab, mirror), HEAL_TIMEOUT)
    wait_for(f"{image}: both paths active before {victim} is killed", lambda: mp_healthy(lab, image, 2), HEAL_TIMEOUT)
    # the victim's disks on each node: the kernel logs I/O errors on them when it dies (that is how md and
    # dm-multipath learn the path is gone); an error on anything above them would have reached the node's root
    absorbed = {}
    for node in (mirror, image, *((single,) if single_hit else ())):
        absorbed[node] = frozenset() if node == single else disks_by_portal(lab.ssh_config, node)[portals(slices, node)[victim]]
        mark_kernel_log(lab.ssh_config, node, f"{victim} killed")
    runtime = int(away_s + 120)    # fio goes on while the victim boots again (~60-90 s under TCG) and the paths return
    start_fio(lab.ssh_config, mirror, "mirror", "randwrite", runtime)
    # the image node reads its multipath map itself (its root's writes go to RAM); the bytes read are the
    # golden image's: the same before the fault and after the heal
    mp_dev = multipath_device(lab.ssh_config, image)
    image_bytes = [device_sha256(lab.ssh_config, image, mp_dev, 48)]
    start_fio(lab.ssh_config, image, "image", "randread", runtime, device=mp_dev)
    if single_hit:
        start_fio(lab.ssh_config, single, "single", "randwrite", runtime)
    time.sleep(15)
    labctl("kill", victim)
    killed = time.monotonic()
    # the redundant nodes carry on: md loses one member, multipath one path
    wait_for(f"{mirror}: md marks the {victim} half failed", lambda: md_state(lab.ssh_config, mirror).get("degraded") == "1", 120)
    degraded_after = time.monotonic() - killed
    wait_for(f"{image}: multipath fails the {victim} path",
             lambda: sorted(multipath_paths(lab.ssh_config, image).values()) == ["A", "F"], 120)
    md = md_state(lab.ssh_config, mirror)
    bitmap = ssh(lab.ssh_config, mirror, "for m in /sys/block/md*/md/dev-*; do "
                 "grep -q in_sync $m/state && mdadm -X /dev/${m##*/dev-} && break; done", check=False)
    time.sleep(max(0.0, away_s - (time.monotonic() - killed)))
    labctl("up", victim)
    back = time.monotonic()
    record_timing(f"{victim}: killed, away {away_s:.0f} s, start to SSH", back - killed - away_s)
    heal = wait_for(f"{mirror}: the {victim} half is re-added and resynced by itself", lambda: md_healthy(lab, mirror),
                    HEAL_TIMEOUT)
    record_timing(f"{mirror}: {victim} back -> md whole again (re-add + bitmap resync)", heal, key=f"resync_{victim}",
                  dirty=next((line.strip() for line in bitmap.splitlines() if "dirty" in line), ""))
    mp = wait_for(f"{image}: multipath has both paths again", lambda: mp_healthy(lab, image, 2), HEAL_TIMEOUT)
    record_timing(f"{image}: {victim} back -> both paths active", mp)
    # what brought the exports back was the host's own boot (zpool import, the saved LIO configuration)
    restored = ssh(lab.ssh_config, victim, "systemctl is-active rtslib-fb-targetctl.service || true; python3 -c "
                   "'import rtslib_fb; print(*sorted(t.wwn for t in rtslib_fb.RTSRoot().targets))'").split()
    results = {n: wait_fio(lab.ssh_config, n, name, runtime + 600)
               for n, name in ((mirror, "mirror"), (image, "image"), *(((single, "single"),) if single_hit else ()))}
    for n, r in results.items():
        record_timing(f"{n}: longest I/O stall while {victim} died", r["max_gap_s"], key=f"stall_{victim}_{n}")
    image_bytes.append(device_sha256(lab.ssh_config, image, mp_dev, 48))
    return {"md_while_away": md, "degraded_after_s": degraded_after, "fio": results, "single": single if single_hit else None,
            "victim": victim, "absorbed": absorbed,
            "restored": restored, "image_bytes": image_bytes, "planned": sorted(e["target_iqn"] for e in slices[victim]["lio_iscsi"]["exports"])}


def assert_nodes_whole(lab: LabInfo, outcome: dict[str, Any]) -> None:
    for node, r in outcome["fio"].items():
        assert r["errors"] == 0 and r["verify_errors"] == 0, (node, r["output"])
        assert r["io_bytes"] > 0, (node, r)
        errors = io_errors(lab.ssh_config, node, after=f"{outcome['victim']} killed", absorbed=outcome["absorbed"][node])
        assert errors == [], (node, sorted(outcome["absorbed"][node]), errors)
        assert root_options(lab.ssh_config, node).startswith("rw"), node
    assert outcome["restored"] == ["active", *outcome["planned"]], outcome["restored"]   # no Ansible run
    assert outcome["image_bytes"][0] == outcome["image_bytes"][1], outcome["image_bytes"]
    md = outcome["md_while_away"]
    assert md["degraded"] == "1" and sorted("faulty" in s for s in md["members"].values()) in ([False, True], [False]), md


@pytest.mark.destructive
def test_a_mirror_and_an_image_node_outlive_the_death_of_sch2(converged: None, lab: LabInfo,
                                                              slices: dict[str, Any]) -> None:
    outcome = kill_and_heal(lab, slices, "sch2", 30)     # long enough for md and multipath to fail it (~5 s)
    assert_nodes_whole(lab, outcome)


@pytest.mark.destructive
def test_every_node_outlives_sch1_away_3_minutes_even_on_a_single_lun(converged: None, lab: LabInfo,
                                                                      slices: dict[str, Any]) -> None:
    """sch1 holds the single-LUN node's only root: its I/O stalls for the whole outage and resumes, no I/O
    error, the root stays read-write, every fsync'ed write reads back (fio verify)."""
    outcome = kill_and_heal(lab, slices, "sch1", SINGLE_LUN_AWAY_S)
    assert outcome["single"], "the lab's iscsi node is not on sch1"
    assert_nodes_whole(lab, outcome)
    single = outcome["fio"][outcome["single"]]
    assert single["max_gap_s"] >= SINGLE_LUN_AWAY_S - 30, single["gaps"]   # it really waited the outage out
    assert root_options(lab.ssh_config, outcome["single"]).startswith("rw")
