# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A storage host's own OS in GRUB A/B root slots (roles/ab_update, docs/ab_update.md), one module call per phase.

Each Ansible task costs a Python start-up on the host (seconds on a slow or emulated machine), so the whole
remote side of the role is three states of one module (``ab_host``):

``present``   every run: read the A/B set-up (partitions by GPT name, the grubenv, the slot markers, this
              boot's gate verdict); on an installed host settle what the last boot decided (a new slot that
              passed its gate is ``booted``; a tried slot that the host fell back from is marked bad and
              ``failed``) and keep the running slot's health gate and the ``grub.cfg`` current.
``installed`` first install: lay out the disk (GPT: bios_grub, boot env, slot A, slot B), file systems, GRUB,
              copy the running root into slot A, env with A good, ``grub.cfg``. The caller then boots slot A.
``written``   update: the image goes into the inactive slot (marked bad while it is written), the host's state
              is carried over, the slot gets its fstab and health gate, ``grub.cfg`` covers both slots, and the
              slot is tried once on the next boot. The caller then reboots and runs ``present``.

The pure helpers (layout, refusal messages, kernel choice, the settle plan) are unit-tested without a host;
:class:`Host` does the I/O through a ``run(argv) -> (rc, out, err)`` callable.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time

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


def disk_refusal(host, devs, names, force, own_mounts):
    """None when the first install may use the disk (``lsblk`` of it: the disk first, then its partitions),
    else the one-line reason."""
    disk = devs[0]
    if disk.get("type") != "disk":
        return "%s: %s is a %s, not a whole disk: set ab_update_disk to a disk" % (host, disk["name"], disk.get("type"))
    mounts = [m for d in devs for m in d["mountpoints"] if m not in own_mounts]
    if mounts:
        return "%s: %s is in use (mounted at %s): never touched; set ab_update_disk to a spare disk" % (
            host, disk["name"], ", ".join(mounts))
    content = disk_content(devs)
    if content and not layout_ok(devs, names) and not force:
        return ("%s: %s has %s and not the A/B layout: refusing to wipe it (set ab_update_force: true to destroy "
                "its content)" % (host, disk["name"], ", ".join(content)))
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
    return ("# diskless.cluster A/B slot %s (written by diskless.cluster.ab_host): root and the boot env by UUID.\n"
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

    Returns ``(markers, transitions, outcome)``: the markers to keep, grub_ab transitions to run
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


def dpkg_missing(out, packages):
    """Packages of ``packages`` that ``dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n'`` does not list as
    installed (``ii``)."""
    installed = set()
    for line in (out or "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[1] == "ii":
            installed.add(words[0].split(":")[0])
    return [p for p in packages if p not in installed]


# ---------------------------------------------------------------------------------------------------------
# the host
# ---------------------------------------------------------------------------------------------------------
class Host:
    """One storage host. ``p`` are the module parameters; ``run(argv) -> (rc, out, err)``."""

    def __init__(self, p, run, host="this host", proc="/proc", run_dir="/run/dl-ab", check_mode=False):
        self.p, self._run, self.host, self.proc, self.check_mode = p, run, host, proc, check_mode
        self.slots = grub.validate_slots(p["slots"])
        self.names = labels(p["label_prefix"], self.slots)
        self.env_mount = p["env_mount"].rstrip("/") or "/"
        self.env_file = os.path.join(self.env_mount, "grub", "grubenv")
        self.grub_cfg = os.path.join(self.env_mount, "grub", "grub.cfg")
        self.markers_file = os.path.join(self.env_mount, "dl-ab", "slots.json")
        self.slot_mount = os.path.join(run_dir, "slot")
        self.verdict_file = os.path.join(run_dir, "verdict.json")
        self.actions = []
        self.devs = []
        self.parts = {}
        self.env = None
        self.markers = {s: {} for s in self.slots}
        self.booted = None
        self.verdict = {}

    # -- running commands ------------------------------------------------------------------------------
    def run(self, argv, what, ok=(0,)):
        rc, out, err = self._run([str(a) for a in argv])
        if rc not in ok:
            detail = grub.first_line(err) if (err or "").strip() else grub.first_line(out)
            raise AbError("%s: %s failed (%s, rc %d): %s" % (self.host, what, argv[0], rc, detail))
        return out

    def did(self, text):
        self.actions.append(text)

    def genv(self):
        return grub.GrubEnv("grub-editenv", self.env_file, self._run)

    # -- reading ---------------------------------------------------------------------------------------
    def missing_packages(self):
        packages = list(self.p.get("packages") or [])
        if not packages:
            return []
        rc, out, err = self._run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n"] + packages)
        if rc not in (0, 1):
            raise AbError("%s: dpkg-query failed: %s" % (self.host, grub.first_line(err)))
        return dpkg_missing(out, packages)

    def lsblk(self, *devices):
        out = self.run(["lsblk", "--json", "--list", "--bytes", "--paths", "--output", LSBLK_COLUMNS] + list(devices),
                       "listing block devices")
        return parse_lsblk(out)

    def probe(self):
        self.devs = self.lsblk()
        dupes = duplicate_labels(self.devs, set(self.names.values()))
        if dupes:
            raise AbError("%s: more than one partition is named %s: remove or rename the copies (a cloned A/B disk?) "
                          "before the role can tell which one is the host's" % (self.host, ", ".join(dupes)))
        self.parts = find_partitions(self.devs, self.names)

    def env_ready(self):
        return (self.parts.get("env") or {}).get("fstype") == "ext4"

    def mount_env(self):
        """Mount the boot env at env_mount unless it is mounted there."""
        env = self.parts.get("env") or {}
        if self.env_mount in env.get("mountpoints", []) or self.check_mode:
            return
        os.makedirs(self.env_mount, exist_ok=True)
        self.run(["mount", "-t", "ext4", env["name"], self.env_mount], "mounting the boot env")
        env["mountpoints"] = env.get("mountpoints", []) + [self.env_mount]
        self.did("mounted the boot env %s on %s" % (env["name"], self.env_mount))

    def read_state(self):
        with open(os.path.join(self.proc, "cmdline")) as handle:
            self.booted = grub.parse_cmdline(handle.read(), self.p["slot_cmdline_key"])
        if self.booted is not None and self.booted not in self.slots:
            raise AbError("%s: booted slot %r (%s=) is not one of %s"
                          % (self.host, self.booted, self.p["slot_cmdline_key"], self.slots))
        self.env = self.genv().read() if self.env_ready() and os.path.isdir(os.path.dirname(self.env_file)) else None
        self.markers = {s: {} for s in self.slots}
        try:
            with open(self.markers_file) as handle:
                saved = json.load(handle)
            for slot in self.slots:
                self.markers[slot] = dict(saved.get(slot) or {})
        except (OSError, ValueError):
            pass
        self.verdict = self.read_verdict()

    def read_verdict(self):
        try:
            with open(self.verdict_file) as handle:
                data = json.load(handle)
            with open(os.path.join(self.proc, "sys", "kernel", "random", "boot_id")) as handle:
                boot_id = handle.read().strip()
        except (OSError, ValueError):
            return {"verdict": "pending", "problems": []}
        if data.get("boot_id") != boot_id:
            return {"verdict": "pending", "problems": []}
        return {"verdict": data.get("verdict", "pending"), "problems": data.get("problems", []),
                "slot": data.get("slot")}

    def wait_verdict(self, seconds):
        deadline = time.monotonic() + seconds
        while self.verdict.get("verdict") not in FINAL_VERDICTS and time.monotonic() < deadline:
            time.sleep(2)
            self.verdict = self.read_verdict()

    @property
    def installed(self):
        return grub.initialized(self.env) and self.booted in self.slots

    def facts(self):
        return {
            "installed": self.installed,
            "booted": self.booted,
            "other": [s for s in self.slots if s != self.booted][0] if self.booted in self.slots else None,
            "partitions": {k: {"name": v["name"], "uuid": v.get("uuid"), "fstype": v.get("fstype")}
                           for k, v in sorted(self.parts.items())},
            "grub": grub.describe(self.env, self.slots, self.booted, self.env_file),
            "markers": self.markers,
            "verdict": self.verdict,
        }

    # -- writing ---------------------------------------------------------------------------------------
    def write_file(self, path, content, mode=0o644):
        """Atomic write of a small text file when its content or mode differs; True when written."""
        data = content.encode("utf-8")
        try:
            with open(path, "rb") as handle:
                same = handle.read() == data
            same = same and (os.stat(path).st_mode & 0o7777) == mode
        except OSError:
            same = False
        if same:
            return False
        if self.check_mode:
            return True
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dl-ab-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.rename(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return True

    def write_markers(self):
        text = json.dumps(self.markers, indent=4, sort_keys=True) + "\n"
        if self.write_file(self.markers_file, text):
            self.did("slot markers: %s" % ", ".join("%s %s %s" % (s, m.get("version", "-"), m.get("status", "-"))
                                                    for s, m in sorted(self.markers.items())))

    def write_grub_cfg(self):
        text = grub_cfg_text(self.slots, self.parts, self.markers, self.parts["env"]["uuid"], self.p["kernel_args"],
                             self.p["slot_cmdline_key"], self.p["grub_timeout"], self.p["panic"], self.p["grub_serial"])
        if self.write_file(self.grub_cfg, text):
            self.did("wrote %s" % self.grub_cfg)

    def transition(self, state, slot=None):
        outcome = grub.run_transition(self.genv(), self.slots, state, booted=self.booted, slot=slot,
                                      check_mode=self.check_mode, cmdline_key=self.p["slot_cmdline_key"])
        if outcome["changed"]:
            self.did("grubenv: %s %s (%s)" % (state, slot or self.booted, " ".join(
                "%s=%s" % kv for kv in outcome["changes"].items()) or "created"))
        self.env = outcome["after"]

    def install_slot_files(self, root):
        """The health gate (program, settings, units, watchdog drop-in) into a root tree; enable its units.
        Returns the unit files that changed."""
        changed_units = []
        for path, content in sorted((self.p.get("slot_files") or {}).items()):
            if not path.startswith("/") or ".." in path.split("/"):
                raise AbError("%s: slot_files path %r must be absolute, without '..'" % (self.host, path))
            if self.write_file(os.path.join(root, path.lstrip("/")), content):
                self.did("%s%s" % ("" if root == "/" else root, path))
                if path.startswith("/etc/systemd/"):
                    changed_units.append(path)
        units = list(self.p.get("gate_units") or [])
        if units:
            self.enable(root, units)
        return changed_units

    def enable(self, root, units):
        """systemctl enable of the units that are not enabled (in root: offline, --root)."""
        base = ["systemctl"] + ([] if root == "/" else ["--root=%s" % root])
        todo = []
        for unit in units:
            rc, out, _err = self._run(base + ["is-enabled", unit])
            if rc != 0 or out.strip() not in ("enabled", "static", "alias", "indirect", "generated"):
                todo.append(unit)
        if todo and not self.check_mode:
            self.run(base + ["enable"] + todo, "enabling %s" % " ".join(todo))
        if todo:
            self.did("enabled %s%s" % (" ".join(todo), "" if root == "/" else " in %s" % root))

    def mount_slot(self, slot):
        os.makedirs(self.slot_mount, exist_ok=True)
        self.umount_slot()
        self.run(["mount", "-t", "ext4", self.parts[slot]["name"], self.slot_mount], "mounting slot %s" % slot)

    def umount_slot(self):
        rc, _out, _err = self._run(["mountpoint", "-q", self.slot_mount])
        if rc == 0:
            self.run(["umount", self.slot_mount], "unmounting %s" % self.slot_mount)

    def prepare_slot(self, slot):
        """The mounted slot boots on its own: fstab, health gate, the kernel GRUB loads. Returns (kernel, initrd)."""
        root = self.slot_mount
        self.write_file(os.path.join(root, "etc", "fstab"),
                        fstab_text(self.parts[slot]["uuid"], self.parts["env"]["uuid"], self.env_mount, slot))
        self.install_slot_files(root)
        boot = os.path.join(root, "boot")
        found = pick_kernel(os.listdir(boot) if os.path.isdir(boot) else [])
        if found is None:
            raise AbError("%s: the image in slot %s has no /boot/vmlinuz-VERSION with a matching /boot/initrd.img-VERSION: "
                          "it cannot boot (fix the image)" % (self.host, slot))
        return found[1], found[2]

    def udev_settle(self, devices=()):
        if devices:
            self.run(["udevadm", "trigger", "--settle", "--action=change"] + list(devices), "udevadm trigger")
        self.run(["udevadm", "settle", "--timeout=60"], "udevadm settle")

    # -- states ----------------------------------------------------------------------------------------
    def present(self):
        """Every run: read, settle what the last boot decided, keep the running slot's gate and grub.cfg."""
        self.probe()
        if self.env_ready():
            self.mount_env()
        self.read_state()
        outcome = None
        if not self.installed:
            return outcome
        self.wait_verdict(self.p["verdict_timeout"])
        if self.verdict.get("verdict") in FINAL_VERDICTS:
            markers, transitions, outcome = settle_plan(self.env, self.slots, self.booted, self.verdict, self.markers,
                                                        self.p["initial_version"], os.uname()[2])
            if self.verdict.get("verdict") == "good":
                self.transition("good")  # the gate did it at boot; a no-op unless the env was edited since
            for state, slot in transitions:
                self.transition(state, slot)
            self.markers = markers
            self.write_markers()
        changed_units = self.install_slot_files("/")
        if changed_units and not self.check_mode:
            self.run(["systemctl", "daemon-reload"], "systemctl daemon-reload")
        self.write_grub_cfg()
        return outcome

    def install(self):
        """First install on p["disk"] (the host does not boot from a slot yet). Every step is skipped when it
        is done already, so an interrupted install resumes."""
        disk = self.p.get("disk") or (self.parts.get("env") or {}).get("pkname")
        if not disk:
            raise AbError("%s does not boot from A/B root slots yet: set ab_update_disk to the (spare) disk the first "
                          "install lays out" % self.host)
        devs = self.lsblk(disk)
        refusal = disk_refusal(self.host, devs, self.names, self.p["force"], (self.env_mount, self.slot_mount))
        if refusal:
            raise AbError(refusal)
        if self.check_mode:
            self.did("would install the A/B layout on %s" % disk)
            return
        disk = devs[0]["name"]
        if not layout_ok(devs, self.names):
            if disk_content(devs):
                self.run(["wipefs", "--all"] + [d["name"] for d in devs[1:] if d.get("type") == "part"] + [disk],
                         "wiping %s" % disk)
            self.run(parted_argv(disk, devs[0]["size"], self.names, self.slots, self.p["env_size_mib"],
                                 self.p["slot_size_mib"]), "partitioning %s" % disk)
            self.udev_settle()
            self.did("partitioned %s (GPT: %s)" % (disk, ", ".join(self.names.values())))
            self.probe()
        fresh = []
        for role in ["env"] + self.slots:
            part = self.parts.get(role)
            if part is None:
                raise AbError("%s: partition %s missing on %s after partitioning" % (self.host, self.names[role], disk))
            if part.get("fstype") != "ext4":
                self.run(["mkfs.ext4", "-q", "-F", "-L", self.names[role], part["name"]], "mkfs of %s" % part["name"])
                fresh.append(part["name"])
        if fresh:
            self.udev_settle(fresh)
            self.did("made ext4 on %s" % ", ".join(fresh))
            self.probe()
        self.mount_env()
        for sub in ("grub", "dl-ab"):
            os.makedirs(os.path.join(self.env_mount, sub), exist_ok=True)
        self.read_state()
        target = self.p["grub_target"]
        if not os.path.exists(os.path.join(self.env_mount, "grub", target, "core.img")):
            self.run(["grub-install", "--target=%s" % target, "--boot-directory=%s" % self.env_mount,
                      "--modules=part_gpt ext2", disk], "grub-install on %s" % disk)
            self.did("installed GRUB (%s) on %s" % (target, disk))
        first = self.slots[0]
        if "version" not in self.markers[first]:
            self.mount_slot(first)
            try:
                excludes = ["--exclude=%s" % e for e in self.p["adopt_excludes"]]
                self.run(["rsync", "-aHAXx", "--numeric-ids", "--delete", "--delete-excluded"] + excludes
                         + ["/", self.slot_mount + "/"], "copying the running root into slot %s" % first, ok=(0, 24))
                kernel, initrd = self.prepare_slot(first)
            finally:
                self.umount_slot()
            self.markers[first] = {"version": self.p["initial_version"], "status": "written", "kernel": kernel,
                                   "initrd": initrd, "image": "adopted running root",
                                   "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            for slot in self.slots[1:]:
                self.markers[slot] = {}
            self.did("copied the running root into slot %s" % first)
            self.write_markers()
        self.transition("init", first)
        self.write_grub_cfg()

    def write(self):
        """Update: the image into the inactive slot, then try it once on the next boot. Returns (old, new,
        written) - written False when the slot already held this version intact."""
        p = self.p
        old = self.booted
        new = [s for s in self.slots if s != old][0]
        version = str(p["version"])
        marker = self.markers[new]
        if marker.get("version") == version and marker.get("status") == "failed" and not p["retry_failed"]:
            raise AbError("%s: version %s already failed in slot %s (written %s): set ab_update_retry_failed: true to "
                          "try it again" % (self.host, version, new, marker.get("written_at", "?")))
        state = grub.slot_state(self.env, old)
        if state != "good" or self.verdict.get("verdict") != "good":
            problems = "; ".join(self.verdict.get("problems") or [])
            raise AbError("%s: the booted slot %s is not confirmed (state %s, gate verdict %s%s): no update before it "
                          "is healthy" % (self.host, old, state, self.verdict.get("verdict"),
                                          ": " + problems if problems else ""))
        reuse = marker.get("version") == version and marker.get("status") in ("written", "booted")
        if self.check_mode:
            self.did("would %s slot %s and try it" % ("keep" if reuse else "write %s into" % version, new))
            return old, new, not reuse
        if not reuse:
            self.transition("bad", new)
            self.markers[new] = {"version": version, "status": "writing"}
            self.write_markers()
            self.umount_slot()
            part = self.parts[new]["name"]
            source = p["image"]
            if not os.path.isfile(source):
                raise AbError("%s: image %s does not exist on the host" % (self.host, source))
            if p["image_format"] == "raw":
                self.run(["dd", "if=%s" % source, "of=%s" % part, "bs=4M", "conv=fsync"], "writing %s" % part)
                self.run(["e2fsck", "-f", "-y", part], "checking the written file system", ok=(0, 1))
                self.run(["resize2fs", part], "growing the file system of slot %s" % new)
                self.run(["tune2fs", "-U", "random", "-L", self.names[new], part], "new UUID for slot %s" % new)
            else:
                self.run(["mkfs.ext4", "-q", "-F", "-L", self.names[new], part], "mkfs of slot %s" % new)
            self.udev_settle([part])
            self.probe()
            self.mount_slot(new)
            try:
                if p["image_format"] == "tar":
                    self.run(["tar", "--extract", "--file", source, "--directory", self.slot_mount, "--numeric-owner",
                              "--preserve-permissions", "--xattrs", "--xattrs-include=*", "--acls"],
                             "unpacking %s into slot %s" % (source, new))
                carry = list(p["carry_over"] or [])
                if carry:
                    self.run(["rsync", "-aR", "--ignore-missing-args"] + carry + [self.slot_mount + "/"],
                             "carrying the host's state into slot %s" % new)
                kernel, initrd = self.prepare_slot(new)
                if p["enable_units"]:
                    self.enable(self.slot_mount, p["enable_units"])
            finally:
                self.umount_slot()
            self.markers[new] = {"version": version, "status": "written", "kernel": kernel, "initrd": initrd,
                                 "image": os.path.basename(source),
                                 "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self.write_markers()
            self.did("wrote %s into slot %s (%s)" % (version, new, self.parts[new]["name"]))
            if p["remove_image"]:
                os.unlink(source)
        self.write_grub_cfg()
        self.transition("try", new)
        return old, new, not reuse
