"""lab/faults.py readers without a lab: what md and multipath print on a node, mid-resync included."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import faults

# What MD_STATE_SH prints on a mirror node (sysfs of md127), healthy and while the bitmap resync runs.
IDLE = """array md127 clean degraded=0 action=idle bitmap=+8 completed=none
member sda in_sync,failfast
member sdb in_sync,failfast
"""
RECOVERING = """array md127 active degraded=1 action=recover bitmap=+8 completed=1660928/4194176
member sda in_sync,failfast
member sdb spare,failfast
"""


IDLE_WANT = {"degraded": "0", "action": "idle", "completed": "none",
             "members": {"sda": "in_sync,failfast", "sdb": "in_sync,failfast"}}
RECOVERING_WANT = {"degraded": "1", "action": "recover", "completed": "1660928/4194176",
                   "members": {"sda": "in_sync,failfast", "sdb": "spare,failfast"}}


@pytest.mark.parametrize("text, want", [(IDLE, IDLE_WANT), (RECOVERING, RECOVERING_WANT)])
def test_md_state_reads_an_idle_and_a_resyncing_mirror(monkeypatch: pytest.MonkeyPatch, text: str, want: dict) -> None:
    monkeypatch.setattr(faults, "ssh", lambda *_a, **_k: text)
    got = faults.md_state(Path("/dev/null"), "node002")
    assert {k: got[k] for k in want} == want
    assert got["name"] == "md127" and got["bitmap"] == "+8"


def test_md_state_script_prints_sync_completed_as_one_word() -> None:
    # sysfs prints "1660928 / 4194176" while a resync runs: the reader splits on blanks
    assert "tr -d ' ' < $d/sync_completed" in faults.MD_STATE_SH


def test_multipath_paths_reads_dmsetup_status(monkeypatch: pytest.MonkeyPatch) -> None:
    status = "3600140: 0 4194304 multipath 2 0 0 0 1 1 A 0 2 0 8:0 A 0 0 1 8:16 F 1 0 1\n"
    monkeypatch.setattr(faults, "ssh", lambda *_a, **_k: status)
    assert faults.multipath_paths(Path("/dev/null"), "node003") == {"8:0": "A", "8:16": "F"}
