# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A storage host's own OS in GRUB A/B root slots (roles/ab_update, docs/ab_update.md): the decisions.

Each Ansible task costs a Python start-up on the host (seconds on a slow or emulated machine), so the whole
remote side of the role is three states of one module (``ab_update_host``):

``present``   every run: read the A/B set-up (partitions by GPT name, the grubenv, the slot markers, this
              boot's gate verdict); on an installed host settle what the last boot decided (a new slot that
              passed its gate is ``booted``; a tried slot that the host fell back from is marked bad and
              ``failed``) and keep the running slot's health gate and the ``grub.cfg`` current.
``installed`` first install: lay out the disk (GPT: bios_grub, boot env, slot A, slot B), file systems, GRUB,
              copy the running root into slot A, env with A good, ``grub.cfg``. The caller then boots slot A.
``written``   update: the image goes into the inactive slot (marked bad while it is written), the host's state
              is carried over, the slot gets its fstab and health gate, ``grub.cfg`` covers both slots, and the
              slot is tried once on the next boot. The caller then reboots and runs ``present``.

This file holds what decides, as pure functions unit-tested without a host: the layout and the first
install's refusals, the kernel choice, the settle plan, the update's action and refusals, the text of fstab
and grub.cfg. module_utils ``_ab_update_host`` does the I/O (commands through module_utils ``_run``, files
through ``_atomic``) and follows these decisions.
"""

from __future__ import annotations

import json
import re

from ansible_collections.diskless.cluster.plugins.module_utils import grub

MARKER_STATUSES = ("writing", "written", "booted", "failed")
FINAL_VERDICTS = ("good", "failed", "not-ab")
LSBLK_COLUMNS = "NAME,PKNAME,TYPE,SIZE,FSTYPE,UUID,PARTLABEL,MOUNTPOINTS"
MIB = 1024 * 1024


class AbError(Exception):
    """A one-line, user-facing problem: what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------------------
# pure helpers
# ---------------------------------------------------------------------------------------------------------
def labels(prefix, slots):
    """GPT partition names (= file-system labels) by role: bios, env, and one per slot."""
    out = {"bios": "%s-bios" % prefix, "env": "%s-env" % prefix}
    for slot in slots:
        out[slot] = "%s-%s" % (prefix, slot)
    return out


def parse_lsblk(text):
    """``lsblk --json --list`` output as a list of dicts with every column (missing ones None) and
    ``mountpoints`` a list without nulls."""
    devs = []
    for dev in json.loads(text or "{}").get("blockdevices", []):
        dev = dict(dev)
        dev["mountpoints"] = [m for m in (dev.get("mountpoints") or []) if m]
        for key in ("pkname", "type", "fstype", "uuid", "partlabel"):
            dev.setdefault(key, None)
        dev["size"] = int(dev.get("size") or 0)
        devs.append(dev)
    return devs


def duplicate_labels(devs, names):
    seen = {}
    for dev in devs:
        if dev.get("partlabel") in names:
            seen[dev["partlabel"]] = seen.get(dev["partlabel"], 0) + 1
    return sorted(k for k, v in seen.items() if v > 1)


def find_partitions(devs, names):
    """{role: lsblk entry} for the A/B partitions found by GPT name (roles without one are absent)."""
    by_label = {dev.get("partlabel"): dev for dev in devs if dev.get("partlabel")}
    return {role: by_label[label] for role, label in names.items() if label in by_label}


def disk_content(devs):
    """What is on a disk: its partitions' names and a whole-disk file system."""
    disk = devs[0]
    parts = [d["name"] for d in devs[1:] if d.get("type") == "part"]
    return parts + ([disk["fstype"]] if disk.get("fstype") else [])


def layout_ok(devs, names):
    parts = [d for d in devs[1:] if d.get("type") == "part"]
    return len(parts) == len(names) and sorted(d.get("partlabel") or "" for d in parts) == sorted(names.values())


