# SPDX-License-Identifier: GPL-3.0-or-later
"""The ab_update_host module end to end on a host that does not boot from a slot (this machine): the commands
it runs (resolved, C locale), its facts and the update's action; missing packages; one-line failures."""

from __future__ import annotations

import json

import pytest

from ansible.module_utils import basic
from ansible_collections.diskless.cluster.plugins.modules import ab_update_host

LSBLK = json.dumps({"blockdevices": [
    {"name": "/dev/vda", "pkname": None, "type": "disk", "size": 4294967296, "fstype": "ext4",
     "uuid": "7c4d4c2e-0000-4000-8000-000000000001", "partlabel": None, "mountpoints": ["/"]},
]})


@pytest.fixture
def commands(monkeypatch):
    """Answers by program name; records (argv, environ)."""
    calls, answers = [], {}

    def run_command(self, args, **kwargs):
        calls.append((list(args), dict(self.run_command_environ_update)))
        return answers[args[0].rsplit("/", 1)[-1]]

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False, opt_dirs=None: "/usr/bin/" + name)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return calls, answers


def test_a_host_without_slots_is_read_in_one_call(run_main, commands):
    calls, answers = commands
    answers.update({"dpkg-query": (0, "grub2-common ii \nrsync ii \n", ""), "lsblk": (0, LSBLK, "")})
    ok, result = run_main(ab_update_host.main, {"packages": ["grub2-common", "rsync"], "version": "v2"})
    assert ok and not result["changed"] and result["actions"] == []
    assert result["installed"] is False and result["booted"] is None and result["partitions"] == {}
    assert result["update_plan"] == {"action": "none", "slot": None}
    assert [argv[0] for argv, _env in calls] == ["/usr/bin/dpkg-query", "/usr/bin/lsblk"]
    assert all(env["LANG"] == env["LC_ALL"] == "C" for _argv, env in calls)


def test_missing_packages_are_returned_by_present_and_refused_by_the_others(run_main, commands):
    _calls, answers = commands
    answers.update({"dpkg-query": (1, "rsync ii \n", "dpkg-query: no packages found matching parted\n"),
                    "lsblk": (0, LSBLK, "")})
    ok, result = run_main(ab_update_host.main, {"packages": ["rsync", "parted"]})
    assert ok and result["missing_packages"] == ["parted"]
    ok, result = run_main(ab_update_host.main, {"packages": ["rsync", "parted"], "state": "installed"})
    assert not ok and result["msg"] == "packages parted are missing: install them first (ab_update_manage_packages)"


def test_a_failed_command_is_one_line_with_its_details(run_main, commands):
    _calls, answers = commands
    answers.update({"lsblk": (32, "", "lsblk: failed to access sysfs directory: /sys/dev/block\n")})
    ok, result = run_main(ab_update_host.main, {})
    assert not ok
    assert result["msg"] == ("listing block devices failed (lsblk, rc 32): lsblk: failed to access sysfs directory: "
                             "/sys/dev/block")
    assert result["rc"] == 32 and result["cmd"][0] == "lsblk" and result["actions"] == []


def test_write_needs_an_installed_host(run_main, commands):
    _calls, answers = commands
    answers.update({"lsblk": (0, LSBLK, "")})
    ok, result = run_main(ab_update_host.main, {"state": "written", "image": "/var/tmp/x.tar", "version": "v2"})
    assert not ok and result["msg"] == ("this host does not boot from an A/B slot yet: run the first install "
                                        "(ab_update_disk)")
