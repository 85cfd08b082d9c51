# SPDX-License-Identifier: GPL-3.0-or-later
"""The lio_iscsi module on a fake rtslib_fb: reconcile, check mode, live-session refusal, saving."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import lio
from ansible_collections.diskless.cluster.plugins.modules import lio_iscsi

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lio"
A = "iqn.2026-11.org.example.lab"
SAVE = "/tmp/diskless-test/saveconfig.json"


def load_fake():
    spec = importlib.util.spec_from_file_location("fake_rtslib_mod", FIXTURES / "fake_rtslib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = load_fake()


acl, export = fake.acl, fake.export


def wanted():
    return [
        export("golden-debian12", [acl("node002", "new-secret-2", "mutual-2", True)], readonly=True,
               wwn="5c2bb9d4-6a0e-5b7e-9f57-3d0a8e1c2f44", device="/dev/zvol/tank/golden/debian12"),
        export("node001-root", [acl("node001", "secret-1", "mutual-1")]),
    ]


@pytest.fixture
def run(monkeypatch, tmp_path, run_main):
    configfs = tmp_path / "configfs"
    configfs.mkdir()
    monkeypatch.setattr(lio, "CONFIGFS_TARGET", str(configfs))
    monkeypatch.setitem(sys.modules, "rtslib_fb", None)  # replaced below; restored by monkeypatch
    installed = fake.install()
    monkeypatch.setitem(sys.modules, "rtslib_fb", installed)
    monkeypatch.setitem(sys.modules, "rtslib_fb.tcm", installed.tcm)

    def _run(args, check=False, diff=False, sessions=("node001", "node009")):
        infos = {}
        text = (FIXTURES / "acl_info_logged_in.txt").read_text()
        for node in sessions:
            infos[("%s:sch1.%s-root" % (A, node), "%s:%s" % (A, node))] = text.replace("node001", node)
        fake.load(json.loads((FIXTURES / "rtsroot_dump.json").read_text()), infos)
        args = dict(args)
        args.setdefault("save_file", SAVE)
        return run_main(lio_iscsi.main, args, check, diff)
    return _run


def test_live_session_refusal_changes_nothing(run):
    ok, result = run({"exports": wanted()})
    assert not ok
    assert result["msg"] == (
        "lio_iscsi: target %s:sch1.node009-root has live sessions from %s:node009: set force: true to drop them; "
        "backstore node009-root has live sessions from %s:node009: set force: true to drop them" % (A, A, A))
    assert fake.KERNEL.log == [] and fake.KERNEL.saved == []
    assert [s["initiator"] for s in result["sessions"]] == ["%s:node001" % A, "%s:node009" % A]


def test_force_reconciles_saves_once_and_leaves_node001_alone(run):
    ok, result = run({"exports": wanted(), "force": True})
    assert ok and result["changed"] and result["saved"]
    g = "%s:sch1.golden-debian12" % A
    assert result["actions"] == [
        "delete target %s:sch1.node009-root" % A,
        "delete backstore node009-root",
        "set target %s acl %s:node002 chap password" % (g, A),
    ]
    assert fake.KERNEL.log == [
        "delete acl %s:sch1.node009-root/1/%s:node009" % (A, A),
        "delete lun %s:sch1.node009-root/1/0" % A,
        "delete portal %s:sch1.node009-root/1 0.0.0.0:3261" % A,
        "delete tpg %s:sch1.node009-root/1" % A,
        "delete target %s:sch1.node009-root" % A,
        "delete backstore node009-root",
        "set chap_password %s/1/%s:node002" % (g, A),
        "save %s" % SAVE,
    ]
    assert fake.KERNEL.saved == [SAVE]
    assert "new-secret-2" not in json.dumps(result)


def test_second_run_is_idempotent_and_does_not_save(run, run_main):
    run({"exports": wanted(), "force": True})
    state = fake.KERNEL
    # run again against the state the first run left (no reload of the fixture)
    state.log.clear()
    ok, result = run_main(lio_iscsi.main, {"exports": wanted(), "save_file": SAVE})
    assert ok and result["changed"] is False
    assert result["actions"] == []
    assert state.log == []


def test_check_mode_predicts_and_never_touches_configfs(run):
    ok, result = run({"exports": wanted(), "force": True}, check=True, diff=True)
    assert ok and result["changed"] and not result["saved"]
    assert len(result["actions"]) == 3
    assert fake.KERNEL.log == [] and fake.KERNEL.saved == []
    assert "%s:sch1.node009-root" % A in result["diff"]["before"]["targets"]
    assert "%s:sch1.node009-root" % A not in result["diff"]["after"]["targets"]
    text = json.dumps(result["diff"])
    assert "secret" not in text and "mutual-" not in text and "******** (changed)" in text


def test_new_export_created_object_by_object(run):
    exports = wanted() + [export("node004-root", [acl("node004", "secret-4", "mutual-4")])]
    ok, result = run({"exports": exports, "force": True}, sessions=("node001",))
    t = "%s:sch1.node004-root" % A
    new = [line for line in fake.KERNEL.log if "node004" in line]
    assert new == [
        "create backstore node004-root dev=/dev/zvol/tank/nodes/node004-root readonly=0 wwn=None",
        "create target %s" % t,
        "create tpg %s/1" % t,
        "set attribute %s/1 authentication=1" % t,
        "set attribute %s/1 demo_mode_write_protect=1" % t,
        "set attribute %s/1 generate_node_acls=0" % t,
        "create portal %s/1 10.77.0.11:3260" % t,
        "create lun %s/1/0 -> node004-root" % t,
        "create acl %s/1/%s:node004" % (t, A),
        "set chap_userid %s/1/%s:node004" % (t, A),
        "set chap_password %s/1/%s:node004" % (t, A),
        "set chap_mutual_userid %s/1/%s:node004" % (t, A),
        "set chap_mutual_password %s/1/%s:node004" % (t, A),
        "create mapped_lun %s/1/%s:node004/0 -> 0 wp=0" % (t, A),
        "set enable %s/1=1" % t,
    ]
    assert fake.KERNEL.log[-1] == "save %s" % SAVE


def test_backstore_gets_the_shared_wwn(run):
    exports = [dict(export("golden-debian12", [acl("node002", "old-secret-2", "mutual-2", True)], readonly=True,
                           wwn="11111111-2222-5333-8444-555555555555", device="/dev/zvol/tank/golden/debian12"))]
    ok, result = run({"exports": exports, "force": True}, sessions=())
    assert ok
    assert "create backstore golden-debian12 dev=/dev/zvol/tank/golden/debian12 readonly=1 " \
           "wwn=11111111-2222-5333-8444-555555555555" in fake.KERNEL.log
    assert "create mapped_lun %s:sch1.golden-debian12/1/%s:node002/0 -> 0 wp=1" % (A, A) in fake.KERNEL.log


def test_failure_midway_saves_what_was_done_and_reports_one_line(run, monkeypatch):
    original = lio.Applier.apply

    def apply(self, action):
        if action["op"] == "set_acl_chap":
            raise fake.RTSLibError("Cannot write auth/password\nsecond line")
        return original(self, action)

    monkeypatch.setattr(lio.Applier, "apply", apply)
    ok, result = run({"exports": wanted(), "force": True})
    assert not ok
    assert result["msg"] == ("lio_iscsi: set target %s:sch1.golden-debian12 acl %s:node002 chap password failed: "
                             "Cannot write auth/password" % (A, A))
    assert result["actions"] == ["delete target %s:sch1.node009-root" % A, "delete backstore node009-root"]
    assert result["saved"] is True and fake.KERNEL.saved == [SAVE]


def test_no_configfs_means_empty_state_and_check_mode_creates_everything(run, monkeypatch, tmp_path):
    monkeypatch.setattr(lio, "CONFIGFS_TARGET", str(tmp_path / "absent"))
    ok, result = run({"exports": wanted()}, check=True)
    assert ok and result["changed"] and result["sessions"] == []
    assert result["actions"][0] == "create backstore golden-debian12 on /dev/zvol/tank/golden/debian12 readonly wwn " \
                                   "5c2bb9d4-6a0e-5b7e-9f57-3d0a8e1c2f44"
    assert fake.KERNEL.log == []


def test_missing_rtslib_fails_with_missing_required_lib(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "rtslib_fb", None)
    ok, result = run({"exports": wanted()})
    assert not ok and "rtslib-fb" in result["msg"] and "exception" in result


def test_bad_iqn_is_one_line(run):
    exports = wanted()
    exports[0]["target_iqn"] = "iqn.2026-11.lab"
    ok, result = run({"exports": exports})
    assert not ok and result["msg"].startswith("lio_iscsi: target_iqn: 'iqn.2026-11.lab' is not an IQN rtslib accepts")
