# SPDX-License-Identifier: GPL-3.0-or-later
"""LIO exports and node volumes on the lab's storage VM (not a test: prints figures).

1. Time to apply N iSCSI exports (block backstore, target, TPG attributes, portal, LUN, ACL with mutual
   CHAP) with ONE `diskless.cluster.lio_iscsi` module call, vs the same objects made by one `targetcli`
   process per object (7 per export), side by side with the ratio. Backstores sit on brd RAM disks
   (/dev/ramN, nothing allocated until written) so only LIO is measured.
2. Time and bytes of a node volume made as a `zfs clone` of a golden snapshot vs a full copy
   (`zfs send | zfs recv`), on a scratch pool on the VM's spare lab disk.

Runs against the lab: brings the storage VM up itself if the lab is not up (and down again afterwards),
like the lab tests. LIO is saved first and restored at the end (`targetctl`), the scratch pool is destroyed.
    source hack/env.sh && python bench/lio_scale.py            # module 10/100/500, targetcli 10
    python bench/lio_scale.py --full                           # targetcli also at 100 (~40 min under TCG)
    python bench/lio_scale.py --ci                             # module 3/100, targetcli 3
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.client import INVENTORY, ansible_json, in_lab_netns, inventory, labctl, new_zvol_sh, no_json

HOST = "sch1"
OBJECTS_PER_EXPORT = 7  # backstore, target (+tpg1), tpg attributes, portal, lun, acl (+mapped lun), acl auth
SCRATCH_POOL = "dlbench"


class Lab:
    def __init__(self, netns: str, ssh_config: str, portal: str, scratch_disk: str):
        self.netns, self.ssh_config, self.portal, self.scratch_disk = netns, ssh_config, portal, scratch_disk
        self.prefix = [] if in_lab_netns() else ["ip", "netns", "exec", netns]

    def ssh(self, script: str, check: bool = True) -> str:
        proc = subprocess.run(self.prefix + ["ssh", "-F", self.ssh_config, HOST, "bash -euo pipefail -s"],
                              input=script, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            sys.exit(f"bench: on {HOST} (rc {proc.returncode}): {proc.stderr.strip()[-2000:]}\n{script}")
        return proc.stdout

    def timed(self, script: str) -> float:
        """Wall time of a script measured ON the VM (no SSH set-up in it)."""
        out = self.ssh("t0=$(date +%s%N)\n" + script + "\necho \"elapsed $(( $(date +%s%N) - t0 ))\"")
        return int(out.strip().splitlines()[-1].split()[1]) / 1e9


def exports(n: int, portal: str) -> list[dict]:
    result = []
    for i in range(n):
        node = "bench%03d" % i
        result.append({
            "target_iqn": "iqn.2026-11.org.example.bench:%s.%s-root" % (HOST, node),
            "backstore": "bench-%s" % node, "device": "/dev/ram%d" % i, "lun": 0,
            "portals": [{"ip": portal, "port": 3260}],
            "acls": [{"initiator_iqn": "iqn.2026-11.org.example.bench:%s" % node, "mapped_lun": 0,
                      "userid": node, "password": "bench-%s-secret" % node,
                      "mutual_userid": "bench-storage", "mutual_password": "bench-%s-mutual" % node}],
        })
    return result


def module_apply(lab: Lab, items: list[dict]) -> tuple[float, float, int]:
    """(ansible wall time, module task time, number of actions) of one lio_iscsi call."""
    with tempfile.TemporaryDirectory() as tmp:
        play = Path(tmp) / "play.yml"
        play.write_text(
            "- hosts: %s\n  gather_facts: false\n  tasks:\n    - diskless.cluster.lio_iscsi:\n"
            "        exports: \"{{ bench_exports }}\"\n        save_file: /run/dl-bench-saveconfig.json\n" % HOST)
        (Path(tmp) / "vars.json").write_text(json.dumps({"bench_exports": items}))
        t0 = time.monotonic()
        proc, data = ansible_json(["ansible-playbook", "-i", str(INVENTORY), str(play),
                                   "-e", "@%s" % (Path(tmp) / "vars.json")], prefix=lab.prefix)
        wall = time.monotonic() - t0
    if data is None:
        sys.exit("bench: " + no_json("lio_iscsi", proc))
    task = data["plays"][0]["tasks"][0]
    res = task["hosts"][HOST]
    if proc.returncode != 0 or res.get("failed"):
        sys.exit("bench: lio_iscsi failed: %s" % res.get("msg"))
    dur = task["task"]["duration"]
    seconds = _iso(dur["end"]) - _iso(dur["start"])
    return wall, seconds, len(res.get("actions", []))


def _iso(stamp: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def targetcli_script(items: list[dict]) -> str:
    lines = []
    for e in items:
        t, so, (acl,) = e["target_iqn"], e["backstore"], e["acls"]
        tpg = "/iscsi/%s/tpg1" % t
        calls = [
            ["/backstores/block", "create", "name=%s" % so, "dev=%s" % e["device"]],
            ["/iscsi", "create", t],
            [tpg, "set", "attribute", "authentication=1", "generate_node_acls=0", "demo_mode_write_protect=1"],
            [tpg + "/portals", "create", e["portals"][0]["ip"], "3260"],
            [tpg + "/luns", "create", "/backstores/block/%s" % so],
            [tpg + "/acls", "create", acl["initiator_iqn"]],
            [tpg + "/acls/" + acl["initiator_iqn"], "set", "auth", "userid=" + acl["userid"],
             "password=" + acl["password"], "mutual_userid=" + acl["mutual_userid"],
             "mutual_password=" + acl["mutual_password"]],
        ]
        assert len(calls) == OBJECTS_PER_EXPORT
        lines += ["targetcli " + shlex.join(c) + " >/dev/null" for c in calls]
    lines.append("targetcli saveconfig /run/dl-bench-targetcli.json >/dev/null")
    return "\n".join(lines)


def count_targets(lab: Lab) -> int:
    return int(lab.ssh("ls /sys/kernel/config/target/iscsi | grep -c '^iqn' || true").strip() or 0)


def bench_lio(lab: Lab, module_sizes: list[int], targetcli_sizes: list[int]) -> None:
    biggest = max(module_sizes + targetcli_sizes)
    lab.ssh(f"""
