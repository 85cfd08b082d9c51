# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/lio.py: dump parsing, the read-only walk (on a fake rtslib), the reconcile planner,
live-session refusals, the applier and masked views."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import lio

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "lio"
A = "iqn.2026-11.org.example.lab"
GOLDEN_WWN = "5c2bb9d4-6a0e-5b7e-9f57-3d0a8e1c2f44"


def load_fake():
    spec = importlib.util.spec_from_file_location("fake_rtslib", FIXTURES / "fake_rtslib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake = load_fake()


def dump():
    return json.loads((FIXTURES / "rtsroot_dump.json").read_text())


def info(name):
    return (FIXTURES / name).read_text()


acl, export = fake.acl, fake.export


def wanted():
    """The plan's exports: node009 retired, node002 has a new secret, node003 joins the image, node004 is new."""
    return [
        export("golden-debian12", [acl("node002", "new-secret-2", "mutual-2", True), acl("node003", "secret-3", "mutual-3", True)],
               readonly=True, wwn=GOLDEN_WWN, device="/dev/zvol/tank/golden/debian12"),
        export("node001-root", [acl("node001", "secret-1", "mutual-1")]),
        export("node004-root", [acl("node004", "secret-4", "mutual-4")]),
    ]


def running(sessions=("node001", "node009")):
    infos = {}
    for node in sessions:
        vol = "golden-debian12" if node in ("node002", "node003") else "%s-root" % node
        infos[("%s:sch1.%s" % (A, vol), "%s:%s" % (A, node))] = info("acl_info_logged_in.txt").replace("node001", node)
    fake.load(dump(), infos)
    return fake


# ------------------------------------------------------------------------------------------------ parsing
def test_state_from_dump_fixture():
    state = lio.state_from_dump(dump())
    assert state["backstores"] == {
        "golden-debian12": {"plugin": "block", "dev": "/dev/zvol/tank/golden/debian12", "readonly": True, "wwn": GOLDEN_WWN},
        "node001-root": {"plugin": "block", "dev": "/dev/zvol/tank/nodes/node001-root", "readonly": False,
                         "wwn": "0e7c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"},
        "node009-root": {"plugin": "block", "dev": "/dev/zvol/tank/nodes/node009-root", "readonly": False,
                         "wwn": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"},
    }
    tpg = state["targets"]["%s:sch1.node009-root" % A]["tpgs"][1]
    assert tpg["portals"] == ["0.0.0.0:3261"]
    assert tpg["attributes"] == {"authentication": "1", "generate_node_acls": "0", "demo_mode_write_protect": "1"}
    assert tpg["luns"] == {0: "block/node009-root"}
    assert tpg["acls"]["%s:node009" % A] == {"userid": "node009", "password": "secret-9", "mutual_userid": "lab-storage",
                                             "mutual_password": "mutual-9", "session": None,
                                             "mapped_luns": {0: {"tpg_lun": 0, "write_protect": False}}}


def test_read_state_walk_equals_dump_and_sees_sessions():
    running()
    state = lio.read_state(fake.RTSRoot())
    assert fake.KERNEL.log == []  # reading changed nothing
    sessions = lio.sessions(state)
    assert sessions == [
        {"target": "%s:sch1.node001-root" % A, "tpg": 1, "initiator": "%s:node001" % A, "state": "LOGGED_IN",
         "addresses": ["10.77.0.11"]},
        {"target": "%s:sch1.node009-root" % A, "tpg": 1, "initiator": "%s:node009" % A, "state": "LOGGED_IN",
         "addresses": ["10.77.0.11"]},
    ]
    for target in state["targets"].values():
        for acl_state in target["tpgs"][1]["acls"].values():
            acl_state["session"] = None
    assert state == lio.state_from_dump(dump())


def test_session_info_fixtures():
    assert fake.parse_info(info("acl_info_no_session.txt")) is None
    # the kernel prints the ISID as "0x00 02 3d 00 00 01" (spaces): the session id and type are still found
    assert lio.summarize_session(fake.parse_info(info("acl_info_logged_in.txt"))) == {
        "state": "LOGGED_IN", "id": 1, "type": "Normal", "addresses": ["10.77.0.11"]}


# ------------------------------------------------------------------------------------------------ desired
def test_normalize_exports_shape():
    desired = lio.normalize_exports(wanted())
    assert desired["backstores"]["golden-debian12"] == {"plugin": "block", "dev": "/dev/zvol/tank/golden/debian12",
                                                        "readonly": True, "wwn": GOLDEN_WWN}
    tpg = desired["targets"]["%s:sch1.golden-debian12" % A]["tpgs"][1]
    assert tpg["portals"] == ["10.77.0.11:3260"] and tpg["luns"] == {0: "block/golden-debian12"}
    assert tpg["acls"]["%s:node003" % A]["mapped_luns"] == {0: {"tpg_lun": 0, "write_protect": True}}


@pytest.mark.parametrize("mutate,message", [
    (lambda e: e[0].update(target_iqn="iqn.2026-11.lab:sch1_x"), "is not an IQN rtslib accepts"),
    (lambda e: e[0].update(target_iqn="iqn.2026-11.org-example"), "is not an IQN rtslib accepts"),
    (lambda e: e[1].update(backstore="a/b"), "must not be empty or contain"),
    (lambda e: e[1].update(backstore="golden-debian12"), "backstore golden-debian12 is used with two different devices"),
    (lambda e: e[2]["acls"][0].update(initiator_iqn="bogus"), "initiator_iqn"),
])
def test_normalize_exports_errors(mutate, message):
    exports = wanted()
    mutate(exports)
    with pytest.raises(lio.LioError, match=message):
        lio.normalize_exports(exports)


def test_ipv6_portal_spelling():
    assert lio.portal_key("fd00::11", 3260) == "[fd00::11]:3260"
    assert lio.portal_key("[::0]", 3260) == "[::0]:3260"


# ------------------------------------------------------------------------------------------------ planning
def texts(actions):
    return [a["text"] for a in actions]


def test_live_session_on_stale_target_is_refused_in_one_line():
    running()
    current = lio.read_state(fake.RTSRoot())
    with pytest.raises(lio.LioError) as err:
        lio.plan_lio_changes(current, lio.normalize_exports(wanted()))
    assert str(err.value) == (
        "target %s:sch1.node009-root has live sessions from %s:node009: set force: true to drop them; "
        "backstore node009-root has live sessions from %s:node009: set force: true to drop them" % (A, A, A))


def test_full_reconcile_plan_in_order():
    running(sessions=("node001",))
    current = lio.read_state(fake.RTSRoot())
    actions = lio.plan_lio_changes(current, lio.normalize_exports(wanted()))
    g, n4 = "%s:sch1.golden-debian12" % A, "%s:sch1.node004-root" % A
    assert texts(actions) == [
        "delete target %s:sch1.node009-root" % A,
        "delete backstore node009-root",
        "create backstore node004-root on /dev/zvol/tank/nodes/node004-root",
        "set target %s acl %s:node002 chap password" % (g, A),
        "create target %s acl %s:node003" % (g, A),
        "set target %s acl %s:node003 chap userid,password,mutual_userid,mutual_password" % (g, A),
        "create target %s acl %s:node003 mapped lun 0 -> lun 0 write-protected" % (g, A),
        "create target %s" % n4,
        "create target %s tpg 1" % n4,
        "set target %s tpg 1 attributes authentication=1 demo_mode_write_protect=1 generate_node_acls=0" % n4,
        "create target %s portal 10.77.0.11:3260" % n4,
        "create target %s lun 0 -> block/node004-root" % n4,
        "create target %s acl %s:node004" % (n4, A),
        "set target %s acl %s:node004 chap userid,password,mutual_userid,mutual_password" % (n4, A),
        "create target %s acl %s:node004 mapped lun 0 -> lun 0" % (n4, A),
        "enable target %s tpg 1" % n4,
    ]
    assert not any("new-secret" in t or "secret-" in t for t in texts(actions))
    assert not any("node001" in t for t in texts(actions))


def test_default_portal_goes_before_specific_portal_is_created():
    running(sessions=())
    current = lio.read_state(fake.RTSRoot())
    # the kernel refuses a catch-all and a specific portal on one port (address in use, see capture.sh)
    exports = [export("node009-root", [acl("node009", "secret-9", "mutual-9")])]
    exports[0]["portals"] = [{"ip": "10.77.0.11", "port": 3261}]
    actions = lio.plan_lio_changes(current, lio.normalize_exports(exports))
    assert texts(actions)[:2] == ["delete target %s:sch1.golden-debian12" % A, "delete target %s:sch1.node001-root" % A]
    t = "%s:sch1.node009-root" % A
    assert texts(actions)[2:] == [
        "delete backstore golden-debian12",
        "delete backstore node001-root",
        "delete target %s portal 0.0.0.0:3261" % t,
        "create target %s portal 10.77.0.11:3261" % t,
    ]


def test_changed_device_recreates_backstore_lun_and_mapping_only_with_force():
    running(sessions=("node001",))
    current = lio.read_state(fake.RTSRoot())
    exports = copy.deepcopy(wanted())
    exports[1]["device"] = "/dev/zvol/tank/nodes/node001-root-v2"
    exports = exports[1:2]
    with pytest.raises(lio.LioError, match=r"backstore node001-root \(device /dev/zvol/tank/nodes/node001-root -> "
                                           r"/dev/zvol/tank/nodes/node001-root-v2\) has live sessions"):
        lio.plan_lio_changes(current, lio.normalize_exports(exports))
    t = "%s:sch1.node001-root" % A
    assert [x for x in texts(lio.plan_lio_changes(current, lio.normalize_exports(exports), force=True))
            if "node001" in x] == [
        "delete backstore node001-root to recreate it "
        "(device /dev/zvol/tank/nodes/node001-root -> /dev/zvol/tank/nodes/node001-root-v2)",
        "create backstore node001-root on /dev/zvol/tank/nodes/node001-root-v2",
        "create target %s lun 0 -> block/node001-root" % t,
        "create target %s acl %s:node001 mapped lun 0 -> lun 0" % (t, A),
    ]


def test_write_protect_and_tpg_attribute_drift_are_fixed_in_place():
    running(sessions=("node001",))
    fake.KERNEL.targets["%s:sch1.node001-root" % A][1]["attributes"]["authentication"] = "0"
    fake.KERNEL.targets["%s:sch1.node001-root" % A][1]["enable"] = False
    fake.KERNEL.targets["%s:sch1.node001-root" % A][1]["acls"]["%s:node001" % A]["mapped"][0]["write_protect"] = True
    current = lio.read_state(fake.RTSRoot())
    exports = wanted()[1:2]
    t = "%s:sch1.node001-root" % A
    assert texts(lio.plan_lio_changes(current, lio.normalize_exports(exports), force=True))[-3:] == [
        "set target %s tpg 1 attributes authentication=1" % t,
        "set target %s acl %s:node001 mapped lun 0 write_protect=0" % (t, A),
        "enable target %s tpg 1" % t,
    ]


# ------------------------------------------------------------------------------------------------ applying
def test_applier_reaches_the_wanted_state_and_touches_nothing_else():
    running(sessions=("node001",))
    current = lio.read_state(fake.RTSRoot())
    desired = lio.normalize_exports(wanted())
    applier = lio.Applier(fake)
    for action in lio.plan_lio_changes(current, desired):
        applier.apply(action)
    assert not any("node001" in line for line in fake.KERNEL.log)
    assert "set chap_password %s:sch1.golden-debian12/1/%s:node002" % (A, A) in fake.KERNEL.log
    assert "set chap_userid %s:sch1.golden-debian12/1/%s:node002" % (A, A) not in fake.KERNEL.log
    after = lio.read_state(fake.RTSRoot())
    generated = after["backstores"]["node004-root"]["wwn"]
    assert generated and generated != "None"
    expected = lio.expected_after(current, desired)
    assert expected["backstores"]["node004-root"]["wwn"] is None
    expected["backstores"]["node004-root"]["wwn"] = generated
    assert lio.view(after) == lio.view(expected)
    fake.KERNEL.log.clear()
    assert lio.plan_lio_changes(after, desired) == []


# ------------------------------------------------------------------------------------------------ views
def test_view_masks_secrets_and_marks_changed_ones():
    running(sessions=())
    current = lio.read_state(fake.RTSRoot())
    after = lio.expected_after(current, lio.normalize_exports(wanted()))
    before_view, after_view = lio.view(current), lio.view(after, other=current)
    text = json.dumps([before_view, after_view])
    assert "secret" not in text and "mutual-" not in text
    g = after_view["targets"]["%s:sch1.golden-debian12" % A]["tpgs"]["1"]["acls"]
    assert g["%s:node002" % A]["password"] == "******** (changed)"
    assert g["%s:node002" % A]["mutual_password"] == "********"
    assert g["%s:node003" % A]["password"] == "******** (changed)"
    assert "session" not in json.dumps(after_view)


def test_public_action_drops_secrets():
    action = {"op": "set_acl_chap", "text": "t", "chap": {"password": "x", "userid": "u"}}
    assert lio.public_action(action) == {"op": "set_acl_chap", "text": "t", "chap_fields": ["password", "userid"]}


def test_default_save_file():
    assert lio.default_save_file(True) == "/etc/rtslib-fb-target/saveconfig.json"
    assert lio.default_save_file(False) == "/etc/target/saveconfig.json"
