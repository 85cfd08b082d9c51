# SPDX-License-Identifier: GPL-3.0-or-later
"""The A/B health gate program of roles/ab_update (files/dl-ab-gate), installed as the role installs it (next
to module_utils/grub.py as the module ab_update_host writes it), against a fake LIO configfs tree and a real grub-editenv env file."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils._ab_update_host import grub_source

REPO = Path(__file__).resolve().parents[3]
EDITENV = shutil.which("grub-editenv")
needs_editenv = pytest.mark.skipif(EDITENV is None, reason="grub-editenv (grub-common) is not installed")


@pytest.fixture
def gate(tmp_path, monkeypatch):
    """The gate module loaded from an install directory laid out like /usr/local/lib/dl-ab."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(REPO / "roles" / "ab_update" / "files" / "dl-ab-gate", lib / "dl-ab-gate")
    (lib / "dl_ab_grub.py").write_text(grub_source())  # what ab_update_host writes at its gate_library
    env = tmp_path / "grubenv"
    (lib / "gate.json").write_text(json.dumps({
        "env_file": str(env), "slots": ["A", "B"], "cmdline_key": "dl.slot", "pool": "", "units": [],
        "lio_save_file": str(tmp_path / "saveconfig.json"), "timeout": 0, "interval": 0}))
    spec = importlib.util.spec_from_loader("dl_ab_gate", loader=None, origin=str(lib / "dl-ab-gate"))
    mod = importlib.util.module_from_spec(spec)
    mod.__file__ = str(lib / "dl-ab-gate")
    exec(compile((lib / "dl-ab-gate").read_text(), str(lib / "dl-ab-gate"), "exec"), mod.__dict__)
    monkeypatch.setattr(mod, "VERDICT", str(tmp_path / "run" / "verdict.json"))
    monkeypatch.setattr(mod, "CONFIGFS", str(tmp_path / "configfs"))
    (tmp_path / "boot_id").write_text("1111-2222\n")
    monkeypatch.setattr(mod, "BOOT_ID", str(tmp_path / "boot_id"))
    mod.test_env = env
    mod.test_tmp = tmp_path

    def boot(slot):
        (tmp_path / "cmdline").write_text("root=UUID=x ro%s panic=30\n" % (" dl.slot=%s" % slot if slot else ""))
        monkeypatch.setattr(mod, "CMDLINE", str(tmp_path / "cmdline"))
    mod.test_boot = boot
    return mod


def editenv(path, *args):
    return subprocess.run([EDITENV, str(path), *args], capture_output=True, text=True, check=True).stdout


def saved_lio(tmp_path, dev):
    (tmp_path / "saveconfig.json").write_text(json.dumps({
        "storage_objects": [{"plugin": "block", "name": "node001-root", "dev": str(dev)}],
        "targets": [{"fabric": "iscsi", "wwn": "iqn.2026-11.org.example:sab1.node001-root",
                     "tpgs": [{"tag": 1, "enable": True, "luns": [{"index": 0}]}]}]}))


def restore_configfs(tmp_path, enable="1"):
    core = tmp_path / "configfs" / "core" / "iblock_0" / "node001-root"
    core.mkdir(parents=True)
    (core / "enable").write_text("1\n")
    tpg = tmp_path / "configfs" / "iscsi" / "iqn.2026-11.org.example:sab1.node001-root" / "tpgt_1"
    (tpg / "lun" / "lun_0").mkdir(parents=True)
    (tpg / "enable").write_text(enable + "\n")


def record_systemctl(gate, monkeypatch):
    """systemctl calls are recorded, not run; grub-editenv runs for real."""
    calls = []
    real = gate.run

    def run(argv):
        if argv[0] == "systemctl":
            calls.append(argv)
            return 0, "", ""
        return real(argv)
    monkeypatch.setattr(gate, "run", run)
    return calls


def test_lio_nothing_saved_is_healthy(gate):
    assert gate.check_lio(gate.load_config()) == []


def test_lio_not_restored(gate):
    saved_lio(gate.test_tmp, gate.test_tmp / "missing-zvol")
    (gate.test_tmp / "configfs" / "core").mkdir(parents=True)
    problems = gate.check_lio(gate.load_config())
    assert problems == [
        "LUN backstore node001-root: backing device %s is missing" % (gate.test_tmp / "missing-zvol"),
        "LUN backstore block/node001-root is not restored",
        "target iqn.2026-11.org.example:sab1.node001-root (iscsi) is not restored",
    ]


