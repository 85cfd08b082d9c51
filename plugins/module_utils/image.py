# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compute-node image bundles: the recipe, its hash, the argv lists of the build tools, the bundle files.

Pure helpers (no I/O except the explicit file helpers at the end): the ``image_bundle`` module wires them to
``run_command``. Everything that changes the bytes of an image is part of the recipe and of its hash; the
mirror URL is a transport detail and is not.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shlex

# Bump when the build logic changes what ends up in a bundle (files written, checks, layout).
RECIPE_FORMAT = 4

# The tail of root.img that its ext4 leaves free: md metadata 1.0 (superblock + internal bitmap, at the END of
# each leg) of a `mirror` node fits there, so both legs stay thin clones of the golden image.
MD_TAIL_BYTES = 4 * 1024 * 1024
FS_BLOCK_SIZE = 4096

BUNDLE_FILES = ("vmlinuz", "initrd.img", "root.img", "root.squashfs", "packages.txt", "manifest.json")

# Packages of every compute-node image (minbase + these, no Recommends).
BASE_PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "dbus", "initramfs-tools", "zstd", "kmod",
    "open-iscsi", "mdadm", "multipath-tools", "dmsetup", "busybox", "curl",
    # LUKS roots (node_luks): cryptsetup and Clevis for the initramfs (hooks/diskless copies them; scripts/diskless
    # encrypts at the first boot and unlocks). Not cryptsetup-initramfs / clevis-initramfs: their cryptroot unlock
    # is what scripts/diskless replaces (check_initramfs refuses an initramfs that carries it)
    "cryptsetup-bin", "clevis", "clevis-luks", "jose", "libpwquality-tools",
    "openssh-server", "python3",
    "iproute2", "procps", "chrony", "rsyslog",
    "e2fsprogs", "util-linux", "netbase",
)

# Never in an image: they would configure (and flush) the NIC the iSCSI root lives on.
FORBIDDEN_PACKAGES = ("ifupdown", "ifupdown2", "network-manager", "netplan.io", "systemd-resolved", "dhcpcd5",
                      "isc-dhcp-client", "connman")

DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
)

# Kernel module trees a compute node never needs (sound, cameras/TV, Wi-Fi, Bluetooth, IIO sensors,
# staging): ~110 MB of the ~390 MB of modules, i.e. boot and copy time of every node.
KERNEL_MODULE_EXCLUDES = (
    "sound", "drivers/media", "drivers/net/wireless", "drivers/bluetooth", "drivers/iio", "drivers/staging",
    "drivers/isdn", "drivers/input/joystick", "drivers/input/touchscreen", "net/wireless", "net/mac80211",
    "net/bluetooth",
)

APT_OPTIONS = (
    'APT::Install-Recommends "false"',
    'APT::Install-Suggests "false"',
)

# Modules the initramfs needs besides MODULES=netboot (base filesystems + every network driver), open-iscsi's
# hook and the node files' hook (hooks/diskless: iSCSI, md raid1, dm-multipath, overlay, squashfs, loop, zram,
# dm-crypt and AES-XTS):
# the SCSI disk driver for the LUN and the virtio block/SCSI drivers for local disks and the lab.
INITRAMFS_MODULES = ("sd_mod", "virtio_blk", "virtio_scsi", "virtio_net", "af_packet")

