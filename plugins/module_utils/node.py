# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a booted diskless node stands on, read from /proc and /sys only (no commands, no writes).

``describe(sys_root, proc_root)`` returns the root file system's source device, the chain of block devices
under it (md, dm-crypt, dm-multipath, partitions) down to the disks, and for every disk whether it is an iSCSI
LUN and of which session (target, initiator, portal), plus the node's local (non-network) disks. A root that
is an overlay (root modes ``image`` and ``live``) is described by its lower layer: the multipath device of the
shared image, or the squashfs fetched into RAM. ``mode`` names the root mode this adds up to, and ``paths``
the health of every path under it (the md member state, the iSCSI session and SCSI device state). ``env``:
the non-secret ``DL_*`` values the initramfs booted with (/run/diskless/root.env).
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


def _mounts(proc_root):
    """[(source, mount point, fstype, options)] of /proc/self/mounts, in order."""
    rows = []
    for line in (_read(os.path.join(proc_root, "self", "mounts"), "") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4:
            rows.append((fields[0], fields[1], fields[2], fields[3]))
    return rows


def _mount_at(path, proc_root):
    """(source, fstype, options) of the last mount on ``path``, or (None, None, "")."""
    found = (None, None, "")
    for source, point, fstype, options in _mounts(proc_root):
        if point == path:
            found = (source, fstype, options)
    return found


def mounted_root(proc_root="/proc"):
    """(source, fstype) of ``/`` from the last matching line of /proc/self/mounts."""
    source, fstype, _options = _mount_at("/", proc_root)
    return source, fstype


def overlay_of(options, proc_root="/proc"):
    """The layers of an overlay mount (from its options): lower dir, and the mounts under the lower and upper
    dirs ({dir, source, fstype})."""
    opts = dict(o.split("=", 1) for o in options.split(",") if "=" in o)
    out = {}
    for key in ("lowerdir", "upperdir"):
        path = opts.get(key, "").split(":")[0]
        source, fstype = None, None
        probe = path
        while probe and source is None:  # the mount that holds the dir (upperdir is below its tmpfs)
            source, fstype, _options = _mount_at(probe, proc_root)
            probe = os.path.dirname(probe) if probe != "/" else ""
        out[key[:-3]] = {"dir": path or None, "source": source, "fstype": fstype}
    return out


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
        "state": _read(os.path.join(path, "device", "state")),
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
            md = os.path.join(sys_root, "class", "block", dev, "md")
            entry["level"] = _read(os.path.join(md, "level"))
            entry["degraded"] = _read(os.path.join(md, "degraded"))
            entry["array_state"] = _read(os.path.join(md, "array_state"))
            entry["sync_action"] = _read(os.path.join(md, "sync_action"))
            entry["bitmap"] = _read(os.path.join(md, "bitmap", "location"))
            entry["members"] = {
                m[len("dev-"):]: _read(os.path.join(md, m, "state"))
                for m in (sorted(os.listdir(md)) if os.path.isdir(md) else []) if m.startswith("dev-")
            }
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


def luks_layer(layers):
    """The dm-crypt (LUKS) device on top of the root's stack (of the overlay's lower layer), or None: an encrypted
    root (``node_luks``) is LUKS over the mode's own device (the LUN, the md array, the image's multipath map)."""
    top = layers[0] if layers else {}
    if top.get("kind") == "dm" and (top.get("dm_uuid") or "").startswith("CRYPT-LUKS"):
        return top
    return None


def root_mode(fstype, layers, overlay):
    """The root mode a root adds up to: iscsi, mirror, image, live, or None (none of them). A LUKS layer on
    top does not change the mode: it is read from what the dm-crypt device stands on (the LUN, the md array, or
    the multipath map under an overlay's lower layer)."""
    if luks_layer(layers):
        layers = layers[1:]
    top = layers[0] if layers else {}
    if fstype == "overlay":
        if overlay.get("lower", {}).get("fstype") == "squashfs":
            return "live"
        if top.get("kind") == "dm" and (top.get("dm_uuid") or "").startswith("mpath-"):
            return "image"
        return None
    if top.get("kind") == "md" and top.get("level") == "raid1":
        return "mirror"
    if top.get("kind") == "disk":
        return "iscsi"
    return None


def path_health(layers, disks):
    """One entry per disk under the root: its md member state (mirror), the SCSI device state and the iSCSI
    session state; ``ok`` when the session is logged in, the device running and (in md) the member in sync."""
    members = {}
    for layer in layers:
        if layer.get("kind") == "md":
            members.update(layer.get("members") or {})
    out = []
    for disk in disks:
        iscsi = disk.get("iscsi") or {}
        member = members.get(disk["name"]) if members else None
        out.append({
            "disk": disk["name"],
            "portal": iscsi.get("portal"),
            "target": iscsi.get("target"),
            "session_state": iscsi.get("state"),
            "device_state": disk.get("state"),
            "md_member_state": member,
            "ok": (iscsi.get("state") == "LOGGED_IN" and disk.get("state") == "running"
                   and (member is None or "in_sync" in member.split(","))),
        })
    return out


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
    source, fstype, options = _mount_at("/", proc_root)
    overlay = {}
    device_source = source
    if fstype == "overlay":
        overlay = overlay_of(options, proc_root)
        device_source = overlay["lower"]["source"]
    name = block_name(device_source, sys_root)
    layers, disks = stack(name, sys_root) if name else ([], [])
    root_disks = [disk_info(d, sys_root) for d in disks]
    if name and name.startswith("loop"):
        overlay["lower"]["backing_file"] = _read(os.path.join(sys_root, "class", "block", name, "loop", "backing_file"))
    mode = root_mode(fstype, layers, overlay)
    luks = luks_layer(layers)
    root = {
        "source": source,
        "fstype": fstype,
        "device": name,
        "stack": layers,
        "disks": root_disks,
        "on_iscsi": bool(root_disks) and all(d["transport"] == "iscsi" for d in root_disks),
        "mode": mode,
        "paths": path_health(layers, [d for d in root_disks if d["transport"] == "iscsi"]),
        # the dm-crypt device the root is mounted from and what it decrypts (the LUN or the md array)
        "luks": {"device": luks["name"], "dm_name": luks.get("dm_name"),
                 "backing": layers[1]["name"] if len(layers) > 1 else None} if luks else None,
    }
    if overlay:
        root["overlay"] = overlay
    return {
        "root": root,
        "iscsi_sessions": [
            session_info(s, sys_root)
            for s in sorted(os.listdir(os.path.join(sys_root, "class", "iscsi_session")))
        ] if os.path.isdir(os.path.join(sys_root, "class", "iscsi_session")) else [],
        "local_disks": local_disks(sys_root),
        "boot_id": _read(os.path.join(proc_root, "sys", "kernel", "random", "boot_id")),
        "env": read_env(os.path.join(run_root, ROOT_ENV)),
    }
