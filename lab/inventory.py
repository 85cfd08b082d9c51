"""The ONE reader of a lab inventory: `ansible-inventory --list` (so the lab sees exactly what the playbooks
see), turned into the lab's machines (VMs, containers) with every error in lab variables reported at once."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Sequence

from lab.paths import IMAGES_SRC
from lab.util import LabError, die, parse_duration, parse_size, run

DEFAULTS = {
    "lab_netns": "dl-lab",
    "lab_bridge": "br0",
    "lab_bridge_address": "10.77.0.1/24",
    "lab_memory_mib": 1024,
    "lab_cpus": 2,
    "lab_vm_timeout": "6h",  # hard lifetime of every QEMU (coreutils timeout) if nobody calls down
    "lab_boot_timeout": "15m",  # how long `up` waits for SSH
}
# Host variables the lab reads (literal values only: `ansible-inventory --list` does not template).
LAB_VARS = {"ansible_host", "lab_ip", "provisioning_ip", "node_mac", "storage_pool_devices", "lab_kind", "lab_boot", "lab_image",
            "lab_start", "lab_mac", "lab_memory_mib", "lab_cpus", "lab_disks", "lab_kernel_args", "lab_vm_timeout",
            "lab_boot_timeout", "lab_tb_size_mib", "lab_netns", "lab_bridge", "lab_bridge_address"}
CONTAINER_PREFIX = "dl-lab-"  # podman container of a `lab_kind: container` host: dl-lab-<host>

# lab_boot: `kernel` (the image's kernel/initrd, root = an overlay of the image's disk), `network` (iPXE,
# no disk), `disk` (no -kernel: the BIOS boots the first lab disk, e.g. the GRUB of an A/B install; the
# image overlay stays attached as /dev/vda so that the lab disks keep their names /dev/vdb, ...)
BOOT_MODES = ("kernel", "network", "disk")
IMAGE_BOOTS = ("kernel", "disk")  # boot modes with the image overlay as /dev/vda (and the lab host key)


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
    # hosts of the inventory the lab does not supply: name -> why (`up` prints it)
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


def read_inventory(path: Path) -> dict[str, Any]:
    """`ansible-inventory --list` of the inventory: groups and `_meta.hostvars` (untemplated)."""
    if not path.exists():
        die(f"inventory {path} not found")
    proc = run(["ansible-inventory", "-i", str(path), "--list"], what=f"reading inventory {path}", capture=True)
    return json.loads(proc.stdout)


def netns_of(inv: dict[str, Any]) -> str:
    """The lab namespace an inventory (as read_inventory returns it) asks for."""
    hostvars = inv.get("_meta", {}).get("hostvars", {})
    return str(next(iter(hostvars.values()), {}).get("lab_netns", DEFAULTS["lab_netns"]))


def load_inventory(path: Path) -> Lab:
    """Resolve the inventory with Ansible itself, so the lab reads exactly what the playbooks read."""
    inv = read_inventory(path)
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
