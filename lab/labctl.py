#!/usr/bin/env python
"""labctl — the diskless.cluster lab: QEMU VMs on a private bridge in a network namespace.

The lab supplies the machines of an ordinary cluster inventory (inventories/lab): every inventory host
becomes a VM whose lab-only parameters are the host's `lab_*` variables. Nothing leaves the machine:
the namespace has one bridge, one tap per VM and no uplink or route out.

    labctl.py build-image [NAME...] [--force]   build (or reuse) cached VM images
    labctl.py up [HOST...]                      network + containers + VMs, wait until each VM answers SSH
    labctl.py down [HOST...]                    stop everything (safe to repeat, and after a crash),
                                                or only the named VMs (power off; the lab stays up)
    labctl.py restart HOST... [--boot MODE]     power-cycle VMs keeping their disks, optionally booting
                                                another way (`--boot disk`: through the BIOS from the
                                                first lab disk, e.g. after an A/B first install)
    labctl.py status                            what runs, and whether SSH answers
    labctl.py ssh HOST [-- CMD...]              SSH into a lab VM (from anywhere, as root)
    labctl.py exec -- CMD...                    run CMD inside the lab namespace
    labctl.py console HOST                      print a VM's serial console log

Standard library only; runs as root. Caches live under $DL_CACHE (default ~/.cache/diskless-cluster):
images in images/<name>-<hash>/ (or $DL_IMAGE_CACHE: a second lab reuses the first one's images), the lab's SSH keys in lab/ssh/, run state in lab/run/, serial
console logs in lab/logs/. See docs/lab.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

REPO = Path(__file__).resolve().parent.parent
IMAGES_SRC = REPO / "lab" / "images"
DEFAULT_INVENTORY = REPO / "inventories" / "lab"

# Bump when the way a recipe is turned into an image changes (not the recipe itself: that is hashed).
IMAGE_BUILDER_VERSION = 1

DEFAULTS = {
    "lab_netns": "dl-lab",
    "lab_bridge": "br0",
    "lab_bridge_address": "10.77.0.1/24",
    "lab_memory_mib": 1024,
    "lab_cpus": 2,
    "lab_vm_timeout": "6h",  # hard lifetime of every QEMU (coreutils timeout) if nobody calls down
    "lab_boot_timeout": "15m",  # how long `up` waits for SSH
}
# Host variables labctl reads (literal values only: `ansible-inventory --list` does not template).
LAB_VARS = {"ansible_host", "lab_ip", "provisioning_ip", "node_mac", "storage_pool_devices", "lab_kind", "lab_boot", "lab_image",
            "lab_start", "lab_mac", "lab_memory_mib", "lab_cpus", "lab_disks", "lab_kernel_args", "lab_vm_timeout",
            "lab_boot_timeout", "lab_tb_size_mib", "lab_netns", "lab_bridge", "lab_bridge_address"}
STOP_GRACE_S = 15.0
RESTART_POWEROFF_S = 120.0  # `restart`: how long a VM gets to power itself off before it is stopped
CONTAINER_PREFIX = "dl-lab-"  # podman container of a `lab_kind: container` host: dl-lab-<host>
# Disk-less VMs make their SSH host keys at first boot (the node image ships none): their keys are
# accepted on first use into this file, which `down` deletes with the lab (the node volumes go too).
NODE_KNOWN_HOSTS = "known_hosts_nodes"
# Lab-only adjustment of a provisioning container (never part of a role): a container must not set the
# machine's clock, so chronyd runs without CAP_SYS_TIME and with -x (serve time, never adjust it).
CONTAINER_PREP = (
    "set -e; mkdir -p /etc/systemd/system/chrony.service.d; "
    "printf '[Unit]\\nConditionCapability=\\n' > /etc/systemd/system/chrony.service.d/container.conf; "
    "printf 'DAEMON_OPTS=\"-F 0 -x\"\\n' > /etc/default/chrony; systemctl daemon-reload"
)
SSH_POLL_S = 2.0
# lab_boot: `kernel` (the image's kernel/initrd, root = an overlay of the image's disk), `network` (iPXE,
# no disk), `disk` (no -kernel: the BIOS boots the first lab disk, e.g. the GRUB of an A/B install; the
# image overlay stays attached as /dev/vda so that the lab disks keep their names /dev/vdb, ...)
BOOT_MODES = ("kernel", "network", "disk")
IMAGE_BOOTS = ("kernel", "disk")  # boot modes with the image overlay as /dev/vda (and the lab host key)


class LabError(Exception):
    """A failure with a message meant for the user (printed as `lab: <message>`)."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def die(msg: str) -> NoReturn:
    raise LabError(msg)


# --------------------------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    env = os.environ.get("DL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "diskless-cluster"


@dataclasses.dataclass(frozen=True)
class Paths:
    cache: Path

    @property
    def images(self) -> Path:
        # images are keyed by a hash of their recipe, so labs with caches of their own can share them
        env = os.environ.get("DL_IMAGE_CACHE")
        return Path(env) if env else self.cache / "images"

    @property
    def lab(self) -> Path:
        return self.cache / "lab"

    @property
    def ssh(self) -> Path:
        return self.lab / "ssh"

    @property
    def run(self) -> Path:
        return self.lab / "run"

    @property
    def logs(self) -> Path:
        return self.lab / "logs"

    @property
    def state(self) -> Path:
        return self.run / "lab.json"

    @property
    def ssh_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.ssh / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.ssh / "config"

    def vm_dir(self, name: str) -> Path:
        return self.run / "vms" / name


# --------------------------------------------------------------------------------------------- helpers


def run(argv: Sequence[str], *, what: str, capture: bool = False, check: bool = True,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run argv; on failure raise LabError naming `what` and showing the tool's own stderr."""
    try:
        proc = subprocess.run(list(argv), text=True, capture_output=capture, check=False, **kw)
    except FileNotFoundError:
        die(f"{what}: {argv[0]} not found (run hack/bootstrap.sh, then source hack/env.sh)")
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-5:] if capture else []
        die(f"{what}: `{shlex.join(argv)}` exited {proc.returncode}"
            + ("".join(f"\n    {line}" for line in detail)))
    return proc