modprobe -r brd 2>/dev/null || true
modprobe brd rd_nr={biggest} rd_size=4096
mkdir -p /run/dl-bench
targetctl save /run/dl-bench/saved.json
targetcli set global auto_add_default_portal=false auto_save_on_exit=false >/dev/null
""")
    rows = []
    try:
        for n in sorted(set(module_sizes + targetcli_sizes)):
            items = exports(n, lab.portal)
            row = {"n": n}
            if n in module_sizes:
                lab.ssh("targetctl clear")
                row["module_wall"], row["module_task"], row["actions"] = module_apply(lab, items)
                row["module_targets"] = count_targets(lab)
                row["module_rerun_wall"], row["module_rerun_task"], row["rerun_actions"] = module_apply(lab, items)
            if n in targetcli_sizes:
                lab.ssh("targetctl clear")
                row["targetcli"] = lab.timed(targetcli_script(items))
                row["targetcli_targets"] = count_targets(lab)
            rows.append(row)
            print_row(row, flush=True)
    finally:
        lab.ssh("targetctl clear; targetctl restore /run/dl-bench/saved.json; "
                "targetcli set global auto_add_default_portal=true auto_save_on_exit=true >/dev/null; "
                "modprobe -r brd || true", check=False)
    print_summary(rows)


def print_row(row: dict, flush: bool = False) -> None:
    parts = ["N=%4d" % row["n"]]
    if "module_task" in row:
        parts.append("module: %6.1f s task (%5.1f s ansible wall, %d actions, %d targets; no-op re-run %.1f s, %d actions)"
                     % (row["module_task"], row["module_wall"], row["actions"], row["module_targets"],
                        row["module_rerun_task"], row["rerun_actions"]))
    if "targetcli" in row:
        parts.append("targetcli: %7.1f s (%d processes, %d targets)"
                     % (row["targetcli"], row["n"] * OBJECTS_PER_EXPORT + 1, row["targetcli_targets"]))
    print("  " + "  ".join(parts), flush=flush)


def print_summary(rows: list[dict]) -> None:
    print("\nLIO exports: module (one lio_iscsi call) vs targetcli (one process per object), per export")
    print("  %5s  %14s  %14s  %9s" % ("N", "module s/exp", "targetcli s/exp", "ratio"))
    per_cli = [r["targetcli"] / r["n"] for r in rows if "targetcli" in r]
    cli_rate = per_cli[-1] if per_cli else None
    for r in rows:
        mod = r["module_task"] / r["n"] if "module_task" in r else None
        if "targetcli" in r:
            cli, note = r["targetcli"] / r["n"], "measured"
        elif cli_rate is not None:
            cli, note = cli_rate, "EXTRAPOLATED from N=%d (targetcli not run at this size)" % max(
                x["n"] for x in rows if "targetcli" in x)
        else:
            cli, note = None, ""
        print("  %5d  %14s  %14s  %9s  %s" % (
            r["n"], "%.3f" % mod if mod is not None else "-", "%.2f" % cli if cli is not None else "-",
            "%.0fx" % (cli / mod) if mod and cli else "-", note))


def bench_clone(lab: Lab, data_mib: int) -> None:
    disk = lab.scratch_disk
    out = lab.ssh(f"""
