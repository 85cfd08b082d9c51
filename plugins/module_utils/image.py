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
RECIPE_FORMAT = 2

BUNDLE_FILES = ("vmlinuz", "initrd.img", "root.img", "packages.txt", "manifest.json")

# Packages of every compute-node image (minbase + these, no Recommends).
BASE_PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "dbus", "initramfs-tools", "zstd", "kmod",
    "open-iscsi",
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

# Modules the initramfs needs besides MODULES=netboot (base filesystems + every network driver) and what
# open-iscsi's hook adds (iscsi_tcp, libiscsi, scsi_transport_iscsi, iscsi_ibft, crc32c):
# the SCSI disk driver for the LUN and the virtio block/SCSI drivers for local disks and the lab.
INITRAMFS_MODULES = ("sd_mod", "virtio_blk", "virtio_scsi", "virtio_net", "af_packet")

# What the built initramfs must contain (suffix match on the archive paths).
INITRAMFS_REQUIRED = (
    "scripts/local-top/iscsi",
    "sbin/iscsistart",
    "/iscsi_tcp.ko",
    "/sd_mod.ko",
    "/virtio_net.ko",
    "/virtio_blk.ko",
    "/ext4.ko",
)
INITRAMFS_SOURCE_LINE = ". /etc/iscsi.initramfs"

INITIATORNAME_PLACEHOLDER = (
    "## diskless.cluster: intentionally empty. A node's initiator name comes from ISCSI_INITIATOR in the\n"
    "## /etc/iscsi.initramfs that iPXE injects into the initramfs; diskless-initiatorname.service copies the\n"
    "## name of the root session here at boot. No image carries a fixed IQN.\n"
    "InitiatorName=\n"
)

INITIATORNAME_SCRIPT = r"""#!/bin/sh
# diskless.cluster: write the initiator name of the iSCSI root session (set by the initramfs from the
# per-node /etc/iscsi.initramfs) into /etc/iscsi/initiatorname.iscsi, so iscsid uses the node's own IQN.
set -eu
for f in /sys/class/iscsi_session/session*/initiatorname; do
    [ -r "$f" ] || continue
    name=$(cat "$f")
    [ -n "$name" ] || continue
    printf '## diskless.cluster: from the iSCSI root session at boot\nInitiatorName=%s\n' "$name" \
        > /etc/iscsi/initiatorname.iscsi.new
    mv /etc/iscsi/initiatorname.iscsi.new /etc/iscsi/initiatorname.iscsi
    exit 0
done
echo "diskless-initiatorname: no iSCSI session (local root?); initiator name left as is"
"""

INITIATORNAME_UNIT = """[Unit]
Description=diskless.cluster: initiator name from the iSCSI root session
DefaultDependencies=no
After=systemd-remount-fs.service
Before=iscsid.socket iscsid.service open-iscsi.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/diskless-cluster/initiatorname

[Install]
WantedBy=sysinit.target
"""

SSH_HOSTKEYS_DROPIN = """# diskless.cluster: the image carries no host keys; every node makes its own on first boot.
[Service]
ExecStartPre=
ExecStartPre=/usr/lib/diskless-cluster/ssh-hostkeys
ExecStartPre=/usr/sbin/sshd -t
"""

# ed25519 + ecdsa only: an RSA key costs ~1 min of a node's first boot under emulation (and seconds on metal).
SSH_HOSTKEYS_SCRIPT = """#!/bin/sh
# diskless.cluster: make this node's SSH host keys if it has none (the image carries none).
set -eu
for t in ed25519 ecdsa; do
    [ -s /etc/ssh/ssh_host_${t}_key ] || ssh-keygen -q -t "$t" -N '' -f /etc/ssh/ssh_host_${t}_key
done
"""

SSHD_CONF = """# diskless.cluster: root by SSH key only; host keys made per node at first boot.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

NETWORK_README = """diskless.cluster compute image: NOTHING here configures the boot NIC, on purpose.