def parse_size(value: Any, field: str) -> int:
    """'16G' / '512M' / 1073741824 -> bytes (binary units)."""
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", str(value), re.IGNORECASE)
    if not m:
        die(f"{field}: {value!r} is not a size like 512M or 16G")
    return int(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_")


def parse_duration(value: Any, field: str) -> int:
    """'90s' / '15m' / '6h' / 600 -> seconds."""
    if isinstance(value, int) and value > 0:
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(value))
    if not m:
        die(f"{field}: {value!r} is not a duration like 600, 15m or 6h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@contextlib.contextmanager
def flock(path: Path, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another labctl ({what}) to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def require_root() -> None:
    if os.geteuid() != 0:
        die("must run as root (network namespaces, taps, chroot builds); try: sudo hack/lab.sh ...")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "    (no output)"
    return "\n".join("    " + line for line in text)


# --------------------------------------------------------------------------------------------- ssh keys


def ensure_ssh_keys(p: Paths) -> None:
    """The lab's client key (baked into root's authorized_keys) and the one host key of every lab VM."""
    p.ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(p.ssh, 0o700)
    for key, comment in ((p.ssh_key, "diskless-lab-client"), (p.host_key, "diskless-lab-host")):
        if not key.exists() or not key.with_suffix(".pub").exists():
            key.unlink(missing_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
                what="generating the lab SSH key", capture=True)


def write_ssh_client_files(p: Paths, vms: Sequence["VM"]) -> None:
    """known_hosts (strict checking against the lab host key) and an ssh_config with one entry per VM."""
    host_pub = p.host_key.with_suffix(".pub").read_text().split()
    kh = "".join(f"{vm.name},{vm.ip} {host_pub[0]} {host_pub[1]}\n" for vm in vms)
    p.known_hosts.write_text(kh)
    cfg = ["# Written by lab/labctl.py up — ssh -F this-file HOST", ""]
    for vm in vms:
        # image VMs carry the lab host key; disk-less nodes make theirs at first boot (accepted once)
        known, strict = ((p.known_hosts, "yes") if vm.boot in IMAGE_BOOTS
                         else (p.ssh / NODE_KNOWN_HOSTS, "accept-new"))
        cfg += [f"Host {vm.name} {vm.ip}", f"    HostName {vm.ip}", "    User root",
                f"    IdentityFile {p.ssh_key}", "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {known}", f"    StrictHostKeyChecking {strict}",
                "    BatchMode yes", "    LogLevel ERROR", "    ConnectTimeout 10",
                "    ServerAliveInterval 15", ""]
    p.ssh_config.write_text("\n".join(cfg))


# --------------------------------------------------------------------------------------------- images


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
    argv = ["mmdebstrap", "--mode=root", f"--variant={d.get('variant', 'minbase')}",
            f"--components={','.join(d['components'])}", f"--include={','.join(d['packages'])}",
            "--aptopt=APT::Install-Recommends \"false\"",
            "--aptopt=APT::Install-Suggests \"false\""]
    for pattern in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
                    "/usr/share/lintian/*"):
        argv.append(f"--dpkgopt=path-exclude={pattern}")
    argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    # Baked files and the lab keys first, then the recipe's hooks (in order).
    installs = [(src, dst, "0644") for dst, src in sorted(recipe.files.items())]
    installs += [
        (p.ssh_key.with_suffix(".pub"), "/root/.ssh/authorized_keys", "0600"),
        (p.host_key, "/etc/ssh/ssh_host_ed25519_key", "0600"),
        (p.host_key.with_suffix(".pub"), "/etc/ssh/ssh_host_ed25519_key.pub", "0644"),
    ]
    for src, dst, mode in installs:
        argv.append("--customize-hook=install -D -m " + mode + " " + shlex.quote(str(src))
                    + ' "$1"' + shlex.quote(dst))
    argv.append('--customize-hook=chmod 0700 "$1/root/.ssh"')
    for hook in recipe.hooks:
        argv.append(f'--customize-hook=bash {shlex.quote(str(hook))} "$1"')
    argv += [d["suite"], str(rootfs), d["mirror"]]
    with open(blog, "w") as fh:
        fh.write("# " + shlex.join(argv) + "\n")
        fh.flush()
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              check=False)
    if proc.returncode != 0:
        die(f"image build failed: mmdebstrap exited {proc.returncode}; last lines of {blog}:\n"
            f"{tail(blog, 30)}\n  Check that {d['mirror']} is reachable and the recipe's packages exist "
            f"in {d['suite']} ({'/'.join(d['components'])}); then rerun `labctl build-image {recipe.name}`.")


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
    run(["mkfs.ext4", "-q", "-F", "-L", f"dl-{recipe.name}"[:16], "-d", str(rootfs), str(disk)],
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


# --------------------------------------------------------------------------------------------- inventory


@dataclasses.dataclass
class VM:
    name: str
    groups: list[str]
    ip: str
    prefixlen: int
    mac: str
    memory_mib: int
    cpus: int
    boot: str  # kernel | network | disk
    image: str | None
    disks: list[int]  # extra sparse disks (vdb, vdc, ...), bytes
    kernel_args: list[str]
    timeout_s: int
    tb_size_mib: int | None
    start: bool = True  # started by a plain `up`; False (`lab_start: false`): only by `up HOST`

    @property
    def tap(self) -> str:
        return tap_name(self.name)


def tap_name(host: str) -> str:
    """The VM's tap device (interface names are at most 15 bytes)."""
    t = f"t-{host}"
    return t if len(t) <= 15 else "t-" + hashlib.sha1(host.encode()).hexdigest()[:13]


@dataclasses.dataclass
class Container:
    """A `lab_kind: container` host: a podman systemd container that joins the lab namespace (it shares
    the bridge, so it owns its `ansible_host` address on the bridge). Reached with the podman connection."""
    name: str
    groups: list[str]
    ip: str
    prefixlen: int
    start: bool = True

    @property
    def container(self) -> str:
        return CONTAINER_PREFIX + self.name


@dataclasses.dataclass
class Lab:
    inventory: Path
    netns: str
    bridge: str
    bridge_address: str  # CIDR
    boot_timeout_s: int
    vms: list[VM]
    # hosts of the inventory the lab does not supply: name -> why (`labctl up` prints it)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    containers: list[Container] = dataclasses.field(default_factory=list)

    def _check_names(self, names: Sequence[str]) -> None:
        known = [vm.name for vm in self.vms] + [ct.name for ct in self.containers]
        unknown = sorted(set(names) - set(known))
        if unknown:
            why = "".join(f"; {n}: {self.skipped[n]}" for n in unknown if n in self.skipped)
            die(f"not lab hosts in {self.inventory}: {', '.join(unknown)} "
                f"(lab hosts: {', '.join(sorted(known)) or 'none'}){why}")

    def select(self, names: Sequence[str]) -> list[VM]:
        """`up HOST...`: exactly those; plain `up`: every VM without `lab_start: false`."""
        self._check_names(names)
        if names:
            return [vm for vm in self.vms if vm.name in names]
        return [vm for vm in self.vms if vm.start]

    def select_containers(self, names: Sequence[str]) -> list[Container]:
        """Containers named (`up HOST...`), or every container without `lab_start: false` (plain `up`)."""
        self._check_names(names)
        if names:
            return [ct for ct in self.containers if ct.name in names]
        return [ct for ct in self.containers if ct.start]


def load_inventory(path: Path) -> Lab:
    """Resolve the inventory with Ansible itself, so the lab reads exactly what the playbooks read."""
    if not path.exists():
        die(f"inventory {path} not found")
    proc = run(["ansible-inventory", "-i", str(path), "--list"], what=f"reading inventory {path}",
               capture=True)
    inv = json.loads(proc.stdout)
    hostvars: dict[str, dict[str, Any]] = inv.get("_meta", {}).get("hostvars", {})
    groups: dict[str, list[str]] = {}

    def walk(group: str, seen: tuple[str, ...] = ()) -> list[str]:
        node = inv.get(group, {})
        hosts = list(node.get("hosts", []))
        for child in node.get("children", []):
            if child not in seen:
                hosts += walk(child, seen + (child,))
        return hosts

    for g in inv:
        if g != "_meta":
            for h in walk(g):
                groups.setdefault(h, [])
                if g not in groups[h] and g not in ("all", "ungrouped"):
                    groups[h].append(g)

    errors: list[str] = []
    some = next(iter(hostvars.values()), {})

    def gv(key: str) -> Any:
        return some.get(key, DEFAULTS.get(key))

    netns, bridge, bridge_address = gv("lab_netns"), gv("lab_bridge"), gv("lab_bridge_address")
    try:
        bridge_if = ipaddress.ip_interface(str(bridge_address))
    except ValueError:
        errors.append(f"all: lab_bridge_address: {bridge_address!r} is not an address/prefix")
        bridge_if = ipaddress.ip_interface("10.77.0.1/24")
    try:
        boot_net = ipaddress.ip_network(str(some.get("cluster_boot_network", bridge_if.network)))
    except ValueError:
        errors.append(f"all: cluster_boot_network: {some.get('cluster_boot_network')!r} is not a network")
        boot_net = bridge_if.network
    if bridge_if.network != boot_net:
        errors.append(f"all: lab_bridge_address: {bridge_if} is not in cluster_boot_network {boot_net}")
    boot_timeout = parse_duration(gv("lab_boot_timeout"), "all: lab_boot_timeout")

    vms: list[VM] = []
    containers: list[Container] = []
    skipped: dict[str, str] = {}
    for name in sorted(hostvars):
        hv = hostvars[name]
        if hv.get("lab_kind", "vm") == "none" or name == "localhost":
            continue

        def err(field: str, msg: str, name: str = name) -> None:
            errors.append(f"{name}: {field}: {msg}")

        kind = hv.get("lab_kind", "vm")
        if kind not in ("vm", "container"):
            err("lab_kind", f"{kind!r}: must be 'vm', 'container' (a podman systemd container) or 'none'")
            continue
        start = hv.get("lab_start", True)
        if not isinstance(start, bool):
            err("lab_start", f"{start!r}: must be true or false")
            start = True
        hgroups = groups.get(name, [])
        if kind == "container":
            # Ansible reaches a container by name (ansible_host: dl-lab-<host>, podman connection); its
            # address on the bridge is the one the plan uses (docs/plan.md): provisioning_ip / storage_ip
            field = next((f for f in ("lab_ip", "provisioning_ip", "storage_ip", "ansible_host")
                          if hv.get(f) is not None), "ansible_host")
            try:
                cip = ipaddress.ip_address(str(hv.get(field)))
            except ValueError:
                err(field, f"{hv.get(field)!r}: a lab container needs a literal IP address (lab_ip, "
                    "provisioning_ip, storage_ip or ansible_host)")
                continue
            if str(hv.get("ansible_host")) not in (str(cip), CONTAINER_PREFIX + name):
                err("ansible_host", f"{hv.get('ansible_host')!r}: must be the container's name "
                    f"{CONTAINER_PREFIX + name} (podman connection) or its address {cip}")
            if cip not in boot_net or cip in (boot_net.network_address, boot_net.broadcast_address):
                err(field, f"{cip} is not a host address of cluster_boot_network {boot_net}")
            if cip == bridge_if.ip:
                err(field, f"{cip} is the lab bridge's own address")
            containers.append(Container(name, hgroups, str(cip), boot_net.prefixlen, start))
            continue
        for key, value in hv.items():
            if key in LAB_VARS and isinstance(value, str) and "{{" in value:
                err(key, "must be a literal value (the lab reads the inventory without templating)")
        ip_s = hv.get("ansible_host")
        try:
            ip = ipaddress.ip_address(str(ip_s))
            if ip not in boot_net or ip in (boot_net.network_address, boot_net.broadcast_address):
                err("ansible_host", f"{ip} is not a host address of cluster_boot_network {boot_net}")
            if ip == bridge_if.ip:
                err("ansible_host", f"{ip} is the lab bridge's own address")
        except ValueError:
            err("ansible_host", f"{ip_s!r}: every lab host needs a literal IP address")
            continue
        mac = str(hv.get("lab_mac") or hv.get("node_mac") or
                  "52:54:00:%02x:%02x:%02x" % tuple(ip.packed[1:])).lower()
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
            err("lab_mac", f"{mac!r} is not a MAC address")
        boot = hv.get("lab_boot", "network" if "compute" in hgroups else "kernel")
        if boot not in BOOT_MODES:
            err("lab_boot", f"{boot!r}: must be 'kernel' (image kernel + disk), 'network' (iPXE, no disk) "
                "or 'disk' (BIOS boot from the first lab disk)")
        image = hv.get("lab_image")
        if boot in IMAGE_BOOTS and not image:
            err("lab_image", f"required for lab_boot {boot!r} (an image recipe in lab/images/)")
        if boot in IMAGE_BOOTS and image and not (IMAGES_SRC / f"{image}.toml").is_file():
            err("lab_image", f"{image!r}: no recipe lab/images/{image}.toml")
        if boot == "disk" and not hv.get("lab_disks"):
            err("lab_disks", "lab_boot 'disk' boots the first lab disk: give at least one")
        # disk-less nodes: 512 MiB is enough to boot from iSCSI (~175 MiB used); 1 vCPU each
        mem = hv.get("lab_memory_mib", 512 if boot == "network" else DEFAULTS["lab_memory_mib"])
        if not isinstance(mem, int) or mem < 512:
            err("lab_memory_mib", f"{mem!r}: must be an integer >= 512")
            mem = 512
        cpus = hv.get("lab_cpus", 1 if boot == "network" else DEFAULTS["lab_cpus"])
        if not isinstance(cpus, int) or cpus < 1:
            err("lab_cpus", f"{cpus!r}: must be an integer >= 1")
            cpus = 1
        disks: list[int] = []
        raw_disks = hv.get("lab_disks", [])
        if boot == "network" and raw_disks:
            err("lab_disks", "a network-booted (disk-less) lab host has no disks")
        for i, d in enumerate(raw_disks if isinstance(raw_disks, list) else []):
            size = d.get("size") if isinstance(d, dict) else d
            try:
                disks.append(parse_size(size, f"{name}: lab_disks[{i}].size"))
            except LabError as exc:
                errors.append(str(exc))
        devs = [f"/dev/vd{chr(ord('b') + i)}" for i in range(len(disks))]
        for dev in hv.get("storage_pool_devices", []) or []:
            if dev not in devs:
                err("storage_pool_devices", f"{dev} is not a lab disk (lab_disks gives "
                    f"{', '.join(devs) or 'none'})")
        kargs = hv.get("lab_kernel_args", [])
        if not isinstance(kargs, list):
            err("lab_kernel_args", "must be a list")
            kargs = []
        try:
            timeout_s = parse_duration(hv.get("lab_vm_timeout", DEFAULTS["lab_vm_timeout"]),
                                       f"{name}: lab_vm_timeout")
        except LabError as exc:
            errors.append(str(exc))
            timeout_s = 3600
        tb = hv.get("lab_tb_size_mib")
        vms.append(VM(name, hgroups, str(ip), boot_net.prefixlen, mac, mem, cpus, boot,
                      image if boot in IMAGE_BOOTS else None, disks, [str(a) for a in kargs], timeout_s,
                      tb if isinstance(tb, int) else None, start))
    for field, attr in (("ansible_host", "ip"), ("lab_mac", "mac")):
        seen: dict[str, str] = {}
        for vm in [*vms, *containers] if attr == "ip" else vms:
            v = getattr(vm, attr)
            if v in seen:
                errors.append(f"{vm.name}: {field}: {v} is also used by {seen[v]}")
            seen[v] = vm.name
    if errors:
        die(f"inventory {path}:\n" + "\n".join("    " + e for e in sorted(errors)))
    return Lab(path, str(netns), str(bridge), str(bridge_if), boot_timeout, vms, skipped, containers)


# --------------------------------------------------------------------------------------------- network


def ip_cmd(*args: str, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", *args], what=what, capture=True, check=check)


def netns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists()


def ensure_network(lab: Lab) -> bool:
    """Namespace + bridge (with the controller's address) + nothing else. Returns True if it changed."""
    ns, br = lab.netns, lab.bridge
    changed = False
    if not netns_exists(ns):
        ip_cmd("netns", "add", ns, what=f"creating network namespace {ns}")
        changed = True
    ip_cmd("-n", ns, "link", "set", "lo", "up", what="bringing up lo in the lab namespace")
    if ip_cmd("-n", ns, "link", "show", br, what="", check=False).returncode != 0:
        ip_cmd("-n", ns, "link", "add", br, "type", "bridge", what=f"creating bridge {br}")
        changed = True
    addrs = json.loads(ip_cmd("-n", ns, "-j", "addr", "show", "dev", br, what="reading bridge").stdout)
    have = {f"{a['local']}/{a['prefixlen']}" for x in addrs for a in x.get("addr_info", [])
            if a.get("family") == "inet"}
    if lab.bridge_address not in have:
        ip_cmd("-n", ns, "addr", "add", lab.bridge_address, "dev", br, what=f"addressing {br}")
        changed = True
    ip_cmd("-n", ns, "link", "set", br, "up", what=f"bringing up {br}")
    # Belt and braces: the namespace has no uplink; make sure it never routes either.
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0",
         "net.ipv6.conf.all.forwarding=0"], what="disabling forwarding in the lab namespace",
        capture=True)
    return changed