def disk_refusal(devs, names, force, own_mounts):
    """None when the first install may use the disk (``lsblk`` of it: the disk first, then its partitions),
    else the one-line reason."""
    disk = devs[0]
    if disk.get("type") != "disk":
        return "%s is a %s, not a whole disk: set ab_update_disk to a disk" % (disk["name"], disk.get("type"))
    mounts = [m for d in devs for m in d["mountpoints"] if m not in own_mounts]
    if mounts:
        return "%s is in use (mounted at %s): never touched; set ab_update_disk to a spare disk" % (
            disk["name"], ", ".join(mounts))
    content = disk_content(devs)
    if content and not layout_ok(devs, names) and not force:
        return ("%s has %s and not the A/B layout: refusing to wipe it (set ab_update_force: true to destroy "
                "its content)" % (disk["name"], ", ".join(content)))
    return None


def parted_argv(disk, size_bytes, names, slots, env_mib, slot_mib):
    """parted --script argv for the GPT: bios_grub (1 MiB), boot env, then the slots. ``slot_mib`` 0 = the rest
    of the disk split evenly (1 MiB kept at the end for the backup GPT)."""
    if not slot_mib:
        slot_mib = (size_bytes // MIB - 3 - env_mib) // len(slots)
    if slot_mib < 1024:
        raise AbError("%s is too small: %d MiB per slot (at least 1024 MiB each, after %d MiB of boot env)"
                      % (disk, slot_mib, env_mib))
    if 2 + env_mib + slot_mib * len(slots) + 1 > size_bytes // MIB:
        raise AbError("%s (%d MiB) is smaller than the layout (%d MiB boot env + %d x %d MiB slots)"
                      % (disk, size_bytes // MIB, env_mib, len(slots), slot_mib))
    argv = ["parted", "--script", "--align=optimal", disk, "--", "mklabel", "gpt",
            "mkpart", names["bios"], "1MiB", "2MiB", "set", "1", "bios_grub", "on",
            "mkpart", names["env"], "ext4", "2MiB", "%dMiB" % (2 + env_mib)]
    start = 2 + env_mib
    for slot in slots:
        argv += ["mkpart", names[slot], "ext4", "%dMiB" % start, "%dMiB" % (start + slot_mib)]
        start += slot_mib
    return argv


def _version_key(version):
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", version) if p]


def pick_kernel(names):
    """The newest ``vmlinuz-V`` of a /boot listing that has an ``initrd.img-V``: (V, kernel, initrd) or None."""
    kernels = {n[len("vmlinuz-"):] for n in names if n.startswith("vmlinuz-")}
    initrds = {n[len("initrd.img-"):] for n in names if n.startswith("initrd.img-")}
    both = sorted(kernels & initrds, key=_version_key)
    if not both:
        return None
    version = both[-1]
    return version, "/boot/vmlinuz-%s" % version, "/boot/initrd.img-%s" % version


def fstab_text(root_uuid, env_uuid, env_mount, slot):
    return ("# diskless.cluster A/B slot %s (written by diskless.cluster.ab_update_host): root and the boot env by UUID.\n"
            "UUID=%s  /  ext4  errors=remount-ro  0  1\n"
            "UUID=%s  %s  ext4  defaults  0  2\n" % (slot, root_uuid, env_uuid, env_mount))


def grub_cfg_text(slots, parts, markers, env_uuid, kernel_args, cmdline_key, timeout, panic, serial):
    """The one grub.cfg of the boot env: an optional serial console, the slot selection and one menu entry per
    slot by file-system UUID (module_utils grub.render_grub_cfg)."""
    entries = {}
    for slot in slots:
        marker = markers.get(slot) or {}
        entries[slot] = {
            "fs_uuid": (parts.get(slot) or {}).get("uuid") or "",
            "kernel": marker.get("kernel") or "/vmlinuz",
            "initrd": marker.get("initrd") or "/initrd.img",
            "args": " ".join(kernel_args),
            "title": "diskless A/B slot %s (%s)" % (slot, marker.get("version") or "empty"),
        }
    head = ""
    if serial:
        head = "serial %s\nterminal_input serial console\nterminal_output serial console\n" % serial
    return head + grub.render_grub_cfg(slots, entries, env_file="/grub/grubenv", env_fs_uuid=env_uuid,
                                       cmdline_key=cmdline_key, timeout=timeout, panic=panic)


def settle_plan(env, slots, booted, verdict, markers, initial_version, kernel_release):
    """What the last boot decided, for an installed host whose gate verdict is final.

    Returns ``(markers, transitions, outcome)``: the markers to keep, ab_update_slots transitions to run
    (``[(state, slot)]``) and ``outcome`` - None, or ``{"slot": S, "status": "booted"|"failed"}`` for the slot
    whose try was settled now. Rules:

    * the booted slot's marker is completed (a lost marker: ``initial_version`` for the first slot, else
      ``unknown``; kernel/initrd of the running kernel) and, when its gate passed, its status is ``booted``;
    * another slot whose marker says ``written`` and whose env state is ``trying`` (GRUB used its one try,
      nobody confirmed it) while the booted slot passed its gate: the try failed - mark it bad, status
      ``failed``. A ``written`` slot whose try is still pending (not booted yet) is left alone.
    """
    markers = {s: dict(markers.get(s) or {}) for s in slots}
    transitions = []
    outcome = None
    good = (verdict or {}).get("verdict") == "good"
    mine = markers[booted]
    if "version" not in mine:
        mine["version"] = initial_version if booted == slots[0] else "unknown"
    mine.setdefault("kernel", "/boot/vmlinuz-%s" % kernel_release)
    mine.setdefault("initrd", "/boot/initrd.img-%s" % kernel_release)
    if good and mine.get("status") != "booted":
        if mine.get("status") == "written":
            outcome = {"slot": booted, "status": "booted", "version": mine["version"]}
        mine["status"] = "booted"
    if good:
        for slot in slots:
            if slot == booted:
                continue
            if markers[slot].get("status") == "written" and grub.slot_state(env, slot) == "trying":
                transitions.append(("bad", slot))
                markers[slot]["status"] = "failed"
                outcome = {"slot": slot, "status": "failed", "version": markers[slot].get("version"),
                           "fell_back_to": booted}
    return markers, transitions, outcome


def other_slot(slots, booted):
    """The slot that is not booted (None when the host did not boot from a slot)."""
    return [s for s in slots if s != booted][0] if booted in slots else None


def update_action(slots, installed, booted, markers, version):
    """What an update to ``version`` does on the host: ``{"action": A, "slot": S}`` with A one of

    * ``none`` - no version asked, the host does not boot from a slot yet, or the booted slot runs it;
    * ``reuse`` - the inactive slot S already holds it intact (``written`` or ``booted``): tried again without
      being written (nor the image copied) again;
    * ``write`` - the image goes into the inactive slot S.
    """
    if not version or not installed or booted not in slots:
        return {"action": "none", "slot": None}
    if (markers.get(booted) or {}).get("version") == version:
        return {"action": "none", "slot": booted}
    other = other_slot(slots, booted)
    marker = markers.get(other) or {}
    if marker.get("version") == version and marker.get("status") in ("written", "booted"):
        return {"action": "reuse", "slot": other}
    return {"action": "write", "slot": other}


def update_refusal(env, booted, other, verdict, markers, version, retry_failed):
    """None when an update of the inactive slot ``other`` to ``version`` may start, else the one-line reason:
    a version that already failed there (unless ``retry_failed``), or a booted slot that is not confirmed
    good by GRUB's env and by this boot's gate verdict."""
    marker = markers.get(other) or {}
    if marker.get("version") == version and marker.get("status") == "failed" and not retry_failed:
        return ("version %s already failed in slot %s (written %s): set ab_update_retry_failed: true to try it again"
                % (version, other, marker.get("written_at", "?")))
    state = grub.slot_state(env, booted)
    verdict = verdict or {}
    if state != "good" or verdict.get("verdict") != "good":
        problems = "; ".join(verdict.get("problems") or [])
        return ("the booted slot %s is not confirmed (state %s, gate verdict %s%s): no update before it is healthy"
                % (booted, state, verdict.get("verdict"), ": " + problems if problems else ""))
    return None


def dpkg_missing(out, packages):
    """Packages of ``packages`` that ``dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n'`` does not list as
    installed (``ii``)."""
    installed = set()
    for line in (out or "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[1] == "ii":
            installed.add(words[0].split(":")[0])
    return [p for p in packages if p not in installed]
