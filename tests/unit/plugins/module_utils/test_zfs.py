# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/zfs.py: byte counts and parsers over captured output, argv builders, the zvol planner."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import zfs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zfs"


def current():
    return zfs.parse_zfs_list((FIXTURES / "zfs_list_Hp.txt").read_text(), zfs.list_columns())


def vol(**kwargs):
    return zfs.normalize_volume(kwargs, {"volmode": "dev"})


# ------------------------------------------------------------------------------------------------ sizes
# (user-written sizes: module_utils _size, tests/unit/plugins/module_utils/test_size.py)
@pytest.mark.parametrize("cell,expected", [("4294967296", 4294967296), ("0", 0), (16384, 16384), ("-", None),
                                           ("none", None), ("10G", None), (True, None)])
def test_byte_counts_of_parsable_output(cell, expected):
    assert zfs.byte_count(cell) == expected


def test_sizes_compare_numerically_not_as_strings():
    assert zfs.same_value("volsize", 10737418240, "10G")
    assert zfs.same_value("volblocksize", "16384", "16K")
    assert not zfs.same_value("volsize", 10737418240, "11G")
    assert zfs.same_value("readonly", "on", True)
    assert zfs.same_value("readonly", "off", False)
    assert not zfs.same_value("volmode", "default", "dev")
    assert not zfs.same_value("compression", None, "lz4")
    assert zfs.same_value("refreservation", 0, 0) and zfs.same_value("refreservation", "0", "0")
    assert zfs.same_value("refreservation", "none", "none")


# ------------------------------------------------------------------------------------------------ parsers
def test_parse_zfs_list_fixture():
    cur = current()
    assert sorted(cur) == [
        "tank", "tank/golden", "tank/golden/debian12", "tank/golden/debian12@v1", "tank/nodes",
        "tank/nodes/node001-root", "tank/nodes/node002-root", "tank/nodes/old-root", "tank/nodes/old-root@keep",
    ]
    assert cur["tank/nodes/node001-root"] == {
        "name": "tank/nodes/node001-root", "type": "volume", "volsize": 4294967296, "volblocksize": 16384,
        "origin": "tank/golden/debian12@v1", "refreservation": 0, "volmode": "dev", "readonly": "off",
    }
    # a filesystem has no volsize, but volmode is inheritable: zfs lists it (default), it is not "-"
    assert cur["tank"]["volsize"] is None and cur["tank"]["volmode"] == "default"
    # a snapshot keeps its volsize, everything else is "-" (volblocksize too)
    assert cur["tank/golden/debian12@v1"] == {
        "name": "tank/golden/debian12@v1", "type": "snapshot", "volsize": 2147483648, "volblocksize": None,
        "origin": None, "refreservation": None, "volmode": None, "readonly": None,
    }
    # a non-sparse volume reserves more than its size (metadata)
    assert cur["tank/nodes/old-root"]["refreservation"] == 1109393408
    assert cur["tank/nodes/old-root"]["volblocksize"] == 8192


def test_parse_zfs_list_wrong_column_count_is_an_error():
    with pytest.raises(ValueError, match="line 1 has 2 columns, expected 8"):
        zfs.parse_zfs_list("tank\tfilesystem\n", zfs.list_columns())


def test_parse_zfs_get_fixture():
    got = zfs.parse_zfs_get((FIXTURES / "zfs_get_Hp.txt").read_text())
    props = got["tank/nodes/node001-root"]
    assert props["volsize"] == {"value": 4294967296, "source": "local"}
    assert props["volblocksize"] == {"value": 16384, "source": None}  # fixed at creation: source "-"
    assert props["refreservation"] == {"value": 0, "source": "default"}
    assert props["origin"] == {"value": "tank/golden/debian12@v1", "source": None}
    assert props["compression"] == {"value": "lz4", "source": "inherited from tank"}


def test_parse_zpool_list_fixture():
    pools = zfs.parse_zpool_list((FIXTURES / "zpool_list_Hp.txt").read_text())
    assert pools == {"tank": {"name": "tank", "size": 16642998272, "allocated": 344317952, "free": 16298680320,
                              "health": "ONLINE"}}


def test_dataset_missing():
    assert zfs.dataset_missing((FIXTURES / "zfs_list_missing_pool.stderr").read_text())
    assert not zfs.dataset_missing("cannot open 'tank': permission denied")


