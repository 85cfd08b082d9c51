"""What lab tests and benches use to drive a lab and read it: the lab command (`python3 -m lab`) for the
inventory under test, Ansible runs with JSON output, VM consoles, the inventory, the namespace check, and
timing records (reported, never asserted).

The inventory under test is $DL_LAB_INVENTORY (default inventories/lab; `python3 -m lab exec` sets it to the
running lab's inventory).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.inventory import netns_of, read_inventory
from lab.paths import DEFAULT_INVENTORY, REPO, Paths, cache_dir

INVENTORY = Path(os.environ.get("DL_LAB_INVENTORY", DEFAULT_INVENTORY))

_timings: list[tuple[str, float]] = []


class LabCommandFailed(AssertionError):
    """A lab command (`python3 -m lab ...`) a test or bench relies on failed."""


def timings() -> list[tuple[str, float]]:
    """(what, seconds) recorded so far by this process, in order."""
    return list(_timings)


def record_timing(what: str, seconds: float, key: str | None = None, **extra: Any) -> None:
    """Timings are reported (terminal summary), never asserted. With ``key`` the figure is also kept with
    the running lab (``lab/run/measurements.json``, gone with `down`) so that bench/boot_time.py
    --reuse prints it next to its own figures instead of measuring the same thing again."""
    _timings.append((what, seconds))
    if key:
        path = measurements_file()
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = {"seconds": round(seconds, 1), "what": what, **extra}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def measurements_file() -> Path:
    return Paths(cache_dir()).run / "measurements.json"


def labctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python3 -m lab --inventory INVENTORY ARGS...` (from the repository); raises LabCommandFailed on
    failure when `check`."""
    proc = subprocess.run([sys.executable, "-m", "lab", "--inventory", str(INVENTORY), *args],
                          capture_output=True, text=True, check=False, cwd=REPO)
    if check and proc.returncode != 0:
        raise LabCommandFailed(f"lab {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr}")
    return proc