# What the built initramfs must contain (suffix match on the archive paths).
INITRAMFS_REQUIRED = (
    "scripts/diskless",
    "sbin/iscsistart",
    "sbin/mdadm",
    "sbin/dmsetup",
    "sbin/mkfs.ext4",
    "bin/busybox",
    "sbin/curl",
    "bin/sha256sum",
    "etc/mdadm/mdadm.conf",
    "etc/diskless",     # the directory of the node.conf iPXE appends (it makes no parent directory)
    # LUKS root: cryptsetup, and Clevis with what its scripts run (hooks/diskless)
    "sbin/cryptsetup",
    "bin/bash",
    "bin/jose",
    "bin/pwmake",
    "bin/clevis",
    "bin/clevis-decrypt",
    "bin/clevis-decrypt-tang",
    "bin/clevis-decrypt-sss",
    "bin/clevis-encrypt-sss",
    "bin/clevis-encrypt-tang",
    "bin/clevis-luks-bind",
    "bin/clevis-luks-unlock",
    "bin/clevis-luks-common-functions",
    "bin/cat",          # clevis-decrypt runs /bin/cat
    "bin/base64",       # scripts/diskless: the first boot's one-time key
)
# Kernel modules it must carry (as .ko, or listed in modules.builtin when the kernel has them built in).
INITRAMFS_REQUIRED_MODULES = (
    "iscsi_tcp", "sd_mod", "virtio_net", "virtio_blk", "ext4", "md-mod", "raid1", "dm-multipath",
    "dm-service-time", "overlay", "squashfs", "loop", "zram",
    "dm-crypt", "xts", "algif_skcipher",
)
# Debian's own LUKS unlock (cryptsetup-initramfs, clevis-initramfs): never in our initramfs, scripts/diskless
# unlocks the root (a crypttab-driven askpass loop racing it would only confuse the boot).
INITRAMFS_FORBIDDEN = ("scripts/local-top/cryptroot", "scripts/local-top/clevis")
# The node's own file, injected by iPXE at boot: an initramfs never carries one.
INITRAMFS_NODE_CONF = "etc/diskless/node.conf"

INITIATORNAME_PLACEHOLDER = (
    "## diskless.cluster: intentionally empty. A node's initiator name comes from DL_INITIATOR in the\n"
    "## /etc/diskless/node.conf that iPXE injects into the initramfs; diskless-initiatorname.service copies the\n"
    "## name of the root session here at boot. No image carries a fixed IQN.\n"
    "InitiatorName=\n"
)

# The booted node's scripts, units and configuration are real files: roles/image_builder/files/node/ (a tree
# mirroring the image's paths, given to image_bundle as node_files). Here only what depends on the
# inventory (fstab label, SSH keys) and the symlinks that enable or mask units.
ENABLED_UNITS = (
    ("sysinit.target.wants", "diskless-initiatorname.service", "/etc/systemd/system/diskless-initiatorname.service"),
    # the daemon must run (not only its socket): it adopts the initramfs' sessions and re-logs in after an outage
    ("sysinit.target.wants", "iscsid.service", "/lib/systemd/system/iscsid.service"),
    ("multi-user.target.wants", "diskless-iscsi-timeouts.service", "/etc/systemd/system/diskless-iscsi-timeouts.service"),
    ("timers.target.wants", "diskless-md-readd.timer", "/etc/systemd/system/diskless-md-readd.timer"),
)

# Units masked in every image (symlink to /dev/null).
MASKED_UNITS = (
    "systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
    "apt-daily.timer", "apt-daily-upgrade.timer",
    # a monthly full read of both legs of every node's mirror, all at once, over iSCSI: not on compute nodes
    "mdcheck_start.timer", "mdcheck_continue.timer",
)

# Top-level directories a node files tree may hold: tar (mmdebstrap sync-in) would replace the usr-merge
# symlinks /bin /sbin /lib by directories.
NODE_FILES_TOPLEVEL = ("etc", "usr")


def packages(extra=()):
    """The sorted, de-duplicated package list of an image."""
    return sorted(set(BASE_PACKAGES) | set(p.strip() for p in extra if p and p.strip()))


def forbidden(pkgs):
    return sorted(set(pkgs) & set(FORBIDDEN_PACKAGES))