# ------------------------------------------------------------------------------------------------ argv
def test_argv_builders():
    assert zfs.argv_list("/sbin/zfs", "tank", ["compression"]) == [
        "/sbin/zfs", "list", "-Hp", "-t", "filesystem,volume,snapshot",
        "-o", "name,type,volsize,volblocksize,origin,refreservation,volmode,readonly,compression", "-r", "tank"]
    assert zfs.argv_create_volume("/sbin/zfs", "tank/g", 2147483648, True, "16K", {"volmode": "dev", "readonly": True}) == [
        "/sbin/zfs", "create", "-p", "-s", "-V", "2147483648", "-b", "16384", "-o", "readonly=on", "-o", "volmode=dev", "tank/g"]
    assert zfs.argv_create_volume("/sbin/zfs", "tank/g", 1024, False) == ["/sbin/zfs", "create", "-p", "-V", "1024", "tank/g"]
    assert zfs.argv_clone("/sbin/zfs", "tank/g@v1", "tank/n", {"volmode": "dev"}) == [
        "/sbin/zfs", "clone", "-p", "-o", "volmode=dev", "tank/g@v1", "tank/n"]
    assert zfs.argv_set("/sbin/zfs", "tank/n", {"volmode": "dev", "readonly": False}) == [
        "/sbin/zfs", "set", "readonly=off", "volmode=dev", "tank/n"]
    assert zfs.argv_destroy("/sbin/zfs", "tank/n", True) == ["/sbin/zfs", "destroy", "-r", "tank/n"]
    assert zfs.argv_zpool_create("/sbin/zpool", "tank", ["/dev/vdb"], True, {"ashift": 12},
                                 {"compression": "lz4", "mountpoint": "none"}) == [
        "/sbin/zpool", "create", "-f", "-o", "ashift=12", "-O", "compression=lz4", "-O", "mountpoint=none", "tank", "/dev/vdb"]


# ------------------------------------------------------------------------------------------------ planner
def texts(actions):
    return [a["text"] for a in actions]


def test_fixture_state_matching_desired_plans_nothing():
    desired = [
        vol(name="tank/golden/debian12", size="2G", properties={"readonly": True}, snapshots=["v1"]),
        vol(name="tank/nodes/node001-root", origin="tank/golden/debian12@v1", size="4G"),
    ]
    assert zfs.plan_zvol_changes(current(), desired) == []


def test_empty_pool_creates_golden_snapshot_then_clones_and_grows():
    desired = [
        vol(name="tank/nodes/node001-root", origin="tank/golden/debian12@v1", size="4G"),
        vol(name="tank/golden/debian12", size="2G", volblocksize="16K", snapshots=["v1"]),
        vol(name="tank/nodes/node002-root", origin="tank/golden/debian12@v1"),
    ]
    actions = zfs.plan_zvol_changes({}, desired)
    assert texts(actions) == [
        "create tank/golden/debian12 sparse (2147483648 bytes)",
        "snapshot tank/golden/debian12@v1",
        "clone tank/nodes/node001-root from tank/golden/debian12@v1",
        "clone tank/nodes/node002-root from tank/golden/debian12@v1",
        "grow tank/nodes/node001-root to 4294967296 bytes",
    ]
    assert [zfs.action_argv("zfs", a) for a in actions] == [
        ["zfs", "create", "-p", "-s", "-V", "2147483648", "-b", "16384", "-o", "volmode=dev", "tank/golden/debian12"],
        ["zfs", "snapshot", "tank/golden/debian12@v1"],
        ["zfs", "clone", "-p", "-o", "volmode=dev", "tank/golden/debian12@v1", "tank/nodes/node001-root"],
        ["zfs", "clone", "-p", "-o", "volmode=dev", "tank/golden/debian12@v1", "tank/nodes/node002-root"],
        ["zfs", "set", "volsize=4294967296", "tank/nodes/node001-root"],
    ]


def test_grow_and_property_fix_on_existing_volumes():
    desired = [vol(name="tank/nodes/node002-root", origin="tank/golden/debian12@v1", size="3G")]
    assert texts(zfs.plan_zvol_changes(current(), desired)) == [
        "grow tank/nodes/node002-root from 2147483648 to 3221225472 bytes",
        "set volmode=dev on tank/nodes/node002-root",
    ]


def test_shrink_is_refused_in_one_line():
    desired = [vol(name="tank/nodes/node001-root", origin="tank/golden/debian12@v1", size="1G")]
    with pytest.raises(zfs.ZfsError) as err:
        zfs.plan_zvol_changes(current(), desired, force=True)
    assert str(err.value) == ("tank/nodes/node001-root: size 1073741824 is smaller than the current 4294967296: "
                              "ZFS volumes never shrink, raise the size")
    assert "\n" not in str(err.value)


def test_clone_of_missing_snapshot_is_refused():
    desired = [vol(name="tank/nodes/n9", origin="tank/golden/other@v1")]
    with pytest.raises(zfs.ZfsError, match="origin snapshot tank/golden/other@v1 does not exist"):
        zfs.plan_zvol_changes(current(), desired)


def test_wrong_origin_needs_force_then_recreates():
    desired = [vol(name="tank/nodes/node002-root", origin="tank/golden/debian12@v2"),
               vol(name="tank/golden/debian12", size="2G", snapshots=["v1", "v2"], properties={"readonly": "on"})]
    with pytest.raises(zfs.ZfsError, match="is a clone of tank/golden/debian12@v1, not tank/golden/debian12@v2: "
                                           "re-imaging destroys its data, set force: true"):
        zfs.plan_zvol_changes(current(), desired)
    assert texts(zfs.plan_zvol_changes(current(), desired, force=True)) == [
        "destroy tank/nodes/node002-root (re-image from tank/golden/debian12@v2)",
        "snapshot tank/golden/debian12@v2",
        "clone tank/nodes/node002-root from tank/golden/debian12@v2",
    ]


