"""The storage host role in the real lab VM, checked from an iSCSI initiator (the same VM, over loopback).

`playbooks/storage.yml` is applied to the lab inventory's storage hosts, with two more nodes in the plan
(`spare_inventory`: node081 and node082, no VM) whose volumes and exports sch1 gets like any node's; then real
`iscsiadm` on sch1 logs in AS those two nodes (one open-iscsi iface per node with `iface.initiatorname`, so
several can be logged in at once) with the plan's CHAP + mutual CHAP. The lab's own nodes keep running from
their roots on the same storage host the whole time: the tests never touch their volumes. Every test needs
only the module's first converge (`first_converge`): idempotence, logins and refusals, the destroy refusal,
one node's export changed under another node's live session. At the end the storage hosts are converged with the lab inventory alone: the spares' exports
go (their volumes stay: nothing is pruned without `storage_host_prune`). What a storage host restores at boot
without Ansible is checked where it really happens: the fault tests (a killed host started again) and the
A/B updates (a clean reboot).

Facts only; timings are recorded (terminal summary), never asserted.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from lab.client import (INVENTORY, REPO, LabInfo, ansible_json, inventory_args, no_json, node_credentials, plan_slices,
                        record_timing)

PLAYBOOK = REPO / "playbooks" / "storage.yml"
HOST = "sch1"                      # the lab inventory's storage host
NODES = ("node081", "node082")     # the spare nodes the tests log in as (spare_inventory)
INTRUDER_IQN = "iqn.2026-11.org.example.lab:intruder"
# In the plan, not in the lab: no VM, no boot; an iSCSI root on sch1 each (IP from the name: 10.77.0.181/182, below the dynamic range).
SPARES = """\
all:
  children:
    compute:
      hosts:
        node081:
          node_mac: "52:54:00:77:08:01"
          node_storage: [sch1]
          node_chap_secret: lab-n081-chap-2c8e
          node_chap_mutual_secret: lab-n081-mutual-9d41
        node082:
          node_mac: "52:54:00:77:08:02"
          node_storage: [sch1]
          node_chap_secret: lab-n082-chap-6a07
          node_chap_mutual_secret: lab-n082-mutual-3b95