def ansible_json(argv: list[str],
                 prefix: list[str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """Run `ansible`/`ansible-playbook` (behind `prefix`, e.g. nsenter) with the ansible.posix.json stdout
    callback, from the repository: the process and its parsed output (None when stdout holds no JSON)."""
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([*(prefix or []), *argv], capture_output=True, text=True, env=env, cwd=REPO,
                          check=False)
    try:
        return proc, json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        return proc, None


def inventory_args(*inventories: Path) -> list[str]:
    """`-i A -i B ...`: several inventory sources read as one (a later source adds hosts, or overrides a host's
    variables)."""
    return [arg for inv in inventories for arg in ("-i", str(inv))]


def plan_slices(inventory: Path | list[Path], hosts: str = "provisioning:storage:compute") -> dict[str, dict[str, Any]]:
    """Every host's slice of the plan (diskless.cluster.plan_slice, on the controller: no host is contacted),
    secrets included: the lab tests act as the nodes' initiators with the CHAP credentials of the storage
    hosts' slices. Several inventories (a list) are read as one (inventory_args)."""
    sources = inventory_args(*(inventory if isinstance(inventory, list) else [inventory]))
    proc, data = ansible_json(["ansible", *sources, hosts, "-m", "diskless.cluster.plan_slice"])
    assert proc.returncode == 0 and data, no_json("plan_slice", proc)
    return {host: result["slice"] for host, result in data["plays"][0]["tasks"][0]["hosts"].items()}


def node_credentials(slices: dict[str, dict[str, Any]], node: str) -> dict[str, Any]:
    """The ACL entry (initiator IQN, CHAP user/secret, mutual user/secret) of ``node`` in its storage hosts' slices."""
    for part in slices.values():
        for export in part.get("lio_iscsi", {}).get("exports", []):
            for acl in export["acls"]:
                if acl["node"] == node:
                    return acl
    raise AssertionError(f"{node} has no ACL in any storage host's slice")


def no_json(what: str, proc: subprocess.CompletedProcess[str]) -> str:
    """The failure message of an Ansible run whose stdout held no JSON."""
    return f"{what}: no JSON on stdout (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def run_site(inventory: Path, what: str, key: str | None = None) -> dict[str, Any]:
    """Apply playbooks/site.yml to the lab; its stats per host and the changed tasks ("host: task").
    Raises AssertionError when the run fails; the wall time is recorded (under `key`, see record_timing)."""
    return run_playbook(inventory, "site.yml", what, key)


def run_playbook(inventory: Path, playbook: str, what: str, key: str | None = None,
                 check: bool = True) -> dict[str, Any]:
    """Apply playbooks/<playbook> to the lab: as run_site, for any playbook of the collection. With check=False a
    failed run is returned, not raised: its "failed" tasks ("host: task: message") and "rc"."""
    t0 = time.monotonic()
    proc, data = ansible_json(["ansible-playbook", "-i", str(inventory), str(REPO / "playbooks" / playbook)])
    took = time.monotonic() - t0
    if data is None:
        raise AssertionError(no_json(f"{playbook} ({what})", proc))
    results = [(h, t["task"]["name"], r) for play in data["plays"] for t in play["tasks"]
               for h, r in t["hosts"].items()]
    failed = [f"{h}: {name}: {r.get('msg')}" for h, name, r in results if r.get("failed") or r.get("unreachable")]
    assert not check or (proc.returncode == 0 and not failed), f"{playbook} ({what}): rc {proc.returncode}; failed: {failed}"
    changed = [f"{h}: {name}" for h, name, r in results if r.get("changed")]
    record_timing(f"{playbook}: {what}", took, key=key, changed=len(changed))
    return {"stats": data["stats"], "changed": changed, "results": results, "failed": failed, "rc": proc.returncode}


def new_zvol_sh(zvol: str, size: str) -> str:
    """Shell lines for a storage host: create a sparse zvol (volmode=dev) unless it exists and wait for its
    /dev/zvol link. ZFS makes the device asynchronously, after `udevadm settle` may have returned: a write to
    the link before it exists would create a file on /dev (devtmpfs) instead."""
    return (f"zfs list {zvol} >/dev/null 2>&1 || zfs create -s -V {size} -o volmode=dev {zvol}\n"
            f"for i in $(seq 120); do [ -b /dev/zvol/{zvol} ] && break; udevadm settle; sleep 0.5; done\n"
            f"[ -b /dev/zvol/{zvol} ] || {{ echo 'no block device /dev/zvol/{zvol}' >&2; exit 1; }}\n")


def ssh_answers(ssh_config: Path, host: str) -> bool:
    """Whether a lab host answers `ssh true` (within a minute)."""
    try:
        return subprocess.run(["ssh", "-F", str(ssh_config), "-o", "ConnectTimeout=5", host, "true"],
                              capture_output=True, check=False, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def boot_seconds(ssh_config: Path, nodes: list[str]) -> dict[str, float]:
    """Power-on -> sshd active of each running node's CURRENT boot, read after the fact (no reboot): from its
    QEMU process's start (the power-on, host clock) to when ssh.service became active (the node's uptime and
    the unit's monotonic timestamp, read over SSH and put on the host clock, +-0.5 s)."""
    status = json.loads(labctl("--json", "status", check=False).stdout or "{}").get("hosts", {})
    hz = os.sysconf("SC_CLK_TCK")
    btime = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                 if line.startswith("btime "))
    took: dict[str, float] = {}
    for node in nodes:
        pid = status.get(node, {}).get("pid")
        if not pid:
            continue
        started = btime + int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / hz
        t0 = time.time()
        proc = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "ConnectTimeout=5", node,
                               "cut -d' ' -f1 /proc/uptime; systemctl show -p ActiveEnterTimestampMonotonic --value "
                               "ssh.service"], capture_output=True, text=True, check=False, timeout=60)
        now = (t0 + time.time()) / 2
        words = proc.stdout.split()
        if proc.returncode == 0 and len(words) == 2 and int(words[1]) > 0:
            took[node] = round(now - (float(words[0]) - int(words[1]) / 1e6) - started, 1)
    return took