The initramfs sets the node's address from the kernel argument ip=... (BOOTIF= picks the NIC) and
logs into the iSCSI root over it. Any network manager that "brings up" that link after switch_root
(ifupdown, systemd-networkd, NetworkManager) may flush the address and the root disk with it.
ifupdown/NetworkManager are not installed; systemd-networkd is masked. To manage OTHER NICs, unmask
networkd and match only those links (never the boot NIC), or use KeepConfiguration=yes.
"""

# Units masked in every image (symlink to /dev/null).
MASKED_UNITS = (
    "systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service",
    "apt-daily.timer", "apt-daily-upgrade.timer",
)


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
    """Files written into the root after every package is installed.

    path -> (mode, content); content None = directory; mode None = symlink with content as target.
    """
    files = {
        "/etc/fstab": (0o644, "# diskless.cluster: the root comes from the initramfs (iSCSI LUN or md/LUKS on it)\n"
                              "LABEL=%s / ext4 defaults,noatime 0 1\n" % label),
        "/etc/hosts": (0o644, "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"),
        "/etc/ssh/sshd_config.d/50-diskless-cluster.conf": (0o644, SSHD_CONF),
        "/etc/systemd/system/ssh.service.d": (0o755, None),
        "/etc/systemd/system/ssh.service.d/50-diskless-hostkeys.conf": (0o644, SSH_HOSTKEYS_DROPIN),
        "/usr/lib/diskless-cluster": (0o755, None),
        "/usr/lib/diskless-cluster/initiatorname": (0o755, INITIATORNAME_SCRIPT),
        "/usr/lib/diskless-cluster/ssh-hostkeys": (0o755, SSH_HOSTKEYS_SCRIPT),
        "/usr/lib/diskless-cluster/README.network": (0o644, NETWORK_README),
        "/etc/systemd/system/diskless-initiatorname.service": (0o644, INITIATORNAME_UNIT),
        "/etc/systemd/system/sysinit.target.wants": (0o755, None),
        "/etc/systemd/system/sysinit.target.wants/diskless-initiatorname.service": (
            None, "/etc/systemd/system/diskless-initiatorname.service"),
        "/root/.ssh": (0o700, None),
        "/root/.ssh/authorized_keys": (0o600, "".join(k.strip() + "\n" for k in authorized_keys if k.strip())),
    }
    for unit in MASKED_UNITS:
        files["/etc/systemd/system/%s" % unit] = (None, "/dev/null")
    return files


# Removed from the root after the build: per-machine identity must be made on each node.
REMOVE_PATHS = (
    "/etc/hostname", "/etc/resolv.conf", "/var/lib/dbus/machine-id",
    "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub",
    "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ecdsa_key.pub",
    "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/iscsi/iscsi.initramfs",
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
           components=("main",), arch="amd64"):
    """The canonical recipe of an image: everything that changes its bytes (not the name/version/mirror)."""
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
        "label": label,
        "size_bytes": int(size_bytes),
    }


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


def mmdebstrap_argv(mmdebstrap, rec, rootdir, mirror, pre_dir):
    """argv of the one mmdebstrap run: directory output, root mode, minbase + packages, pre files synced in."""
    return bootstrap_argv(mmdebstrap, rec["suite"], rootdir, mirror, rec["variant"], rec["components"],
                          rec["packages"], apt_options=rec["apt_options"], dpkg_options=rec["dpkg_options"],
                          architecture=rec["architecture"],
                          hooks=[("essential", "sync-in %s /" % shlex.quote(pre_dir))])


def mkfs_argv(mkfs, label, rootdir, image, reserved_percent=1):
    """argv of mkfs.ext4 populating an existing sparse file from the root directory (no loop device, no mount);
    ``reserved_percent``: the blocks reserved for root (mke2fs -m; its own default is 5)."""
    return [mkfs, "-q", "-F", "-t", "ext4", "-L", label, "-m", str(reserved_percent), "-d", rootdir, image]


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
        hits = sorted(n for n in names if n.endswith(want) or n == want.lstrip("/"))
        if hits:
            found[want] = hits[0]
        else:
            problems.append("initramfs lacks %s" % want)
    script = None
    for n in names:
        if n.endswith("scripts/local-top/iscsi"):
            script = entries[n].decode("utf-8", "replace")
    sources = bool(script) and any(line.strip().startswith(INITRAMFS_SOURCE_LINE) or
                                   ("&& " + INITRAMFS_SOURCE_LINE) in line for line in script.splitlines())
    if script is not None and not sources:
        problems.append("scripts/local-top/iscsi does not source /etc/iscsi.initramfs")
    baked = [n for n in names if n.rstrip("/").endswith("etc/iscsi.initramfs")]
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
        "sources_iscsi_initramfs": sources,
        "initiator_name_fallback": iname or "",
    }
    return facts, problems