def ensure_address(lab: Lab, cidr: str) -> bool:
    """Put an extra address on the bridge (a container host sharing the namespace answers on it)."""
    addrs = json.loads(ip_cmd("-n", lab.netns, "-j", "addr", "show", "dev", lab.bridge,
                              what="reading bridge").stdout)
    have = {f"{a['local']}/{a['prefixlen']}" for x in addrs for a in x.get("addr_info", [])
            if a.get("family") == "inet"}
    if cidr in have:
        return False
    ip_cmd("-n", lab.netns, "addr", "add", cidr, "dev", lab.bridge, what=f"adding {cidr} to {lab.bridge}")
    return True


def ensure_tap(lab: Lab, vm: VM) -> None:
    ns = lab.netns
    if ip_cmd("-n", ns, "link", "show", vm.tap, what="", check=False).returncode != 0:
        ip_cmd("-n", ns, "tuntap", "add", "dev", vm.tap, "mode", "tap", what=f"creating tap {vm.tap}")
    ip_cmd("-n", ns, "link", "set", vm.tap, "master", lab.bridge, "up",
           what=f"attaching {vm.tap} to {lab.bridge}")


# --------------------------------------------------------------------------------------------- containers


def podman(*args: str, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], what=what, capture=True, check=check)


def container_running(name: str) -> bool:
    proc = subprocess.run(["podman", "container", "inspect", "--format", "{{.State.Running}}", name],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def container_image() -> str:
    """The local systemd image of hack/container-image.sh (built once from the Debian mirror, cached)."""
    proc = run(["bash", str(REPO / "hack" / "container-image.sh")], what="building/loading the container image",
               capture=True)
    ref = proc.stdout.strip().splitlines()[-1:] or [""]
    if not ref[0]:
        die("hack/container-image.sh printed no image reference")
    return ref[0]


def start_container(p: Paths, lab: Lab, ct: Container) -> None:
    """`podman run` a systemd container inside the lab namespace, then the lab-only preparation."""
    podman("rm", "--force", "--time", "5", ct.container, what="", check=False)  # leftovers of a crash
    ensure_address(lab, f"{ct.ip}/{ct.prefixlen}")
    ref = container_image()
    argv = ["run", "--detach", "--name", ct.container, "--hostname", ct.name, "--systemd=always",
            "--network", f"ns:/run/netns/{lab.netns}", "--cap-add", "NET_ADMIN,NET_RAW",
            "--label", f"dl-lab={lab.netns}", ref, "/sbin/init"]
    podman(*argv, what=f"{ct.name}: starting container {ct.container}")
    deadline = time.monotonic() + 60
    while True:
        st = subprocess.run(["podman", "exec", ct.container, "systemctl", "is-system-running"],
                            capture_output=True, text=True, check=False).stdout.strip()
        if st in ("running", "degraded"):
            break
        if time.monotonic() > deadline:
            die(f"{ct.name}: systemd in {ct.container} not up after 60 s (state {st or 'unknown'})")
        time.sleep(0.5)
    podman("exec", ct.container, "sh", "-c", CONTAINER_PREP, what=f"{ct.name}: lab preparation (chrony)")
    d = p.run / "containers" / ct.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "ct.json").write_text(json.dumps({"ct": dataclasses.asdict(ct), "image": ref,
                                           "container": ct.container}, indent=2) + "\n")


