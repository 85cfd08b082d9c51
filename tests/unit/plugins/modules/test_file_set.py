# SPDX-License-Identifier: GPL-3.0-or-later
"""The file_set module end to end through AnsibleModule: arguments, check mode, diff, no_log, errors."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args
from ansible_collections.diskless.cluster.plugins.modules import file_set


def run(capsys, args, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exc:
            file_set.main()
    result = json.loads(capsys.readouterr().out)
    result.pop("invocation", None) if not diff else None
    return exc.value.code, result


def test_reservations_created_then_idempotent(tmp_path, capsys):
    args = {"path": str(tmp_path / "hosts.d"),
            "files": {"52-54-00-00-01-01.conf": "52:54:00:00:01:01,10.77.0.101,node001,12h\n"}}
    rc, result = run(capsys, args)
    assert rc == 0
    assert {k: result[k] for k in ("changed", "directory", "created", "updated", "removed", "unchanged")} == {
        "changed": True, "directory": "created", "created": ["52-54-00-00-01-01.conf"],
        "updated": [], "removed": [], "unchanged": 0}
    rc, result = run(capsys, args)
    assert rc == 0 and result["changed"] is False and result["unchanged"] == 1


def test_check_mode_reports_without_writing(tmp_path, capsys):
    (tmp_path / "stale.conf").write_text("x")
    rc, result = run(capsys, {"path": str(tmp_path), "files": {"a.conf": "A\n"}}, check=True)
    assert rc == 0 and result["changed"] is True
    assert (result["created"], result["removed"]) == (["a.conf"], ["stale.conf"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stale.conf"]


def test_secret_content_never_leaves_the_module(tmp_path, capsys):
    secret = "ISCSI_PASSWORD='node001-chap-secret'\n"
    rc, result = run(capsys, {"path": str(tmp_path), "secret_files": {"52-54-00-00-01-01.conf": secret},
                              "mode": "0640"}, diff=True)
    assert rc == 0 and result["created"] == ["52-54-00-00-01-01.conf"]
    assert "node001-chap-secret" not in json.dumps(result)
    assert result["invocation"]["module_args"]["secret_files"] == {
        "52-54-00-00-01-01.conf": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert result["diff"][0]["after"] == "(secret content, %d bytes)\n" % len(secret)
    assert (tmp_path / "52-54-00-00-01-01.conf").read_text() == secret


def test_bad_name_fails_cleanly(tmp_path, capsys):
    rc, result = run(capsys, {"path": str(tmp_path), "files": {"../escape": "x"}})
    assert rc == 1 and result["failed"] is True
    assert result["msg"] == ("file_set %s: invalid file name '../escape': must be a plain name, not start with '.' "
                             "and not end with '~'" % tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_mode_fails_cleanly(tmp_path, capsys):
    rc, result = run(capsys, {"path": str(tmp_path), "files": {"a": "A"}, "mode": "u=rw"})
    assert rc == 1 and result["msg"] == "file_set %s: mode must be an octal number like '0644', got 'u=rw'" % tmp_path
