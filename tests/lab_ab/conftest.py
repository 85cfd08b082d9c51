"""A/B update lab tests (docs/ab_update.md): ONE storage VM of its own lab (inventories/lab-ab, namespace
dl-ab, lab state in DL_CACHE=/root/.cache/dl-ab, the main cache's images), never the main lab (dl-lab).

    cd /work/main && source hack/env.sh && export DL_IMAGE_CACHE=$DL_CACHE/images DL_CACHE=/root/.cache/dl-ab
    python3 -m lab -i inventories/lab-ab up
    python3 -m lab -i inventories/lab-ab exec -- python3 -m pytest tests/lab_ab -ra --durations=0
    python3 -m lab -i inventories/lab-ab down
(tests/stages/55-ab.sh does exactly that; `exec` sets DL_LAB_INVENTORY to the running lab's inventory, which
lab.client reads.) The tests run in file order and share the VM's state: first install, an update to a
broken image (falls back), an update to a good image, a reboot, a re-run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from lab.ab_client import AbLab, bring_up
from lab.client import INVENTORY, in_lab_netns, lab_netns, timings
from lab.paths import REPO


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    mine = [i for i in items if here in Path(str(i.path)).parents and "ab" in getattr(i, "fixturenames", ())]
    why = None
    if INVENTORY.resolve() != (REPO / "inventories" / "lab-ab").resolve():
        why = f"DL_LAB_INVENTORY is {INVENTORY}, the A/B tests need inventories/lab-ab"
    elif lab_netns() == "dl-lab":
        why = "the A/B lab must not use the main lab's namespace dl-lab"
    elif not in_lab_netns():
        why = ("A/B lab tests run inside the dl-ab namespace: python3 -m lab -i inventories/lab-ab exec -- "
               "python3 -m pytest tests/lab_ab (or tests/stages/55-ab.sh)")
    if why:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=why))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if timings():
        terminalreporter.section("A/B lab timings (informative, not asserted)")
        for what, seconds in timings():
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")


@pytest.fixture(scope="session")
def ab() -> Iterator[AbLab]:
    """The storage VM with its pool and node001's export, A/B-installed and booted from slot A."""
    yield bring_up()