def pre_files():
    """Files put into the root after the Essential set, before the kernel and initramfs-tools are set up.

    path -> (mode, content); content None = directory. Written before the first initramfs is generated so it
    is generated once, with these settings; the empty initiator name stops open-iscsi's postinst from
    generating a random (and then shared by every node) IQN.
    """
    return {
        "/etc/initramfs-tools": (0o755, None),
        "/etc/initramfs-tools/conf.d": (0o755, None),
        "/etc/initramfs-tools/conf.d/diskless-cluster.conf": (
            0o644,
            "# diskless.cluster: network boot initramfs (base + every network driver + the list below)\n"
            "MODULES=netboot\nCOMPRESS=zstd\n",
        ),
        "/usr/share/initramfs-tools/modules.d": (0o755, None),
        "/usr/share/initramfs-tools/modules.d/diskless-cluster": (
            0o644, "# diskless.cluster: SCSI disk (the iSCSI LUN) and virtio\n" + "\n".join(INITRAMFS_MODULES) + "\n"),
        "/etc/iscsi": (0o755, None),
        "/etc/iscsi/initiatorname.iscsi": (0o600, INITIATORNAME_PLACEHOLDER),
    }


def post_files(label, authorized_keys):
    """Files written into the root after every package is installed (and the node files synced in).

    path -> (mode, content); content None = directory; mode None = symlink with content as target.
    """
    files = {
        "/etc/fstab": (0o644, "# diskless.cluster: the root comes from the initramfs (iSCSI LUN, md on two LUNs, or a RAM\n"
                              "# overlay over the golden LUN / root.squashfs); systemd remounts it with these options\n"
                              "LABEL=%s / ext4 defaults,noatime 0 1\n" % label),
        "/etc/hosts": (0o644, "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"),
        "/root/.ssh": (0o700, None),
        "/root/.ssh/authorized_keys": (0o600, "".join(k.strip() + "\n" for k in authorized_keys if k.strip())),
    }
    for target, unit, path in ENABLED_UNITS:
        files["/etc/systemd/system/%s" % target] = (0o755, None)
        files["/etc/systemd/system/%s/%s" % (target, unit)] = (None, path)
    for unit in MASKED_UNITS:
        files["/etc/systemd/system/%s" % unit] = (None, "/dev/null")
    return files


def node_files_manifest(root):
    """[relative path, mode, sha256] of every file of a node files tree, sorted (modes as node_files_stage
    makes them: 0755 when the owner may execute, else 0644). Raises ValueError on anything but regular files
    and directories below etc/ and usr/."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel.split(os.sep)[0] not in NODE_FILES_TOPLEVEL:
                raise ValueError("node files: %s is not below %s" % (rel, " or ".join(NODE_FILES_TOPLEVEL)))
            if os.path.islink(full) or not os.path.isfile(full):
                raise ValueError("node files: %s is not a regular file (symlinks: post_files)" % rel)
            mode = 0o755 if os.stat(full).st_mode & 0o100 else 0o644
            rows.append([rel, "%04o" % mode, file_sha256(full)])
    return sorted(rows)


def node_files_stage(src, dest):
    """Copy the node files tree to dest with the modes of node_files_manifest (directories 0755), whatever the
    checkout's umask made of them: what mmdebstrap syncs into the root is exactly what the recipe hashed."""
    for row in node_files_manifest(src):
        rel, mode = row[0], int(row[1], 8)
        parts = rel.split(os.sep)
        for k in range(1, len(parts)):
            d = os.path.join(dest, *parts[:k])
            if not os.path.isdir(d):
                os.mkdir(d)
            os.chmod(d, 0o755)
        target = os.path.join(dest, rel)
        with open(os.path.join(src, rel), "rb") as fin, open(target, "wb") as fout:
            fout.write(fin.read())
        os.chmod(target, mode)
    os.chmod(dest, 0o755)


# Removed from the root after the build: per-machine identity must be made on each node.
REMOVE_PATHS = (
    "/etc/hostname", "/etc/resolv.conf", "/var/lib/dbus/machine-id",
    "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub",
    "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ecdsa_key.pub",
    "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/iscsi/iscsi.initramfs", "/etc/diskless/node.conf",
)
TRUNCATE_PATHS = ("/etc/machine-id",)


def _files_for_hash(files):
    return sorted([path, mode, content] for path, (mode, content) in files.items())


