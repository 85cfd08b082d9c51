"""What the A/B update tests of the lab (tests/lab/test_ab_update.py) and bench/ab_update.py use, inside the
lab namespace.

The storage host of the lab inventory that has an `ab_update_disk` (sch2 in inventories/lab): site.yml gave it
its pool and exports (the other half of the mirror node's root, a path of the shared image), and the nodes run
on them; playbooks/ab_update.yml A/B-installs it (the lab restarts it from its A/B disk) and updates it, one
reboot after another under the running nodes. The update images are made ON the VM from its running root
(`make_image`), so nothing big crosses SSH.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from lab.client import (INVENTORY, ansible_json, console_tail, inventory, inventory_args, no_json, plan_slices,
                        record_timing)
from lab.paths import REPO, Paths, cache_dir


def _ab_host() -> tuple[str, str]:
    """(name, address) of the lab inventory's storage host with an A/B disk."""
    hostvars = inventory()["_meta"]["hostvars"]
    found = sorted(h for h, v in hostvars.items() if v.get("ab_update_disk"))
    if not found:
        raise RuntimeError(f"no storage host of {INVENTORY} has an ab_update_disk")
    return found[0], str(hostvars[found[0]]["ansible_host"])


HOST, _ADDRESS = _ab_host()
PORTAL = (_ADDRESS, 3260)
IMAGE_DIR = "/var/tmp/ab-test"
GATE = "/usr/bin/python3 -B /usr/local/lib/dl-ab/dl-ab-gate"
ENV_FILE = "/boot/dl-ab/grub/grubenv"
MARKERS = "/boot/dl-ab/dl-ab/slots.json"
DATA_BYTES = 8 * 1024 * 1024
STORAGE_PLAYBOOK = REPO / "playbooks" / "storage.yml"
UPDATE_PLAYBOOK = REPO / "playbooks" / "ab_update.yml"


@dataclasses.dataclass
class AbLab:
    ssh_config: Path
    data_volume: str          # a read-only volume of the host (its golden image): must never change
    data_sha256: str          # of its first DATA_BYTES
    targets: list[str]        # the host's planned LIO exports: restored by every slot


@dataclasses.dataclass
class PlayResult:
    rc: int
    seconds: float
    stats: dict[str, Any]
    tasks: list[tuple[str, dict[str, Any]]]
    stderr: str

    @property
    def failures(self) -> list[str]:
        out = []
        for name, res in self.tasks:
            if res.get("failed"):
                out.append(f"{name}: {res.get('msg')}")
                # a loop's own message is "One or more items failed": the items say what
                out += [f"{name}: {r.get('msg')}" for r in res.get("results") or () if r.get("failed")]
        return out

    @property
    def changed(self) -> list[str]:
        return [name for name, res in self.tasks if res.get("changed")]


def ssh_config() -> Path:
    return Paths(cache_dir()).ssh_config


def ssh(script: str, timeout: float = 1800, check: bool = True) -> str:
    """Run a bash script on the storage VM (one SSH round trip); its stdout."""
    proc = subprocess.run(["ssh", "-F", str(ssh_config()), HOST, "bash -euo pipefail -s"], input=script,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"on {HOST} (rc {proc.returncode}):\n{script}\n--- stdout\n{proc.stdout[-3000:]}\n"
                             f"--- stderr\n{proc.stderr[-3000:]}")
    return proc.stdout