def record_concurrent_boots() -> None:
    """After the first site.yml of a lab (it powered every node on at once): each node's power-on -> sshd,
    kept for bench/root_modes.py (P5: every node at once vs one alone) so that it need not boot them all again."""
    nodes = sorted(inventory().get("compute", {}).get("hosts", []))
    took = boot_seconds(Paths(cache_dir()).ssh_config, nodes)
    for node, secs in took.items():
        print(f"lab: {node}: power-on -> sshd {secs:.1f} s (every node powered on at once)")
    if took:
        record_timing("every node powered on at once (first site.yml): power-on -> sshd, slowest", max(took.values()),
                      key="boot_together", nodes=took)


LUKS_FIRST_BOOT_RE = re.compile(r"luks: (\S+) encrypted and bound to Tang in (\d+) s \((\d+) MiB\)")


def record_luks_first_boots() -> None:
    """After the first site.yml of a lab: what each LUKS node's first boot spent encrypting its volume in place
    (the initramfs says it on the console), kept for bench/root_modes.py (first-boot cost per GiB)."""
    inv = inventory()
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    for node in sorted(inv.get("compute", {}).get("hosts", [])):
        if not hostvars.get(node, {}).get("node_luks"):
            continue
        found = LUKS_FIRST_BOOT_RE.findall(console_text(node))
        if not found:
            print(f"lab: {node}: no first-boot encryption on its console (already encrypted?)")
            continue
        dev, secs, mib = found[0]
        print(f"lab: {node}: first boot encrypted {dev} ({mib} MiB) in place in {secs} s")
        record_timing(f"{node}: first boot, LUKS encryption in place of {mib} MiB", float(secs),
                      key=f"luks_first_boot_{node}", node=node, mib=int(mib))


def wait_until(what: str, check: Any, timeout: float, every: float = 5.0) -> float:
    """Seconds until ``check()`` returns True; an SSH hiccup (OSError, timeout, AssertionError of an ssh helper)
    while a machine reboots or heals counts as not yet. AssertionError naming ``what`` and the last answer
    after ``timeout``."""
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            last = check()
        except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
            last = exc
        else:
            if last is True:
                return time.monotonic() - t0
        time.sleep(every)
    raise AssertionError(f"{what}: not after {timeout:.0f} s (last: {last!r})")


def wait_ssh(ssh_config: Path, host: str, timeout: float = 900) -> float:
    """Seconds until a (re)booting lab machine answers SSH; AssertionError with its console's tail if not."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ssh_answers(ssh_config, host):
            return time.monotonic() - t0
        time.sleep(2)
    raise AssertionError(f"{host}: no SSH {timeout:.0f} s after power-on\n{console_tail(host)}")


def console_text(host: str) -> str:
    """A lab VM's whole serial console log (or the lab's reason why there is none)."""
    proc = labctl("console", host, check=False)
    return proc.stdout if proc.returncode == 0 else proc.stderr


def console_tail(host: str, lines: int = 60) -> str:
    """The last lines of a lab VM's serial console, for a failure message (CI shows no lab/logs/)."""
    return f"--- {host} console, last {lines} lines (hack/lab.sh console {host}):\n" + "\n".join(
        console_text(host).splitlines()[-lines:])


def inventory() -> dict[str, Any]:
    """`ansible-inventory --list` of the inventory under test (lab/inventory.py reads it)."""
    return read_inventory(INVENTORY)


def lab_netns() -> str:
    return netns_of(inventory())


def in_lab_netns() -> bool:
    """Whether this process runs inside the namespace of the lab under test."""
    try:
        mine = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True,
                              text=True, check=False).stdout.split()
    except FileNotFoundError:
        return False
    return lab_netns() in mine


@dataclasses.dataclass
class LabInfo:
    inventory: Path
    netns: str
    ssh_config: Path
    hosts: dict[str, dict[str, Any]]   # name -> {ip, mac, groups, kernel_version, ...} from `up`
    hostvars: dict[str, dict[str, Any]]  # inventory host vars (untemplated)
    accel: str                           # tcg or kvm (`up`)