"""


# ------------------------------------------------------------------------------------------ helpers
def run_json(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc, data = ansible_json(argv)
    if data is None:
        pytest.fail(no_json(argv[0], proc), pytrace=False)
    return proc, data


def converge(what: str, inventories: list[Path], extra_vars: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run playbooks/storage.yml; return {"tasks": [(name, host result)], "stats": ..., "rc": ...}."""
    argv = ["ansible-playbook", *inventory_args(*inventories), str(PLAYBOOK)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    t0 = time.monotonic()
    proc, data = run_json(argv)
    record_timing(f"storage.yml: {what}", time.monotonic() - t0)
    # task names without the "<role> : " prefix the callback adds to role tasks
    tasks = [(t["task"]["name"].split(" : ", 1)[-1], t["hosts"][HOST]) for play in data["plays"]
             for t in play["tasks"] if HOST in t["hosts"]]
    failed = [f"{name}: {res.get('msg')}" for name, res in tasks if res.get("failed")]
    assert proc.returncode == 0 and not failed, f"{what}: rc {proc.returncode}; failed: {failed}\n{proc.stderr[-2000:]}"
    return {"tasks": tasks, "stats": data["stats"][HOST]}


def changed_tasks(run: dict[str, Any]) -> list[str]:
    return [name for name, res in run["tasks"] if res.get("changed")]


def ssh(lab: LabInfo, script: str, timeout: float = 900) -> str:
    """Run a bash script on the storage VM (one SSH round trip); its stdout."""
    proc = subprocess.run(["ssh", "-F", str(lab.ssh_config), HOST, "bash -euo pipefail -s"], input=script,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"on {HOST} (rc {proc.returncode}):\n{script}\n--- stdout\n{proc.stdout[-3000:]}\n" \
                                 f"--- stderr\n{proc.stderr[-3000:]}"
    return proc.stdout


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def parse_sessions(text: str) -> list[dict[str, str]]:
    """`iscsiadm -m session -P 1` -> [{target, iface, initiator, sid, state}]."""
    sessions: list[dict[str, str]] = []
    target = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Target: "):
            target = line.split()[1]
        elif line.startswith("Iface Name: "):
            sessions.append({"target": target, "iface": line.split(": ", 1)[1]})
        elif sessions and line.startswith("Iface Initiatorname: "):
            sessions[-1]["initiator"] = line.split(": ", 1)[1]
        elif sessions and line.startswith("SID: "):
            sessions[-1]["sid"] = line.split(": ", 1)[1]
        elif sessions and line.startswith("iSCSI Session State: "):
            sessions[-1]["state"] = line.split(": ", 1)[1]
    return sessions


# Shell functions defined at the top of every initiator script (open-iscsi on the storage VM itself).
INITIATOR_SH = r"""
systemctl start iscsid.service
P=%(portal)s
iface() {  # iface NAME INITIATOR_IQN
  iscsiadm -m iface -I "$1" >/dev/null 2>&1 || iscsiadm -m iface -I "$1" -o new >/dev/null
  iscsiadm -m iface -I "$1" -o update -n iface.initiatorname -v "$2" >/dev/null
}
record() {  # record IFACE TARGET USER SECRET USER_IN SECRET_IN  (a manual-startup node record)
  iscsiadm -m node -T "$2" -p "$P" -I "$1" >/dev/null 2>&1 || iscsiadm -m node -o new -T "$2" -p "$P" -I "$1" >/dev/null
  set -- "$1" "$2" node.session.auth.authmethod CHAP node.session.auth.username "$3" \
      node.session.auth.password "$4" node.session.auth.username_in "$5" node.session.auth.password_in "$6" \
      node.startup manual
  local i="$1" t="$2"; shift 2
  while [ $# -gt 0 ]; do iscsiadm -m node -T "$t" -p "$P" -I "$i" -o update -n "$1" -v "$2"; shift 2; done
}
attempt() {  # attempt LABEL IFACE TARGET: login, print {label, rc, out} as one JSON line
  local rc=0 out
  out=$(timeout 120 iscsiadm -m node -T "$3" -p "$P" -I "$2" --login 2>&1) || rc=$?
  python3 -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "rc": int(sys.argv[2]), "out": sys.argv[3]}))' "$1" "$rc" "$out"
}
device() {  # device TARGET -> the LUN 0 block device of a logged-in target (waits for udev)
  local d="/dev/disk/by-path/ip-$P-iscsi-$1-lun-0" i
  for i in $(seq 120); do [ -b "$d" ] && break; udevadm settle; sleep 0.5; done
  readlink -f "$d"
}
sessions() {  # sessions -> {"sessions": "<iscsiadm -m session -P 1>"}
  local s; s=$(iscsiadm -m session -P 1 2>&1 || true)
  python3 -c 'import json, sys; print(json.dumps({"sessions": sys.argv[1]}))' "$s"
}
"""


def path_on_host(slices: dict[str, Any], node: str) -> dict[str, Any]:
    """The node's path on the storage host under test (a mirror or image node has one on each host)."""
    return next(p for p in slices[node]["paths"] if p["storage_host"] == HOST)


def initiator_script(slices: dict[str, Any], body: str) -> str:
    portal = path_on_host(slices, NODES[0])
    return INITIATOR_SH % {"portal": shlex.quote(f"{portal['portal']}:{portal['port']}")} + body


def node_record(slices: dict[str, Any], node: str, iface: str | None = None, secret: str | None = None) -> str:
    """A node record of ``node``'s target with its CHAP credentials (``secret``: another one) on ``iface``; without
    ``iface``, on the node's own iface (made here, so that a test needs no iface an earlier test made)."""
    acl = node_credentials(slices, node)
    own = "" if iface else f"iface dl-{node} {slices[node]['initiator_iqn']}\n"
    return own + "record %s\n" % shlex.join([iface or f"dl-{node}", target(slices, node), acl["userid"],
                                            secret or acl["password"], acl["mutual_userid"], acl["mutual_password"]])


def target(slices: dict[str, Any], node: str) -> str:
    return path_on_host(slices, node)["target_iqn"]


def node_volumes(part: dict[str, Any]) -> list[dict[str, Any]]:
    """The clones of a storage host's slice (its zfs_volumes volumes with an origin)."""
    return [v for v in part["zfs_volumes"]["volumes"] if v.get("origin")]


def by_iface(sessions: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {s["iface"]: s for s in sessions}


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def spare_inventory(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The lab inventory + the spare nodes, as two `-i` sources."""
    extra = tmp_path_factory.mktemp("spares") / "spares.yml"
    extra.write_text(SPARES)
    return [INVENTORY, extra]


@pytest.fixture(scope="module")
def slices(lab: LabInfo, spare_inventory: list[Path]) -> dict[str, dict[str, Any]]:
    """Every host's slice of the plan with the spare nodes in it (this module's own `slices`)."""
    return plan_slices(spare_inventory)


@pytest.fixture(scope="module")
def first_converge(lab: LabInfo, slices: dict[str, Any], spare_inventory: list[Path]) -> Iterator[dict[str, Any]]:
    """storage.yml with the spare nodes; at the end of the module, with the lab inventory alone: the exports as
    the lab plans them (the spares' go, and with them what a test changed on a spare's export)."""
    # a storage host left over from an earlier session of a lab that stayed up is fine: the role converges it
    yield converge("first converge (+ the spare nodes)", spare_inventory)
    converge("the lab inventory alone again (the spares' exports go)", [INVENTORY])


# ------------------------------------------------------------------------------------------ tests
def test_converge_builds_the_planned_volumes_and_exports(lab: LabInfo, slices: dict[str, Any],
                                                         first_converge: dict[str, Any]) -> None:
    slice_ = slices[HOST]
    sizes = {v["name"]: v["size"] for v in slice_["zfs_volumes"]["volumes"]}
    out = ssh(lab, f"""
zfs list -Hp -t volume,snapshot -o name,type,origin,volsize,volmode,readonly -r {shlex.quote(slice_['pool'])}
echo ---
python3 -c 'import json, rtslib_fb; print(json.dumps(rtslib_fb.RTSRoot().dump()))'
echo ---
cat /etc/rtslib-fb-target/saveconfig.json
echo ---
systemctl is-enabled zfs-import-cache.service zfs-volume-wait.service zfs-volumes.target rtslib-fb-targetctl.service
systemctl show -p Requires -p After rtslib-fb-targetctl.service
""")
    zfs_text, dump_text, saved_text, units_text = out.split("---\n")
    rows = {line.split("\t")[0]: line.split("\t") for line in zfs_text.splitlines()}
    for golden in slice_["golden"]:
        assert rows[golden["volume"]][1:] == ["volume", "-", str(sizes[golden["volume"]]), "dev", "on"]
        assert rows[golden["snapshot"]][1] == "snapshot"
    for vol in node_volumes(slice_):
        readonly = vol["properties"].get("readonly", "off")
        assert rows[vol["name"]][1:] == ["volume", vol["origin"], str(vol["size"]), "dev", readonly]

    for dump in (json.loads(dump_text), json.loads(saved_text)):   # running LIO, and what boot restores
        stores = {so["name"]: so for so in dump["storage_objects"]}
        targets = {t["wwn"]: t for t in dump["targets"] if t["fabric"] == "iscsi"}
        assert sorted(targets) == sorted(e["target_iqn"] for e in slice_["lio_iscsi"]["exports"])
        for export in slice_["lio_iscsi"]["exports"]:
            assert stores[export["backstore"]]["dev"] == export["device"]
            (tpg,) = targets[export["target_iqn"]]["tpgs"]
            assert tpg["enable"] is True or tpg["enable"] == 1
            assert (tpg["attributes"]["authentication"], tpg["attributes"]["generate_node_acls"]) == (1, 0)
            assert [(p["ip_address"], p["port"]) for p in tpg["portals"]] == [(slice_["portal_ip"], 3260)]
            assert [lun["storage_object"] for lun in tpg["luns"]] == [f"/backstores/block/{export['backstore']}"]
            (acl,) = tpg["node_acls"]
            (want,) = export["acls"]
            assert acl["node_wwn"] == want["initiator_iqn"]
            assert (acl["chap_userid"], acl["chap_mutual_userid"]) == (want["userid"], want["mutual_userid"])
            assert (acl["chap_password"], acl["chap_mutual_password"]) == (want["password"], want["mutual_password"])
    units = units_text.splitlines()
    assert units[:4] == ["enabled"] * 4, units
    assert any(line.startswith("Requires=") and "zfs-volumes.target" in line for line in units), units
    assert any(line.startswith("After=") and "zfs-volumes.target" in line for line in units), units


def test_second_converge_changes_nothing(lab: LabInfo, first_converge: dict[str, Any],
                                         spare_inventory: list[Path]) -> None:
    run = converge("second converge (idempotence)", spare_inventory)
    assert changed_tasks(run) == []
    assert run["stats"]["changed"] == 0 and run["stats"]["failures"] == 0


def test_chap_login_works_and_wrong_secret_or_foreign_initiator_is_refused(
        lab: LabInfo, slices: dict[str, Any], first_converge: dict[str, Any]) -> None:
    n1, n2 = (slices[n] for n in NODES)
    t1 = target(slices, NODES[0])
    body = "".join(f"iface dl-{n['name']} {n['initiator_iqn']}\n" for n in (n1, n2))
    body += f"iface dl-intruder {INTRUDER_IQN}\n"
    body += node_record(slices, NODES[0], secret="wrong-secret-12345")
    body += f"attempt wrong_secret dl-{NODES[0]} {t1}\nsessions\n"
    body += node_record(slices, NODES[0], iface="dl-intruder")        # node001's secrets, another IQN
    body += f"attempt foreign_iqn dl-intruder {t1}\n"
    # node002's own, correct credentials, on node001's target
    c2 = node_credentials(slices, NODES[1])
    body += "record %s\n" % shlex.join([f"dl-{NODES[1]}", t1, c2["userid"], c2["password"],
                                        c2["mutual_userid"], c2["mutual_password"]])
    body += f"attempt other_node dl-{NODES[1]} {t1}\nsessions\n"
    body += f"iscsiadm -m node -T {t1} -p \"$P\" -I dl-intruder -o delete 2>/dev/null || true\n"
    body += f"iscsiadm -m node -T {t1} -p \"$P\" -I dl-{NODES[1]} -o delete 2>/dev/null || true\n"
    body += node_record(slices, NODES[0])
    body += f"attempt right dl-{NODES[0]} {t1}\nsessions\n"
    body += f"dev=$(device {t1}); blockdev --getsize64 \"$dev\"\n"
    body += f"iscsiadm -m node -T {t1} -p \"$P\" -I dl-{NODES[0]} --logout >/dev/null\nsessions\n"
    t0 = time.monotonic()
    out = ssh(lab, initiator_script(slices, body))
    record_timing("CHAP logins: 3 refused + 1 accepted, logout", time.monotonic() - t0)
    lines = json_lines(out)
    attempts = {x["label"]: x for x in lines if "label" in x}
    sessions = [parse_sessions(x["sessions"]) for x in lines if "sessions" in x]
    for label in ("wrong_secret", "foreign_iqn", "other_node"):
        assert attempts[label]["rc"] != 0, attempts[label]
        assert "authorization failure" in attempts[label]["out"].lower(), attempts[label]
    assert sessions[0] == [] and sessions[1] == [], sessions[:2]   # nothing half-open after a refusal
    assert attempts["right"]["rc"] == 0, attempts["right"]
    (s,) = sessions[2]
    want = (t1, f"dl-{NODES[0]}", n1["initiator_iqn"], "LOGGED_IN")
    assert (s["target"], s["iface"], s["initiator"], s["state"]) == want
    size = int(next(line for line in out.splitlines() if line.isdigit()))
    assert size == next(v["size"] for v in node_volumes(slices[HOST]) if v["name"].endswith(f"/nodes/{NODES[0]}-root"))
    assert sessions[3] == []


def test_destroying_a_cloned_golden_volume_is_refused_and_destroys_nothing(
        lab: LabInfo, slices: dict[str, Any], first_converge: dict[str, Any]) -> None:
    slice_ = slices[HOST]
    golden = slice_["golden"][0]["volume"]
    listing = f"zfs list -Hp -t all -o name,origin,guid -r {shlex.quote(slice_['pool'])}"
    before = ssh(lab, listing)
    args = {"pool": slice_["pool"], "prune": True, "prune_scope": [golden.rsplit("/", 1)[0]],
            "volumes": [{"name": v["name"], "origin": v["origin"], "size": v["size"]} for v in node_volumes(slice_)]}
    t0 = time.monotonic()
    proc, data = run_json(["ansible", "-i", str(INVENTORY), HOST, "-m", "diskless.cluster.zfs_volumes", "-a", json.dumps(args)])
    record_timing("zfs_volumes prune of the golden scope (refused)", time.monotonic() - t0)
    res = data["plays"][0]["tasks"][0]["hosts"][HOST]
    assert proc.returncode != 0 and res.get("failed") is True, res
    msg = res["msg"]
    assert "\n" not in msg
    assert golden in msg and "dependent clones" in msg and "retire them first" in msg, msg
    for vol in node_volumes(slice_):
        assert vol["name"] in msg
    assert not res.get("changed")
    after = ssh(lab, listing)
    assert after == before
    assert golden in after and all(v["name"] in after for v in node_volumes(slice_))


def test_changing_one_nodes_export_keeps_another_nodes_session(
        lab: LabInfo, slices: dict[str, Any], first_converge: dict[str, Any], spare_inventory: list[Path],
        tmp_path: Path) -> None:
    n1, n2 = NODES
    t1, t2 = target(slices, n1), target(slices, n2)
    acl2 = slices[n2]["initiator_iqn"]
    lio_info = f"/sys/kernel/config/target/iscsi/{t2}/tpgt_1/acls/{acl2}/info"
    probe = f"""
sessions
dev=$(device {t2})
echo "block $(dd if="$dev" bs=4096 count=1 skip=$((RANDOM % 256)) iflag=direct status=none | wc -c)"
echo "lio $(grep -o 'LIO Session ID: [0-9]*' {lio_info} | tr -dc 0-9)"
"""
    out = ssh(lab, initiator_script(slices, f"iface dl-{n2} {slices[n2]['initiator_iqn']}\n"
                                    + node_record(slices, n2) + f"attempt login dl-{n2} {t2}\n" + probe))
    assert json_lines(out)[0]["rc"] == 0, out
    before = by_iface(parse_sessions(json_lines(out)[1]["sessions"]))[f"dl-{n2}"]
    lio_before = next(line.split()[1] for line in out.splitlines() if line.startswith("lio "))
    assert before["state"] == "LOGGED_IN" and lio_before

    new_secret = "lab-n081-changed-" + os.urandom(4).hex()
    changed = tmp_path / "changed-secret.yml"       # a later -i source: its host var wins
    changed.write_text(f"all:\n  hosts:\n    {n1}:\n      node_chap_secret: {new_secret}\n")
    run = converge(f"{n1}'s CHAP secret changed, {n2} logged in", [*spare_inventory, changed])
    assert changed_tasks(run) == ["Export the volumes over iSCSI"], changed_tasks(run)
    actions = dict(run["tasks"])["Export the volumes over iSCSI"]["actions"]
    assert actions and all(slices[n1]["initiator_iqn"] in a for a in actions), actions
    assert not any(n2 in a for a in actions), actions

    out = ssh(lab, initiator_script(slices, probe + node_record(slices, n1, secret=new_secret)
                                    + f"attempt new_secret dl-{n1} {t1}\n"
                                    + f"iscsiadm -m node -T {t1} -p \"$P\" -I dl-{n1} --logout >/dev/null\n"
                                    + f"iscsiadm -m node -T {t2} -p \"$P\" -I dl-{n2} --logout >/dev/null\n"))
    after = by_iface(parse_sessions(json_lines(out)[0]["sessions"]))[f"dl-{n2}"]
    lio_after = next(line.split()[1] for line in out.splitlines() if line.startswith("lio "))
    assert (after["sid"], after["state"]) == (before["sid"], "LOGGED_IN")
    assert lio_after == lio_before
    assert "block 4096" in out
    assert json_lines(out)[1]["rc"] == 0, out       # node001 logs in with its new secret
