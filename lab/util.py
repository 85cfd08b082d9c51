"""Small helpers of the lab harness: the user-facing error, logging, running tools, parsing sizes and
durations, a file lock, process probes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

from ansible_collections.diskless.cluster.plugins.module_utils import _size


class LabError(Exception):
    """A failure with a message meant for the user (printed as `lab: <message>`)."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> NoReturn:
    raise LabError(msg)


def run(argv: Sequence[str], *, what: str, capture: bool = False, check: bool = True,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run argv; on failure raise LabError naming `what` and showing the tool's own stderr."""
    try:
        proc = subprocess.run(list(argv), text=True, capture_output=capture, check=False, **kw)
    except FileNotFoundError:
        die(f"{what}: {argv[0]} not found (run hack/bootstrap.sh, then source hack/env.sh)")
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-5:] if capture else []
        die(f"{what}: `{shlex.join(argv)}` exited {proc.returncode}"
            + ("".join(f"\n    {line}" for line in detail)))
    return proc


def parse_size(value: Any, field: str) -> int:
    """'16G' / '512M' / 1073741824 -> bytes: the collection's one size parser (binary units), lab wording."""
    try:
        return _size.parse_size(value)
    except ValueError as exc:
        die(f"{field}: {value!r} {exc}")


def parse_duration(value: Any, field: str) -> int:
    """'90s' / '15m' / '6h' / 600 -> seconds."""
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(value))
    if not m:
        die(f"{field}: {value!r} is not a duration like 600, 15m or 6h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@contextlib.contextmanager
def flock(path: Path, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another lab command ({what}) to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def require_root() -> None:
    if os.geteuid() != 0:
        die("must run as root (network namespaces, taps, chroot builds); try: sudo hack/lab.sh ...")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "    (no output)"
    return "\n".join("    " + line for line in text)