def ssh_ok(timeout: float = 15) -> bool:
    try:
        return subprocess.run(["ssh", "-F", str(ssh_config()), "-o", "ConnectTimeout=5", HOST, "true"],
                              capture_output=True, timeout=timeout, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def playbook(path: Path, what: str, extra_vars: dict[str, Any] | None = None,
             more_inventory: Path | None = None, limit: str | None = None) -> PlayResult:
    """ansible-playbook with the JSON callback; never raises on a failed play (the caller asserts).
    more_inventory: a second inventory source added to the lab's (more hosts for the same groups)."""
    sources = inventory_args(INVENTORY, *([more_inventory] if more_inventory is not None else []))
    argv = ["ansible-playbook", *sources, str(path), "--limit", limit or HOST]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    t0 = time.monotonic()
    proc, data = ansible_json(argv)
    took = time.monotonic() - t0
    record_timing(f"{path.name}: {what}", took)
    if data is None:
        raise AssertionError(no_json(f"{path.name} ({what})", proc))
    tasks = [(t["task"]["name"].split(" : ", 1)[-1], t["hosts"][HOST]) for play in data["plays"]
             for t in play["tasks"] if HOST in t["hosts"]]
    # the slowest tasks of a long play (informative: where an update spends its time)
    spans = []
    for play in data["plays"]:
        for t in play["tasks"]:
            d = t["task"].get("duration") or {}
            if HOST in t["hosts"] and d.get("start") and d.get("end"):
                spans.append((_ts(d["end"]) - _ts(d["start"]), t["task"]["name"].split(" : ", 1)[-1]))
    if took > 120:
        for secs, name in sorted(spans, reverse=True)[:4]:
            record_timing(f"  {path.name}: {what}: task {name}", secs)
    return PlayResult(proc.returncode, took, data["stats"].get(HOST, {}), tasks, proc.stderr)


def _ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def converge(path: Path, what: str, extra_vars: dict[str, Any] | None = None) -> PlayResult:
    res = playbook(path, what, extra_vars)
    assert res.rc == 0 and not res.failures, f"{what}: rc {res.rc}; failed: {res.failures}\n{res.stderr[-2000:]}"
    return res


def update_vars(version: str, image: str) -> dict[str, Any]:
    return {"ab_update_image": image, "ab_update_image_remote": True, "ab_update_image_version": version}


def facts() -> dict[str, Any]:
    """Booted slot, grubenv, markers, gate verdict, the root device and the exports, read on the VM."""
    out = ssh(f"""
        echo "cmdline=$(cat /proc/cmdline)"
        echo "root=$(findmnt -no SOURCE /)"
        echo "rootlabel=$(lsblk -no PARTLABEL "$(findmnt -no SOURCE /)")"
        echo "version=$(cat /etc/dl-ab-test-version 2>/dev/null || echo none)"
        echo "verdict=$({GATE} status || true)"
        echo "markers=$(tr -d '\\n' < {MARKERS})"
        grub-editenv {ENV_FILE} list | sed 's/^/env./'
        for t in /sys/kernel/config/target/iscsi/iqn.*; do [ -d "$t" ] && echo "target=${{t##*/}}"; done
        """)
    f: dict[str, Any] = {"env": {}, "targets": []}
    for line in out.splitlines():
        key, value = line.split("=", 1) if "=" in line else (line, "")
        if key.startswith("env."):
            f["env"][key[4:]] = value
        elif key == "target":
            f["targets"].append(value)
        elif key in ("verdict", "markers"):
            f[key] = json.loads(value) if value.strip() else {}
        else:
            f[key] = value
    f["booted"] = next((w.split("=", 1)[1] for w in f["cmdline"].split() if w.startswith("dl.slot=")), None)
    env = f["env"]
    f["state"] = {s: ("bad" if env.get(f"{s}_OK") != "1" else "trying" if env.get(f"{s}_TRY", "0") != "0" else "good")
                  for s in ("A", "B")}
    return f


def data_sha256(volume: str) -> str:
    return ssh(f"head -c {DATA_BYTES} /dev/zvol/{volume} | sha256sum | cut -d' ' -f1").strip()


def boot_id() -> str:
    return ssh("cat /proc/sys/kernel/random/boot_id").strip()


def make_images(*wanted: tuple[str, str | None]) -> tuple[dict[str, str], float]:
    """Root tarballs made on the VM from its running root (what an image builder would ship), one per
    (version, broken), each with /etc/dl-ab-test-version = version. broken=None: a good image; "panic":
    /usr/sbin/init is /bin/true (PID 1 exits: kernel panic); "gate": sshd's configuration is invalid (the slot
    boots, sshd does not start: the gate fails).

    The running root is archived once (without /usr/sbin/init and the version file; kernel headers and DKMS
    build trees left out); every image is that archive with its own small tail appended (init, version file,
    the broken piece). Returns ({version: path}, seconds)."""
    base = f"{IMAGE_DIR}/base.tar"
    script = [f"""
        rm -rf {IMAGE_DIR} && mkdir -p {IMAGE_DIR}
        tar --create --file {base} --one-file-system --numeric-owner --xattrs --xattrs-include='*' --acls \\
            --exclude=.{IMAGE_DIR} --exclude=./usr/src --exclude=./var/lib/dkms --exclude=./var/cache/apt \\
            --exclude=./etc/dl-ab-test-version --exclude=./usr/sbin/init \\
            --warning=no-file-changed -C / . || [ $? -eq 1 ]  # 1: files changed as they were read
        """]
    paths = {}
    for i, (version, broken) in enumerate(wanted):
        path = paths[version] = f"{IMAGE_DIR}/{version}.tar"
        # (only files in the tail: a directory member would also set that directory's owner and mode in the slot)
        tail = {"panic": 'ln -sfn /bin/true "$x/usr/sbin/init"',
                "gate": 'cp -a /usr/sbin/init "$x/usr/sbin/init"; mkdir -p "$x/etc/ssh/sshd_config.d"; '
                        'echo "NotAnSshdOption yes" > "$x/etc/ssh/sshd_config.d/99-broken.conf"; '
                        'add="$add ./etc/ssh/sshd_config.d/99-broken.conf"',
                None: 'cp -a /usr/sbin/init "$x/usr/sbin/init"'}[broken]
        script.append(f"""
        {"mv" if i == len(wanted) - 1 else "cp"} {base} {path}
        x=$(mktemp -d); mkdir -p "$x/etc" "$x/usr/sbin"
        echo {shlex.quote(version)} > "$x/etc/dl-ab-test-version"; add="./etc/dl-ab-test-version ./usr/sbin/init"
        {tail}
        tar --append --file {path} --numeric-owner --no-recursion -C "$x" $add
        rm -rf "$x"; ls -l {path}
        """)
    t0 = time.monotonic()
    ssh("".join(script))
    took = time.monotonic() - t0
    record_timing(f"images {', '.join(paths)} made on {HOST} (one tar of the running root)", took)
    return paths, took


def make_image(version: str, broken: str | None = None) -> tuple[str, float]:
    paths, took = make_images((version, broken))
    return paths[version], took


def wait_for_new_boot(old_boot_id: str, timeout: float = 1500) -> float:
    """Poll until the VM answers with another boot_id and its gate verdict is final; seconds taken."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ssh_ok():
            out = ssh(f"cat /proc/sys/kernel/random/boot_id; {GATE} status || true", check=False).splitlines()
            if out and out[0].strip() != old_boot_id and len(out) > 1:
                verdict = json.loads(out[1]).get("verdict")
                if verdict in ("good", "failed", "not-ab"):
                    return time.monotonic() - t0
        time.sleep(5)
    raise AssertionError(f"{HOST} did not come back with a final gate verdict within {timeout:.0f} s\n"
                         f"{console_tail(HOST)}")


class PortalWatch:
    """Polls the storage host's iSCSI portal (TCP connect) every `interval` s in a thread: the downtime of an
    update is from the last answer before the reboot to the first answer after it."""

    def __init__(self, addr: tuple[str, int] = PORTAL, interval: float = 1.0):
        self.addr, self.interval = addr, interval
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _probe(self) -> bool:
        try:
            with socket.create_connection(self.addr, timeout=1.0):
                return True
        except OSError:
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self._probe()))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PortalWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)

    def outages(self) -> list[tuple[float, float]]:
        """(last answer before, first answer after) of every outage that ended."""
        found, last_up, down = [], None, False
        for t, up in self.samples:
            if up:
                if down and last_up is not None:
                    found.append((last_up, t))
                last_up, down = t, False
            else:
                down = True
        return found

    def downtime(self) -> float | None:
        """Seconds from the last answer before the first outage to the first answer after the last one (a
        rollback may come up twice: the new slot, then the old one). None: no outage ended."""
        spans = self.outages()
        return (spans[-1][1] - spans[0][0]) if spans else None


def bring_up() -> AbLab:
    """The A/B host of the running, converged lab A/B-installed: ab_update.yml (first install: slot A, the VM
    restarted from its A/B disk; nothing to do when it already boots from a slot). Idempotent."""
    slices = plan_slices(INVENTORY, HOST)
    part = slices[HOST]
    volume = part["golden"][0]["volume"]
    sha = data_sha256(volume)
    converge(UPDATE_PLAYBOOK, "first install (or nothing to do)")
    return AbLab(ssh_config(), volume, sha, sorted(e["target_iqn"] for e in part["lio_iscsi"]["exports"]))