def test_lio_restored_and_backed(gate, monkeypatch):
    dev = gate.test_tmp / "zvol"
    dev.write_text("")
    monkeypatch.setattr(gate.stat, "S_ISBLK", lambda mode: True)
    saved_lio(gate.test_tmp, dev)
    restore_configfs(gate.test_tmp)
    assert gate.check_lio(gate.load_config()) == []


def test_lio_tpg_disabled_and_lio_not_loaded(gate, monkeypatch):
    dev = gate.test_tmp / "zvol"
    dev.write_text("")
    monkeypatch.setattr(gate.stat, "S_ISBLK", lambda mode: True)
    saved_lio(gate.test_tmp, dev)
    assert gate.check_lio(gate.load_config())[0].startswith("LIO is not loaded")
    restore_configfs(gate.test_tmp, enable="0")
    assert gate.check_lio(gate.load_config()) == ["target iqn.2026-11.org.example:sab1.node001-root: TPG 1 is not enabled"]


def test_check_reports_each_problem_and_fails(gate, capsys):
    gate.test_boot("B")
    saved_lio(gate.test_tmp, gate.test_tmp / "missing-zvol")
    (gate.test_tmp / "configfs" / "core").mkdir(parents=True)
    assert gate.cmd_check(gate.load_config()) == 1
    out = capsys.readouterr().out
    assert out.count("dl-ab-gate: FAILED: ") == 3
    verdict = json.loads(Path(gate.VERDICT).read_text())
    assert verdict["verdict"] == "checking" and len(verdict["problems"]) == 3 and verdict["slot"] == "B"
    assert gate.cmd_status(gate.load_config()) == 1  # not final: the fallback unit decides


def test_a_failed_unit_ends_the_wait(gate, monkeypatch, capsys):
    """ssh.service "failed" (systemd gave up restarting it) fails the gate at once; "activating" is waited for."""
    cfg = dict(gate.load_config(), units=["ssh.service"], timeout=3600, interval=0)
    gate.test_boot("B")
    states = iter(["activating", "activating", "failed"])
    seen = []

    def run(argv):
        assert argv == ["systemctl", "is-active", "ssh.service"]
        seen.append(next(states))
        return 3, seen[-1] + "\n", ""
    monkeypatch.setattr(gate, "run", run)
    assert gate.cmd_check(cfg) == 1
    assert seen == ["activating", "activating", "failed"]
    assert "dl-ab-gate: FAILED: ssh.service is failed" in capsys.readouterr().out


@needs_editenv
def test_good_marks_the_booted_slot_like_ab_update_slots(gate, capsys):
    env = gate.test_env
    editenv(env, "create")
    # GRUB booted B (its try consumed); A is the good fallback
    editenv(env, "set", "ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=1", "A_VERSION=foreign")
    gate.test_boot("B")
    assert gate.cmd_good(gate.load_config()) == 0
    assert editenv(env, "list") == "ORDER=B A\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=0\nA_VERSION=foreign\n"
    assert gate.cmd_status(gate.load_config()) == 0
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status == {"booted": "B", "problems": [], "verdict": "good", "kernel": os.uname().release}


@needs_editenv
def test_fail_reboots_into_the_fallback(gate, monkeypatch):
    env = gate.test_env
    editenv(env, "create")
    editenv(env, "set", "ORDER=B A", "A_OK=1", "A_TRY=0", "B_OK=1", "B_TRY=1")
    gate.test_boot("B")
    calls = record_systemctl(gate, monkeypatch)
    assert gate.cmd_fail(gate.load_config()) == 0
    assert calls == [["systemctl", "--no-block", "reboot"]]
    assert json.loads(Path(gate.VERDICT).read_text())["next_boot"] == "A"
    assert gate.cmd_status(gate.load_config()) == 1


@needs_editenv
def test_fail_stays_up_when_no_other_slot_is_good(gate, monkeypatch):
    env = gate.test_env
    editenv(env, "create")
    editenv(env, "set", "ORDER=A B", "A_OK=1", "A_TRY=1", "B_OK=0", "B_TRY=0")
    gate.test_boot("A")
    calls = record_systemctl(gate, monkeypatch)
    assert gate.cmd_fail(gate.load_config()) == 0
    assert calls == []
    assert json.loads(Path(gate.VERDICT).read_text())["verdict"] == "failed"
    assert gate.cmd_status(gate.load_config()) == 0


def test_not_an_ab_boot_leaves_the_env_alone(gate):
    gate.test_boot(None)
    assert gate.cmd_good(gate.load_config()) == 0
    assert not gate.test_env.exists()
    assert json.loads(Path(gate.VERDICT).read_text())["verdict"] == "not-ab"
