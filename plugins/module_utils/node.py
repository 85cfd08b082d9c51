# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a booted diskless node stands on, read from /proc and /sys only (no commands, no writes).

``describe(sys_root, proc_root)`` returns the root file system's source device, the chain of block devices
under it (md, dm-crypt, partitions) down to the disks, and for every disk whether it is an iSCSI LUN and of
which session (target, initiator, portal), plus the node's local (non-network) disks.

A root under an overlay (root modes ``image`` and ``live``) is not a block device: its lower layer is the
``DL_ROOT_DEVICE`` the initramfs wrote to ``/run/diskless/root.env`` (with the other non-secret ``DL_*``
values it booted with, returned as ``env``).
"""

from __future__ import annotations

import os
import re
import shlex

_SESSION_RE = re.compile(r"/(session[0-9]+)/")
_VIRTUAL = ("loop", "ram", "zram", "md", "dm-", "sr", "nbd", "fd")


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def mounted_root(proc_root="/proc"):
    """(source, fstype) of ``/`` from the last matching line of /proc/self/mounts."""
    found = (None, None)
    for line in (_read(os.path.join(proc_root, "self", "mounts"), "") or "").splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/":
            found = (fields[0], fields[2])
    return found


def block_name(device, sys_root="/sys"):
    """Kernel name (``sda``, ``md127``, ``dm-0``) of a /dev path, following symlinks and partitions."""
    if not device or not device.startswith("/dev/"):
        return None
    name = os.path.basename(os.path.realpath(device))
    return name if os.path.exists(os.path.join(sys_root, "class", "block", name)) else None


def _disk_of(name, sys_root):
    """The whole disk a partition belongs to (``sda1`` -> ``sda``); a disk is its own."""
    path = os.path.realpath(os.path.join(sys_root, "class", "block", name))
    if os.path.exists(os.path.join(path, "partition")):
        return os.path.basename(os.path.dirname(path))
    return name


def session_info(session, sys_root="/sys"):
    base = os.path.join(sys_root, "class", "iscsi_session", session)
    info = {
        "session": session,
        "target": _read(os.path.join(base, "targetname")),
        "initiator": _read(os.path.join(base, "initiatorname")),
        "state": _read(os.path.join(base, "state")),
        "recovery_tmo": _read(os.path.join(base, "recovery_tmo")),
        "portal": None,
        "port": None,
    }
    number = session[len("session"):]
    conn_dir = os.path.join(sys_root, "class", "iscsi_connection")
    for conn in sorted(os.listdir(conn_dir)) if os.path.isdir(conn_dir) else []:
        if conn.startswith("connection%s:" % number):
            info["portal"] = _read(os.path.join(conn_dir, conn, "persistent_address"))
            port = _read(os.path.join(conn_dir, conn, "persistent_port"))
            info["port"] = int(port) if port and port.isdigit() else None
            break
    return info


def disk_info(name, sys_root="/sys"):
    path = os.path.realpath(os.path.join(sys_root, "class", "block", name))
    match = _SESSION_RE.search(path + "/")
    size = _read(os.path.join(path, "size"))
    return {
        "name": name,
        "size_bytes": int(size) * 512 if size and size.isdigit() else None,
        "transport": "iscsi" if match else "local",
        "iscsi": session_info(match.group(1), sys_root) if match else None,
    }


def stack(name, sys_root="/sys"):
    """Devices from ``name`` down to the disks: [{name, kind, level}] and the disk names at the bottom."""
    layers, disks, seen = [], [], set()

    def walk(dev, depth):
        if dev in seen:
            return
        seen.add(dev)
        disk = _disk_of(dev, sys_root)
        kind = "partition" if disk != dev else ("md" if dev.startswith("md") else "dm" if dev.startswith("dm-") else "disk")
        entry = {"name": dev, "kind": kind, "depth": depth}
        if kind == "md":
            entry["level"] = _read(os.path.join(sys_root, "class", "block", dev, "md", "level"))
            entry["degraded"] = _read(os.path.join(sys_root, "class", "block", dev, "md", "degraded"))
        if kind == "dm":
            entry["dm_name"] = _read(os.path.join(sys_root, "class", "block", dev, "dm", "name"))
            entry["dm_uuid"] = _read(os.path.join(sys_root, "class", "block", dev, "dm", "uuid"))
        layers.append(entry)
        if kind == "partition":
            walk(disk, depth + 1)
            return
        slaves_dir = os.path.join(sys_root, "class", "block", dev, "slaves")
        slaves = sorted(os.listdir(slaves_dir)) if os.path.isdir(slaves_dir) else []
        if not slaves and kind == "disk":
            disks.append(dev)
        for slave in slaves:
            walk(slave, depth + 1)

    walk(name, 0)
    return layers, disks


def local_disks(sys_root="/sys"):
    """Physical disks that are not iSCSI LUNs (a diskless node has none)."""
    block = os.path.join(sys_root, "block")
    names = sorted(os.listdir(block)) if os.path.isdir(block) else []
    found = []
    for name in names:
        if name.startswith(_VIRTUAL):
            continue
        info = disk_info(name, sys_root)
        if info["transport"] == "local":
            found.append(info)
    return found


ROOT_ENV = "diskless/root.env"
_ENV_LINE_RE = re.compile(r"^(DL_[A-Z0-9_]+)=(.*)$")


def read_env(path):
    """The ``DL_*`` assignments of a shell file like /run/diskless/root.env as {name: text}; anything else, and
    any name that would hold a secret, is left out."""
    out = {}
    for line in (_read(path, "") or "").splitlines():
        match = _ENV_LINE_RE.match(line.strip())
        if not match or "SECRET" in match.group(1) or match.group(1).endswith("_KEY"):
            continue
        try:
            out[match.group(1)] = "".join(shlex.split(match.group(2)))
        except ValueError:
            continue
    return out


def describe(sys_root="/sys", proc_root="/proc", run_root="/run"):
    source, fstype = mounted_root(proc_root)
    env = read_env(os.path.join(run_root, ROOT_ENV))
    name = block_name(source, sys_root)
    lower = None
    if name is None and env.get("DL_ROOT_DEVICE"):  # an overlay: what stands under it
        lower = block_name(env["DL_ROOT_DEVICE"], sys_root)
        name = lower
    layers, disks = stack(name, sys_root) if name else ([], [])
    root_disks = [disk_info(d, sys_root) for d in disks]
    return {
        "root": {
            "source": source,
            "fstype": fstype,
            "device": name,
            "lower": lower is not None,
            "stack": layers,
            "disks": root_disks,
            "on_iscsi": bool(root_disks) and all(d["transport"] == "iscsi" for d in root_disks),
        },
        "iscsi_sessions": [
            session_info(s, sys_root)
            for s in sorted(os.listdir(os.path.join(sys_root, "class", "iscsi_session")))
        ] if os.path.isdir(os.path.join(sys_root, "class", "iscsi_session")) else [],
        "local_disks": local_disks(sys_root),
        "boot_id": _read(os.path.join(proc_root, "sys", "kernel", "random", "boot_id")),
        "env": env,
    }
