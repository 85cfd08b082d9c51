# SPDX-License-Identifier: GPL-3.0-or-later
"""file_set module_utils: the pure planning step and the real filesystem effects (atomic writes, prune)."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import file_set as fs
from ansible_collections.diskless.cluster.plugins.module_utils.file_set import FileSet, FileSetError, FileState

UID, GID = os.getuid(), os.getgid()


def state(content, mode=0o644, uid=UID, gid=GID):
    return FileState(content, mode, uid, gid)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# --- plan_changes: pure -------------------------------------------------------------------------------

def test_plan_sorts_names_into_actions():
    current = {"same": state(b"x"), "edit": state(b"old"), "chmod": state(b"m", mode=0o600), "gone": state(b"g")}
    desired = {"same": state(b"x"), "edit": state(b"new"), "chmod": state(b"m"), "new": state(b"n")}
    changes = fs.plan_changes(current, desired, prune=True)
    assert (changes.create, changes.update_content, changes.update_attributes, changes.remove, changes.unchanged) == (
        ["new"], ["edit"], ["chmod"], ["gone"], 1)
    assert changes.updated == ["chmod", "edit"]
    assert changes.changed


def test_plan_without_prune_keeps_extra_files():
    changes = fs.plan_changes({"extra": state(b"e")}, {}, prune=False)
    assert changes.remove == [] and not changes.changed


def test_plan_ignores_attributes_nobody_asked_for():
    changes = fs.plan_changes({"a": state(b"a", mode=0o600, uid=1, gid=2)},
                              {"a": FileState(b"a", None, None, None)}, prune=True)
    assert changes.unchanged == 1 and not changes.changed


@pytest.mark.parametrize("value, expected", [("0644", 0o644), ("640", 0o640), (0o600, 0o600), (None, None)])
def test_parse_mode(value, expected):
    assert fs.parse_mode(value) == expected


@pytest.mark.parametrize("value", ["rw-r--r--", "0999", "", "17777"])
def test_parse_mode_rejects(value):
    with pytest.raises(FileSetError):
        fs.parse_mode(value)


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "backup~", "..", "nul\0"])
def test_names_that_would_escape_or_be_ignored_are_refused(name):
    with pytest.raises(FileSetError, match="invalid file name"):
        FileSet("/srv/x", {name: "content"})


@pytest.mark.parametrize("name", ["a/../b", "a//b", "/etc/x", "etc/.hidden/x", "etc/x~", "etc/", "a/./b"])
def test_sub_paths_without_prune_must_stay_below_the_directory(name):
    with pytest.raises(FileSetError, match="or a relative path of such names"):
        FileSet("/srv/x", {name: "content"}, prune=False)


def test_sub_paths_are_refused_when_pruning():
    with pytest.raises(FileSetError, match="must be a plain name, not start"):
        FileSet("/srv/x", {"etc/x.conf": "content"})


def test_sub_paths_create_parents_and_write_atomically(tmp_path):
    files = {"etc/chrony/conf.d/c.conf": "server x\n", "etc/iscsi/initiatorname.iscsi": "InitiatorName=i\n",
             "top.conf": "t\n"}
    (tmp_path / "etc" / "iscsi").mkdir(parents=True)
    (tmp_path / "etc" / "iscsi" / "other").write_text("kept\n")
    result = FileSet(str(tmp_path), files, prune=False, directory_mode="0750").reconcile(want_diff=True)
    assert (result["created"], result["directory"]) == (sorted(files), "updated")
    assert (tmp_path / "etc/chrony/conf.d/c.conf").read_text() == "server x\n"
    assert mode_of(tmp_path / "etc/chrony") == 0o750                   # a created parent: directory_mode
    assert (tmp_path / "etc/iscsi/other").read_text() == "kept\n"      # never pruned
    assert sorted(os.listdir(tmp_path / "etc/iscsi")) == ["initiatorname.iscsi", "other"]  # no temporary left
    assert [d["after_header"] for d in result["diff"]][1:] == [str(tmp_path / n) for n in sorted(files)]
    again = FileSet(str(tmp_path), files, prune=False, directory_mode="0750").reconcile()
    assert (again["changed"], again["unchanged"]) == (False, 3)
    files["etc/iscsi/initiatorname.iscsi"] = "InitiatorName=j\n"
    assert FileSet(str(tmp_path), files, prune=False).reconcile()["updated"] == ["etc/iscsi/initiatorname.iscsi"]


def test_sub_paths_in_check_mode_create_no_parent(tmp_path):
    result = FileSet(str(tmp_path), {"etc/new/x.conf": "x\n"}, prune=False).reconcile(check_mode=True)
    assert result["created"] == ["etc/new/x.conf"] and not (tmp_path / "etc").exists()


def test_a_name_cannot_be_both_public_and_secret():
    with pytest.raises(FileSetError, match="both as files and secret_files: a"):
        FileSet("/srv/x", {"a": "1"}, secret_files={"a": "2"})


def test_relative_path_refused():
    with pytest.raises(FileSetError, match="must be absolute"):
        FileSet("srv/x", {})


# --- reconcile: on a real directory -------------------------------------------------------------------

def test_creates_directory_and_files(tmp_path):
    target = tmp_path / "hosts.d"
    result = FileSet(str(target), {"b.conf": "B\n", "a.conf": "A\n"}, mode="0640", directory_mode="0750").reconcile()
    assert result == {"changed": True, "directory": "created", "created": ["a.conf", "b.conf"],
                      "updated": [], "removed": [], "unchanged": 0}
    assert (target / "a.conf").read_text() == "A\n"
    assert mode_of(target / "a.conf") == 0o640 and mode_of(target) == 0o750
    assert sorted(os.listdir(target)) == ["a.conf", "b.conf"]  # no temporary left behind


def test_second_run_changes_nothing(tmp_path):
    files = {"a.conf": "A\n"}
    FileSet(str(tmp_path), files).reconcile()
    assert FileSet(str(tmp_path), files).reconcile() == {
        "changed": False, "directory": "unchanged", "created": [], "updated": [], "removed": [], "unchanged": 1}


def test_update_is_a_rename_of_a_dot_file(tmp_path, monkeypatch):
    (tmp_path / "a.conf").write_text("old\n")
    inode_before = os.stat(tmp_path / "a.conf").st_ino
    renames = []
    real_rename = os.rename

    def spy(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(fs.os, "rename", spy)
    result = FileSet(str(tmp_path), {"a.conf": "new\n"}).reconcile()
    assert result["updated"] == ["a.conf"]
    assert len(renames) == 1 and renames[0][0].startswith(".file_set-") and renames[0][1] == "a.conf"
    assert (tmp_path / "a.conf").read_text() == "new\n"
    assert os.stat(tmp_path / "a.conf").st_ino != inode_before


def test_prune_removes_stale_but_never_hidden_files(tmp_path):
    (tmp_path / "stale.conf").write_text("s")
    (tmp_path / ".keep").write_text("k")
    result = FileSet(str(tmp_path), {"a.conf": "A"}).reconcile()
    assert result["removed"] == ["stale.conf"] and result["created"] == ["a.conf"]
    assert sorted(os.listdir(tmp_path)) == [".keep", "a.conf"]


def test_without_prune_other_entries_are_left_alone(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "other").write_text("o")
    result = FileSet(str(tmp_path), {"boot.ipxe": "#!ipxe\n"}, prune=False).reconcile()
    assert result["created"] == ["boot.ipxe"] and result["removed"] == []
    assert sorted(os.listdir(tmp_path)) == ["boot.ipxe", "images", "other"]


def test_pruned_directory_with_a_subdirectory_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(FileSetError, match="sub is not a regular file"):
        FileSet(str(tmp_path), {"a": "A"}).reconcile()


def test_symlink_is_refused_not_followed(tmp_path):
    (tmp_path / "target").write_text("t")
    os.symlink(tmp_path / "target", tmp_path / "a")
    with pytest.raises(FileSetError, match="a is not a regular file"):
        FileSet(str(tmp_path), {"a": "A"}, prune=False).reconcile()


def test_mode_only_change_is_an_update_in_place(tmp_path):
    (tmp_path / "a").write_text("A")
    os.chmod(tmp_path / "a", 0o600)
    inode = os.stat(tmp_path / "a").st_ino
    result = FileSet(str(tmp_path), {"a": "A"}, mode="0644").reconcile()
    assert result["updated"] == ["a"] and mode_of(tmp_path / "a") == 0o644
    assert os.stat(tmp_path / "a").st_ino == inode


def test_check_mode_touches_nothing(tmp_path):
    (tmp_path / "edit").write_text("old")
    (tmp_path / "stale").write_text("s")
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    result = FileSet(str(tmp_path), {"edit": "new", "add": "a"}).reconcile(check_mode=True)
    assert (result["created"], result["updated"], result["removed"]) == (["add"], ["edit"], ["stale"])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


def test_check_mode_on_missing_directory(tmp_path):
    result = FileSet(str(tmp_path / "missing"), {"a": "A"}).reconcile(check_mode=True)
    assert result["directory"] == "created" and result["created"] == ["a"]
    assert not (tmp_path / "missing").exists()


def test_diff_shows_content_but_never_secrets(tmp_path):
    (tmp_path / "s.conf").write_text("OLD-SECRET")
    (tmp_path / "gone").write_text("bye\n")
    result = FileSet(str(tmp_path), {"p.ipxe": "#!ipxe\n"}, secret_files={"s.conf": "NEW-SECRET-VALUE"}).reconcile(
        want_diff=True)
    diff = {d["after_header"]: d for d in result["diff"]}
    assert diff[str(tmp_path / "p.ipxe")] == {"before_header": "%s (absent)" % (tmp_path / "p.ipxe"),
                                              "after_header": str(tmp_path / "p.ipxe"),
                                              "before": "", "after": "#!ipxe\n"}
    assert diff[str(tmp_path / "s.conf")]["before"] == "(secret content, 10 bytes)\n"
    assert diff[str(tmp_path / "s.conf")]["after"] == "(new secret content, 16 bytes)\n"
    assert diff["%s (absent)" % (tmp_path / "gone")]["before"] == "bye\n"
    assert "OLD-SECRET" not in repr(result) and "NEW-SECRET-VALUE" not in repr(result)


def test_failed_write_leaves_no_temporary(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fs.os, "rename", boom)
    with pytest.raises(OSError, match="disk full"):
        FileSet(str(tmp_path), {"a": "A"}).reconcile()
    assert os.listdir(tmp_path) == []


def test_unknown_owner_is_reported():
    with pytest.raises(FileSetError, match="owner 'no-such-user-here' does not exist"):
        FileSet("/srv/x", {}, owner="no-such-user-here")


def test_longest_leaf_measures_scalars_as_text():
    assert fs.longest_leaf({}) == 0
    assert fs.longest_leaf({"changed": True, "x": None, "unchanged": 12345}) == 5
    assert fs.longest_leaf({"created": ["a", "bbb"], "diff": [{"after": "cc"}], "k" * 50: "d"}) == 3
    assert fs.longest_leaf([b"\xff\xfe", ("abcd",)]) == 4


def test_invocation_args_never_carry_content():
    params = {"path": "/x", "files": {"a": "AAA", "é": "é"}, "secret_files": {"s": "SECRET"}, "mode": "0644"}
    assert fs.invocation_args(params) == {"path": "/x", "mode": "0644", "files": {"a": "(3 bytes)", "é": "(2 bytes)"},
                                          "secret_files": {"s": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}}
    assert params["files"] == {"a": "AAA", "é": "é"}
