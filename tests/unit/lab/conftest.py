"""Lab inventories written for a test, read by lab/inventory.py (ansible-inventory, no running lab)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from lab.inventory import Lab, load_inventory
from lab.util import LabError


@pytest.fixture
def lab_of(tmp_path: Path) -> Callable[[str], Lab]:
    """The Lab of an inventory given as hosts.yml text."""
    def load(text: str) -> Lab:
        (tmp_path / "hosts.yml").write_text(text)
        return load_inventory(tmp_path)
    return load


@pytest.fixture
def lab_errors(lab_of: Callable[[str], Lab]) -> Callable[[str], list[str]]:
    """The error lines (one per problem, all at once) of an inventory the lab refuses."""
    def errors(text: str) -> list[str]:
        with pytest.raises(LabError) as exc:
            lab_of(text)
        return [line.strip() for line in str(exc.value).splitlines()[1:]]
    return errors
