"""Lab VMs: acceleration, the QEMU command line, start (inside the namespace, under `timeout`), waiting for
SSH, stop (monitor `quit`, then signals), their state files, and stray lab processes."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

from lab.images import Image
from lab.inventory import VM, Lab
from lab.network import ensure_tap
from lab.paths import Paths
from lab.ssh import ssh_argv
from lab.util import die, log, pid_alive, read_pid, run, tail

STOP_GRACE_S = 15.0
RESTART_POWEROFF_S = 120.0  # `restart`: how long a VM gets to power itself off before it is stopped
SSH_POLL_S = 2.0


def detect_accel() -> str:
    """tcg or kvm. A PVM /dev/kvm (nested hypervisor) hangs stock kernels: treat it as no KVM."""
    forced = os.environ.get("DL_LAB_ACCEL")
    if forced:
        if forced not in ("tcg", "kvm"):
            die(f"DL_LAB_ACCEL={forced!r}: must be tcg or kvm")
        return forced
    if Path("/sys/module/kvm_pvm").exists():
        return "tcg"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return "kvm"
    except OSError:
        return "tcg"


# A TCG guest very rarely hangs with every vCPU spinning at one kernel address (seen once in CI: the
# storage VM's warm reboot, while systemd enabled cgroup controllers; the soft lockup detector kept
# reporting it for 30 min). With these, the kernel's soft lockup detector turns such a hang into a panic
# and QEMU's reset into a fresh boot, ~80 s later, instead of a VM that never answers again. A VM that
# takes that way out says so in its console ("softlockup: hung tasks"); see wait_for_ssh and docs/lab.md.
# Kernel boot only: a network-booted node takes the cluster's kernel_args (the lab inventory sets them),
# a disk-booted A/B host its slots' (plus the i6300esb watchdog).
TCG_HANG_RESET_ARGS = ("softlockup_panic=1", "watchdog_thresh=30", "panic=10")
SOFTLOCKUP_PANIC = "Kernel panic - not syncing: softlockup"
# The TCG CPU: qemu64 with the instructions any x86-64 server of the last 15 years has and TCG emulates. AES-NI
# matters: a LUKS root's dm-crypt runs ~4x faster under TCG with aesni_intel than with aes-generic (cryptsetup
# benchmark aes-xts-512 in one TCG VM: 55 vs 15 MiB/s encryption), and so do OpenSSH's ciphers.
TCG_CPU = "qemu64,+aes,+pclmulqdq,+ssse3,+sse4.1,+sse4.2,+popcnt"


def qemu_argv(p: Paths, lab: Lab, vm: VM, image: Image | None, accel: str) -> list[str]:
    d = p.vm_dir(vm.name)
    argv = ["qemu-system-x86_64", "-name", f"guest={vm.name},process=dl-lab-{vm.name}",
            "-machine", "pc", "-nodefaults", "-display", "none",
            "-smp", str(vm.cpus), "-m", str(vm.memory_mib)]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        tb = vm.tb_size_mib or (512 if vm.memory_mib >= 1024 else 128)
        argv += ["-accel", f"tcg,thread=multi,tb-size={tb}", "-cpu", TCG_CPU]
    argv += ["-serial", f"file:{p.logs / (vm.name + '.console.log')}",
             "-monitor", f"unix:{d / 'monitor.sock'},server=on,wait=off",
             "-pidfile", str(d / "qemu.pid"),
             "-device", "virtio-rng-pci",
             "-netdev", f"tap,id=net0,ifname={vm.tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=net0,mac={vm.mac}"]
    if vm.boot == "kernel":
        assert image is not None
        mask = str(ipaddress.ip_network(f"0.0.0.0/{vm.prefixlen}").netmask)
        append = ["root=/dev/vda", "rw", "console=ttyS0,115200", "net.ifnames=0",
                  f"systemd.hostname={vm.name}", f"ip={vm.ip}:::{mask}:{vm.name}:eth0:off",
                  *(TCG_HANG_RESET_ARGS if accel == "tcg" else ()), *vm.kernel_args]
        argv += ["-vga", "none", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                 "-append", " ".join(append),
                 "-drive", f"file={d / 'root.qcow2'},if=virtio,format=qcow2,cache=unsafe,discard=unmap"]
    elif vm.boot == "disk":
        # BIOS -> the boot loader on the first lab disk (bootindex). Every disk as an explicit virtio-blk
        # device in the same order as in kernel boot (vda = image overlay, vdb... = lab disks), and an
        # i6300esb watchdog that resets the VM when the guest stops petting it (systemd RuntimeWatchdogSec)
        argv += ["-vga", "none", "-device", "i6300esb", "-action", "watchdog=reset",
                 "-drive", f"file={d / 'root.qcow2'},if=none,id=vd0,format=qcow2,cache=unsafe,discard=unmap",
                 "-device", "virtio-blk-pci,drive=vd0"]
        for i in range(len(vm.disks)):
            argv += ["-drive", f"file={d / f'disk{i + 1}.raw'},if=none,id=vd{i + 1},format=raw,cache=unsafe,"
                     "discard=unmap",
                     "-device", f"virtio-blk-pci,drive=vd{i + 1}" + (",bootindex=1" if i == 0 else "")]
        return argv
    else:
        argv += ["-vga", "std", "-boot", "n"]  # QEMU's iPXE NIC ROM; iPXE prints to VGA only
    for i in range(len(vm.disks)):
        argv += ["-drive", f"file={d / f'disk{i + 1}.raw'},if=virtio,format=raw,cache=unsafe,discard=unmap"]
    return argv


def vm_state(p: Paths, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((p.vm_dir(name) / "vm.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def vm_running(p: Paths, name: str) -> int | None:
    pid = read_pid(p.vm_dir(name) / "qemu.pid")
    return pid if pid and pid_alive(pid) else None


def start_vm(p: Paths, lab: Lab, vm: VM, image: Image | None, accel: str,
             keep_disks: bool = False) -> subprocess.Popen[bytes]:
    """Start the VM. `keep_disks` (restart): reuse its root overlay and lab disks when they exist."""
    d = p.vm_dir(vm.name)
    if d.exists() and not keep_disks:
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    p.logs.mkdir(parents=True, exist_ok=True)
    # the previous run's console log (kept once, as .prev) must not be read as this boot's: wait_for_ssh
    # looks for "Kernel panic" in it before QEMU has opened (and truncated) the file
    console = p.logs / f"{vm.name}.console.log"
    if console.exists():
        console.replace(console.with_name(f"{vm.name}.console.prev.log"))
    if image is not None and not (keep_disks and (d / "root.qcow2").exists()):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk),
             str(d / "root.qcow2")], what=f"{vm.name}: creating the root overlay", capture=True)
    for i, size in enumerate(vm.disks):
        if keep_disks and (d / f"disk{i + 1}.raw").exists():
            continue
        with open(d / f"disk{i + 1}.raw", "wb") as fh:  # sparse
            fh.truncate(size)
    ensure_tap(lab, vm)
    argv = qemu_argv(p, lab, vm, image, accel)
    wrapped = ["ip", "netns", "exec", lab.netns,
               "timeout", "--kill-after=30", str(vm.timeout_s), *argv]
    state = {"vm": dataclasses.asdict(vm), "netns": lab.netns, "accel": accel,
             "image": str(image.dir) if image else None, "argv": wrapped}
    (d / "vm.json").write_text(json.dumps(state, indent=2) + "\n")
    with open(d / "qemu.log", "wb") as out:
        proc = subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    (d / "timeout.pid").write_text(f"{proc.pid}\n")
    return proc


def wait_for_ssh(p: Paths, lab: Lab, vms: Sequence[VM], procs: dict[str, subprocess.Popen[bytes]],
                 t0: dict[str, float]) -> dict[str, float]:
    """Poll until every VM answers `ssh true`; fail fast if a QEMU dies or a kernel panics."""
    pending = {vm.name for vm in vms}
    reset: set[str] = set()
    deadline = time.monotonic() + lab.boot_timeout_s
    took: dict[str, float] = {}
    while pending:
        for name in sorted(pending):
            proc = procs.get(name)
            console = p.logs / f"{name}.console.log"
            dead = (proc.poll() is not None) if proc else vm_running(p, name) is None
            if dead:
                die(f"{name}: QEMU exited before SSH answered; QEMU said:\n"
                    f"{tail(p.vm_dir(name) / 'qemu.log', 10)}\n  console ({console}):\n{tail(console)}")
            with contextlib.suppress(FileNotFoundError):
                text = console.read_text(errors="replace")
                panic = text.rfind("Kernel panic")
                if panic >= 0 and not text.startswith(SOFTLOCKUP_PANIC, panic):
                    die(f"{name}: kernel panic while booting; console ({console}):\n{tail(console)}")
                if panic >= 0 and name not in reset:  # the VM resets itself (TCG_HANG_RESET_ARGS): wait
                    reset.add(name)
                    log(f"{name}: the guest hung (soft lockup) and panicked; QEMU resets it, still waiting")
            r = subprocess.run(ssh_argv(p, lab.netns, name, ["true"]), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if r.returncode == 0:
                pending.discard(name)
                if name in t0:
                    took[name] = time.monotonic() - t0[name]
                    log(f"{name}: SSH answers ({took[name]:.0f} s after start)")
                else:
                    log(f"{name}: already running, SSH answers")
        if pending:
            if time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                die(f"{names}: no SSH after {lab.boot_timeout_s} s (lab_boot_timeout); console logs in "
                    f"{p.logs}/; last lines of {sorted(pending)[0]}:\n"
                    f"{tail(p.logs / (sorted(pending)[0] + '.console.log'))}\n  The VMs stay up for "
                    "inspection (hack/lab.sh status / console / ssh); `hack/lab.sh down` removes them.")
            time.sleep(SSH_POLL_S)
    return took


def stop_vm(p: Paths, name: str) -> bool:
    """Stop one VM: monitor `quit`, then SIGTERM/SIGKILL of its timeout wrapper's process group."""
    d = p.vm_dir(name)
    qpid = read_pid(d / "qemu.pid")
    tpid = read_pid(d / "timeout.pid")
    alive = [x for x in (qpid, tpid) if x and pid_alive(x)]
    if not alive:
        return False
    sock = d / "monitor.sock"
    if qpid and pid_alive(qpid) and sock.exists():
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(str(sock))
            s.sendall(b"quit\n")
            with contextlib.suppress(OSError):
                while s.recv(4096):
                    pass
    if not wait_gone(alive, 5):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if pid == tpid:
                        os.killpg(pid, sig)  # timeout leads its own process group: it + qemu
                    else:
                        os.kill(pid, sig)
            if wait_gone(alive, STOP_GRACE_S):
                break
    if any(pid_alive(x) for x in alive):
        die(f"{name}: could not stop QEMU (pids {alive})")
    return True


def wait_gone(pids: Sequence[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(pid_alive(x) for x in pids):
            return True
        time.sleep(0.2)
    return not any(pid_alive(x) for x in pids)


def stray_processes(p: Paths) -> list[int]:
    """Lab processes left behind: QEMU / timeout referencing this lab's run directory, and SSH
    connection masters (Ansible, testinfra) using the lab's SSH key or config."""
    markers = {"qemu": str(p.run).encode(), "timeout": str(p.run).encode(), "ssh": str(p.ssh).encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        prog = os.path.basename(argv[0]).decode(errors="replace") if argv else ""
        kind = "qemu" if prog.startswith("qemu-system") else prog
        if kind in markers and any(markers[kind] in a for a in argv[1:]):
            found.append(int(entry.name))
    return found
