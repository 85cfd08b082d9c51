# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot and converge times of the lab cluster, side by side (not a test: prints figures).

1. Power-on -> SSH answers, for the SAME image bundle (kernel, initrd, root.img of
   $DL_CACHE/bundles/<image>/<version>/) and the same VM shape (TCG, 1 vCPU, 512 MiB, virtio-net):
   - iSCSI: a lab compute node power-cycled (`labctl down/up NODE`): iPXE ROM, DHCP, its iPXE script and
     kernel + initrd over HTTP, iSCSI login in the initramfs, root = its own LUN on the storage VM;
   - local: a throw-away VM (own tap on the lab bridge, address 10.77.0.150) booting that kernel + initrd
     directly with a qcow2 overlay of root.img as a virtio disk. Its initramfs gets a 300-byte cpio
     appended whose boot script (`boot=dlbench`) runs the same `configure_networking` (ip=, BOOTIF=)
     the iSCSI script runs, then mounts the local disk: the node's network set-up, no iSCSI.
2. The first `site.yml` of the lab (timed by `hack/lab.sh up`, or here when the nodes do not run yet)
   vs. an idempotent re-run now (its changed count is printed too).

Runs INSIDE the lab namespace against a lab that is up:
    hack/lab.sh up && hack/lab.sh exec -- python3 bench/boot_time.py [--runs N]
    hack/lab.sh exec -- python3 bench/boot_time.py --ci           # one local boot; the rest as measured
                                                                  # by tests/lab/test_compute_boot.py (--reuse)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.client import INVENTORY, ansible_json, in_lab_netns, inventory, labctl, measurements_file, no_json
from lab.paths import REPO, Paths, cache_dir
from lab.vm import detect_accel

LOCAL_IP = "10.77.0.150"
LOCAL_MAC = "52:54:00:77:99:50"
LOCAL_TAP = "t-dlbench"
BOOT_TIMEOUT = 900

# initramfs-tools: `boot=dlbench` makes /init source /scripts/dlbench instead of /scripts/local
DLBENCH_SCRIPT = b"""# bench/boot_time.py: a local root, with the network set up as for an iSCSI root
. /scripts/local
mountroot()
{
\tconfigure_networking
\tlocal_mount_root
}
"""


def newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio 'newc' archive of (name, mode, data) entries, with its trailer."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        fields = [ino if name != "TRAILER!!!" else 0, mode, 0, 0, 1 if mode else 0, 0, len(data), 0, 0, 0, 0,
                  len(name) + 1, 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def ssh_ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv + ["true"], capture_output=True, timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def wait(argv: list[str], what: str, proc: subprocess.Popen[bytes] | None = None) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < BOOT_TIMEOUT:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"boot_time: {what}: QEMU exited ({proc.returncode})")
        if ssh_ok(argv):
            return time.monotonic() - t0
        time.sleep(1)
    sys.exit(f"boot_time: {what}: no SSH after {BOOT_TIMEOUT} s")


def run_site(what: str) -> tuple[float, int]:
    t0 = time.monotonic()
    proc, data = ansible_json(["ansible-playbook", "-i", str(INVENTORY), str(REPO / "playbooks" / "site.yml")])
    took = time.monotonic() - t0
    if proc.returncode != 0 or data is None:
        sys.exit("boot_time: " + no_json(f"site.yml ({what}) failed", proc))
    return took, sum(s["changed"] for s in data["stats"].values())


def boot_iscsi(node: str, ssh_config: Path) -> float:
    labctl("down", node)
    t0 = time.monotonic()
    labctl("up", node)
    wait(["ssh", "-F", str(ssh_config), "-o", "ConnectTimeout=5", node], f"{node} (iSCSI)")
    return time.monotonic() - t0


