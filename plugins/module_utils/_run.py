# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way the modules of this collection run a command (PRIVATE to the collection).

* argv lists only, never a shell and never ``~``/``$VAR`` expansion;
* the C locale (``LANG``/``LC_ALL``/``LC_MESSAGES`` = ``C``), so that output parses the same everywhere;
* secrets go on stdin (``data=``, passed as-is: no newline added), never in argv;
* a program name without ``/`` is found with ``get_bin_path`` (PATH plus the sbin directories);
* a failure is :class:`CommandError`: one line ``<what> failed (<tool>, rc N): <first line of stderr>``,
  with argv, rc, stdout and stderr kept for :func:`fail`.

Underneath is ansible-core's ``AnsibleModule.run_command`` (the shape follows community.general's
``CmdRunner``: one runner per module, the locale set once, each call names what it does).
"""

from __future__ import annotations

import os

C_LOCALE = {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"}


def first_line(text):
    """The first non-empty line of a command's output, stripped ("no error output" when there is none)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "no error output"


class CommandError(Exception):
    """A command that failed: ``str()`` is the one-line message, ``argv``/``rc``/``out``/``err`` the details."""

    def __init__(self, msg, argv=(), rc=None, out="", err=""):
        super().__init__(msg)
        self.argv, self.rc, self.out, self.err = list(argv), rc, out, err


class Runner:
    """Runs argv lists for one module. ``Runner(module)`` sets the C locale for every command of the module.

    ``runner(argv, what)`` returns stdout or raises :class:`CommandError`; ``runner.raw(argv)`` returns
    ``(rc, stdout, stderr)`` whatever the rc (for probes whose rc is an answer, and for callables that
    expect ``run(argv) -> (rc, out, err)`` such as module_utils grub's ``GrubEnv``).
    """

    def __init__(self, module):
        self.module = module
        environ = dict(getattr(module, "run_command_environ_update", None) or {})
        environ.update(C_LOCALE)
        module.run_command_environ_update = environ
        self._bins = {}

    def bin(self, name):
        """Absolute path of program ``name`` (unchanged when it has a ``/``); CommandError when it is missing."""
        if "/" in name:
            return name
        if name not in self._bins:
            path = self.module.get_bin_path(name, required=False)
            if not path:
                raise CommandError("%s is not installed on this host (not in PATH or an sbin directory): install "
                                   "the package that provides it" % name, [name], 127)
            self._bins[name] = path
        return self._bins[name]

    def raw(self, argv, data=None):
        """``(rc, stdout, stderr)`` of ``argv``; ``data`` (str or bytes) is stdin, exactly as given."""
        argv = [str(a) for a in argv]
        argv[0] = self.bin(argv[0])
        return self.module.run_command(argv, data=data, binary_data=data is not None, check_rc=False,
                                       expand_user_and_vars=False)

    def __call__(self, argv, what, ok=(0,), data=None):
        """stdout of ``argv``; CommandError ``<what> failed (<tool>, rc N): <first error line>`` when the rc is
        not in ``ok``. ``what`` names the object and the step (``partitioning /dev/vdb``)."""
        rc, out, err = self.raw(argv, data=data)
        if rc not in ok:
            detail = first_line(err if (err or "").strip() else out)
            raise CommandError("%s failed (%s, rc %d): %s" % (what, os.path.basename(str(argv[0])), rc, detail),
                               argv, rc, out, err)
        return out


def fail(module, exc, **result):
    """``fail_json`` with the one-line message of ``exc`` and, for a failed command (a CommandError, or any
    exception with ``argv``/``rc``/``out``/``err`` such as grub's GrubCommandError), the command's details."""
    details = {}
    if getattr(exc, "argv", None):
        details = {"cmd": exc.argv, "rc": exc.rc, "stdout": exc.out, "stderr": exc.err}
    details.update(result)
    module.fail_json(msg=str(exc), **details)
