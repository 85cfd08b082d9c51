# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The I/O of the A/B set-up of a storage host (PRIVATE to the collection): module ``ab_update_host`` runs
:class:`Host`, which reads the disk, the grubenv and the markers, and carries out what the pure functions of
module_utils ``ab_update`` decide. Commands go through module_utils ``_run`` (argv lists, C locale, one-line
failures), files through ``_atomic``, the grubenv through module_utils ``grub``.
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.diskless.cluster.plugins.module_utils import grub
from ansible_collections.diskless.cluster.plugins.module_utils._atomic import same_file, write_atomic
from ansible_collections.diskless.cluster.plugins.module_utils.ab_update import (
    FINAL_VERDICTS,
    LSBLK_COLUMNS,
    AbError,
    disk_content,
    disk_refusal,
    dpkg_missing,
    duplicate_labels,
    find_partitions,
    fstab_text,
    grub_cfg_text,
    labels,
    layout_ok,
    other_slot,
    parse_lsblk,
    parted_argv,
    pick_kernel,
    settle_plan,
    update_action,
    update_refusal,
)


def grub_source():
    """The text of module_utils grub as this module runs it (from the module's own payload): the health gate
    on the host imports it (as dl_ab_grub.py next to the gate), so the gate and the modules share one code."""
    source = grub.__loader__.get_source(grub.__name__)  # a file on disk, or a member of the AnsiballZ zip
    if source is None:
        raise AbError("cannot read the source of module_utils grub (%s) for the health gate" % grub.__file__)
    return source


class Host:
    """One storage host. ``p`` are the module parameters; ``run`` a module_utils ``_run.Runner`` (or anything
    with its ``run(argv, what, ok)`` and ``run.raw(argv)``)."""

    def __init__(self, p, run, proc="/proc", run_dir="/run/dl-ab", check_mode=False):
        self.p, self.run, self.proc, self.check_mode = p, run, proc, check_mode
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

    def did(self, text):
        self.actions.append(text)

    def genv(self):
        return grub.GrubEnv("grub-editenv", self.env_file, self.run.raw)

    # -- reading ---------------------------------------------------------------------------------------
    def missing_packages(self):
        packages = list(self.p.get("packages") or [])
        if not packages:
            return []
        out = self.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n"] + packages,
                       "reading the installed packages", ok=(0, 1))
        return dpkg_missing(out, packages)

    def lsblk(self, *devices):
        out = self.run(["lsblk", "--json", "--list", "--bytes", "--paths", "--output", LSBLK_COLUMNS] + list(devices),
                       "listing block devices")
        return parse_lsblk(out)

    def probe(self):
        self.devs = self.lsblk()
        dupes = duplicate_labels(self.devs, set(self.names.values()))
        if dupes:
            raise AbError("more than one partition is named %s: remove or rename the copies (a cloned A/B disk?) "
                          "before the role can tell which one is the host's" % ", ".join(dupes))
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
            raise AbError("booted slot %r (%s=) is not one of %s" % (self.booted, self.p["slot_cmdline_key"], self.slots))
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
            "other": other_slot(self.slots, self.booted),
            "partitions": {k: {"name": v["name"], "uuid": v.get("uuid"), "fstype": v.get("fstype")}
                           for k, v in sorted(self.parts.items())},
            "grub": grub.describe(self.env, self.slots, self.booted, self.env_file),
            "markers": self.markers,
            "verdict": self.verdict,
        }

    # -- writing ---------------------------------------------------------------------------------------
    def write_file(self, path, content, mode=0o644):
        """Atomic write of a small text file when its content or mode differs; True when (it would be) written."""
        data = content.encode("utf-8")
        if same_file(path, data, mode):
            return False
        if not self.check_mode:
            write_atomic(path, data, mode, prefix=".dl-ab-")
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

    def slot_files(self):
        """``slot_files`` plus, at ``gate_library``, the source of module_utils grub that this module runs (the
        gate marks slots good with the same code)."""
        files = dict(self.p.get("slot_files") or {})
        if self.p.get("gate_library"):
            files[self.p["gate_library"]] = grub_source()
        return files

    def install_slot_files(self, root):
        """The health gate (program, its grub library, settings, units, watchdog drop-in) into a root tree;
        enable its units. Returns the unit files that changed."""
        changed_units = []
        for path, content in sorted(self.slot_files().items()):
            if not path.startswith("/") or ".." in path.split("/"):
                raise AbError("slot_files path %r must be absolute, without '..'" % path)
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
            rc, out, _err = self.run.raw(base + ["is-enabled", unit])
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
        rc, _out, _err = self.run.raw(["mountpoint", "-q", self.slot_mount])
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
            raise AbError("the image in slot %s has no /boot/vmlinuz-VERSION with a matching /boot/initrd.img-VERSION: "
                          "it cannot boot (fix the image)" % slot)
        return found[1], found[2]

    def udev_settle(self, devices=()):
        if devices:
            self.run(["udevadm", "trigger", "--settle", "--action=change"] + list(devices), "udevadm trigger")
        self.run(["udevadm", "settle", "--timeout=60"], "udevadm settle")

    # -- states ----------------------------------------------------------------------------------------
    def present(self):
        """Every run (after :meth:`probe`): read, settle what the last boot decided, keep the running slot's gate
        and grub.cfg."""
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
            raise AbError("this host does not boot from A/B root slots yet: set ab_update_disk to the (spare) disk the "
                          "first install lays out")
        devs = self.lsblk(disk)
        refusal = disk_refusal(devs, self.names, self.p["force"], (self.env_mount, self.slot_mount))
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
                raise AbError("partition %s missing on %s after partitioning" % (self.names[role], disk))
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
        new = other_slot(self.slots, old)
        version = str(p["version"])
        refusal = update_refusal(self.env, old, new, self.verdict, self.markers, version, p["retry_failed"])
        if refusal:
            raise AbError(refusal)
        reuse = update_action(self.slots, self.installed, old, self.markers, version)["action"] == "reuse"
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
                raise AbError("image %s does not exist on the host" % source)
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