def test_volumes_not_in_the_set_are_left_alone_without_prune():
    assert zfs.plan_zvol_changes(current(), []) == []


def test_prune_refuses_snapshots_and_dependents():
    with pytest.raises(zfs.ZfsError) as err:
        zfs.plan_zvol_changes(current(), [], prune=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert "tank/golden/debian12 has dependent clones tank/nodes/node001-root, tank/nodes/node002-root that stay" not in msg
    assert "tank/nodes/old-root has snapshots tank/nodes/old-root@keep: set force: true" in msg


def test_prune_never_destroys_an_origin_whose_clones_stay():
    keep = [vol(name="tank/nodes/node001-root", origin="tank/golden/debian12@v1")]
    with pytest.raises(zfs.ZfsError, match="tank/golden/debian12 has dependent clones tank/nodes/node001-root that stay"):
        zfs.plan_zvol_changes(current(), keep, prune=True, force=True)


def test_prune_with_force_destroys_clones_before_origin_with_r_not_R():
    actions = zfs.plan_zvol_changes(current(), [], prune=True, force=True)
    assert texts(actions) == [
        "destroy tank/nodes/node001-root",
        "destroy tank/nodes/node002-root",
        "destroy tank/golden/debian12 and its snapshots",
        "destroy tank/nodes/old-root and its snapshots",
    ]
    argvs = [zfs.action_argv("zfs", a) for a in actions]
    assert argvs[2] == ["zfs", "destroy", "-r", "tank/golden/debian12"]
    assert all("-R" not in argv for argv in argvs)


def test_prune_scope_and_exported_guard():
    keep = [vol(name="tank/golden/debian12", size="2G"),
            vol(name="tank/nodes/node001-root", origin="tank/golden/debian12@v1")]
    with pytest.raises(zfs.ZfsError) as err:
        zfs.plan_zvol_changes(current(), keep, prune=True, exported={"tank/nodes/node002-root"},
                              scope=["tank/nodes"])
    assert str(err.value) == ("tank/nodes/node002-root is exported by LIO: remove its export first (lio_iscsi) or set "
                              "force: true; tank/nodes/old-root has snapshots tank/nodes/old-root@keep: set force: true "
                              "to destroy it with them")
    only = zfs.plan_zvol_changes(current(), keep + [vol(name="tank/nodes/old-root", size="1G")], prune=True,
                                 scope=["tank/nodes"])
    assert texts(only) == ["set volmode=dev on tank/nodes/old-root", "destroy tank/nodes/node002-root"]


def test_filesystem_in_the_way_is_refused():
    with pytest.raises(zfs.ZfsError, match="tank/golden exists but is a filesystem, not a volume"):
        zfs.plan_zvol_changes(current(), [vol(name="tank/golden", size="1G")])


def test_volblocksize_mismatch_is_a_warning_not_a_change():
    actions = zfs.plan_zvol_changes(current(), [vol(name="tank/nodes/old-root", size="1G", volblocksize="16K",
                                                    properties={"volmode": "default"})])
    assert actions == [{"action": "warn", "name": "", "args": {},
                        "text": "tank/nodes/old-root: volblocksize is 8192, wanted 16384: it is fixed at creation and left alone"}]


@pytest.mark.parametrize("spec,message", [
    ({"name": "tank"}, "must be <pool>/<path>"),
    ({"name": "tank/a@b", "size": 1}, "must be <pool>/<path>"),
    ({"name": "tank/a"}, "size is required"),
    ({"name": "tank/a", "size": "big"}, "tank/a: size is not a size"),
    ({"name": "tank/a", "origin": "tank/b"}, "must be a snapshot"),
    ({"name": "tank/a", "size": 1, "properties": {"volsize": 5}}, "cannot be set through properties"),
])
def test_normalize_volume_errors(spec, message):
    with pytest.raises(zfs.ZfsError, match=message):
        zfs.normalize_volume(spec)


def test_simulate_and_view():
    desired = [vol(name="tank/golden/new", size="1G", snapshots=["s1"]),
               vol(name="tank/nodes/n5", origin="tank/golden/new@s1", size="2G")]
    actions = zfs.plan_zvol_changes(current(), desired)
    after = zfs.simulate(current(), actions)
    assert zfs.volume_view(after["tank/nodes/n5"], after) == {
        "volsize": 2147483648, "origin": "tank/golden/new@s1", "volmode": "dev", "readonly": None,
        "sparse": True, "snapshots": []}
    assert zfs.volume_view(after["tank/golden/new"], after)["snapshots"] == ["s1"]


def test_simulated_clone_has_the_volblocksize_of_its_origin_volume():
    # zfs lists a snapshot's volblocksize as "-" (see the fixture): it is the origin volume's that the clone gets
    actions = zfs.plan_zvol_changes(current(), [vol(name="tank/nodes/n7", origin="tank/nodes/old-root@keep")])
    clone = zfs.simulate(current(), actions)["tank/nodes/n7"]
    assert (clone["volblocksize"], clone["volsize"], clone["origin"]) == (8192, 1073741824, "tank/nodes/old-root@keep")
