# SPDX-License-Identifier: GPL-3.0-or-later
"""Downtime of a storage host's A/B update and of a rollback, side by side (not a test: prints figures).

Against the lab's A/B storage host (sch2 of inventories/lab: it boots from its own A/B disk through GRUB once
the A/B tests or this bench did its first install; the lab's nodes keep running on it):
  update    playbooks/ab_update.yml with a good image (the VM's running root as a tarball, a new
            version): write the inactive slot, try it, reboot, gate passes, the play verifies;
  rollback  the same with a broken image (PID 1 exits: kernel panic, panic=30 resets, GRUB falls back).
Downtime = from the last answer of the iSCSI portal (TCP 10.78.0.11:3260, polled every second) before the
reboot to its first answer after it (LIO restored on the slot that stays). Also printed: the whole play,
and the SSH outage (what Ansible sees).

Runs INSIDE the lab namespace (docs/ab_update.md):
    hack/lab.sh up && hack/lab.sh exec -- python3 bench/ab_update.py [--runs N]
    hack/lab.sh exec -- python3 bench/ab_update.py --ci   # one of each, --reuse
The first run also does the A/B first install (a few minutes), as the lab tests do. With --reuse (implied by
--ci) the update and rollback that tests/lab/test_ab_update.py measured on this lab (lab/run/measurements.json,
gone with `down`) are printed instead of being done again; only what is missing is measured (not with --ci:
there a missing figure means the A/B tests failed, and the bench says so and exits 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

from lab.ab_client import (HOST, UPDATE_PLAYBOOK, PortalWatch, bring_up, facts, make_image, playbook, ssh, ssh_ok,
                           update_vars)
from lab.client import in_lab_netns, measurements_file


class SshWatch(PortalWatch):
    """The same watch over `ssh true` (what Ansible sees), every 2 s."""

    def __init__(self) -> None:
        super().__init__(interval=2.0)

    def _probe(self) -> bool:
        return ssh_ok(timeout=10)


def one(kind: str, n: int) -> dict[str, float]:
    version = f"bench-{int(time.time())}-{kind}"
    image, made = make_image(version, broken="panic" if kind == "rollback" else None)
    before = facts()["booted"]
    with PortalWatch() as portal, SshWatch() as sshw:
        res = playbook(UPDATE_PLAYBOOK, f"bench {kind} {n}", update_vars(version, image))
        time.sleep(1)
    after = facts()
    ok = (res.rc == 0 and after["booted"] != before) if kind == "update" else \
         (res.rc != 0 and after["booted"] == before and "FAILED" in " ".join(res.failures))
    if not ok:
        sys.exit(f"ab_update: {kind} run {n} did not behave (rc {res.rc}, booted {before} -> {after['booted']}): "
                 f"{res.failures}")
    ssh(f"rm -f {image}")
    return {"downtime": portal.downtime() or float("nan"), "ssh": sshw.downtime() or float("nan"),
            "play": res.seconds, "image": made}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=2, help="updates and rollbacks each (median printed)")
    ap.add_argument("--ci", action="store_true",
                    help="CI: only the update and rollback the lab tests measured (--reuse; none: exit 1)")
    ap.add_argument("--reuse", action="store_true",
                    help="take the update and rollback tests/lab/test_ab_update.py measured on this lab (lab/run/measurements.json) "
                         "instead of doing them again")
    args = ap.parse_args()
    runs = 1 if args.ci else max(1, args.runs)
    if not in_lab_netns():
        sys.exit("ab_update: run inside the lab namespace: hack/lab.sh exec -- python3 bench/ab_update.py")
    measured = {}
    if (args.reuse or args.ci) and measurements_file().exists():
        measured = json.loads(measurements_file().read_text())
    keys = {"update": "ab_update_downtime", "rollback": "ab_rollback_downtime"}
    reused = {kind: measured.get(key) for kind, key in keys.items()}
    results = {"update": [], "rollback": []}
    for kind, m in reused.items():
        if m and runs == 1:
            results[kind].append({"downtime": m["seconds"], "ssh": math.nan, "play": m.get("play_seconds", math.nan),
                                  "image": math.nan})
            print(f"ab_update: {kind}: reusing the figure measured by the lab tests ({m['what']}: {m['seconds']} s)")
    if args.ci and any(not results[kind] for kind in results):
        # CI measures nothing twice: no figure from the A/B tests means they failed, and a whole update and
        # rollback of its own (~13 min) would only push the run towards the CI time limit
        missing = ", ".join(kind for kind in results if not results[kind])
        print(f"ab_update: --ci: the lab tests measured no {missing} on this lab (did tests/lab/test_ab_update.py run?)")
        return 1
    if any(not results[kind] for kind in results):
        bring_up()
    for n in range(runs):
        for kind in ("update", "rollback"):
            if len(results[kind]) <= n:
                results[kind].append(one(kind, n + 1))
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
    accel = "tcg" if Path("/sys/module/kvm_pvm").exists() else os.environ.get("DL_LAB_ACCEL", "auto")
    print(f"\nab_update ({accel}, storage VM {HOST}, 2 vCPU, 2 GiB, nodes running on it; median of {runs} run(s) each)")
    print(f"  {'':44} {'update':>10} {'rollback':>10} {'ratio':>7}")
    rows = [("downtime: iSCSI portal last answer -> back", "downtime"),
            ("SSH last answer -> back", "ssh"),
            ("whole play (write slot, reboot, verdict)", "play"),
            ("image made on the host (tar of the root)", "image")]

    def cell(v: float, width: int, unit: str) -> str:
        return f"{'-':>{width}} " if math.isnan(v) else f"{v:{width}.1f}{unit}"

    skipped = []
    for label, key in rows:
        up, back = med["update"][key], med["rollback"][key]
        if math.isnan(up) and math.isnan(back):
            skipped.append(label.split(":", maxsplit=1)[0])
            continue
        ratio = back / up if up and not (math.isnan(up) or math.isnan(back)) else math.nan
        print(f"  {label:44} {cell(up, 9, 's')} {cell(back, 9, 's')} {cell(ratio, 6, 'x')}")
    for kind, runs_ in results.items():
        figures = ", ".join("%.1f" % r["downtime"] for r in runs_)
        print(f"    {kind} runs (downtime): {figures} s")
    print("  rollback = broken image (PID 1 exits -> kernel panic -> panic= reset -> GRUB falls back)")
    print("  ratio = rollback / update (a rollback boots twice: the broken slot, then the old one)")
    if skipped:
        print(f"  not measured here ({'; '.join(skipped)}): the figures reused from the lab tests have only the "
              "portal downtime and the play")
    return 0


if __name__ == "__main__":
    sys.exit(main())
