"""The lab network: a namespace with one bridge (the controller's address on it), one tap per VM, and
nothing else: no veth, no uplink, no route out, forwarding off."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab.inventory import VM, Lab
from lab.util import run


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
