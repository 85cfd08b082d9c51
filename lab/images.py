"""Lab VM images: a recipe (lab/images/NAME.toml + the hooks and files it names), its cache key, and the
build into $DL_CACHE/images/NAME-HASH/ (or $DL_IMAGE_CACHE): mmdebstrap into a directory and mkfs.ext4 of a
sparse disk.raw through the collection's image builder (plugins/module_utils/image.py, which also builds the
compute nodes' bundles), the lab's checks, vmlinuz + initrd.img."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from ansible_collections.diskless.cluster.plugins.module_utils import image as builder

from lab.paths import IMAGES_SRC, REPO, Paths
from lab.ssh import ensure_ssh_keys
from lab.util import die, flock, log, parse_size, require_root, run, tail

# Bump when the way a recipe is turned into an image changes (not the recipe itself: that is hashed).
IMAGE_BUILDER_VERSION = 1
# dpkg filters of a lab image (no docs, man pages, locales; copyright files stay)
DPKG_OPTIONS = tuple(f"path-exclude={pattern}" for pattern in (
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*", "/usr/share/lintian/*")) \
    + ("path-include=/usr/share/doc/*/copyright",)
# mkfs.ext4 -m: what mke2fs reserves for root by default (the node bundles reserve 1 %)
RESERVED_PERCENT = 5


@dataclasses.dataclass
class Recipe:
    name: str
    path: Path
    data: dict[str, Any]
    hooks: list[Path]
    files: dict[str, Path]

    @classmethod
    def load(cls, name: str) -> "Recipe":
        path = IMAGES_SRC / f"{name}.toml"
        if not path.is_file():
            known = ", ".join(sorted(x.stem for x in IMAGES_SRC.glob("*.toml"))) or "none"
            die(f"no image recipe {name!r} (lab/images/{name}.toml); known images: {known}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            die(f"image recipe {path}: {exc}")
        errors = []
        for key, kind in (("suite", str), ("mirror", str), ("components", list), ("packages", list),
                          ("disk_size", str)):
            if not isinstance(data.get(key), kind):
                errors.append(f"{key}: required ({kind.__name__})")
        hooks = [IMAGES_SRC / h for h in data.get("hooks", [])]
        files = {dst: IMAGES_SRC / src for dst, src in data.get("files", {}).items()}
        for f in [*hooks, *files.values()]:
            if not f.is_file():
                errors.append(f"{f.relative_to(REPO)}: missing")
        for dst in files:
            if not dst.startswith("/"):
                errors.append(f"files: {dst!r}: must be an absolute path in the image")
        if errors:
            die(f"image recipe {path.relative_to(REPO)}:\n" + "\n".join("    " + e for e in errors))
        return cls(name, path, data, hooks, files)

    def cache_key(self, p: Paths) -> str:
        """sha256 over the recipe, every hook and file it names, and the lab SSH public keys."""
        h = hashlib.sha256()

        def add(label: str, blob: bytes) -> None:
            h.update(f"{label}\0{len(blob)}\0".encode())
            h.update(blob)

        add("builder", str(IMAGE_BUILDER_VERSION).encode())
        add("recipe", json.dumps(self.data, sort_keys=True).encode())
        for f in self.hooks:
            add(f"hook:{f.relative_to(IMAGES_SRC)}", f.read_bytes())
        for dst, src in sorted(self.files.items()):
            add(f"file:{dst}", src.read_bytes())
        add("authorized_key", p.ssh_key.with_suffix(".pub").read_bytes())
        add("host_key", p.host_key.read_bytes())
        return h.hexdigest()


@dataclasses.dataclass
class Image:
    name: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.dir / "disk.raw"


def image_dir(p: Paths, recipe: Recipe) -> Path:
    return p.images / f"{recipe.name}-{recipe.cache_key(p)[:16]}"


def build_image(p: Paths, name: str, force: bool = False) -> tuple[Image, bool]:
    """Return the cached image for the current recipe, building it first if needed. (image, built?)"""
    ensure_ssh_keys(p)
    recipe = Recipe.load(name)
    out = image_dir(p, recipe)
    with flock(p.images / f".{name}.lock", f"build of image {name}"):
        if (out / "manifest.json").is_file() and not force:
            return Image(name, out, json.loads((out / "manifest.json").read_text())), False
        require_root()
        for tool in ("mmdebstrap", "mkfs.ext4"):
            if not shutil.which(tool):
                die(f"image build failed: {tool} not found (run hack/bootstrap.sh)")
        t0 = time.monotonic()
        work = p.images / f".build-{out.name}"
        rootfs = work / "rootfs"
        blog = p.images / f"{out.name}.build.log"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        log(f"building image {name} -> {out} (mmdebstrap + DKMS: several minutes; log: {blog})")
        try:
            _mmdebstrap(p, recipe, rootfs, blog)
            manifest = _assemble(recipe, rootfs, work, out.name)
        finally:
            if rootfs.exists():
                shutil.rmtree(rootfs, ignore_errors=True)
        manifest["build_seconds"] = round(time.monotonic() - t0, 1)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
        log(f"image {name} built in {manifest['build_seconds']:.0f} s "
            f"(kernel {manifest['kernel_version']}, {len(manifest['packages'])} packages)")
        return Image(name, out, manifest), True


def _mmdebstrap(p: Paths, recipe: Recipe, rootfs: Path, blog: Path) -> None:
    d = recipe.data
    # Baked files and the lab keys first, then the recipe's hooks (in order).
    installs = [(src, dst, "0644") for dst, src in sorted(recipe.files.items())]
    installs += [
        (p.ssh_key.with_suffix(".pub"), "/root/.ssh/authorized_keys", "0600"),
        (p.host_key, "/etc/ssh/ssh_host_ed25519_key", "0600"),
        (p.host_key.with_suffix(".pub"), "/etc/ssh/ssh_host_ed25519_key.pub", "0644"),
    ]
    hooks = [("customize", f"install -D -m {mode} {shlex.quote(str(src))} \"$1\"{shlex.quote(dst)}")
             for src, dst, mode in installs]
    hooks.append(("customize", 'chmod 0700 "$1/root/.ssh"'))
    hooks += [("customize", f'bash {shlex.quote(str(hook))} "$1"') for hook in recipe.hooks]
    argv = builder.bootstrap_argv("mmdebstrap", d["suite"], str(rootfs), d["mirror"], d.get("variant", "minbase"),
                                  d["components"], d["packages"], apt_options=builder.APT_OPTIONS,
                                  dpkg_options=DPKG_OPTIONS, hooks=hooks)
    with open(blog, "w") as fh:
        fh.write("# " + shlex.join(argv) + "\n")
        fh.flush()
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              check=False)
    if proc.returncode != 0:
        die(f"image build failed: mmdebstrap exited {proc.returncode}; last lines of {blog}:\n"
            f"{tail(blog, 30)}\n  Check that {d['mirror']} is reachable and the recipe's packages exist "
            f"in {d['suite']} ({'/'.join(d['components'])}); then rerun `hack/lab.sh build-image {recipe.name}`.")


def _assemble(recipe: Recipe, rootfs: Path, work: Path, build_id: str) -> dict[str, Any]:
    """rootfs -> vmlinuz + initrd.img + sparse ext4 disk.raw, with build-time checks."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        die(f"image build failed: expected exactly one kernel in the image, found "
            f"{[k.name for k in kernels]}; the recipe must install one linux-image package")
    kver = kernels[0].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{kver}"
    if not initrd.is_file():
        die(f"image build failed: no initrd for kernel {kver} (is initramfs-tools in the recipe?)")
    moddir = rootfs / "lib" / "modules" / kver
    known = set()
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod = line.split(":", 1)[0].rsplit("/", 1)[-1]
        known.add(re.sub(r"\.ko(\.[a-z]+)?$", "", mod).replace("-", "_"))
    builtin = moddir / "modules.builtin"
    if builtin.exists():
        for line in builtin.read_text().splitlines():
            known.add(line.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_"))
    missing = [m for m in recipe.data.get("checks", {}).get("kernel_modules", [])
               if m.replace("-", "_") not in known]
    if missing:
        die(f"image build failed: kernel {kver} of the image has no module(s) {', '.join(missing)} "
            f"(for DKMS modules see the dkms hook's output in the build log)")
    pkgs = run(["chroot", str(rootfs), "dpkg-query", "-W", "-f=${Package}\t${Version}\n"],
               what="listing the image's packages", capture=True).stdout.splitlines()
    shutil.copy2(kernels[0], work / "vmlinuz")
    shutil.copy2(initrd, work / "initrd.img")
    disk = work / "disk.raw"
    size = parse_size(recipe.data["disk_size"], f"{recipe.name}: disk_size")
    with open(disk, "wb") as fh:
        fh.truncate(size)
    run(builder.mkfs_argv("mkfs.ext4", f"dl-{recipe.name}"[:16], str(rootfs), str(disk), RESERVED_PERCENT),
        what=f"image build failed: mkfs.ext4 of {recipe.name} (disk_size {recipe.data['disk_size']} "
             "too small for the tree?)", capture=True)
    return {
        "name": recipe.name,
        "build_id": build_id,
        "recipe": recipe.data,
        "kernel_version": kver,
        "packages": dict(line.split("\t", 1) for line in pkgs),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