def stop_container(name: str) -> bool:
    if podman("container", "exists", name, what="", check=False).returncode != 0:
        return False
    podman("rm", "--force", "--time", "5", name, what=f"removing container {name}")
    return True


# --------------------------------------------------------------------------------------------- VMs


def detect_accel() -> str:
    """tcg or kvm. A PVM /dev/kvm (nested hypervisor) hangs stock kernels: treat it as no KVM."""
    forced = os.environ.get("DL_LAB_ACCEL")
    if forced:
        if forced not in ("tcg", "kvm"):
            die(f"DL_LAB_ACCEL={forced!r}: must be tcg or kvm")
        return forced
    if Path("/sys/module/kvm_pvm").exists():
        return "tcg"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return "kvm"
    except OSError:
        return "tcg"


# A TCG guest very rarely hangs with every vCPU spinning at one kernel address (seen once in CI: the
# storage VM's warm reboot, while systemd enabled cgroup controllers; the soft lockup detector kept
# reporting it for 30 min). With these, the kernel's soft lockup detector turns such a hang into a panic
# and QEMU's reset into a fresh boot, ~80 s later, instead of a VM that never answers again. A VM that
# takes that way out says so in its console ("softlockup: hung tasks"); see wait_for_ssh and docs/lab.md.
# Kernel boot only: a network-booted node takes the cluster's kernel_args (the lab inventory sets them),
# a disk-booted A/B host its slots' (plus the i6300esb watchdog).
TCG_HANG_RESET_ARGS = ("softlockup_panic=1", "watchdog_thresh=30", "panic=10")
SOFTLOCKUP_PANIC = "Kernel panic - not syncing: softlockup"


