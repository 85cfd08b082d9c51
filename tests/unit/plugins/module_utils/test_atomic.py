# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/_atomic.py: THE atomic writer (one file; the many-file path is exercised by file_set's tests)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils import _atomic


def test_one_file_with_its_mode_and_parents(tmp_path):
    path = tmp_path / "etc" / "systemd" / "system" / "x.service"
    _atomic.write_atomic(str(path), b"[Unit]\n", 0o640, prefix=".dl-ab-")
    assert path.read_bytes() == b"[Unit]\n" and (path.stat().st_mode & 0o7777) == 0o640
    assert os.listdir(path.parent) == ["x.service"]
    assert _atomic.same_file(str(path), b"[Unit]\n", 0o640)
    assert not _atomic.same_file(str(path), b"[Unit]\n", 0o644)
    assert not _atomic.same_file(str(path), b"other\n", 0o640)
    assert not _atomic.same_file(str(tmp_path / "missing"), b"", 0o644)


def test_a_replacement_is_one_rename_of_a_dot_file(tmp_path, monkeypatch):
    path = tmp_path / "slots.json"
    path.write_text("old")
    renames = []
    real_rename = os.rename

    def spy(src, dst):
        renames.append((os.path.basename(src), os.path.basename(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    _atomic.write_atomic(str(path), b"new", prefix=".dl-ab-")
    assert path.read_text() == "new"
    assert len(renames) == 1 and renames[0][0].startswith(".dl-ab-") and renames[0][1] == "slots.json"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "grub.cfg"
    path.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        _atomic.write_atomic(str(path), b"new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["grub.cfg"]
