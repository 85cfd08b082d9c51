"""Helpers shared by the lab tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LABCTL = REPO / "lab" / "labctl.py"
INVENTORY = Path(os.environ.get("DL_LAB_INVENTORY", REPO / "inventories" / "lab"))
LAB_TESTS = Path(__file__).resolve().parent

_timings: list[tuple[str, float]] = []


def record_timing(what: str, seconds: float, key: str | None = None, **extra: Any) -> None:
    """Timings are reported (terminal summary), never asserted. With ``key`` the figure is also kept with
    the running lab (``lab/run/measurements.json``, gone with `labctl down`) so that bench/boot_time.py
    --reuse prints it next to its own figures instead of measuring the same thing again."""
    _timings.append((what, seconds))
    if key:
        path = measurements_file()
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = {"seconds": round(seconds, 1), "what": what, **extra}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def measurements_file() -> Path:
    cache = os.environ.get("DL_CACHE") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                                              / "diskless-cluster")
    return Path(cache) / "lab" / "run" / "measurements.json"


def labctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(LABCTL), "--inventory", str(INVENTORY), *args],
                          capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"labctl {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stderr}", pytrace=False)
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


def no_json(what: str, proc: subprocess.CompletedProcess[str]) -> str:
    """The failure message of an Ansible run whose stdout held no JSON."""
    return f"{what}: no JSON on stdout (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def console_text(host: str) -> str:
    """A lab VM's whole serial console log (or labctl's reason why there is none)."""
    proc = labctl("console", host, check=False)
    return proc.stdout if proc.returncode == 0 else proc.stderr


def console_tail(host: str, lines: int = 60) -> str:
    """The last lines of a lab VM's serial console, for a failure message (CI shows no lab/logs/)."""
    return f"--- {host} console, last {lines} lines (labctl console {host}):\n" + "\n".join(
        console_text(host).splitlines()[-lines:])


def inventory() -> dict[str, Any]:
    out = subprocess.run(["ansible-inventory", "-i", str(INVENTORY), "--list"], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


def lab_netns() -> str:
    hostvars = inventory()["_meta"]["hostvars"]
    return next(iter(hostvars.values()), {}).get("lab_netns", "dl-lab")


def in_lab_netns() -> bool:
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
    hosts: dict[str, dict[str, Any]]   # name -> {ip, mac, groups, kernel_version, ...} from `labctl up`
    hostvars: dict[str, dict[str, Any]]  # inventory host vars (untemplated)
    accel: str                           # tcg or kvm (labctl up)