def dpkg_options():
    """dpkg filters: docs etc., and the module trees (as the package names them: /lib/modules in bookworm's
    linux-image, /usr/lib/modules from trixie on)."""
    return list(DPKG_EXCLUDES) + ["path-exclude=%s/modules/*/kernel/%s/*" % (lib, d)
                                  for d in KERNEL_MODULE_EXCLUDES for lib in ("/lib", "/usr/lib")]


def recipe(suite, size_bytes, label, extra_packages=(), authorized_keys=(), variant="minbase",
           components=("main",), arch="amd64", node_files=()):
    """The canonical recipe of an image: everything that changes its bytes (not the name/version/mirror).
    ``node_files``: node_files_manifest() of the node files tree."""
    return {
        "format": RECIPE_FORMAT,
        "suite": suite,
        "variant": variant,
        "architecture": arch,
        "components": list(components),
        "packages": packages(extra_packages),
        "dpkg_options": dpkg_options(),
        "apt_options": list(APT_OPTIONS),
        "initramfs_modules": list(INITRAMFS_MODULES),
        "pre_files": _files_for_hash(pre_files()),
        "post_files": _files_for_hash(post_files(label, authorized_keys)),
        "remove": list(REMOVE_PATHS),
        "truncate": list(TRUNCATE_PATHS),
        "node_files": [list(r) for r in node_files],
        "label": label,
        "size_bytes": int(size_bytes),
        "fs_bytes": fs_bytes(size_bytes),
    }


def fs_bytes(size_bytes):
    """Size of root.img's ext4: the image size less the md tail, in whole file system blocks."""
    return (int(size_bytes) - MD_TAIL_BYTES) // FS_BLOCK_SIZE * FS_BLOCK_SIZE


def recipe_hash(rec):
    """sha256 of the canonical JSON of the recipe: stable across runs, Python versions and key order."""
    blob = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def bootstrap_argv(mmdebstrap, suite, rootdir, mirror, variant, components, packages, apt_options=(),
                   dpkg_options=(), architecture=None, hooks=()):
    """argv of one mmdebstrap run into a directory, as root: the one way this collection bootstraps a Debian
    tree (compute-node bundles here, and the lab's VM images). ``hooks``: (kind, command) pairs, in order,
    e.g. ("essential", "sync-in DIR /") -> --essential-hook=sync-in DIR /."""
    argv = [
        mmdebstrap,
        "--mode=root",
        "--format=directory",
        "--variant=%s" % variant,
    ]
    if architecture:
        argv.append("--architectures=%s" % architecture)
    argv.append("--components=%s" % ",".join(components))
    argv += ["--aptopt=%s" % o for o in apt_options]
    argv += ["--dpkgopt=%s" % o for o in dpkg_options]
    argv.append("--include=%s" % ",".join(packages))
    argv += ["--%s-hook=%s" % (kind, command) for kind, command in hooks]
    argv += [suite, rootdir, mirror]
    return argv


def mmdebstrap_argv(mmdebstrap, rec, rootdir, mirror, pre_dir, node_dir=None):
    """argv of the one mmdebstrap run: directory output, root mode, minbase + packages, pre files synced in
    after the Essential set; the node files (``node_dir``, staged by node_files_stage) synced in once every
    package is installed, then the initramfs generated again -- the bundle's initrd is that one, with
    hooks/diskless and scripts/diskless (an earlier run by a package trigger may predate mdadm & co)."""
    hooks = [("essential", "sync-in %s /" % shlex.quote(pre_dir))]
    if node_dir:
        hooks += [("customize", "sync-in %s /" % shlex.quote(node_dir)),
                  ("customize", 'chroot "$1" update-initramfs -u -k all')]
    return bootstrap_argv(mmdebstrap, rec["suite"], rootdir, mirror, rec["variant"], rec["components"],
                          rec["packages"], apt_options=rec["apt_options"], dpkg_options=rec["dpkg_options"],
                          architecture=rec["architecture"], hooks=hooks)


