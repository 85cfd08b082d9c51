"""lab/cli.py without a running lab: the command line refuses what it cannot do."""

from __future__ import annotations

import pytest

from lab import cli


def test_restart_command_line() -> None:
    with pytest.raises(SystemExit):
        cli.main(["restart"])               # a host is required
    with pytest.raises(SystemExit):
        cli.main(["restart", "sab1", "--boot", "network"])   # restart keeps disks: not network
