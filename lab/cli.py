"""The lab's command line (`python3 -m lab`, for humans through hack/lab.sh): the QEMU VMs and podman
containers of a lab inventory on a private bridge in a network namespace.

    build-image [NAME...] [--force]   build (or reuse) cached VM images
    up [HOST...]                      network + containers + VMs, wait until each VM answers SSH; a VM
                                      that was stopped (down HOST, kill HOST) starts again on the disks
                                      it had (its pool, its A/B slots) unless its definition changed
    down [HOST...]                    stop everything (safe to repeat, and after a crash),
                                      or only the named VMs (power off; the lab stays up)
    kill HOST...                      fault injection: QEMU quits at once (no guest shutdown, no flush
                                      of the guest's caches: a dead machine); disks kept, `up HOST`
                                      starts it again on them
    restart HOST... [--boot MODE]     power-cycle VMs keeping their disks, optionally booting
                                      another way (`--boot disk`: through the BIOS from the
                                      first lab disk, e.g. after an A/B first install)
    status                            what runs, and whether SSH answers
    ssh HOST [-- CMD...]              SSH into a lab VM (from anywhere, as root)
    exec -- CMD...                    run CMD inside the lab namespace
    console HOST                      print a VM's serial console log

Standard library and the collection's image builder (plugins/module_utils/image.py); runs as root. Caches
live under $DL_CACHE (default ~/.cache/diskless-cluster): images in images/<name>-<hash>/ (or $DL_IMAGE_CACHE:
a second lab reuses the first one's images), the lab's SSH keys in lab/ssh/, run state in lab/run/, serial
console logs in lab/logs/. See docs/lab.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence

from lab.container import container_image, container_running, running_image, start_container, stop_container
from lab.images import Image, build_image
from lab.inventory import BOOT_MODES, CONTAINER_PREFIX, DEFAULTS, IMAGE_BOOTS, VM, load_inventory, tap_name
from lab.network import ensure_address, ensure_network, ensure_tap, ip_cmd, netns_exists
from lab.paths import DEFAULT_INVENTORY, IMAGES_SRC, Paths, cache_dir, read_state, write_state
from lab.ssh import NODE_KNOWN_HOSTS, ensure_ssh_keys, ssh_argv, write_ssh_client_files
from lab.util import LabError, die, flock, log, require_root
from lab.vm import (RESTART_POWEROFF_S, STOP_GRACE_S, detect_accel, start_vm, stop_vm, stray_processes,
                    vm_running, vm_state, wait_for_ssh, wait_gone)

# Ansible workers in the lab namespace: more than the lab has hosts (provisioning container, storage VMs, nodes)
LAB_FORKS = 16


def cmd_build_image(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    names = args.names or sorted(x.stem for x in IMAGES_SRC.glob("*.toml"))
    out: dict[str, Any] = {"changed": False, "images": {}}
    for name in names:
        t0 = time.monotonic()
        image, built = build_image(p, name, force=args.force)
        out["changed"] |= built
        out["images"][name] = {"dir": str(image.dir), "built": built,
                               "kernel_version": image.manifest["kernel_version"]}
        if not built:
            log(f"image {name}: cached ({image.dir}, checked in {time.monotonic() - t0:.1f} s)")
    return out


def cmd_up(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    require_root()
    lab = load_inventory(args.inventory)
    vms = lab.select(args.hosts)
    cts = lab.select_containers(args.hosts)
    for name, why in sorted(lab.skipped.items()):
        log(f"{name}: {why}")
    if not args.hosts:
        for vm in lab.vms:
            if not vm.start:
                log(f"{vm.name}: lab_start is false: not started (start it with `up {vm.name}`)")
    ensure_ssh_keys(p)
    with flock(p.lab / "lock", "up/down"):
        state = read_state(p)
        if state and state.get("netns") != lab.netns:
            die(f"a lab with namespace {state.get('netns')} is up; run `hack/lab.sh down` first")
        images: dict[str, Image] = {}
        for name in sorted({vm.image for vm in vms if vm.image}):
            images[name] = build_image(p, name)[0]
        accel = detect_accel()
        changed = ensure_network(lab)
        p.run.mkdir(parents=True, exist_ok=True)
        write_state(p, {"netns": lab.netns, "bridge": lab.bridge, "bridge_address": lab.bridge_address,
                        "inventory": str(lab.inventory), "accel": accel})
        write_ssh_client_files(p, lab.vms)
        already: list[str] = []
        for ct in cts:
            if container_running(ct.container):
                if running_image(p, ct.name) == container_image():
                    changed |= ensure_address(lab, f"{ct.ip}/{ct.prefixlen}")
                    already.append(ct.name)
                    continue
                # its image recipe changed (hack/container-image.sh): the role's packages are only in the new one
                log(f"{ct.name}: running an older container image; starting it again from the current one")
            log(f"{ct.name}: starting podman container {ct.container} in namespace {lab.netns} ({ct.ip})")
            start_container(p, lab, ct)
            changed = True
        procs: dict[str, subprocess.Popen[bytes]] = {}
        t0: dict[str, float] = {}
        for vm in vms:
            if vm_running(p, vm.name):
                already.append(vm.name)
                old = vm_state(p, vm.name) or {}
                want_image = str(images[vm.image].dir) if vm.image else None
                if old.get("vm") != dataclasses.asdict(vm) or old.get("image") != want_image:
                    log(f"{vm.name}: running with an older definition or image; "
                        f"`hack/lab.sh down` then `hack/lab.sh up` to apply the change")
                continue
            stop_vm(p, vm.name)  # leftovers of a crashed run (no-op when none)
            keep = _disks_to_keep(p, vm, str(images[vm.image].dir) if vm.image else None)
            log(f"{vm.name}: starting ({accel}, {vm.memory_mib} MiB, {vm.cpus} vCPU, "
                f"{vm.boot} boot, {vm.ip}{', disks kept' if keep else ''})")
            t0[vm.name] = time.monotonic()
            procs[vm.name] = start_vm(p, lab, vm, images.get(vm.image) if vm.image else None, accel,
                                      keep_disks=keep)
            changed = True
        booted = wait_for_ssh(p, lab, [vm for vm in vms if vm.boot in IMAGE_BOOTS], procs, t0)
        for vm in vms:
            if vm.boot == "network":
                log(f"{vm.name}: started (network boot: no SSH until a provisioning host serves it)")
    return {"changed": changed, "netns": lab.netns, "accel": accel, "already_running": sorted(already),
            "boot_seconds": {k: round(v, 1) for k, v in booted.items()},
            "containers": {ct.name: {"ip": ct.ip, "container": ct.container, "groups": ct.groups} for ct in cts},
            "hosts": {vm.name: {"ip": vm.ip, "mac": vm.mac, "tap": vm.tap, "groups": vm.groups,
                                "image": str(images[vm.image].dir) if vm.image else None,
                                "kernel_version": images[vm.image].manifest["kernel_version"]
                                if vm.image else None} for vm in vms},
            "ssh_config": str(p.ssh_config), "inventory": str(lab.inventory)}


def _disks_to_keep(p: Paths, vm: VM, image_dir: str | None) -> bool:
    """Whether a stopped VM starts again on the disks it had: yes when it left disks behind (stopped by
    `down HOST` or `kill HOST`, or crashed) and its definition and image are the ones they were made for."""
    d = p.vm_dir(vm.name)
    old = vm_state(p, vm.name)
    if old is None or not any(d.glob("*.raw")) and not (d / "root.qcow2").exists():
        return False
    if old.get("vm") != dataclasses.asdict(vm) or old.get("image") != image_dir:
        log(f"{vm.name}: its definition or image changed since its disks were made: new disks")
        return False
    return True


def cmd_kill(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Hard power-off of running VMs (QEMU `quit`: no guest shutdown, nothing flushed), disks kept."""
    require_root()
    with flock(p.lab / "lock", "up/down"):
        killed: dict[str, float] = {}
        for name in args.hosts:
            if not vm_running(p, name):
                die(f"{name}: not a running lab VM")
            if stop_vm(p, name):
                killed[name] = time.time()
                log(f"{name}: killed (QEMU quit, no shutdown; disks kept: `up {name}` starts it on them)")
    return {"changed": bool(killed), "killed_at": killed}