def mkfs_argv(mkfs, label, rootdir, image, reserved_percent=1, fs_size=None):
    """argv of mkfs.ext4 populating an existing sparse file from the root directory (no loop device, no mount);
    ``reserved_percent``: the blocks reserved for root (mke2fs -m; its own default is 5); ``fs_size``: bytes of
    the file system when smaller than the file (4 KiB blocks, the count as mke2fs' last argument)."""
    argv = [mkfs, "-q", "-F", "-t", "ext4", "-L", label, "-m", str(reserved_percent)]
    if fs_size is None:
        return argv + ["-d", rootdir, image]
    return argv + ["-b", str(FS_BLOCK_SIZE), "-d", rootdir, image, str(int(fs_size) // FS_BLOCK_SIZE)]


def squashfs_argv(mksquashfs, rootdir, out):
    """argv of mksquashfs: the same root tree as root.img, for `live` nodes (zstd, a fresh file)."""
    return [mksquashfs, rootdir, out, "-comp", "zstd", "-noappend", "-no-progress", "-quiet"]


def dpkg_query_argv(dpkg_query, rootdir):
    return [dpkg_query, "--admindir=%s" % os.path.join(rootdir, "var/lib/dpkg"), "-W",
            "-f=${db:Status-Abbrev} ${Package} ${Version}\\n"]


def packages_txt(dpkg_query_out):
    """'name version' lines of the installed packages, sorted by name."""
    rows = []
    for line in dpkg_query_out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("ii"):
            rows.append("%s %s" % (parts[1], parts[2]))
    return "".join(r + "\n" for r in sorted(rows))


def sha256sums_text(sums):
    """SHA256SUMS in the format of sha256sum(1) (two spaces, sorted by file name): `sha256sum -c` reads it."""
    return "".join("%s  %s\n" % (sums[name], name) for name in sorted(sums))


def parse_sha256sums(text):
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(None, 1)
            sums[name.lstrip("*").strip()] = digest
    return sums


def manifest(name, version, rec_hash, rec, kernel_version, built_at, files, build_seconds=None, initramfs=None):
    """The manifest.json document. files: {file: {"size": apparent bytes, "used_bytes": …, "sha256": …}}."""
    doc = {
        "format": 1,
        "name": name,
        "version": str(version),
        "recipe_hash": rec_hash,
        "kernel_version": kernel_version,
        "built_at": built_at,
        "label": rec["label"],
        "size_bytes": rec["size_bytes"],
        "suite": rec["suite"],
        "packages": rec["packages"],
        "files": {k: files[k] for k in sorted(files)},
    }
    if build_seconds is not None:
        doc["build_seconds"] = round(build_seconds, 1)
    if initramfs is not None:
        doc["initramfs"] = initramfs
    return doc


def manifest_text(doc):
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def refusal(name, version):
    return ("image %s v%s exists with another recipe; bump cluster_images.%s.version (or force=true to rebuild it)"
            % (name, version, name))


# --- file helpers (I/O) ---------------------------------------------------------------------------------

def file_sha256(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def write_tree(root, files):
    """Write pre_files()/post_files() entries below root (parents first: sorted paths)."""
    for path in sorted(files):
        mode, content = files[path]
        dest = os.path.join(root, path.lstrip("/"))
        if mode is None:
            if os.path.lexists(dest):
                os.unlink(dest)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.symlink(content, dest)
        elif content is None:
            os.makedirs(dest, exist_ok=True)
            os.chmod(dest, mode)
        else:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.lexists(dest):
                os.unlink(dest)
            with open(dest, "w") as f:
                f.write(content)
            os.chmod(dest, mode)


# --- initramfs inspection (newc cpio, optionally compressed; concatenated archives) ---------------------

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
CPIO_MAGIC = (b"070701", b"070702")


def cpio_entries(data, offset=0):
    """Yield (name, content, end offset) of a newc cpio archive at data[offset:] until TRAILER!!!."""
    pos = offset
    while pos + 110 <= len(data):
        if data[pos:pos + 6] not in CPIO_MAGIC:
            raise ValueError("not a newc cpio archive at offset %d" % pos)
        namesize = int(data[pos + 94:pos + 102], 16)
        filesize = int(data[pos + 54:pos + 62], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode("utf-8", "replace")
        pos = (pos + 110 + namesize + 3) & ~3
        content = data[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            yield None, None, pos
            return
        yield name, content, pos


def split_initramfs(data):
    """Split an initramfs image into (uncompressed cpio segments, compressed tail or None, kind of tail)."""
    pos = 0
    while pos < len(data) and data[pos:pos + 6] in CPIO_MAGIC:
        for name, _content, end in cpio_entries(data, pos):
            if name is None:
                pos = end
        while pos < len(data) and data[pos:pos + 1] == b"\0":
            pos += 1
    tail = data[pos:]
    if not tail:
        return data[:pos], None, None
    if tail.startswith(ZSTD_MAGIC):
        return data[:pos], tail, "zstd"
    if tail.startswith(GZIP_MAGIC):
        return data[:pos], tail, "gzip"
    raise ValueError("unknown initramfs compression (magic %r)" % tail[:4])


def list_cpio(data):
    """{name: content} of every archive concatenated in data (uncompressed)."""
    out = {}
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"\0":
            pos += 1
            continue
        for name, content, end in cpio_entries(data, pos):
            pos = end
            if name is not None:
                out[name] = content
    return out


def gunzip(data):
    return gzip.decompress(data)


def check_initramfs(entries):
    """Facts and problems of an initramfs file listing {name: content}. Returns (facts, problems)."""
    names = list(entries)
    problems = []
    found = {}
    for want in INITRAMFS_REQUIRED:
        hits = sorted(n for n in names if n == want or n.endswith("/" + want))
        if hits:
            found[want] = hits[0]
        else:
            problems.append("initramfs lacks %s" % want)
    builtin = set()
    for n in names:
        if n.endswith("/modules.builtin"):
            for line in entries[n].decode("utf-8", "replace").splitlines():
                builtin.add(os.path.basename(line.strip())[:-len(".ko")].replace("_", "-"))
    for mod in INITRAMFS_REQUIRED_MODULES:
        variants = {mod + ".ko", mod.replace("-", "_") + ".ko"}
        hits = sorted(n for n in names if os.path.basename(n) in variants)
        if hits:
            found[mod] = hits[0]
        elif mod.replace("_", "-") in builtin:
            found[mod] = "(built in)"
        else:
            problems.append("initramfs lacks the module %s" % mod)
    script = None
    for n in names:
        if n == "scripts/diskless" or n.endswith("/scripts/diskless"):
            script = entries[n].decode("utf-8", "replace")
    if script is not None and "mountroot()" not in script:
        problems.append("scripts/diskless does not define mountroot()")
    for n in names:
        if n.endswith("etc/mdadm/mdadm.conf"):
            if not any(line.strip() == "AUTO -all" for line in entries[n].decode("utf-8", "replace").splitlines()):
                problems.append("initramfs mdadm.conf lacks 'AUTO -all' (md would auto-assemble)")
    for unwanted in INITRAMFS_FORBIDDEN:
        hits = sorted(n for n in names if n == unwanted or n.endswith("/" + unwanted))
        if hits:
            problems.append("initramfs carries %s (cryptsetup-initramfs or clevis-initramfs installed?): "
                            "scripts/diskless unlocks a LUKS root itself" % hits[0])
    baked = [n for n in names if n.rstrip("/").endswith(INITRAMFS_NODE_CONF)]
    if baked:
        problems.append("initramfs carries a baked %s (must only come from iPXE)" % baked[0])
    iname = None
    for n in names:
        if n.endswith("etc/initiatorname.iscsi"):
            for line in entries[n].decode("utf-8", "replace").splitlines():
                if line.startswith("InitiatorName="):
                    iname = line.split("=", 1)[1].strip()
    if iname:
        problems.append("initramfs carries a fixed InitiatorName=%s" % iname)
    facts = {
        "files": len(names),
        "found": found,
        "boot_script": "scripts/diskless" if script is not None else "",
        "initiator_name_fallback": iname or "",
    }
    return facts, problems
