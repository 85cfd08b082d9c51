"""Lab tests: facts about the real machines of the embedded lab (docs/lab.md).

They run INSIDE the lab's network namespace (that is where the Ansible controller of the lab sits):
    tests/stages/50-lab.sh                                    # up, tests, always down
    hack/lab.sh exec -- python3 -m pytest tests/lab           # against a lab you brought up yourself
    hack/lab.sh exec -- python3 -m pytest tests/lab/test_compute_boot.py   # one file (or one test) alone
Every test of the session shares ONE lab bring-up (the `lab` fixture): one image build at most, one boot.
If the session had to bring the lab up itself, it brings it down at the end.
Outside the namespace the lab tests are skipped with that instruction.

A test states the lab state it needs through fixtures, never through the tests that ran before it:
    converged          site.yml applied, the disk-less nodes running from iSCSI (what `hack/lab.sh up`
                       leaves); applied now if the nodes do not run
Tests marked `destructive` (they reboot or kill a machine the other tests share) run after all others, and
the A/B update tests (`ab_update`: they replace a storage host's OS) after those.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from lab.client import (LabInfo, in_lab_netns, inventory, labctl, plan_slices, record_timing, run_site,
                        ssh_answers, timings)

LAB_TESTS = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "destructive: reboots or kills a machine the other lab tests share; "
                                       "runs after every other lab test")
    config.addinivalue_line("markers", "ab_update: installs and updates a storage host's OS in A/B slots; runs "
                                       "after every destructive test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Destructive tests last (in their collection order); tests that use the running lab (the `lab`
    fixture) need the namespace, the others run anywhere."""
    def rank(item: pytest.Item) -> int:
        return (2 if item.get_closest_marker("ab_update") else 1 if item.get_closest_marker("destructive") else 0)

    items.sort(key=rank)        # stable: collection order within each rank
    lab_items = [i for i in items if LAB_TESTS in Path(str(i.path)).parents
                 and "lab" in getattr(i, "fixturenames", ())]
    if lab_items and not in_lab_netns():
        skip = pytest.mark.skip(reason="lab tests run inside the lab namespace: "
                                "hack/lab.sh exec -- python3 -m pytest tests/lab (or tests/stages/50-lab.sh)")
        for item in lab_items:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`storage_host` = every host of the inventory's storage group (a test per host)."""
    if "storage_host" in metafunc.fixturenames:
        inv = inventory()
        metafunc.parametrize("storage_host", sorted(inv.get("storage", {}).get("hosts", [])))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if timings():
        terminalreporter.section("lab timings (informative, not asserted)")
        for what, seconds in timings():
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")


@pytest.fixture(scope="session")
def lab() -> Iterator[LabInfo]:
    # up = the namespace exists (a node powered off by a test makes `status` exit 3: the lab is still up)
    was_up = bool(json.loads(labctl("--json", "status", check=False).stdout or "{}").get("up"))
    t0 = time.monotonic()
    info = json.loads(labctl("--json", "up").stdout)
    record_timing("lab up (already up)" if was_up else "lab up (image + boot)", time.monotonic() - t0)
    for name, secs in info.get("boot_seconds", {}).items():
        record_timing(f"{name}: VM start to SSH", secs)
    yield LabInfo(Path(info["inventory"]), info["netns"], Path(info["ssh_config"]), info["hosts"],
                  inventory()["_meta"]["hostvars"], info["accel"])
    if not was_up:
        labctl("down")


@pytest.fixture(scope="session")
def lab_host(lab: LabInfo) -> Callable[[str], Any]:
    """testinfra host for a lab VM, over SSH with the lab's own ssh_config (key, known_hosts)."""
    import testinfra

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = testinfra.get_host(f"ssh://{name}", ssh_config=str(lab.ssh_config))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def slices(lab: LabInfo) -> dict[str, dict[str, Any]]:
    """Every lab host's slice of the plan (the planner runs on the controller), secrets included."""
    return plan_slices(lab.inventory)


@pytest.fixture(scope="session")
def nodes(slices: dict[str, dict[str, Any]]) -> list[str]:
    """The compute nodes of the lab inventory."""
    return sorted(h for h, part in slices.items() if part["role"] == "compute")


@pytest.fixture(scope="module")
def converged(lab: LabInfo, nodes: list[str]) -> None:
    """site.yml applied and the disk-less nodes running from their iSCSI roots, as `hack/lab.sh up` leaves
    the lab. When a node does not answer (a lab brought up with `up` alone, or a node a test left off),
    site.yml is applied now: it powers the nodes on and converges every host (the storage exports too)."""
    if not all(ssh_answers(lab.ssh_config, n) for n in nodes):
        run_site(lab.inventory, "first run (power-on, boot from iSCSI, configure)")
