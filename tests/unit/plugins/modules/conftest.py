# SPDX-License-Identifier: GPL-3.0-or-later
"""The one harness of the module tests: run a module's ``main()`` with ``exit_json``/``fail_json`` captured."""

from __future__ import annotations

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class Exit(Exception):
    """exit_json was called; ``args[0]`` is the result."""


class Fail(Exception):
    """fail_json was called; ``args[0]`` is the result."""


@pytest.fixture
def run_main(monkeypatch):
    """``run_main(main, args, check=False, diff=False) -> (ok, result)``: ``ok`` is False when the module failed."""
    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, **kwargs):
        raise Fail(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def _run(main, args, check=False, diff=False):
        with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
            with pytest.raises((Exit, Fail)) as raised:
                main()
        return raised.type is Exit, raised.value.args[0]
    return _run
