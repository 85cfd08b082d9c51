# SPDX-License-Identifier: GPL-3.0-or-later
"""The root modes side by side on the lab (not a test: prints figures, asserts nothing).

1. fio on each node's root (4 KiB random read and write IOPS, 1 MiB sequential read MB/s, direct I/O, one
   job, queue depth 1) next to the same fio on a storage host reading and writing a zvol of its own pool
   locally: the ratio is what the network path costs (P4). A LUKS node (`node_luks`) next to a plain node of
   the same mode gives what dm-crypt costs (LUKS / plain), and the LUKS nodes' first boot what encrypting
   their clone in place cost per GiB (recorded from their console when the lab came up). The image node's reads are fio on its multipath
   map itself (its root's writes land in the RAM overlay); the live node has no storage path (RAM only).
2. What the fault tests of tests/lab/test_root_modes.py measured on this lab (lab/run/measurements.json):
   the longest I/O stall of each node while a storage host died, and the time from the host's return to a
   whole mirror again, with the bitmap's dirty share (bitmap resync) next to the array's size (what a full
   resync copies). With --full-resync the full resync is also run and timed (one md member dropped and
   added back without its superblock).
3. Power-on -> SSH per root mode: each node alone (the reboots the tests timed), and all nodes powered on at
   once (P5: what concurrent boots cost on this 2-core machine): the lab's first site.yml does that, and
   `hack/lab.sh up` keeps each node's power-on -> sshd; --boot-all (or a lab without that figure) boots them
   all again here.

    hack/lab.sh exec -- python3 bench/root_modes.py [--seconds 20] [--full-resync]
    hack/lab.sh exec -- python3 bench/root_modes.py --ci      # 5 s per fio figure on 64 MiB, the rest as measured
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lab.client import INVENTORY, in_lab_netns, labctl, measurements_file, new_zvol_sh, plan_slices, ssh_answers
from lab.faults import md_state, multipath_device, ssh
from lab.paths import Paths, cache_dir

BOOT_TIMEOUT = 900
FIO_TESTS = (("randread", "4k", "iops"), ("randwrite", "4k", "iops"), ("read", "1M", "bw"))


def fio(ssh_config: Path, host: str, target: str, rw: str, bs: str, seconds: int, size: str = "128M",
        readonly: bool = False) -> dict[str, Any]:
    out = ssh(ssh_config, host, f"fio --name=b --filename={target} --size={size} --rw={rw} --bs={bs} --direct=1 "
              f"--ioengine=psync --iodepth=1 --time_based --runtime={seconds} --output-format=json"
              + (" --readonly" if readonly else ""), timeout=600)
    job = json.loads(out[out.index("{"):])["jobs"][0]
    part = job["write" if "write" in rw else "read"]
    return {"iops": part["iops"], "bw": part["bw_bytes"] / 1e6}


def wait_ssh(ssh_config: Path, host: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < BOOT_TIMEOUT:
        if ssh_answers(ssh_config, host):
            return time.monotonic() - t0
        time.sleep(2)
    sys.exit(f"root_modes: {host}: no SSH after {BOOT_TIMEOUT} s")


def boot_all(ssh_config: Path, nodes: list[str]) -> dict[str, float]:
    labctl("down", *nodes)
    t0 = time.monotonic()
    for node in nodes:
        labctl("up", node)
    took: dict[str, float] = {}
    pending = set(nodes)
    while pending and time.monotonic() - t0 < BOOT_TIMEOUT:
        for node in sorted(pending):
            if ssh_answers(ssh_config, node):
                took[node] = time.monotonic() - t0
                pending.discard(node)
        time.sleep(2)
    if pending:
        sys.exit(f"root_modes: no SSH from {', '.join(sorted(pending))} after {BOOT_TIMEOUT} s (all at once)")
    return took


def full_resync(ssh_config: Path, node: str) -> tuple[float, int]:
    """Drop the second md member, wipe its md superblock and add it back: a full resync; (seconds, bytes)."""
    md = md_state(ssh_config, node)
    member = sorted(md["members"])[-1]
    size = int(ssh(ssh_config, node, f"cat /sys/block/{md['name']}/size").strip()) * 512
    ssh(ssh_config, node, f"mdadm /dev/md/dlroot --fail /dev/{member} && mdadm /dev/md/dlroot --remove /dev/{member} "
        f"&& mdadm --zero-superblock /dev/{member} && mdadm /dev/md/dlroot --add --failfast /dev/{member}")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3600:
        md = md_state(ssh_config, node)
        if md.get("degraded") == "0" and md.get("action") == "idle":
            return time.monotonic() - t0, size
        time.sleep(3)
    sys.exit(f"root_modes: {node}: full resync not done after an hour")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--seconds", type=int, default=20, help="runtime of each fio figure")
    ap.add_argument("--ci", action="store_true", help="CI size: 5 s per fio figure on 64 MiB, boots as the tests timed them")
    ap.add_argument("--full-resync", action="store_true", help="also run and time a full resync of the mirror")
    ap.add_argument("--boot-all", action="store_true",
                    help="power every node on at once now (default: the figures of the lab's first site.yml)")
    args = ap.parse_args()
    seconds = 5 if args.ci else args.seconds
    size_mib = 64 if args.ci else 128      # the fio file (and the data laid out in the storage host's zvol)
    if not in_lab_netns():
        sys.exit("root_modes: run inside the lab namespace: hack/lab.sh exec -- python3 bench/root_modes.py")
    p = Paths(cache_dir())
    ssh_config = p.ssh_config
    slices = plan_slices(INVENTORY)
    # one node per root mode, LUKS ones apart ("iscsi+luks"): a plain and a LUKS node of the same mode side by side
    nodes = {s["root"] + ("+luks" if s.get("luks") else ""): h for h, s in sorted(slices.items())
             if s.get("role") == "compute"}
    storage = sorted(h for h, s in slices.items() if s.get("role") == "storage")
    for node in nodes.values():
        if not ssh_answers(ssh_config, node):
            sys.exit(f"root_modes: {node} does not answer: bring the lab up (make lab) first")
    measured = json.loads(measurements_file().read_text()) if measurements_file().exists() else {}

    # 1. fio: each node's root vs a zvol read and written on a storage host itself
    base_host = storage[0]
    pool = slices[base_host]["zfs_volumes"]["pool"]
    zvol = f"{pool}/dl-bench-fio"
    ssh(ssh_config, base_host, new_zvol_sh(zvol, "1G")
        + f"dd if=/dev/urandom of=/dev/zvol/{zvol} bs=1M count={size_mib} oflag=direct conv=nocreat status=none")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    try:
        rows[f"{base_host} zvol (local)"] = {
            rw: fio(ssh_config, base_host, f"/dev/zvol/{zvol}", rw, bs, seconds, f"{size_mib}M") for rw, bs, _k in FIO_TESTS}
    finally:
        ssh(ssh_config, base_host, f"zfs destroy {zvol}", check=False)
    for mode, node in sorted(nodes.items()):
        if mode.startswith("live"):      # RAM only: no storage path to measure
            continue
        if mode.startswith("image"):     # reads: the multipath map (or the dm-crypt device over it); writes land
            # in the RAM overlay (not measured)
            dev = "/dev/mapper/dlcrypt" if mode.endswith("+luks") else multipath_device(ssh_config, node)
            rows[f"{node} ({mode})"] = {rw: fio(ssh_config, node, dev, rw, bs, seconds, f"{size_mib}M", readonly=True)
                                        for rw, bs, _k in FIO_TESTS if "write" not in rw}
            continue
        target = "/var/tmp/dl-bench-fio.dat"
        ssh(ssh_config, node, f"fio --name=l --filename={target} --size={size_mib}M --rw=write --bs=1M --direct=1 "
            "--output=/dev/null >/dev/null")
        try:
            rows[f"{node} ({mode})"] = {rw: fio(ssh_config, node, target, rw, bs, seconds, f"{size_mib}M") for rw, bs, _k in FIO_TESTS}
        finally:
            ssh(ssh_config, node, f"rm -f {target}", check=False)
    base = rows[f"{base_host} zvol (local)"]
    print(f"\nroot_modes: fio, 4 KiB random IOPS and 1 MiB sequential read MB/s, QD1, {seconds} s each on {size_mib} MiB "
          "(ratio = node / storage host local)")
    print(f"  {'where':26} {'randread IOPS':>15} {'randwrite IOPS':>16} {'seq read MB/s':>15}")
    for name, r in rows.items():
        cells = []
        for rw, _bs, key in FIO_TESTS:
            if rw not in r:
                cells.append("RAM overlay")
                continue
            v, b = r[rw][key], base[rw][key]
            cells.append(f"{v:8.0f} ({v / b:4.2f}x)" if b else f"{v:8.0f}")
        print(f"  {name:26} {cells[0]:>15} {cells[1]:>16} {cells[2]:>15}")

    # LUKS: what dm-crypt costs on the same root mode (AES-NI emulated by TCG here: lab/vm.py TCG_CPU)
    for mode, node in sorted(nodes.items()):
        plain = nodes.get(mode[:-len("+luks")]) if mode.endswith("+luks") else None
        if plain and f"{node} ({mode})" in rows and f"{plain} ({mode[:-5]})" in rows:
            lu, pl = rows[f"{node} ({mode})"], rows[f"{plain} ({mode[:-5]})"]
            print(f"  LUKS / plain, {mode[:-5]:8} " + "  ".join(
                f"{rw} {lu[rw][key] / pl[rw][key]:4.2f}x" for rw, _bs, key in FIO_TESTS
                if rw in pl and rw in lu and pl[rw][key]))
    first = {k: v for k, v in measured.items() if k.startswith("luks_first_boot_")}
    if first:
        print("\nroot_modes: LUKS first boot, the clone encrypted in place (cryptsetup reencrypt) before it is mounted")
        for key in sorted(first):
            m = first[key]
            print(f"  {m['node']:10} {m['mib']:6d} MiB in {m['seconds']:6.1f} s = {m['seconds'] / (m['mib'] / 1024):6.1f} s/GiB")

    # 2. what the fault tests measured
    print("\nroot_modes: a storage host dies under the nodes (tests/lab/test_root_modes.py)")
    stalls = {k: v for k, v in measured.items() if k.startswith("stall_")}
    for key in sorted(stalls):
        print(f"  longest I/O stall {key[len('stall_'):]:28} {stalls[key]['seconds']:8.1f} s")
    if not stalls:
        print("  (no fault test ran on this lab: run the lab tests first)")
    mirror = nodes.get("mirror") or nodes.get("mirror+luks")
    size = int(ssh(ssh_config, mirror, "cat /sys/block/$(basename $(readlink -f /dev/md/dlroot))/size").strip()) * 512 \
        if mirror else 0
    for key in sorted(k for k in measured if k.startswith("resync_")):
        m = measured[key]
        print(f"  {key[len('resync_'):]} back -> mirror whole {m['seconds']:8.1f} s  bitmap: {m.get('dirty') or '?'}"
              f"  (a full resync copies {size / 2**20:.0f} MiB)")
    if args.full_resync and mirror:
        secs, nbytes = full_resync(ssh_config, mirror)
        print(f"  full resync of {mirror} now: {secs:8.1f} s for {nbytes / 2**20:.0f} MiB")

    # 3. boots: each mode alone (as the tests timed them) vs every node at once (now)
    alone = {measured[k]["node"]: measured[k]["seconds"] for k in measured if k.startswith("boot_") and "node" in measured[k]}
    # every node at once: the first site.yml of the lab did it (hack/lab.sh up kept each node's power-on -> sshd);
    # booted again here only when that figure is missing or with --boot-all
    kept = measured.get("boot_together", {}).get("nodes", {})
    if args.boot_all or not all(node in kept for node in nodes.values()):
        together, how = boot_all(ssh_config, list(nodes.values())), "powered on here, power-on -> SSH answers"
    else:
        together, how = kept, "the lab's first site.yml, power-on -> sshd active"
    print(f"\nroot_modes: power-on -> SSH, one node alone (the tests' reboots) vs every node at once ({how})")
    print(f"  {'node':20} {'alone':>9} {'all at once':>12}")
    for mode, node in sorted(nodes.items()):
        a = alone.get(node)
        print(f"  {node + ' (' + mode + ')':20} {(f'{a:8.1f}s' if a else '      -  '):>9} {together[node]:11.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
