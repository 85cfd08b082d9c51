# SPDX-License-Identifier: GPL-3.0-or-later
"""The zfs_volumes module: exact argv sequences through a mocked run_command, check mode, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible.module_utils import basic
from ansible_collections.diskless.cluster.plugins.modules import zfs_volumes

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zfs"
LIST = ["/sbin/zfs", "list", "-Hp", "-t", "filesystem,volume,snapshot",
        "-o", "name,type,volsize,volblocksize,origin,refreservation,volmode,readonly", "-r", "tank"]


class Runner:
    """Expected (argv, rc, stdout, stderr) in order; any other call fails the test."""

    def __init__(self, expected):
        self.expected = list(expected)
        self.calls = []
        self.environ = []

    def __call__(self, module, args, **kwargs):
        self.calls.append(list(args))
        self.environ.append(dict(module.run_command_environ_update))
        assert self.expected, "unexpected command %r" % (args,)
        argv, rc, out, err = self.expected.pop(0)
        assert list(args) == argv
        return rc, out, err


@pytest.fixture
def run(monkeypatch, run_main):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/sbin/" + name)
    waited = []

    def wait_for_devices(module, names, timeout=120.0):
        waited.append(list(names))
        return []

    monkeypatch.setattr(zfs_volumes, "wait_for_devices", wait_for_devices)

    def _run(args, expected, check=False, diff=False):
        runner = Runner(expected)
        runner.waited = waited

        def run_command(self, args, **kwargs):
            return runner(self, args, **kwargs)

        monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
        ok, result = run_main(zfs_volumes.main, args, check, diff)
        assert not runner.expected, "commands not run: %r" % (runner.expected,)
        return ok, result, runner
    return _run


def fixture_list():
    return (FIXTURES / "zfs_list_Hp.txt").read_text()


GOLDEN = {"name": "tank/golden/debian12", "size": "2G", "properties": {"readonly": True}, "snapshots": ["v1"]}


def test_unchanged_host_runs_only_zfs_list(run):
    ok, result, runner = run({"pool": "tank", "exported_devices": [], "volumes": [
        GOLDEN, {"name": "tank/nodes/node001-root", "origin": "tank/golden/debian12@v1", "size": 4294967296}]},
        [(LIST, 0, fixture_list(), "")])
    assert ok and result["changed"] is False
    assert result["actions"] == [] and result["commands"] == []
    assert result["volumes"]["tank/nodes/node001-root"]["volsize"] == 4294967296
    assert runner.environ[0] == {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"}


def test_new_pool_then_golden_snapshot_clone_grow_exact_argv(run):
    missing = (FIXTURES / "zfs_list_missing_pool.stderr").read_text()
    create_pool = ["/sbin/zpool", "create", "-o", "ashift=12", "-O", "compression=lz4", "-O", "mountpoint=none",
                   "tank", "/dev/vdb"]
    expected = [
        (LIST, 1, "", missing),
        (create_pool, 0, "", ""),
        (["/sbin/zfs", "create", "-p", "-s", "-V", "2147483648", "-b", "16384", "-o", "readonly=on", "-o", "volmode=dev",
          "tank/golden/debian12"], 0, "", ""),
        (["/sbin/zfs", "snapshot", "tank/golden/debian12@v1"], 0, "", ""),
        (["/sbin/zfs", "clone", "-p", "-o", "volmode=dev", "tank/golden/debian12@v1", "tank/nodes/node001-root"], 0, "", ""),
        (["/sbin/zfs", "set", "volsize=4294967296", "tank/nodes/node001-root"], 0, "", ""),
    ]
    ok, result, runner = run({
        "pool": "tank", "pool_devices": ["/dev/vdb"], "pool_properties": {"ashift": 12},
        "filesystem_properties": {"compression": "lz4", "mountpoint": "none"}, "exported_devices": [],
        "volumes": [dict(GOLDEN, volblocksize="16K"),
                    {"name": "tank/nodes/node001-root", "origin": "tank/golden/debian12@v1", "size": "4G"}]},
        expected, diff=True)
    assert ok and result["changed"] and result["pool_created"]
    assert result["commands"] == [e[0] for e in expected[1:]]
    # the lio_iscsi task that follows opens /dev/zvol/<name>: the module waits for udev to make them
    assert runner.waited == [["tank/golden/debian12", "tank/nodes/node001-root"]]
    assert result["actions"] == [
        "create pool tank on /dev/vdb",
        "create tank/golden/debian12 sparse (2147483648 bytes)",
        "snapshot tank/golden/debian12@v1",
        "clone tank/nodes/node001-root from tank/golden/debian12@v1",
        "grow tank/nodes/node001-root to 4294967296 bytes",
    ]
    assert result["diff"]["before"] == {"tank/golden/debian12": None, "tank/nodes/node001-root": None}
    assert result["diff"]["after"]["tank/nodes/node001-root"]["volsize"] == 4294967296


def test_check_mode_runs_nothing_but_zfs_list(run):
    ok, result, runner = run({"pool": "tank", "exported_devices": [], "volumes": [
        GOLDEN, {"name": "tank/nodes/node003-root", "origin": "tank/golden/debian12@v1"}]},
        [(LIST, 0, fixture_list(), "")], check=True)
    assert ok and result["changed"]
    assert runner.calls == [LIST]
    assert result["commands"] == [["/sbin/zfs", "clone", "-p", "-o", "volmode=dev", "tank/golden/debian12@v1",
                                   "tank/nodes/node003-root"]]


def test_check_mode_with_missing_pool_predicts_pool_and_volumes(run):
    ok, result, runner = run({"pool": "tank", "pool_devices": ["/dev/vdb"], "exported_devices": [],
                              "volumes": [GOLDEN]},
                             [(LIST, 1, "", "cannot open 'tank': dataset does not exist\n")], check=True)
    assert ok and result["pool_created"] and runner.calls == [LIST]
    assert result["actions"][0] == "create pool tank on /dev/vdb"


def test_missing_pool_without_devices_fails_in_one_line(run):
    ok, result, dummy = run({"pool": "tank", "volumes": [GOLDEN]},
                            [(LIST, 1, "", "cannot open 'tank': dataset does not exist\n")])
    assert not ok
    assert result["msg"] == "pool tank does not exist: import it or give pool_devices to create it"


def test_shrink_refused_nothing_run(run):
    ok, result, runner = run({"pool": "tank", "force": True, "exported_devices": [], "volumes": [
        {"name": "tank/nodes/node001-root", "origin": "tank/golden/debian12@v1", "size": "1G"}]},
        [(LIST, 0, fixture_list(), "")])
    assert not ok and runner.calls == [LIST]
    assert "never shrink" in result["msg"] and "\n" not in result["msg"]


def test_prune_refuses_exported_volume_from_given_devices(run):
    keep = [dict(GOLDEN), {"name": "tank/nodes/node001-root", "origin": "tank/golden/debian12@v1"},
            {"name": "tank/nodes/old-root", "size": "1G", "properties": {"volmode": "default"}}]
    ok, result, runner = run({"pool": "tank", "prune": True, "volumes": keep,
                              "exported_devices": ["/dev/zvol/tank/nodes/node002-root"]},
                             [(LIST, 0, fixture_list(), "")])
    assert not ok and runner.calls == [LIST]
    assert result["msg"] == ("tank/nodes/node002-root is exported by LIO: remove its export first (lio_iscsi) "
                             "or set force: true")


def test_prune_destroys_unexported_unlisted_volume(run):
    keep = [dict(GOLDEN), {"name": "tank/nodes/node001-root", "origin": "tank/golden/debian12@v1"},
            {"name": "tank/nodes/old-root", "size": "1G", "properties": {"volmode": "default"}}]
    ok, result, runner = run({"pool": "tank", "prune": True, "volumes": keep, "exported_devices": []},
                             [(LIST, 0, fixture_list(), ""),
                              (["/sbin/zfs", "destroy", "tank/nodes/node002-root"], 0, "", "")])
    assert ok and result["actions"] == ["destroy tank/nodes/node002-root"]


def test_failed_command_reports_first_stderr_line_and_what_was_done(run):
    ok, result, runner = run({"pool": "tank", "exported_devices": [], "volumes": [
        GOLDEN, {"name": "tank/nodes/node003-root", "origin": "tank/golden/debian12@v1", "size": "3G"}]},
        [(LIST, 0, fixture_list(), ""),
         (["/sbin/zfs", "clone", "-p", "-o", "volmode=dev", "tank/golden/debian12@v1", "tank/nodes/node003-root"], 0, "", ""),
         (["/sbin/zfs", "set", "volsize=3221225472", "tank/nodes/node003-root"], 1, "",
          "cannot set property for 'tank/nodes/node003-root': out of space\nmore\n")])
    assert not ok
    assert result["msg"] == "zfs set tank/nodes/node003-root failed (zfs, rc 1): cannot set property for 'tank/nodes/node003-root': out of space"
    assert result["actions"] == ["clone tank/nodes/node003-root from tank/golden/debian12@v1"]


def test_extra_properties_are_listed_in_the_same_zfs_list(run):
    listing = LIST[:6] + ["name,type,volsize,volblocksize,origin,refreservation,volmode,readonly,compression"] + LIST[7:]
    out = "".join(line + "\t" + ("lz4" if "golden/debian12\t" in line else "off") + "\n"
                  for line in fixture_list().splitlines())
    ok, result, runner = run({"pool": "tank", "exported_devices": [], "volumes": [
        dict(GOLDEN, properties={"readonly": True, "compression": "lz4"}),
        {"name": "tank/nodes/node002-root", "origin": "tank/golden/debian12@v1", "properties": {"compression": "lz4"}}]},
        [(listing, 0, out, ""),
         (["/sbin/zfs", "set", "compression=lz4", "volmode=dev", "tank/nodes/node002-root"], 0, "", "")])
    assert ok and result["actions"] == ["set compression=lz4 volmode=dev on tank/nodes/node002-root"]


def test_volume_outside_pool_and_duplicates_fail(run):
    ok, result, dummy = run({"pool": "tank", "volumes": [{"name": "other/x", "size": 1}]}, [])
    assert not ok and result["msg"] == "volumes outside pool tank: other/x"
    ok, result, dummy = run({"pool": "tank", "volumes": [{"name": "tank/x", "size": 1}, {"name": "tank/x", "size": 1}]}, [])
    assert not ok and result["msg"] == "volumes listed twice: tank/x"


def test_exported_datasets_matches_zvol_paths():
    assert zfs_volumes.exported_datasets(["/dev/zvol/tank/a", "/dev/zd0"], ["tank/a", "tank/b"]) == {"tank/a"}
