"""What the lab's root-mode and fault tests (tests/lab/test_root_modes.py) and bench/root_modes.py read on a
booted node and drive on it, over SSH: the md mirror's state, the multipath paths, the kernel log's I/O errors,
background fio jobs with verification, and the I/O stall a fault caused (from fio's completion log)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

MD_STATE_SH = r"""
md=$(readlink -f /dev/md/dlroot); n=${md##*/}; d=/sys/block/$n/md
echo "array $n $(cat $d/array_state) degraded=$(cat $d/degraded) action=$(cat $d/sync_action)" \
     "bitmap=$(cat $d/bitmap/location) completed=$(tr -d ' ' < $d/sync_completed)"
for m in $d/dev-*; do echo "member ${m##*/dev-} $(cat $m/state)"; done
"""

# the kernel log lines that mean an I/O error reached a file system or a block device's user
IO_ERROR_RE = re.compile(r"I/O error|Buffer I/O error|EXT4-fs error|Remounting filesystem read-only|"
                         r"Aborting journal|blk_update_request|critical medium error", re.I)
DEVICE_RE = re.compile(r"\bdev(?:ice)?[ =(]+([\w-]+)")


def ssh(ssh_config: Path, host: str, script: str, timeout: float = 300, check: bool = True) -> str:
    proc = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
                           host, "sh -euc " + shlex.quote(script)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"on {host} (rc {proc.returncode}):\n{script}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def md_state(ssh_config: Path, node: str) -> dict[str, Any]:
    """{name, array_state, degraded, action, bitmap, completed, members: {disk: state}} of /dev/md/dlroot."""
    out: dict[str, Any] = {"members": {}}
    for line in ssh(ssh_config, node, MD_STATE_SH).splitlines():
        words = line.split()
        if words and words[0] == "array":
            out["name"], out["array_state"] = words[1], words[2]
            out.update(dict(w.split("=", 1) for w in words[3:] if "=" in w))   # completed: "none" or "done/total"
        elif words and words[0] == "member":
            out["members"][words[1]] = words[2] if len(words) > 2 else ""
    return out


def multipath_paths(ssh_config: Path, node: str) -> dict[str, str]:
    """{major:minor: A|F} of the root's multipath map (dmsetup status: A active, F failed)."""
    out = ssh(ssh_config, node, "dmsetup status --target multipath")
    return dict(re.findall(r"\b(\d+:\d+) ([AF])\b", out))


def multipath_device(ssh_config: Path, node: str) -> str:
    """The block device of the node's multipath map (/dev/mapper/<wwid>): the image root's lower layer."""
    names = ssh(ssh_config, node, "dmsetup ls --target multipath | cut -f1").split()
    assert len(names) == 1, f"{node}: multipath maps {names}, want one"
    return f"/dev/mapper/{names[0]}"


def device_sha256(ssh_config: Path, node: str, device: str, mib: int) -> str:
    """sha256 of the first ``mib`` MiB of a block device, read with direct I/O (not from the page cache)."""
    return ssh(ssh_config, node, f"dd if={device} bs=1M count={mib} iflag=direct status=none | sha256sum").split()[0]


def mark_kernel_log(ssh_config: Path, node: str, marker: str) -> None:
    """Write a line into the node's kernel log: io_errors(after=marker) reads only what came after it."""
    ssh(ssh_config, node, f"echo {shlex.quote('diskless-lab: ' + marker)} > /dev/kmsg")


def io_errors(ssh_config: Path, node: str, after: str = "", absorbed: frozenset[str] = frozenset()) -> list[str]:
    """The kernel log's lines (this boot; after the last ``mark_kernel_log(after)`` line) that mean an I/O error
    reached a block device's user. A line that names a device of ``absorbed`` (the md half or multipath path
    that md or dm-multipath failed over: its errors are how they learn the path is gone) does not count; one on
    the md device, the map or the file system does."""
    text = ssh(ssh_config, node, "dmesg")
    lines = text.splitlines()
    marks = [i for i, line in enumerate(lines) if after and f"diskless-lab: {after}" in line]
    lines = lines[marks[-1] + 1:] if marks else lines
    return [line for line in lines if IO_ERROR_RE.search(line)
            and not ({m.group(1) for m in DEVICE_RE.finditer(line)} & absorbed)]


def disks_by_portal(ssh_config: Path, node: str) -> dict[str, frozenset[str]]:
    """portal IP -> the SCSI disks (sdb) of the node's iSCSI sessions to it (iscsiadm -m session -P 3)."""
    out = ssh(ssh_config, node, "iscsiadm -m session -P 3 2>/dev/null || true")
    found: dict[str, set[str]] = {}
    portal = ""
    for line in out.splitlines():
        if m := re.match(r"\s*Current Portal: \[?([0-9a-fA-F.:]+?)\]?:\d+,", line):
            portal = m.group(1)
        elif m := re.search(r"Attached scsi disk (\w+)", line):
            found.setdefault(portal, set()).add(m.group(1))
    return {k: frozenset(v) for k, v in found.items()}


def root_options(ssh_config: Path, node: str) -> str:
    return ssh(ssh_config, node, "findmnt -no OPTIONS /").strip()


def start_fio(ssh_config: Path, node: str, name: str, rw: str, runtime_s: int, size: str = "48M",
              rate_iops: int = 50, extra: str = "", device: str | None = None) -> None:
    """fio in the background on the node: 4 KiB direct I/O on a file of the root file system, crc32c
    verification (writes: verified as they go and at the end), every completion logged (the stall figure),
    JSON result in /var/tmp/dl-fio-NAME.json. Reads: the file is laid out first (before any fault).
    With ``device`` (reads only) fio reads that block device itself, read-only: on an overlay root a file lives
    in the RAM upper layer (tmpfs: no O_DIRECT on 6.1) and its reads would never reach the storage paths."""
    d = "/var/tmp"
    assert device is None or "write" not in rw, "fio writes only to a file of the root"
    args = (f"--name={name} --filename={device or f'{d}/dl-fio-{name}.dat'} --size={size} --bs=4k --direct=1 "
            f"--ioengine=psync --rw={rw} --time_based --runtime={runtime_s} --rate_iops={rate_iops} "
            f"--write_lat_log={d}/dl-fio-{name} --log_avg_msec=0 --per_job_logs=0 "
            f"--output-format=json --output={d}/dl-fio-{name}.json {extra}")
    if "write" in rw:
        args += " --verify=crc32c --verify_backlog=16 --verify_fatal=1 --do_verify=1 --fsync=1"
    if device:
        args += " --readonly"
    ssh(ssh_config, node, f"rm -f {d}/dl-fio-{name}*; "
        + (f"fio --name=layout --filename={d}/dl-fio-{name}.dat --size={size} --rw=write --bs=1M "
           f"--direct=1 --output=/dev/null >/dev/null; " if "write" not in rw and not device else "")
        + f"nohup fio {args} > {d}/dl-fio-{name}.out 2>&1 & echo started")


def wait_fio(ssh_config: Path, node: str, name: str, timeout_s: float) -> dict[str, Any]:
    """Wait for the background fio job; {errors, verify_errors, io_bytes, max_gap_s, gaps} from its JSON result
    and completion log (max_gap_s: the longest time between two consecutive I/O completions: the stall)."""
    deadline = time.monotonic() + timeout_s
    d = "/var/tmp"
    while True:
        try:
            out = ssh(ssh_config, node, "pgrep -x fio >/dev/null && echo running || echo done", timeout=120)
        except subprocess.TimeoutExpired:  # the node's root stalls (its storage host is away): later
            out = "running"
        if "done" in out:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{node}: fio {name} still running after {timeout_s:.0f} s")
        time.sleep(5)
    text = ssh(ssh_config, node, f"cat {d}/dl-fio-{name}.json 2>/dev/null; echo; echo @@@out; "
               f"cat {d}/dl-fio-{name}.out; echo; echo @@@gaps; "
               f"cat {d}/dl-fio-{name}_lat*.log 2>/dev/null | cut -d, -f1 | sort -n | "
               "awk 'NR>1 && $1-p > 1000 {print p, $1} {p=$1}'")
    # (each part may be empty: the markers have a line of their own)
    result_text, rest = text.split("\n@@@out\n", 1)
    output, gaps_text = rest.split("\n@@@gaps\n", 1)
    try:
        job = json.loads(result_text[result_text.index("{"):])["jobs"][0]
    except ValueError as exc:
        raise AssertionError(f"{node}: fio {name} wrote no JSON result:\n{output[-2000:]}") from exc
    gaps = [(int(a) / 1000, int(b) / 1000) for a, b in (line.split() for line in gaps_text.split("\n") if line.strip())]
    verify_errors = len(re.findall(r"verify|bad magic|crc32c", output, re.I))
    return {"errors": job.get("error", 0), "verify_errors": verify_errors, "output": output[-2000:],
            "io_bytes": job["read"]["io_bytes"] + job["write"]["io_bytes"],
            "gaps": gaps, "max_gap_s": max((b - a for a, b in gaps), default=0.0)}
