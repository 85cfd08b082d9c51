# SPDX-License-Identifier: GPL-3.0-or-later
"""The file_set module end to end through AnsibleModule: arguments, check mode, diff, no_log, errors."""

from __future__ import annotations

import json
import shutil

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


def test_invocation_lists_names_and_sizes_not_content(tmp_path, capsys):
    rc, result = run(capsys, {"path": str(tmp_path), "files": {"a.ipxe": "#!ipxe\nboot\n"},
                              "secret_files": {"a.conf": "ISCSI_PASSWORD='s3cr3t-value'\n"}}, diff=True)
    assert rc == 0
    args = result["invocation"]["module_args"]
    assert args["files"] == {"a.ipxe": "(12 bytes)"}
    assert args["secret_files"] == {"a.conf": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert (args["path"], args["mode"], args["prune"]) == (str(tmp_path), "0644", True)
    assert "s3cr3t-value" not in json.dumps(result)


def _module_output(capsys, args, monkeypatch, prune_no_log_values):
    if not prune_no_log_values:  # every no_log value is compared, as AnsibleModule does by default
        monkeypatch.setattr(file_set, "longest_leaf", lambda value: 10 ** 9)
    with patch_module_args(dict(args, _ansible_diff=True)):
        with pytest.raises(SystemExit):
            file_set.main()
    monkeypatch.undo()
    return capsys.readouterr().out


def test_leaving_out_long_no_log_values_masks_exactly_the_same(tmp_path, capsys, monkeypatch):
    # a secret equal to a file name, one inside a public file's content (shown by the diff), long ones
    secrets = {"s1.conf": "b.ipxe", "s2.conf": "boot", "s3.conf": "x" * 300, "s4.conf": "PASSWORD='%s'\n" % ("y" * 40)}
    files = {"b.ipxe": "#!ipxe\nboot\n", "c.ipxe": "#!ipxe\nchain\n"}
    outputs = []
    for prune in (False, True):
        shutil.rmtree(tmp_path / "set", ignore_errors=True)
        outputs.append(_module_output(capsys, {"path": str(tmp_path / "set"), "files": files, "secret_files": secrets},
                                      monkeypatch, prune))
    assert outputs[0] == outputs[1]
    result = json.loads(outputs[1])
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result["created"]      # the name equal to a secret
    assert "x" * 300 not in outputs[1] and "y" * 40 not in outputs[1]


def test_only_no_log_values_that_could_match_are_compared(tmp_path, capsys, monkeypatch):
    compared = []
    real = file_set.AnsibleModule._return_formatted

    def spy(self, kwargs):
        compared.append(len(self.no_log_values))
        return real(self, kwargs)

    monkeypatch.setattr(file_set.AnsibleModule, "_return_formatted", spy)
    # like the plan's CHAP files: a few hundred bytes each, longer than any name or path in the result
    secrets = {"%04d.conf" % i: "ISCSI_PASSWORD='secret-%04d'\n%s" % (i, "#" * 400) for i in range(300)}
    rc, result = run(capsys, {"path": str(tmp_path), "secret_files": secrets, "files": {"boot.ipxe": "#!ipxe\n"}})
    assert rc == 0 and len(result["created"]) == 301
    assert compared == [0]
