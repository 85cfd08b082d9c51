#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_bundle
short_description: Build one versioned compute-node image bundle (kernel, initrd, root image) with mmdebstrap
version_added: 0.1.0
description:
  - Builds B(one) compute-node image bundle on the build host into C(<output_dir>/<name>/<version>/) with
    C(vmlinuz), C(initrd.img), C(root.img) (sparse ext4 made by C(mkfs.ext4 -d), label and size from the plan;
    the file system is 4 MiB smaller than the file, room for the md metadata 1.0 of a C(mirror) node),
    C(root.squashfs) (the same tree, zstd, for C(live) nodes), C(packages.txt) (C(name version) lines),
    C(manifest.json) and C(SHA256SUMS) (one line per file, the format of C(sha256sum)).
  - The root is a Debian O(suite) C(minbase) made by C(mmdebstrap) without Recommends, documentation, man pages
    or locales, with the kernel, systemd, udev, initramfs-tools, open-iscsi, mdadm, multipath-tools, dmsetup,
    busybox, openssh-server, python3, iproute2, procps, chrony, rsyslog, kmod and O(extra_packages).
  - O(node_files) (the collection's C(roles/image_builder/files/node/) tree) is synced into the root once every
    package is installed, then the initramfs is generated again. Its C(hooks/diskless) and C(scripts/diskless)
    (initramfs-tools C(boot=diskless)) log into the node's iSCSI paths and assemble the root of its mode
    (C(iscsi), C(mirror), C(image), C(live)) from the per-node C(/etc/diskless/node.conf) that iPXE injects at
    boot. The image carries B(no) initiator name, no C(/etc/diskless/node.conf), no SSH host keys, no machine
    id and no host name. The build fails if the initramfs lacks any of these pieces.
  - Nothing in the image configures the boot NIC (no ifupdown, NetworkManager; systemd-networkd masked), so
    the address the initramfs set from the kernel argument C(ip=) is never flushed after C(switch_root).
  - Idempotent through a recipe hash (everything that changes the image bytes, not O(mirror)). A bundle with
    the same hash is left alone; a bundle with another hash is refused with one line unless O(force=true).
  - The bundle is assembled in a temporary directory next to it and renamed into place, so an interrupted
    build never leaves a partial bundle (only a C(.build-*) directory to delete).
author:
  - diskless.cluster developers (!UNKNOWN)
requirements:
  - mmdebstrap (1.x), e2fsprogs (mkfs.ext4 with C(-d)), squashfs-tools (mksquashfs with zstd), dpkg-query and
    zstd on the build host, run as root.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the existing manifest only; reports whether the bundle would be built.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  name:
    description:
      - Image name (key of C(cluster_plan.images)).
    type: str
    required: true
  version:
    description:
      - Image version; the bundle directory is C(<output_dir>/<name>/<version>).
    type: str
    required: true
  size_bytes:
    description:
      - Apparent size of C(root.img) in bytes (the file is sparse).
    type: int
    required: true
  label:
    description:
      - ext4 label of the root file system; C(/etc/fstab) mounts C(LABEL=<label>) on C(/).
    type: str
    required: true
  output_dir:
    description:
      - Directory holding the bundles.
    type: path
    default: /var/lib/diskless/images
  suite:
    description:
      - Debian suite.
    type: str
    default: bookworm
  mirror:
    description:
      - Debian mirror URL. Not part of the recipe hash.
    type: str
    default: http://deb.debian.org/debian
  extra_packages:
    description:
      - Packages installed on top of the built-in list.
      - Packages that manage network interfaces (ifupdown, network-manager, ...) are refused.
    type: list
    elements: str
    default: []
  authorized_keys:
    description:
      - SSH public keys of C(root) (C(/root/.ssh/authorized_keys)). Root has no password; SSH is key only.
    type: list
    elements: str
    default: []
  node_files:
    description:
      - Directory on the build host with the files of the booted node and of its initramfs, mirroring their
        paths in the image (only below C(etc/) and C(usr/); regular files). The role copies the collection's
        C(roles/image_builder/files/node/) there.
      - Part of the recipe hash (relative path, mode - 0755 when executable, else 0644 - and sha256 of every file).
    type: path
    required: true
  force:
    description:
      - Rebuild and replace an existing bundle whose recipe differs (or is unreadable).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Build the image of the plan
  diskless.cluster.image_bundle:
    name: debian12
    version: "1"
    size_bytes: 2147483648
    label: dlroot
    node_files: /var/tmp/diskless-node-files
    authorized_keys:
      - "{{ lookup('ansible.builtin.file', 'files/admin.pub') }}"

- name: Build into a cache directory with a local mirror
  diskless.cluster.image_bundle:
    name: "{{ item.name }}"
    version: "{{ item.version }}"
    size_bytes: "{{ item.size_bytes }}"
    label: "{{ item.label }}"
    output_dir: /srv/images
    node_files: /var/tmp/diskless-node-files
    mirror: http://mirror.example.org/debian
    extra_packages: [mdadm, cryptsetup-initramfs]
  loop: "{{ cluster_plan.images | dict2items | map(attribute='value') }}"
"""

RETURN = r"""
bundle_dir:
  description: Directory of the bundle.
  returned: always
  type: str
  sample: /var/lib/diskless/images/debian12/1
action:
  description: V(built), V(exists) (same recipe, nothing done) or V(would_build) (check mode).
  returned: always
  type: str
  sample: exists
recipe_hash:
  description: sha256 of the canonical recipe.
  returned: always
  type: str
  sample: 3f1c0e5b8a...
manifest:
  description: Content of C(manifest.json) (empty in check mode when nothing is built).
  returned: always
  type: dict
  sample:
    name: debian12
    version: "1"
    recipe_hash: 3f1c0e5b8a...
    kernel_version: 6.1.0-41-amd64
    built_at: "2026-11-01T10:00:00Z"
    files:
      root.img: {size: 2147483648, used_bytes: 612368384, sha256: "..."}
build_seconds:
  description: Wall-clock time of the build.
  returned: when built
  type: float
  sample: 201.4
"""

import datetime
import json
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.diskless.cluster.plugins.module_utils import image as img
from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail


def read_manifest(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Builder:
    def __init__(self, module, rec, rec_hash):
        self.module = module
        self.p = module.params
        self.rec = rec
        self.rec_hash = rec_hash
        self.run = Runner(module)

    def build(self, bundle_dir):
        p = self.p
        started = time.time()
        parent = os.path.dirname(bundle_dir)
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".build-%s-" % p["version"], dir=parent)
        try:
            rootdir = os.path.join(work, "rootfs")
            pre_dir = os.path.join(work, "pre")
            stage = os.path.join(work, "bundle")
            node_dir = os.path.join(work, "node")
            os.makedirs(pre_dir)
            os.makedirs(stage)
            os.makedirs(node_dir)
            img.write_tree(pre_dir, img.pre_files())
            img.node_files_stage(p["node_files"], node_dir)
            if img.node_files_manifest(node_dir) != self.rec["node_files"]:
                raise BuildError("node_files changed during the build (%s)" % p["node_files"])
            mmdebstrap = self.module.get_bin_path("mmdebstrap", required=True)
            self.run(img.mmdebstrap_argv(mmdebstrap, self.rec, rootdir, p["mirror"], pre_dir, node_dir), "mmdebstrap")
            img.write_tree(rootdir, img.post_files(p["label"], p["authorized_keys"]))
            for path in img.REMOVE_PATHS:
                full = os.path.join(rootdir, path.lstrip("/"))
                if os.path.lexists(full):
                    os.unlink(full)
            for path in img.TRUNCATE_PATHS:
                with open(os.path.join(rootdir, path.lstrip("/")), "w"):
                    pass
            kver = self.kernel(rootdir, stage)
            initramfs = self.check_initramfs(os.path.join(stage, "initrd.img"), work)
            dpkg_query = self.module.get_bin_path("dpkg-query", required=True)
            pkgs = img.packages_txt(self.run(img.dpkg_query_argv(dpkg_query, rootdir), "dpkg-query"))
            bad = img.forbidden(line.split()[0] for line in pkgs.splitlines())
            if bad:
                raise BuildError("the image pulled in %s, which would manage the boot NIC" % ", ".join(bad))
            with open(os.path.join(stage, "packages.txt"), "w") as f:
                f.write(pkgs)
            root_img = os.path.join(stage, "root.img")
            with open(root_img, "wb") as f:
                f.truncate(self.rec["size_bytes"])
            mkfs = self.module.get_bin_path("mkfs.ext4", required=True)
            self.run(img.mkfs_argv(mkfs, p["label"], rootdir, root_img, fs_size=self.rec["fs_bytes"]), "mkfs.ext4")
            mksquashfs = self.module.get_bin_path("mksquashfs", required=True)
            self.run(img.squashfs_argv(mksquashfs, rootdir, os.path.join(stage, "root.squashfs")), "mksquashfs")
            shutil.rmtree(rootdir)
            files, sums = {}, {}
            for name in ("vmlinuz", "initrd.img", "root.img", "root.squashfs", "packages.txt"):
                path = os.path.join(stage, name)
                st = os.stat(path)
                sums[name] = img.file_sha256(path)
                files[name] = {"size": st.st_size, "used_bytes": st.st_blocks * 512, "sha256": sums[name]}
            elapsed = time.time() - started
            doc = img.manifest(p["name"], p["version"], self.rec_hash, self.rec, kver,
                               datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                               files, build_seconds=elapsed, initramfs=initramfs)
            with open(os.path.join(stage, "manifest.json"), "w") as f:
                f.write(img.manifest_text(doc))
            sums["manifest.json"] = img.file_sha256(os.path.join(stage, "manifest.json"))
            with open(os.path.join(stage, "SHA256SUMS"), "w") as f:
                f.write(img.sha256sums_text(sums))
            self.replace(stage, bundle_dir, work)
            return doc, elapsed
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def kernel(self, rootdir, stage):
        boot = os.path.join(rootdir, "boot")
        kernels = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-"))
        if len(kernels) != 1:
            raise BuildError("expected one kernel in /boot, found %s" % (kernels or "none"))
        kver = kernels[0][len("vmlinuz-"):]
        initrd = os.path.join(boot, "initrd.img-%s" % kver)
        if not os.path.exists(initrd):
            raise BuildError("no initramfs for kernel %s" % kver)
        shutil.copyfile(os.path.join(boot, kernels[0]), os.path.join(stage, "vmlinuz"))
        shutil.copyfile(initrd, os.path.join(stage, "initrd.img"))
        return kver

    def check_initramfs(self, initrd, work):
        with open(initrd, "rb") as f:
            data = f.read()
        head, tail, kind = img.split_initramfs(data)
        if kind == "zstd":
            packed = os.path.join(work, "initrd.zst")
            with open(packed, "wb") as f:
                f.write(tail)
            zstd = self.module.get_bin_path("zstd", required=True)
            self.run([zstd, "-q", "-d", "-f", packed, "-o", packed + ".cpio"], "zstd -d")
            with open(packed + ".cpio", "rb") as f:
                tail = f.read()
        elif kind == "gzip":
            tail = img.gunzip(tail)
        entries = img.list_cpio(head)
        entries.update(img.list_cpio(tail or b""))
        facts, problems = img.check_initramfs(entries)
        if problems:
            raise BuildError("initramfs check failed: " + "; ".join(problems))
        facts["compression"] = kind or "none"
        return facts

    def replace(self, stage, bundle_dir, work):
        if os.path.lexists(bundle_dir):
            old = os.path.join(work, "old")
            os.rename(bundle_dir, old)
        os.rename(stage, bundle_dir)


class BuildError(Exception):
    pass


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str", required=True),
            size_bytes=dict(type="int", required=True),
            label=dict(type="str", required=True),
            output_dir=dict(type="path", default="/var/lib/diskless/images"),
            suite=dict(type="str", default="bookworm"),
            mirror=dict(type="str", default="http://deb.debian.org/debian"),
            extra_packages=dict(type="list", elements="str", default=[]),
            authorized_keys=dict(type="list", elements="str", default=[], no_log=False),
            node_files=dict(type="path", required=True),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    bad = img.forbidden(p["extra_packages"])
    if bad:
        module.fail_json(msg="extra_packages: %s would manage the boot NIC and flush the iSCSI root's address"
                         % ", ".join(bad))
    if p["size_bytes"] <= 2 * img.MD_TAIL_BYTES - 1:
        module.fail_json(msg="size_bytes: must be at least %d (the file system leaves the last %d bytes to md)"
                         % (2 * img.MD_TAIL_BYTES, img.MD_TAIL_BYTES))
    if not os.path.isdir(p["node_files"]):
        module.fail_json(msg="node_files: %s is not a directory" % p["node_files"])
    try:
        node_files = img.node_files_manifest(p["node_files"])
    except (OSError, ValueError) as e:
        module.fail_json(msg=str(e))
    rec = img.recipe(p["suite"], p["size_bytes"], p["label"], p["extra_packages"], p["authorized_keys"],
                     node_files=node_files)
    rec_hash = img.recipe_hash(rec)
    bundle_dir = os.path.join(p["output_dir"], p["name"], p["version"])
    result = dict(changed=False, bundle_dir=bundle_dir, recipe_hash=rec_hash, manifest={})

    if os.path.lexists(bundle_dir):
        existing = read_manifest(os.path.join(bundle_dir, "manifest.json"))
        if existing is not None and existing.get("recipe_hash") == rec_hash:
            result.update(action="exists", manifest=existing)
            module.exit_json(**result)
        if not p["force"]:
            module.fail_json(msg=img.refusal(p["name"], p["version"]), **result)

    if module.check_mode:
        result.update(action="would_build", changed=True)
        module.exit_json(**result)

    try:
        doc, elapsed = Builder(module, rec, rec_hash).build(bundle_dir)
    except CommandError as e:
        e.args = ("image %s v%s: %s" % (p["name"], p["version"], e),)
        fail(module, e, **result)
    except (BuildError, OSError, ValueError) as e:
        module.fail_json(msg="image %s v%s: %s" % (p["name"], p["version"], e), **result)
    result.update(action="built", build_seconds=round(elapsed, 1), changed=True, manifest=doc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
