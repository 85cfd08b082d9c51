# SPDX-License-Identifier: GPL-3.0-or-later
"""The ab_update_slots module through AnsibleModule against the real grub-editenv on temporary files: facts,
transitions, check mode, diff, refusals and errors."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible.module_utils import basic
from ansible_collections.diskless.cluster.plugins.modules import ab_update_slots

EDITENV = shutil.which("grub-editenv")
pytestmark = pytest.mark.skipif(EDITENV is None, reason="grub-editenv (grub-common) is not installed")
FRESH = "ORDER=A B\nA_OK=1\nA_TRY=0\nB_OK=0\nB_TRY=0\n"


def listing(path) -> str:
    return subprocess.run([EDITENV, str(path), "list"], capture_output=True, text=True, check=True).stdout


def editenv_set(path, *pairs):
    subprocess.run([EDITENV, str(path), "set"] + list(pairs), check=True)


@pytest.fixture
def run(monkeypatch, tmp_path, run_main):
    """run(args, booted="A", check=False, diff=False) -> (ok, result, calls); real grub-editenv, recorded."""
    real_run_command = basic.AnsibleModule.run_command
    calls = []

    def run_command(self, args, **kwargs):
        calls.append((list(args), dict(self.run_command_environ_update)))
        return real_run_command(self, args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)

    def _run(args, booted="A", check=False, diff=False):
        cmdline = tmp_path / "cmdline"
        cmdline.write_text("BOOT_IMAGE=/vmlinuz root=UUID=1234 ro%s panic=30\n"
                           % ("" if booted is None else " dl.slot=%s" % booted))
        args = dict({"env_file": str(tmp_path / "grubenv"), "cmdline_file": str(cmdline)}, **args)
        del calls[:]
        ok, result = run_main(ab_update_slots.main, args, check, diff)
        return ok, result, [argv for argv, _env in calls]
    _run.calls = calls
    return _run


@pytest.fixture
def envfile(tmp_path):
    return tmp_path / "grubenv"


def test_facts_of_missing_env_reads_nothing_and_creates_nothing(run, envfile):
    ok, result, calls = run({})
    assert ok and result["changed"] is False and calls == []
    assert not envfile.exists()
    assert (result["exists"], result["initialized"], result["booted"], result["others"]) == (False, False, "A", ["B"])
    assert result["env"] == {} and result["changes"] == {} and result["commands"] == []


def test_init_check_mode_then_real_then_idempotent(run, envfile):
    ok, result, calls = run({"state": "init"}, booted=None, check=True, diff=True)
    assert ok and result["changed"] and calls == [] and not envfile.exists()
    assert result["commands"] == [[EDITENV, str(envfile), "create"],
                                  [EDITENV, str(envfile), "set", "ORDER=A B", "A_OK=1", "A_TRY=0", "B_OK=0", "B_TRY=0"]]
    assert result["diff"] == {"before": "", "after": FRESH, "before_header": str(envfile) + " (absent)",
                              "after_header": str(envfile)}
    assert result["exists"] and result["next_boot"] == "A"

    ok, result, calls = run({"state": "init"}, booted=None, diff=True)
    assert ok and result["changed"]
    assert calls == result["commands"] + [[EDITENV, str(envfile), "list"]]
    assert envfile.stat().st_size == 1024 and listing(envfile) == FRESH
    assert result["diff"]["after"] == listing(envfile)
    assert result["slots"]["A"] == {"ok": True, "try": False, "state": "good", "booted": False, "position": 0}
    assert result["slots"]["B"]["state"] == "bad"

    ok, result, calls = run({"state": "init"}, booted="A", diff=True)
    assert ok and result["changed"] is False and calls == [[EDITENV, str(envfile), "list"]]
    assert result["diff"]["before"] == result["diff"]["after"] == FRESH


def test_commands_run_with_c_locale(run, envfile):
    run({"state": "init"})
    assert run.calls and all(env == {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"} for _argv, env in run.calls)


def test_try_diff_check_mode_and_real(run, envfile):
    run({"state": "init"})
    before = envfile.read_bytes()
    ok, result, calls = run({"state": "try"}, check=True, diff=True)
    assert ok and result["changed"] and calls == [[EDITENV, str(envfile), "list"]]
    assert envfile.read_bytes() == before
    expected_after = "ORDER=B A\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=0\n"
    assert result["diff"]["before"] == FRESH and result["diff"]["after"] == expected_after
    assert result["changes"] == {"ORDER": "B A", "B_OK": "1"}
    assert result["commands"] == [[EDITENV, str(envfile), "set", "ORDER=B A", "B_OK=1"]]

    ok, result, calls = run({"state": "try", "slot": "B"}, diff=True)
    assert ok and result["changed"] and listing(envfile) == expected_after == result["diff"]["after"]
    assert (result["order"], result["next_boot"]) == (["B", "A"], "B")
    assert envfile.stat().st_size == 1024

    ok, result, calls = run({"state": "try"})
    assert ok and result["changed"] is False and calls == [[EDITENV, str(envfile), "list"]]


def test_good_confirms_booted_trial(run, envfile):
    run({"state": "init"})
    editenv_set(envfile, "ORDER=B A", "B_OK=1", "B_TRY=1")  # GRUB booted B's try
    ok, result, dummy = run({}, booted="B")
    assert result["slots"]["B"]["state"] == "trying" and result["booted"] == "B" and result["others"] == ["A"]
    ok, result, dummy = run({"state": "good"}, booted="B")
    assert ok and result["changed"] and result["changes"] == {"B_TRY": "0"}
    assert listing(envfile) == "ORDER=B A\nA_OK=1\nA_TRY=0\nB_OK=1\nB_TRY=0\n"
    assert result["slots"]["B"]["state"] == "good"


def test_rollback_marks_booted_bad_and_puts_other_first(run, envfile):
    run({"state": "init"})
    editenv_set(envfile, "ORDER=B A", "B_OK=1", "B_TRY=0")
    ok, result, dummy = run({"state": "rollback"}, booted="B", diff=True)
    assert ok and result["changed"]
    assert result["diff"]["after"] == listing(envfile) == FRESH
    assert result["next_boot"] == "A"


def test_bad_of_booted_slot_needs_force(run, envfile):
    run({"state": "init"})
    editenv_set(envfile, "B_OK=1")
    before = envfile.read_bytes()
    ok, result, dummy = run({"state": "bad", "slot": "A"})
    assert not ok and envfile.read_bytes() == before
    assert result["msg"] == "slot A is the booted slot: marking it bad needs force: true (or use state=rollback)"
    ok, result, dummy = run({"state": "bad", "slot": "A", "force": True})
    assert ok and listing(envfile) == "ORDER=B A\nA_OK=0\nA_TRY=0\nB_OK=1\nB_TRY=0\n"


@pytest.mark.parametrize("args,booted,msg", [
    ({"state": "try", "slot": "A"}, "A",
     "slot A is the booted slot: try the other slot (write the new image there first)"),
    ({"state": "bad", "slot": "A", "force": True}, "A",
     "slot A is the last slot with A_OK=1: marking it bad leaves GRUB nothing to boot"),
    ({"state": "try", "slot": "C"}, "A", "slot 'C' is not in slots A B"),
    ({"state": "good"}, None, "state=good needs the booted slot but the kernel command line has no dl.slot=: "
     "boot through the generated grub.cfg (or set slot_cmdline_key/cmdline_file)"),
    ({}, "C", "booted slot 'C' (dl.slot= on the kernel command line) is not in slots A B"),
    ({"state": "rollback"}, "A", "slot B is bad, not good: nothing to roll back to"),
    ({"state": "init", "slots": ["A"]}, "A", "slots needs at least two slot names, got ['A']"),
])
def test_refusals_write_nothing(run, envfile, args, booted, msg):
    run({"state": "init"})
    before = envfile.read_bytes()
    ok, result, calls = run(args, booted=booted)
    assert not ok and result["msg"] == msg
    assert envfile.read_bytes() == before
    assert all(argv[2] == "list" for argv in calls)


def test_transition_on_missing_env_asks_for_init(run, envfile):
    ok, result, calls = run({"state": "good"})
    assert not ok and calls == [] and not envfile.exists()
    assert result["msg"] == "the GRUB env has no ORDER (not initialised): run state=init first"


def test_bad_needs_slot(run, envfile):
    ok, result, dummy = run({"state": "bad"})
    assert not ok and result["msg"] == "state is bad but all of the following are missing: slot"


def test_custom_slot_names_and_cmdline_key(run, envfile, tmp_path):
    cmdline = tmp_path / "custom-cmdline"
    cmdline.write_text("ro ab.root=root2\n")
    ok, result, dummy = run({"state": "init", "slots": ["root1", "root2"], "slot_cmdline_key": "ab.root",
                             "cmdline_file": str(cmdline)})
    assert ok and result["booted"] == "root2"
    assert listing(envfile) == "ORDER=root2 root1\nroot1_OK=0\nroot1_TRY=0\nroot2_OK=1\nroot2_TRY=0\n"


def test_invalid_env_block_fails_with_command_details(run, envfile):
    envfile.write_text("junk\n")
    ok, result, dummy = run({})
    assert not ok
    assert result["msg"] == ("%s is not a GRUB environment block (grub-editenv: invalid environment block): "
                             "move it away, state=init creates a new one" % envfile)
    assert result["cmd"] == [EDITENV, str(envfile), "list"] and result["rc"] != 0
    assert "invalid environment block" in result["stderr"]
    assert envfile.read_text() == "junk\n"


def test_missing_cmdline_file_fails(run, envfile, tmp_path):
    ok, result, dummy = run({"cmdline_file": str(tmp_path / "nope")})
    assert not ok and result["msg"] == "cannot read cmdline_file %s: No such file or directory" % (
        tmp_path / "nope")


def test_missing_grub_editenv_names_the_package(run, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: None)
    ok, result, calls = run({})
    assert not ok and calls == []
    assert result["msg"] == "grub-editenv not found: install the grub-common package"


def test_env_block_stays_1024_bytes_through_every_state(run, envfile):
    run({"state": "init"})
    sizes = [os.path.getsize(envfile)]
    for args, booted in [({"state": "good"}, "A"), ({"state": "bad", "slot": "B"}, "A"), ({"state": "try"}, "A"),
                         ({"state": "good"}, "B"), ({"state": "rollback"}, "B"), ({"state": "good"}, "A")]:
        ok, result, dummy = run(args, booted=booted)
        assert ok, result
        sizes.append(os.path.getsize(envfile))
    assert sizes == [1024] * 7
    assert listing(envfile) == FRESH
