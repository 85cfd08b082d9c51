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


# A mirror node's kernel log across two faults: the sch2 half (sdb) failed in the first, the sch1 half (sda)
# in the second; md absorbed both (failfast), nothing reached md127 or ext4 -- except in BAD.
DMESG = """[  900.1] sd 2:0:0:0: [sdb] Attached SCSI disk
[ 1100.0] diskless-lab: sch2 killed
[ 1113.336884] I/O error, dev sdb, sector 1345928 op 0x1:(WRITE) flags 0x300 phys_seg 1 prio class 2
[ 1113.4] md/raid1:md127: Disk failure on sdb, disabling device.
[ 1300.0] diskless-lab: sch1 killed
[ 1341.686513] I/O error, dev sda, sector 4194272 op 0x1:(WRITE) flags 0x29b00 phys_seg 1 prio class 2
"""
BAD = DMESG + """[ 1342.1] Buffer I/O error on dev md127, logical block 1, lost async page write
[ 1342.2] EXT4-fs error (device md127): ext4_journal_check_start:83: comm fio: Detected aborted journal
[ 1342.3] EXT4-fs (dm-0): Remounting filesystem read-only
"""


def test_io_errors_reads_after_the_mark_and_skips_the_failed_over_disks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "ssh", lambda *_a, **_k: DMESG)
    assert faults.io_errors(Path("/dev/null"), "node002", after="sch1 killed", absorbed=frozenset({"sda"})) == []
    # the sch2 fault's line is before the mark; with no disk absorbed the sch1 line counts
    assert [line.split()[5] for line in faults.io_errors(Path("/dev/null"), "node002", after="sch1 killed")] == ["sda,"]
    assert len(faults.io_errors(Path("/dev/null"), "node002")) == 2    # no mark: the whole boot


def test_io_errors_counts_what_reached_the_md_device_or_the_file_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "ssh", lambda *_a, **_k: BAD)
    got = faults.io_errors(Path("/dev/null"), "node002", after="sch1 killed", absorbed=frozenset({"sda"}))
    assert [line.split("]", 1)[1].split()[0] for line in got] == ["Buffer", "EXT4-fs", "EXT4-fs"]


SESSIONS = """iSCSI Transport Class version 2.0-870
Target: iqn.2026-11.org.example.lab:sch1.node002 (non-flash)
\tCurrent Portal: 10.77.1.11:3260,1
\tPersistent Portal: 10.77.1.11:3260,1
\t\t************************
\t\tAttached SCSI devices:
\t\t************************
\t\tHost Number: 2\tState: running
\t\tscsi2 Channel 00 Id 0 Lun: 0
\t\t\tAttached scsi disk sda\t\tState: running
Target: iqn.2026-11.org.example.lab:sch2.node002 (non-flash)
\tCurrent Portal: 10.77.1.12:3260,1
\tPersistent Portal: 10.77.1.12:3260,1
\t\tscsi3 Channel 00 Id 0 Lun: 0
\t\t\tAttached scsi disk sdb\t\tState: transport-offline
"""


def test_disks_by_portal_reads_iscsiadm_session_p3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "ssh", lambda *_a, **_k: SESSIONS)
    assert faults.disks_by_portal(Path("/dev/null"), "node002") == {"10.77.1.11": {"sda"}, "10.77.1.12": {"sdb"}}
