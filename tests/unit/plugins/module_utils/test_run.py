# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/_run.py: THE command runner - argv lists, the C locale, stdin for secrets, one-line failures."""

from __future__ import annotations

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args
from ansible_collections.diskless.cluster.plugins.module_utils._run import C_LOCALE, CommandError, Runner, fail, first_line


class FakeModule:
    """Records run_command calls; answers from a list of (rc, out, err)."""

    def __init__(self, answers=(), bins=None):
        self.calls, self.answers, self.bins = [], list(answers), bins or {}
        self.run_command_environ_update = {"TZ": "UTC"}

    def get_bin_path(self, name, required=False, opt_dirs=None):
        return self.bins.get(name)

    def run_command(self, args, **kwargs):
        self.calls.append((args, kwargs, dict(self.run_command_environ_update)))
        return self.answers.pop(0)

    def fail_json(self, **kwargs):
        raise SystemExit(kwargs)


def test_argv_is_a_list_of_strings_the_program_resolved_and_the_locale_c():
    module = FakeModule([(0, "out\n", "")], bins={"parted": "/usr/sbin/parted"})
    run = Runner(module)
    assert run(["parted", "--script", "/dev/vdb", 1024], "partitioning /dev/vdb") == "out\n"
    args, kwargs, environ = module.calls[0]
    assert args == ["/usr/sbin/parted", "--script", "/dev/vdb", "1024"]
    assert kwargs == {"data": None, "binary_data": False, "check_rc": False, "expand_user_and_vars": False}
    assert environ == dict(C_LOCALE, TZ="UTC")


def test_an_absolute_program_is_not_looked_up():
    module = FakeModule([(0, "", "")])
    Runner(module).raw(["/opt/bin/tool", "x"])
    assert module.calls[0][0] == ["/opt/bin/tool", "x"]


def test_secrets_go_on_stdin_exactly_as_given():
    module = FakeModule([(0, "", "")], bins={"cryptsetup": "/sbin/cryptsetup"})
    Runner(module)(["cryptsetup", "open", "--key-file=-", "/dev/vdc", "c"], "opening /dev/vdc", data=b"s3cret")
    args, kwargs, _environ = module.calls[0]
    assert "s3cret" not in " ".join(args)
    assert kwargs["data"] == b"s3cret" and kwargs["binary_data"] is True


def test_a_failure_is_one_line_naming_the_step_the_tool_and_its_first_error():
    module = FakeModule([(1, "", "\nError: /dev/vdb: unrecognised disk label\nmore\n")], bins={"parted": "/sbin/parted"})
    with pytest.raises(CommandError) as exc:
        Runner(module)(["parted", "/dev/vdb", "print"], "reading /dev/vdb")
    assert str(exc.value) == "reading /dev/vdb failed (parted, rc 1): Error: /dev/vdb: unrecognised disk label"
    assert exc.value.argv == ["parted", "/dev/vdb", "print"] and exc.value.rc == 1


def test_other_accepted_rcs_and_stdout_when_stderr_is_empty():
    module = FakeModule([(24, "partial\n", ""), (2, "why\n", "")], bins={"rsync": "/usr/bin/rsync"})
    run = Runner(module)
    assert run(["rsync", "-a", "/", "/mnt/"], "copying", ok=(0, 24)) == "partial\n"
    with pytest.raises(CommandError, match=r"^copying failed \(rsync, rc 2\): why$"):
        run(["rsync", "-a", "/", "/mnt/"], "copying", ok=(0, 24))


def test_a_missing_program_says_what_to_install():
    with pytest.raises(CommandError, match="^mkfs.ext4 is not installed on this host"):
        Runner(FakeModule())(["mkfs.ext4", "/dev/x"], "mkfs")


def test_fail_passes_the_command_details():
    module = FakeModule()
    with pytest.raises(SystemExit) as exc:
        fail(module, CommandError("x failed", ["x"], 3, "o", "e"), actions=["a"])
    assert exc.value.args[0] == {"msg": "x failed", "cmd": ["x"], "rc": 3, "stdout": "o", "stderr": "e", "actions": ["a"]}
    with pytest.raises(SystemExit) as exc:
        fail(module, ValueError("bad input"))
    assert exc.value.args[0] == {"msg": "bad input"}


@pytest.mark.parametrize("text, line", [("", "no error output"), ("\n  \n b \nc", "b"), (None, "no error output")])
def test_first_line(text, line):
    assert first_line(text) == line


def test_with_ansible_cores_run_command():
    """The real AnsibleModule.run_command: stdin reaches the program unchanged, the locale is C."""
    with patch_module_args({}):
        module = AnsibleModule(argument_spec={})
    run = Runner(module)
    assert run(["cat"], "cat", data="one\ntwo") == "one\ntwo"
    assert run(["sh", "-c", 'echo "$LANG $LC_ALL $LC_MESSAGES"'], "locale") == "C C C\n"
    assert run(["echo", "~", "$HOME"], "echo") == "~ $HOME\n"