def qemu_argv(p: Paths, lab: Lab, vm: VM, image: Image | None, accel: str) -> list[str]:
    d = p.vm_dir(vm.name)
    argv = ["qemu-system-x86_64", "-name", f"guest={vm.name},process=dl-lab-{vm.name}",
            "-machine", "pc", "-nodefaults", "-display", "none",
            "-smp", str(vm.cpus), "-m", str(vm.memory_mib)]
    if accel == "kvm":
        argv += ["-accel", "kvm", "-cpu", "host"]
    else:
        tb = vm.tb_size_mib or (512 if vm.memory_mib >= 1024 else 128)
        argv += ["-accel", f"tcg,thread=multi,tb-size={tb}", "-cpu", "qemu64"]
    argv += ["-serial", f"file:{p.logs / (vm.name + '.console.log')}",
             "-monitor", f"unix:{d / 'monitor.sock'},server=on,wait=off",
             "-pidfile", str(d / "qemu.pid"),
             "-device", "virtio-rng-pci",
             "-netdev", f"tap,id=net0,ifname={vm.tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=net0,mac={vm.mac}"]
    if vm.boot == "kernel":
        assert image is not None
        mask = str(ipaddress.ip_network(f"0.0.0.0/{vm.prefixlen}").netmask)
        append = ["root=/dev/vda", "rw", "console=ttyS0,115200", "net.ifnames=0",
                  f"systemd.hostname={vm.name}", f"ip={vm.ip}:::{mask}:{vm.name}:eth0:off",
                  *(TCG_HANG_RESET_ARGS if accel == "tcg" else ()), *vm.kernel_args]
        argv += ["-vga", "none", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                 "-append", " ".join(append),
                 "-drive", f"file={d / 'root.qcow2'},if=virtio,format=qcow2,cache=unsafe,discard=unmap"]
    elif vm.boot == "disk":
        # BIOS -> the boot loader on the first lab disk (bootindex). Every disk as an explicit virtio-blk
        # device in the same order as in kernel boot (vda = image overlay, vdb... = lab disks), and an
        # i6300esb watchdog that resets the VM when the guest stops petting it (systemd RuntimeWatchdogSec)
        argv += ["-vga", "none", "-device", "i6300esb", "-action", "watchdog=reset",
                 "-drive", f"file={d / 'root.qcow2'},if=none,id=vd0,format=qcow2,cache=unsafe,discard=unmap",
                 "-device", "virtio-blk-pci,drive=vd0"]
        for i in range(len(vm.disks)):
            argv += ["-drive", f"file={d / f'disk{i + 1}.raw'},if=none,id=vd{i + 1},format=raw,cache=unsafe,"
                     "discard=unmap",
                     "-device", f"virtio-blk-pci,drive=vd{i + 1}" + (",bootindex=1" if i == 0 else "")]
        return argv
    else:
        argv += ["-vga", "std", "-boot", "n"]  # QEMU's iPXE NIC ROM; iPXE prints to VGA only
    for i in range(len(vm.disks)):
        argv += ["-drive", f"file={d / f'disk{i + 1}.raw'},if=virtio,format=raw,cache=unsafe,discard=unmap"]
    return argv


def vm_state(p: Paths, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((p.vm_dir(name) / "vm.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def vm_running(p: Paths, name: str) -> int | None:
    pid = read_pid(p.vm_dir(name) / "qemu.pid")
    return pid if pid and pid_alive(pid) else None


def start_vm(p: Paths, lab: Lab, vm: VM, image: Image | None, accel: str,
             keep_disks: bool = False) -> subprocess.Popen[bytes]:
    """Start the VM. `keep_disks` (restart): reuse its root overlay and lab disks when they exist."""
    d = p.vm_dir(vm.name)
    if d.exists() and not keep_disks:
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    p.logs.mkdir(parents=True, exist_ok=True)
    # the previous run's console log (kept once, as .prev) must not be read as this boot's: wait_for_ssh
    # looks for "Kernel panic" in it before QEMU has opened (and truncated) the file
    console = p.logs / f"{vm.name}.console.log"
    if console.exists():
        console.replace(console.with_name(f"{vm.name}.console.prev.log"))
    if image is not None and not (keep_disks and (d / "root.qcow2").exists()):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk),
             str(d / "root.qcow2")], what=f"{vm.name}: creating the root overlay", capture=True)
    for i, size in enumerate(vm.disks):
        if keep_disks and (d / f"disk{i + 1}.raw").exists():
            continue
        with open(d / f"disk{i + 1}.raw", "wb") as fh:  # sparse
            fh.truncate(size)
    ensure_tap(lab, vm)
    argv = qemu_argv(p, lab, vm, image, accel)
    wrapped = ["ip", "netns", "exec", lab.netns,
               "timeout", "--kill-after=30", str(vm.timeout_s), *argv]
    state = {"vm": dataclasses.asdict(vm), "netns": lab.netns, "accel": accel,
             "image": str(image.dir) if image else None, "argv": wrapped}
    (d / "vm.json").write_text(json.dumps(state, indent=2) + "\n")
    with open(d / "qemu.log", "wb") as out:
        proc = subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    (d / "timeout.pid").write_text(f"{proc.pid}\n")
    return proc


def ssh_argv(p: Paths, netns: str, host: str, cmd: Sequence[str] = (), tty: bool = False) -> list[str]:
    return ["ip", "netns", "exec", netns, "ssh", "-F", str(p.ssh_config),
            *(["-t"] if tty else []), host, *cmd]


