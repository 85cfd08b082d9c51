"""lab/cli.py without a running lab: the command line refuses what it cannot do."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lab import cli
from lab.inventory import load_inventory
from lab.paths import DEFAULT_INVENTORY, Paths


def test_restart_command_line() -> None:
    with pytest.raises(SystemExit):
        cli.main(["restart"])               # a host is required
    with pytest.raises(SystemExit):
        cli.main(["restart", "sab1", "--boot", "network"])   # restart keeps disks: not network


def test_kill_needs_a_host() -> None:
    with pytest.raises(SystemExit):
        cli.main(["kill"])


def test_a_stopped_vm_starts_again_on_its_disks_unless_it_changed(tmp_path: Path) -> None:
    """`up HOST` after `kill HOST`: the pool disk stays (a crashed storage host comes back with its data)."""
    p = Paths(tmp_path)
    vm = {v.name: v for v in load_inventory(DEFAULT_INVENTORY).vms}["sch2"]
    d = p.vm_dir("sch2")
    assert not cli._disks_to_keep(p, vm, "/img/storage-1")              # never started: new disks
    d.mkdir(parents=True)
    (d / "vm.json").write_text(json.dumps({"vm": dataclasses.asdict(vm), "image": "/img/storage-1"}))
    (d / "disk1.raw").write_bytes(b"")
    (d / "root.qcow2").write_bytes(b"")
    assert cli._disks_to_keep(p, vm, "/img/storage-1")
    assert not cli._disks_to_keep(p, vm, "/img/storage-2")              # another image: new disks
    assert not cli._disks_to_keep(p, dataclasses.replace(vm, memory_mib=4096), "/img/storage-1")
