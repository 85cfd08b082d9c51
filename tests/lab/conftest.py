"""Lab tests: facts about the real machines of the embedded lab (docs/lab.md).

They run INSIDE the lab's network namespace (that is where the Ansible controller of the lab sits):
    tests/stages/50-lab.sh                       # up, tests, always down
    hack/lab.sh exec -- python3 -m pytest tests/lab   # against a lab you brought up yourself
Every test of the session shares ONE lab bring-up (the `lab` fixture): one image build at most, one boot.
If the session had to bring the lab up itself, it brings it down at the end.
Outside the namespace the lab tests are skipped with that instruction.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from lab_support import (LAB_TESTS, LabInfo, _timings, in_lab_netns, inventory, labctl,
                         record_timing)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the running lab (the `lab` fixture) need the namespace; the others run anywhere."""
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
    if _timings:
        terminalreporter.section("lab timings (informative, not asserted)")
        for what, seconds in _timings:
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")


@pytest.fixture(scope="session")
def lab() -> Iterator[LabInfo]:
    was_up = labctl("--json", "status", check=False).returncode == 0
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