def wait_for_ssh(p: Paths, lab: Lab, vms: Sequence[VM], procs: dict[str, subprocess.Popen[bytes]],
                 t0: dict[str, float]) -> dict[str, float]:
    """Poll until every VM answers `ssh true`; fail fast if a QEMU dies or a kernel panics."""
    pending = {vm.name for vm in vms}
    reset: set[str] = set()
    deadline = time.monotonic() + lab.boot_timeout_s
    took: dict[str, float] = {}
    while pending:
        for name in sorted(pending):
            proc = procs.get(name)
            console = p.logs / f"{name}.console.log"
            dead = (proc.poll() is not None) if proc else vm_running(p, name) is None
            if dead:
                die(f"{name}: QEMU exited before SSH answered; QEMU said:\n"
                    f"{tail(p.vm_dir(name) / 'qemu.log', 10)}\n  console ({console}):\n{tail(console)}")
            with contextlib.suppress(FileNotFoundError):
                text = console.read_text(errors="replace")
                panic = text.rfind("Kernel panic")
                if panic >= 0 and not text.startswith(SOFTLOCKUP_PANIC, panic):
                    die(f"{name}: kernel panic while booting; console ({console}):\n{tail(console)}")
                if panic >= 0 and name not in reset:  # the VM resets itself (TCG_HANG_RESET_ARGS): wait
                    reset.add(name)
                    log(f"{name}: the guest hung (soft lockup) and panicked; QEMU resets it, still waiting")
            r = subprocess.run(ssh_argv(p, lab.netns, name, ["true"]), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            if r.returncode == 0:
                pending.discard(name)
                if name in t0:
                    took[name] = time.monotonic() - t0[name]
                    log(f"{name}: SSH answers ({took[name]:.0f} s after start)")
                else:
                    log(f"{name}: already running, SSH answers")
        if pending:
            if time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                die(f"{names}: no SSH after {lab.boot_timeout_s} s (lab_boot_timeout); console logs in "
                    f"{p.logs}/; last lines of {sorted(pending)[0]}:\n"
                    f"{tail(p.logs / (sorted(pending)[0] + '.console.log'))}\n  The VMs stay up for "
                    "inspection (labctl status / console / ssh); `labctl down` removes them.")
            time.sleep(SSH_POLL_S)
    return took


def stop_vm(p: Paths, name: str) -> bool:
    """Stop one VM: monitor `quit`, then SIGTERM/SIGKILL of its timeout wrapper's process group."""
    d = p.vm_dir(name)
    qpid = read_pid(d / "qemu.pid")
    tpid = read_pid(d / "timeout.pid")
    alive = [x for x in (qpid, tpid) if x and pid_alive(x)]
    if not alive:
        return False
    sock = d / "monitor.sock"
    if qpid and pid_alive(qpid) and sock.exists():
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(str(sock))
            s.sendall(b"quit\n")
            with contextlib.suppress(OSError):
                while s.recv(4096):
                    pass
    if not _wait_gone(alive, 5):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if pid == tpid:
                        os.killpg(pid, sig)  # timeout leads its own process group: it + qemu
                    else:
                        os.kill(pid, sig)
            if _wait_gone(alive, STOP_GRACE_S):
                break
    if any(pid_alive(x) for x in alive):
        die(f"{name}: could not stop QEMU (pids {alive})")
    return True


def _wait_gone(pids: Sequence[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(pid_alive(x) for x in pids):
            return True
        time.sleep(0.2)
    return not any(pid_alive(x) for x in pids)


def stray_processes(p: Paths) -> list[int]:
    """Lab processes left behind: QEMU / timeout referencing this lab's run directory, and SSH
    connection masters (Ansible, testinfra) using the lab's SSH key or config."""
    markers = {"qemu": str(p.run).encode(), "timeout": str(p.run).encode(), "ssh": str(p.ssh).encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        prog = os.path.basename(argv[0]).decode(errors="replace") if argv else ""
        kind = "qemu" if prog.startswith("qemu-system") else prog
        if kind in markers and any(markers[kind] in a for a in argv[1:]):
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------------------------- commands


def cmd_build_image(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    names = args.names or sorted(x.stem for x in IMAGES_SRC.glob("*.toml"))
    out: dict[str, Any] = {"changed": False, "images": {}}
    for name in names:
        t0 = time.monotonic()
        image, built = build_image(p, name, force=args.force)
        out["changed"] |= built
        out["images"][name] = {"dir": str(image.dir), "built": built,
                               "kernel_version": image.manifest["kernel_version"]}
        if not built:
            log(f"image {name}: cached ({image.dir}, checked in {time.monotonic() - t0:.1f} s)")
    return out


def cmd_up(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    require_root()
    lab = load_inventory(args.inventory)
    vms = lab.select(args.hosts)
    cts = lab.select_containers(args.hosts)
    for name, why in sorted(lab.skipped.items()):
        log(f"{name}: {why}")
    if not args.hosts:
        for vm in lab.vms:
            if not vm.start:
                log(f"{vm.name}: lab_start is false: not started (start it with `up {vm.name}`)")
    ensure_ssh_keys(p)
    with flock(p.lab / "lock", "up/down"):
        state = _read_state(p)
        if state and state.get("netns") != lab.netns:
            die(f"a lab with namespace {state.get('netns')} is up; run `labctl down` first")
        images: dict[str, Image] = {}
        for name in sorted({vm.image for vm in vms if vm.image}):
            images[name] = build_image(p, name)[0]
        accel = detect_accel()
        changed = ensure_network(lab)
        p.run.mkdir(parents=True, exist_ok=True)
        _write_state(p, {"netns": lab.netns, "bridge": lab.bridge, "bridge_address": lab.bridge_address,
                         "inventory": str(lab.inventory), "accel": accel})
        write_ssh_client_files(p, lab.vms)
        already: list[str] = []
        for ct in cts:
            if container_running(ct.container):
                changed |= ensure_address(lab, f"{ct.ip}/{ct.prefixlen}")
                already.append(ct.name)
                continue
            log(f"{ct.name}: starting podman container {ct.container} in namespace {lab.netns} ({ct.ip})")
            start_container(p, lab, ct)
            changed = True
        procs: dict[str, subprocess.Popen[bytes]] = {}
        t0: dict[str, float] = {}
        for vm in vms:
            if vm_running(p, vm.name):
                already.append(vm.name)
                old = vm_state(p, vm.name) or {}
                want_image = str(images[vm.image].dir) if vm.image else None
                if old.get("vm") != dataclasses.asdict(vm) or old.get("image") != want_image:
                    log(f"{vm.name}: running with an older definition or image; "
                        f"`labctl down` then `labctl up` to apply the change")
                continue
            stop_vm(p, vm.name)  # leftovers of a crashed run (no-op when none)
            log(f"{vm.name}: starting ({accel}, {vm.memory_mib} MiB, {vm.cpus} vCPU, "
                f"{vm.boot} boot, {vm.ip})")
            t0[vm.name] = time.monotonic()
            procs[vm.name] = start_vm(p, lab, vm, images.get(vm.image) if vm.image else None, accel)
            changed = True
        booted = wait_for_ssh(p, lab, [vm for vm in vms if vm.boot in IMAGE_BOOTS], procs, t0)
        for vm in vms:
            if vm.boot == "network":
                log(f"{vm.name}: started (network boot: no SSH until a provisioning host serves it)")
    return {"changed": changed, "netns": lab.netns, "accel": accel, "already_running": sorted(already),
            "boot_seconds": {k: round(v, 1) for k, v in booted.items()},
            "containers": {ct.name: {"ip": ct.ip, "container": ct.container, "groups": ct.groups} for ct in cts},
            "hosts": {vm.name: {"ip": vm.ip, "mac": vm.mac, "tap": vm.tap, "groups": vm.groups,
                                "image": str(images[vm.image].dir) if vm.image else None,
                                "kernel_version": images[vm.image].manifest["kernel_version"]
                                if vm.image else None} for vm in vms},
            "ssh_config": str(p.ssh_config), "inventory": str(lab.inventory)}


def cmd_down(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    require_root()
    if args.hosts:  # power off only these VMs (their disks/volumes stay); the lab stays up
        with flock(p.lab / "lock", "up/down"):
            vm_root = p.run / "vms"
            running = sorted(d.name for d in vm_root.iterdir()) if vm_root.is_dir() else []
            unknown = sorted(set(args.hosts) - set(running))
            if unknown:
                die(f"not lab VMs of the running lab: {', '.join(unknown)} (VMs: {', '.join(running) or 'none'})")
            changed = False
            netns = (_read_state(p) or {}).get("netns", DEFAULTS["lab_netns"])
            for name in args.hosts:
                if stop_vm(p, name):
                    log(f"{name}: stopped")
                    changed = True
                if netns_exists(netns):  # its tap goes too: the namespace holds only running hosts' taps
                    ip_cmd("-n", netns, "link", "del", tap_name(name), what="", check=False)
        return {"changed": changed}
    with flock(p.lab / "lock", "up/down"):
        state = _read_state(p) or {}
        netns = state.get("netns") or args.netns or DEFAULTS["lab_netns"]
        changed = False
        ct_root = p.run / "containers"
        for d in sorted(ct_root.iterdir()) if ct_root.is_dir() else []:
            if stop_container(CONTAINER_PREFIX + d.name):
                log(f"{d.name}: container {CONTAINER_PREFIX + d.name} removed")
                changed = True
        vm_root = p.run / "vms"
        for d in sorted(vm_root.iterdir()) if vm_root.is_dir() else []:
            if stop_vm(p, d.name):
                log(f"{d.name}: stopped")
                changed = True
        (p.ssh / NODE_KNOWN_HOSTS).unlink(missing_ok=True)
        strays = stray_processes(p)
        if strays:
            log(f"killing stray lab processes: {strays}")
            for pid in strays:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _wait_gone(strays, STOP_GRACE_S)
            changed = True
        if netns_exists(netns):
            left = ip_cmd("netns", "pids", netns, what="", check=False).stdout.split()
            if left:
                log(f"note: processes still inside namespace {netns} (not started by the lab, left "
                    f"alone): {' '.join(left)}")
            ip_cmd("netns", "del", netns, what=f"deleting network namespace {netns}")
            log(f"network namespace {netns} deleted")
            changed = True
        if p.run.exists():
            shutil.rmtree(p.run)
    return {"changed": changed}


def _ssh_quiet(p: Paths, netns: str, host: str, cmd: Sequence[str]) -> bool:
    try:
        return subprocess.run(ssh_argv(p, netns, host, cmd), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def cmd_restart(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    """Power-cycle VMs of the running lab KEEPING their disks (root overlay, lab disks), optionally in another
    boot mode (`--boot disk` after an A/B first install), then wait until they answer SSH again.

    A VM that answers SSH is asked to power off (`systemctl poweroff`, so its file systems are clean) and
    given RESTART_POWEROFF_S to do so; then (or when it does not answer) it is stopped like `down HOST`."""
    require_root()
    lab = load_inventory(args.inventory)
    vms = lab.select(args.hosts)
    with flock(p.lab / "lock", "up/down"):
        state = _read_state(p)
        if not state or state.get("netns") != lab.netns or not netns_exists(lab.netns):
            die(f"the lab of {lab.inventory} is not up (run `labctl up` first)")
        accel = state.get("accel") or detect_accel()
        images: dict[str, Image] = {}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        t0: dict[str, float] = {}
        for vm in vms:
            old = vm_state(p, vm.name) or {}
            if args.boot:
                vm = dataclasses.replace(vm, boot=args.boot)
            if vm.boot == "network":
                die(f"{vm.name}: restart keeps disks; a network-booted VM has none (use down/up)")
            if vm.boot == "disk" and not vm.disks:
                die(f"{vm.name}: --boot disk boots the first lab disk, and it has no lab_disks")
            if not (p.vm_dir(vm.name) / "root.qcow2").exists():
                die(f"{vm.name}: no disks to keep (never started, or removed by `down`): use `up {vm.name}`")
            # the image its overlay was made from (kept: the recipe may have changed since)
            image_dir_s = old.get("image")
            image: Image | None = None
            if image_dir_s and Path(image_dir_s, "manifest.json").is_file():
                image = Image(vm.image or "", Path(image_dir_s),
                              json.loads(Path(image_dir_s, "manifest.json").read_text()))
            elif vm.image:
                if vm.image not in images:
                    images[vm.image] = build_image(p, vm.image)[0]
                image = images[vm.image]
            pid = vm_running(p, vm.name)
            if pid and _ssh_quiet(p, lab.netns, vm.name, ["true"]):
                log(f"{vm.name}: powering off (systemctl poweroff)")
                _ssh_quiet(p, lab.netns, vm.name, ["systemctl", "poweroff"])
                if not _wait_gone([pid], RESTART_POWEROFF_S):
                    log(f"{vm.name}: still running after {RESTART_POWEROFF_S:.0f} s: stopping it")
            stop_vm(p, vm.name)
            log(f"{vm.name}: starting ({accel}, {vm.memory_mib} MiB, {vm.cpus} vCPU, {vm.boot} boot, "
                f"{vm.ip}, disks kept)")
            ensure_tap(lab, vm)
            t0[vm.name] = time.monotonic()
            procs[vm.name] = start_vm(p, lab, vm, image, accel, keep_disks=True)
        write_ssh_client_files(p, lab.vms)
        booted = wait_for_ssh(p, lab, vms, procs, t0)
    return {"changed": True, "netns": lab.netns, "accel": accel,
            "boot": {vm.name: args.boot or vm.boot for vm in vms},
            "boot_seconds": {k: round(v, 1) for k, v in booted.items()}}


def cmd_status(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    state = _read_state(p)
    netns = (state or {}).get("netns", DEFAULTS["lab_netns"])
    up = netns_exists(netns)
    hosts: dict[str, Any] = {}
    vm_root = p.run / "vms"
    for d in sorted(vm_root.iterdir()) if vm_root.is_dir() else []:
        st = vm_state(p, d.name) or {}
        pid = vm_running(p, d.name)
        ssh_ok = False
        if pid and up and os.geteuid() == 0 and st.get("vm", {}).get("boot") in IMAGE_BOOTS:
            ssh_ok = subprocess.run(ssh_argv(p, netns, d.name, ["true"]), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    check=False).returncode == 0
        hosts[d.name] = {"running": bool(pid), "pid": pid, "ssh": ssh_ok,
                         "ip": st.get("vm", {}).get("ip"), "image": st.get("image"),
                         "console": str(p.logs / f"{d.name}.console.log")}
    ct_root = p.run / "containers"
    for d in sorted(ct_root.iterdir()) if ct_root.is_dir() else []:
        try:
            st = json.loads((d / "ct.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            st = {}
        running = container_running(CONTAINER_PREFIX + d.name)
        hosts[d.name] = {"running": running, "pid": None, "ssh": False, "container": CONTAINER_PREFIX + d.name,
                         "ip": st.get("ct", {}).get("ip"), "image": st.get("image"),
                         "console": f"podman logs {CONTAINER_PREFIX + d.name}"}
    if not args.json:
        print(f"namespace {netns}: {'up' if up else 'down'}"
              + (f" ({state.get('accel')}, inventory {state.get('inventory')})" if state else ""))
        for name, h in hosts.items():
            print(f"  {name:12} {'running' if h['running'] else 'STOPPED':8} pid={h['pid'] or '-':<8} "
                  f"ip={h['ip'] or '-':<15} ssh={'ok' if h['ssh'] else 'no'}  console={h['console']}")
    return {"changed": False, "netns": netns, "up": up, "hosts": hosts}


def cmd_ssh(p: Paths, args: argparse.Namespace) -> NoReturn:
    require_root()
    state = _read_state(p)
    if not state or not p.ssh_config.exists():
        die("the lab is not up (run hack/lab.sh up)")
    running = sorted(d.name for d in (p.run / "vms").iterdir()) if (p.run / "vms").is_dir() else []
    if args.host not in running:
        die(f"{args.host} is not a lab VM (lab VMs: {', '.join(running) or 'none'})")
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    argv = ssh_argv(p, state["netns"], args.host, cmd, tty=not cmd and sys.stdin.isatty())
    os.execvp(argv[0], argv)


def cmd_exec(p: Paths, args: argparse.Namespace) -> NoReturn:
    require_root()
    state = _read_state(p)
    netns = (state or {}).get("netns", DEFAULTS["lab_netns"])
    if not netns_exists(netns):
        die(f"network namespace {netns} does not exist (run hack/lab.sh up)")
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = [os.environ.get("SHELL", "/bin/bash")]
    os.environ["DL_LAB_NETNS"] = netns
    os.environ.setdefault("ANSIBLE_INVENTORY", str((state or {}).get("inventory", DEFAULT_INVENTORY)))
    # nsenter, not `ip netns exec`: that one also remounts /sys, which hides the cgroup file systems
    # runc needs, so `podman exec` (Ansible's podman connection to a lab container) would fail with
    # "error adding pid ... to cgroups". Only the network namespace is entered.
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{netns}", "--", *cmd])


def cmd_console(p: Paths, args: argparse.Namespace) -> dict[str, Any]:
    path = p.logs / f"{args.host}.console.log"
    if not path.exists():
        die(f"no console log for {args.host} ({path})")
    sys.stdout.write(path.read_text(errors="replace"))
    return {"changed": False}


def _read_state(p: Paths) -> dict[str, Any] | None:
    try:
        return json.loads(p.state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(p: Paths, data: dict[str, Any]) -> None:
    tmp = p.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.rename(p.state)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="labctl", description=__doc__.split("\n\n", maxsplit=1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-i", "--inventory", type=Path,
                    default=Path(os.environ.get("DL_LAB_INVENTORY", DEFAULT_INVENTORY)),
                    help="lab inventory (default: inventories/lab or $DL_LAB_INVENTORY)")
    ap.add_argument("--json", action="store_true", help="print a JSON result on stdout")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("build-image", help="build (or reuse) cached VM images")
    s.add_argument("names", nargs="*", help="image recipes (lab/images/NAME.toml); default: all")
    s.add_argument("--force", action="store_true", help="rebuild even if cached")
    s = sub.add_parser("up", help="start the lab network and VMs, wait for SSH")
    s.add_argument("hosts", nargs="*", help="only these inventory hosts (default: all without lab_start: false)")
    s = sub.add_parser("down", help="stop every lab VM and delete the namespace (idempotent)")
    s.add_argument("hosts", nargs="*", help="only power off these VMs (the lab stays up)")
    s.add_argument("--netns", help="namespace to delete if no lab state is left")
    s = sub.add_parser("restart", help="power-cycle VMs keeping their disks, wait for SSH")
    s.add_argument("hosts", nargs="+", help="lab VMs of the running lab")
    s.add_argument("--boot", choices=[m for m in BOOT_MODES if m != "network"],
                   help="boot this way from now on (default: the VM's lab_boot); disk: BIOS boot from the first "
                        "lab disk")
    sub.add_parser("status", help="show lab VMs and whether SSH answers")
    s = sub.add_parser("ssh", help="ssh into a lab host: ssh HOST [-- CMD...]")
    s.add_argument("host")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("exec", help="run a command inside the lab namespace: exec -- CMD...")
    s.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("console", help="print a VM's serial console log")
    s.add_argument("host")
    args = ap.parse_args(argv)
    p = Paths(cache_dir())
    handler = {"build-image": cmd_build_image, "up": cmd_up, "down": cmd_down, "restart": cmd_restart,
               "status": cmd_status,
               "ssh": cmd_ssh, "exec": cmd_exec, "console": cmd_console}[args.command]
    try:
        result = handler(p, args)
    except LabError as exc:
        log(str(exc))
        if args.json:
            print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    except KeyboardInterrupt:
        log("interrupted (run `labctl down` to clean up)")
        return 130
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif args.command == "up":
        # on stdout, for power-on hooks (playbooks/compute.yml reports `changed` unless it says so)
        for name in result["already_running"]:
            print(f"{name}: already running")
    if args.command == "status":
        return 0 if result["up"] and all(h["running"] for h in result["hosts"].values()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