zpool create -f -o ashift=12 -O compression=off -O mountpoint=none {SCRATCH_POOL} {disk}
{new_zvol_sh(f"{SCRATCH_POOL}/golden", "512M -o volblocksize=16K")}
dd if=/dev/urandom of=/dev/zvol/{SCRATCH_POOL}/golden bs=1M count={data_mib} oflag=direct conv=fsync,nocreat status=none
zfs snapshot {SCRATCH_POOL}/golden@v1
sync
t0=$(date +%s%N); zfs clone -o volmode=dev {SCRATCH_POOL}/golden@v1 {SCRATCH_POOL}/clone; t1=$(date +%s%N)
zfs send {SCRATCH_POOL}/golden@v1 | zfs recv -o volmode=dev {SCRATCH_POOL}/copy; zpool sync {SCRATCH_POOL}; t2=$(date +%s%N)
echo "clone_ns $((t1 - t0))"
echo "copy_ns $((t2 - t1))"
zfs get -Hp -o name,property,value used,referenced,written {SCRATCH_POOL}/golden {SCRATCH_POOL}/clone {SCRATCH_POOL}/copy
""")
    lab.ssh(f"zpool destroy -f {SCRATCH_POOL}; wipefs -q -a {disk}", check=False)
    times = {line.split()[0]: int(line.split()[1]) / 1e9 for line in out.splitlines()
             if line.split(" ")[0] in ("clone_ns", "copy_ns")}
    props: dict = {}
    for line in out.splitlines():
        cells = line.split("\t")
        if len(cells) == 3:
            props.setdefault(cells[0].split("/", 1)[1], {})[cells[1]] = int(cells[2])
    print("\nNode volume from a golden volume with %d MiB of data (512 MiB sparse, volblocksize 16K):" % data_mib)
    print("  %-28s %9s %12s %12s %12s" % ("", "time s", "used B", "referenced B", "written B"))
    for label, name, key in (("zfs clone of golden@v1", "clone", "clone_ns"),
                             ("full copy (zfs send|recv)", "copy", "copy_ns")):
        p = props[name]
        print("  %-28s %9.2f %12d %12d %12d" % (label, times[key], p["used"], p["referenced"], p["written"]))
    print("  golden itself: used %d B, referenced %d B" % (props["golden"]["used"], props["golden"]["referenced"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--ci", action="store_true", help="CI size: module 3/100, targetcli 3 (~3 min less than 10)")
    ap.add_argument("--full", action="store_true", help="also targetcli at 100 exports (slow under TCG)")
    ap.add_argument("--clone-data-mib", type=int, default=64, help="data written into the golden volume")
    args = ap.parse_args()
    module_sizes = [3, 100] if args.ci else [10, 100, 500]
    targetcli_sizes = [3] if args.ci else ([10, 100] if args.full else [10])

    was_up = labctl("--json", "status", check=False).returncode == 0
    info = json.loads(labctl("--json", "up", HOST).stdout)  # the storage VM only: no node boots meanwhile
    try:
        hv = inventory()["_meta"]["hostvars"][HOST]
        disks = ["/dev/vd%s" % chr(ord("b") + i) for i in range(len(hv.get("lab_disks", [])))]
        scratch = [d for d in disks if d not in hv.get("storage_pool_devices", [])]
        if not scratch:
            sys.exit("bench: %s needs a lab disk outside storage_pool_devices for the scratch pool" % HOST)
        lab = Lab(info["netns"], info["ssh_config"], hv["ansible_host"], scratch[-1])
        print("bench/lio_scale.py on %s (%s); module sizes %s, targetcli sizes %s"
              % (HOST, info.get("accel"), module_sizes, targetcli_sizes), flush=True)
        bench_lio(lab, module_sizes, targetcli_sizes)
        bench_clone(lab, args.clone_data_mib)
    finally:
        if not was_up:
            labctl("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