def close_control_masters(directory: Path) -> None:
    """End Ansible's SSH control masters to the lab's hosts (their sockets in ``directory``): a master outlives
    its VM and its namespace, and a later lab with the same addresses would send every task into it."""
    for sock in sorted(directory.glob("*")) if directory.is_dir() else []:
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab-host"], capture_output=True,
                       check=False, timeout=30)


def cmd_down(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    require_root()
    if args.hosts:  # power off only these VMs (their disks/volumes stay); the lab stays up
        with flock(p.lab / "lock", "up/down"):
            vm_root = p.run / "vms"
            running = sorted(d.name for d in vm_root.iterdir()) if vm_root.is_dir() else []
            unknown = sorted(set(args.hosts) - set(running))
            if unknown:
                die(f"not lab VMs of the running lab: {', '.join(unknown)} (VMs: {', '.join(running) or 'none'})")
            changed = False
            netns = (read_state(p) or {}).get("netns", DEFAULTS["lab_netns"])
            for name in args.hosts:
                if stop_vm(p, name):
                    log(f"{name}: stopped")
                    changed = True
                if netns_exists(netns):  # its tap goes too: the namespace holds only running hosts' taps
                    ip_cmd("-n", netns, "link", "del", tap_name(name), what="", check=False)
        return {"changed": changed}
    with flock(p.lab / "lock", "up/down"):
        state = read_state(p) or {}
        netns = state.get("netns") or args.netns or DEFAULTS["lab_netns"]
        changed = False
        ct_root = p.run / "containers"
        for d in sorted(ct_root.iterdir()) if ct_root.is_dir() else []:
            if stop_container(CONTAINER_PREFIX + d.name):
                log(f"{d.name}: container {CONTAINER_PREFIX + d.name} removed")
                changed = True
        vm_root = p.run / "vms"
        for d in sorted(vm_root.iterdir()) if vm_root.is_dir() else []:
            if stop_vm(p, d.name):
                log(f"{d.name}: stopped")
                changed = True
        (p.ssh / NODE_KNOWN_HOSTS).unlink(missing_ok=True)
        close_control_masters(p.run / "ansible-cp")
        strays = stray_processes(p)
        if strays:
            log(f"killing stray lab processes: {strays}")
            for pid in strays:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_gone(strays, STOP_GRACE_S)
            changed = True
        if netns_exists(netns):
            left = ip_cmd("netns", "pids", netns, what="", check=False).stdout.split()
            if left:
                log(f"note: processes still inside namespace {netns} (not started by the lab, left "
                    f"alone): {' '.join(left)}")
            ip_cmd("netns", "del", netns, what=f"deleting network namespace {netns}")
            log(f"network namespace {netns} deleted")
            changed = True
        if p.run.exists():
            shutil.rmtree(p.run)
    return {"changed": changed}


def _ssh_quiet(p: Paths, netns: str, host: str, cmd: Sequence[str]) -> bool:
    try:
        return subprocess.run(ssh_argv(p, netns, host, cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def cmd_restart(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Power-cycle VMs of the running lab KEEPING their disks (root overlay, lab disks), optionally in another
    boot mode (`--boot disk` after an A/B first install), then wait until they answer SSH again.

    A VM that answers SSH is asked to power off (`systemctl poweroff`, so its file systems are clean) and
    given RESTART_POWEROFF_S to do so; then (or when it does not answer) it is stopped like `down HOST`."""
    require_root()
    lab = load_inventory(args.inventory)
    vms = lab.select(args.hosts)
    with flock(p.lab / "lock", "up/down"):
        state = read_state(p)
        if not state or state.get("netns") != lab.netns or not netns_exists(lab.netns):
            die(f"the lab of {lab.inventory} is not up (run `hack/lab.sh up` first)")
        accel = state.get("accel") or detect_accel()
        images: dict[str, Image] = {}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        t0: dict[str, float] = {}
        for vm in vms:
            old = vm_state(p, vm.name) or {}
            if args.boot:
                vm = dataclasses.replace(vm, boot=args.boot)
            if vm.boot == "network":
                die(f"{vm.name}: restart keeps disks; a network-booted VM has none (use down/up)")
            if vm.boot == "disk" and not vm.disks:
                die(f"{vm.name}: --boot disk boots the first lab disk, and it has no lab_disks")
            if not (p.vm_dir(vm.name) / "root.qcow2").exists():
                die(f"{vm.name}: no disks to keep (never started, or removed by `down`): use `up {vm.name}`")
            # the image its overlay was made from (kept: the recipe may have changed since)
            image_dir_s = old.get("image")
            image: Image | None = None
            if image_dir_s and Path(image_dir_s, "manifest.json").is_file():
                image = Image(vm.image or "", Path(image_dir_s),
                              json.loads(Path(image_dir_s, "manifest.json").read_text()))
            elif vm.image:
                if vm.image not in images:
                    images[vm.image] = build_image(p, vm.image)[0]
                image = images[vm.image]
            pid = vm_running(p, vm.name)
            if pid and _ssh_quiet(p, lab.netns, vm.name, ["true"]):
                log(f"{vm.name}: powering off (systemctl poweroff)")
                _ssh_quiet(p, lab.netns, vm.name, ["systemctl", "poweroff"])
                if not wait_gone([pid], RESTART_POWEROFF_S):
                    log(f"{vm.name}: still running after {RESTART_POWEROFF_S:.0f} s: stopping it")
            stop_vm(p, vm.name)
            log(f"{vm.name}: starting ({accel}, {vm.memory_mib} MiB, {vm.cpus} vCPU, {vm.boot} boot, "
                f"{vm.ip}, disks kept)")
            ensure_tap(lab, vm)
            t0[vm.name] = time.monotonic()
            procs[vm.name] = start_vm(p, lab, vm, image, accel, keep_disks=True)
        write_ssh_client_files(p, lab.vms)
        booted = wait_for_ssh(p, lab, vms, procs, t0)
    return {"changed": True, "netns": lab.netns, "accel": accel,
            "boot": {vm.name: args.boot or vm.boot for vm in vms},
            "boot_seconds": {k: round(v, 1) for k, v in booted.items()}}


def cmd_status(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    state = read_state(p)
    netns = (state or {}).get("netns", DEFAULTS["lab_netns"])
    up = netns_exists(netns)
    hosts: dict[str, Any] = {}
    vm_root = p.run / "vms"
    for d in sorted(vm_root.iterdir()) if vm_root.is_dir() else []:
        st = vm_state(p, d.name) or {}
        pid = vm_running(p, d.name)
        ssh_ok = False
        if pid and up and os.geteuid() == 0 and st.get("vm", {}).get("boot") in IMAGE_BOOTS:
            ssh_ok = subprocess.run(ssh_argv(p, netns, d.name, ["true"]), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    check=False).returncode == 0
        hosts[d.name] = {"running": bool(pid), "pid": pid, "ssh": ssh_ok,
                         "ip": st.get("vm", {}).get("ip"), "image": st.get("image"),
                         "console": str(p.logs / f"{d.name}.console.log")}
    ct_root = p.run / "containers"
    for d in sorted(ct_root.iterdir()) if ct_root.is_dir() else []:
        try:
            st = json.loads((d / "ct.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            st = {}
        running = container_running(CONTAINER_PREFIX + d.name)
        hosts[d.name] = {"running": running, "pid": None, "ssh": False, "container": CONTAINER_PREFIX + d.name,
                         "ip": st.get("ct", {}).get("ip"), "image": st.get("image"),
                         "console": f"podman logs {CONTAINER_PREFIX + d.name}"}
    if not args.json:
        print(f"namespace {netns}: {'up' if up else 'down'}"
              + (f" ({state.get('accel')}, inventory {state.get('inventory')})" if state else ""))
        for name, h in hosts.items():
            print(f"  {name:12} {'running' if h['running'] else 'STOPPED':8} pid={h['pid'] or '-':<8} "
                  f"ip={h['ip'] or '-':<15} ssh={'ok' if h['ssh'] else 'no'}  console={h['console']}")
    return {"changed": False, "netns": netns, "up": up, "hosts": hosts}


def cmd_ssh(p: Paths, args: argparse.Namespace) -> NoReturn:
    require_root()
    state = read_state(p)
    if not state or not p.ssh_config.exists():
        die("the lab is not up (run hack/lab.sh up)")
    running = sorted(d.name for d in (p.run / "vms").iterdir()) if (p.run / "vms").is_dir() else []
    if args.host not in running:
        die(f"{args.host} is not a lab VM (lab VMs: {', '.join(running) or 'none'})")
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    argv = ssh_argv(p, state["netns"], args.host, cmd, tty=not cmd and sys.stdin.isatty())
    os.execvp(argv[0], argv)


def cmd_exec(p: Paths, args: argparse.Namespace) -> NoReturn:
    require_root()
    state = read_state(p)
    netns = (state or {}).get("netns", DEFAULTS["lab_netns"])
    if not netns_exists(netns):
        die(f"network namespace {netns} does not exist (run hack/lab.sh up)")
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = [os.environ.get("SHELL", "/bin/bash")]
    os.environ["DL_LAB_NETNS"] = netns
    # Ansible and the lab's client library (lab/client.py: tests, benches) default to the running lab's inventory
    inventory = str((state or {}).get("inventory", DEFAULT_INVENTORY))
    os.environ.setdefault("ANSIBLE_INVENTORY", inventory)
    os.environ.setdefault("DL_LAB_INVENTORY", inventory)
    # one Ansible worker per lab host: with ansible-core's default of 5 forks a task on the six nodes runs in two
    # rounds, the sixth node alone after the other five (site.yml, verify.yml, the tests' and benches' plays)
    os.environ.setdefault("ANSIBLE_FORKS", str(LAB_FORKS))
    # nsenter, not `ip netns exec`: that one also remounts /sys, which hides the cgroup file systems
    # runc needs, so `podman exec` (Ansible's podman connection to a lab container) would fail with
    # "error adding pid ... to cgroups". Only the network namespace is entered.
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{netns}", "--", *cmd])


def cmd_console(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    path = p.logs / f"{args.host}.console.log"
    if not path.exists():
        die(f"no console log for {args.host} ({path})")
    sys.stdout.write(path.read_text(errors="replace"))
    return {"changed": False}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__.split("\n\n", maxsplit=1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-i", "--inventory", type=Path,
                    default=Path(os.environ.get("DL_LAB_INVENTORY", DEFAULT_INVENTORY)),
                    help="lab inventory (default: inventories/lab or $DL_LAB_INVENTORY)")
    ap.add_argument("--json", action="store_true", help="print a JSON result on stdout")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("build-image", help="build (or reuse) cached VM images")
    s.add_argument("names", nargs="*", help="image recipes (lab/images/NAME.toml); default: all")
    s.add_argument("--force", action="store_true", help="rebuild even if cached")
    s = sub.add_parser("up", help="start the lab network and VMs, wait for SSH")
    s.add_argument("hosts", nargs="*", help="only these inventory hosts (default: all without lab_start: false)")
    s = sub.add_parser("down", help="stop every lab VM and delete the namespace (idempotent)")
    s.add_argument("hosts", nargs="*", help="only power off these VMs (the lab stays up)")
    s.add_argument("--netns", help="namespace to delete if no lab state is left")
    s = sub.add_parser("kill", help="fault injection: QEMU quits at once (no shutdown), disks kept")
    s.add_argument("hosts", nargs="+", help="running lab VMs")
    s = sub.add_parser("restart", help="power-cycle VMs keeping their disks, wait for SSH")
    s.add_argument("hosts", nargs="+", help="lab VMs of the running lab")
    s.add_argument("--boot", choices=[m for m in BOOT_MODES if m != "network"],
                   help="boot this way from now on (default: the VM's lab_boot); disk: BIOS boot from the first "
                        "lab disk")
    sub.add_parser("status", help="show lab VMs and whether SSH answers")
    s = sub.add_parser("ssh", help="ssh into a lab host: ssh HOST [-- CMD...]")
    s.add_argument("host")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("exec", help="run a command inside the lab namespace: exec -- CMD...")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("console", help="print a VM's serial console log")
    s.add_argument("host")
    args = ap.parse_args(argv)
    p = Paths(cache_dir())
    handler = {"build-image": cmd_build_image, "up": cmd_up, "down": cmd_down, "kill": cmd_kill,
               "restart": cmd_restart,
               "status": cmd_status,
               "ssh": cmd_ssh, "exec": cmd_exec, "console": cmd_console}[args.command]
    try:
        result = handler(p, args)
    except LabError as exc:
        log(str(exc))
        if args.json:
            print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    except KeyboardInterrupt:
        log("interrupted (run `hack/lab.sh down` to clean up)")
        return 130
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif args.command == "up":
        # on stdout, for power-on hooks (playbooks/compute.yml reports `changed` unless it says so)
        for name in result["already_running"]:
            print(f"{name}: already running")
    if args.command == "status":
        return 0 if result["up"] and all(h["running"] for h in result["hosts"].values()) else 3
    return 0