def boot_local(bundle: Path, label: str, cache: Path, accel: str) -> float:
    p = Paths(cache)
    with tempfile.TemporaryDirectory(prefix="dl-boot-bench-") as tmp:
        d = Path(tmp)
        initrd = bytearray((bundle / "initrd.img").read_bytes())
        initrd += b"\0" * (-len(initrd) % 512)    # the kernel looks for the next archive 4-byte aligned
        initrd += newc([("scripts", 0o040755, b""), ("scripts/dlbench", 0o100755, DLBENCH_SCRIPT)])
        (d / "initrd.img").write_bytes(initrd)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(bundle / "root.img"),
                        str(d / "root.qcow2")], check=True)
        subprocess.run(["ip", "link", "del", LOCAL_TAP], capture_output=True, check=False)
        subprocess.run(["ip", "tuntap", "add", "dev", LOCAL_TAP, "mode", "tap"], check=True)
        subprocess.run(["ip", "link", "set", LOCAL_TAP, "master", "br0", "up"], check=True)
        append = [f"ip={LOCAL_IP}:::255.255.255.0:dlbench::off", f"BOOTIF=01-{LOCAL_MAC.replace(':', '-')}",
                  f"root=LABEL={label}", "ro", "boot=dlbench", "console=ttyS0,115200"]
        accel_args = (["-accel", "kvm", "-cpu", "host"] if accel == "kvm"
                      else ["-accel", "tcg,thread=multi,tb-size=128", "-cpu", "qemu64"])
        argv = ["timeout", str(BOOT_TIMEOUT + 60), "qemu-system-x86_64", "-machine", "pc", "-nodefaults",
                "-display", "none", "-smp", "1", "-m", "512", *accel_args,
                "-serial", f"file:{p.logs / 'dlbench-local.console.log'}", "-device", "virtio-rng-pci",
                "-netdev", f"tap,id=net0,ifname={LOCAL_TAP},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=net0,mac={LOCAL_MAC}",
                "-kernel", str(bundle / "vmlinuz"), "-initrd", str(d / "initrd.img"), "-append", " ".join(append),
                "-drive", f"file={d / 'root.qcow2'},if=virtio,format=qcow2,cache=unsafe"]
        ssh = ["ssh", "-i", str(p.ssh_key), "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
               "-o", "ConnectTimeout=5", f"root@{LOCAL_IP}"]
        p.logs.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait(ssh, "local virtio disk", proc)
            return time.monotonic() - t0
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            subprocess.run(["ip", "link", "del", LOCAL_TAP], capture_output=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--runs", type=int, default=2, help="boots of each kind (median printed)")
    ap.add_argument("--ci", action="store_true", help="CI size: one boot of each kind, --reuse")
    ap.add_argument("--reuse", action="store_true",
                    help="take the iSCSI power cycle and the site.yml re-run that tests/lab/test_compute_boot.py "
                         "measured on this lab (lab/run/measurements.json) instead of doing them again")
    args = ap.parse_args()
    runs = 1 if args.ci else max(1, args.runs)
    reuse = args.reuse or args.ci
    if not in_lab_netns():
        sys.exit("boot_time: run inside the lab namespace: hack/lab.sh exec -- python3 bench/boot_time.py")
    status = json.loads(labctl("--json", "status", check=False).stdout or "{}")
    if not status.get("up"):
        sys.exit("boot_time: the lab is not up: run `hack/lab.sh up` (make lab) first")
    cache = cache_dir()
    hv = inventory()["_meta"]["hostvars"]
    nodes = sorted(h for h, v in hv.items() if v.get("lab_boot") == "network")
    ssh_config = cache / "lab" / "ssh" / "config"
    first_file = cache / "lab" / "run" / "site-first.json"
    measured = json.loads(measurements_file().read_text()) if reuse and measurements_file().exists() else {}

    def nodes_up() -> bool:
        return all(ssh_ok(["ssh", "-F", str(ssh_config), "-o", "ConnectTimeout=5", n]) for n in nodes)

    if first_file.exists():
        first = json.loads(first_file.read_text())["seconds"]
        first_note = "hack/lab.sh up at " + json.loads(first_file.read_text())["at"]
    elif not nodes_up():
        first, first_changed = run_site("first run")
        first_file.write_text(json.dumps({"seconds": round(first), "at": time.strftime("%FT%TZ", time.gmtime())}))
        first_note = f"{first_changed} changed (now)"
    else:
        sys.exit(f"boot_time: the nodes run but {first_file} (first site.yml time) is missing: "
                 "run `hack/lab.sh down && hack/lab.sh up`")
    if "site_rerun" in measured:
        rerun, rerun_changed = measured["site_rerun"]["seconds"], measured["site_rerun"]["changed"]
        rerun_note = "by tests/lab/test_compute_boot.py"
    else:
        if not nodes_up():
            run_site("power the nodes on again")
        rerun, rerun_changed = run_site("re-run")
        rerun_note = "now"

    image, spec = sorted(hv[nodes[0]].get("cluster_images", {}).items())[0]
    bundle = cache / "bundles" / image / str(spec["version"])
    accel = detect_accel()
    if "boot_iscsi" in measured:
        iscsi_node, iscsi = measured["boot_iscsi"]["node"], [measured["boot_iscsi"]["seconds"]]
        iscsi_note = "power cycle by tests/lab/test_compute_boot.py"
    else:
        iscsi_node, iscsi = nodes[0], [boot_iscsi(nodes[0], ssh_config) for _run in range(runs)]
        iscsi_note = "power cycles now"
    local = [boot_local(bundle, spec.get("label", "dlroot"), cache, accel) for _run in range(runs)]

    mi, ml = statistics.median(iscsi), statistics.median(local)
    print(f"\nboot_time ({accel}, {image} v{spec['version']}, 1 vCPU, 512 MiB; median of {runs})")
    print(f"  {'power-on -> SSH':34} {'iSCSI root':>12} {'local virtio':>13} {'ratio':>7}")
    print(f"  {iscsi_node + ' / throw-away VM':34} {mi:11.1f}s {ml:12.1f}s {mi / ml:6.2f}x")
    print(f"    runs: iSCSI {', '.join(f'{x:.1f}' for x in iscsi)} s ({iscsi_note}); "
          f"local {', '.join(f'{x:.1f}' for x in local)} s (now)")
    print(f"  {'site.yml':34} {'first':>12} {'re-run':>13} {'ratio':>7}")
    print(f"  {'whole lab cluster':34} {first:11.1f}s {rerun:12.1f}s {first / rerun:6.2f}x")
    print(f"    first: {first_note}; re-run: {rerun_changed} changed ({rerun_note})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
