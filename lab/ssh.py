"""The lab's SSH: its client key and the one host key of every image VM, the ssh_config and known_hosts
`up` writes, and the argv of an SSH into a lab host from inside the namespace."""

from __future__ import annotations

import os
from typing import Sequence

from lab.inventory import IMAGE_BOOTS, VM
from lab.paths import Paths
from lab.util import run

# Disk-less VMs make their SSH host keys at first boot (the node image ships none): their keys are
# accepted on first use into this file, which `down` deletes with the lab (the node volumes go too).
NODE_KNOWN_HOSTS = "known_hosts_nodes"


def ensure_ssh_keys(p: Paths) -> None:
    """The lab's client key (baked into root's authorized_keys) and the one host key of every lab VM."""
    p.ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(p.ssh, 0o700)
    for key, comment in ((p.ssh_key, "diskless-lab-client"), (p.host_key, "diskless-lab-host")):
        if not key.exists() or not key.with_suffix(".pub").exists():
            key.unlink(missing_ok=True)
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
                what="generating the lab SSH key", capture=True)


def write_ssh_client_files(p: Paths, vms: Sequence[VM]) -> None:
    """known_hosts (strict checking against the lab host key) and an ssh_config with one entry per VM."""
    host_pub = p.host_key.with_suffix(".pub").read_text().split()
    kh = "".join(f"{vm.name},{vm.ip} {host_pub[0]} {host_pub[1]}\n" for vm in vms)
    p.known_hosts.write_text(kh)
    cfg = ["# Written by `hack/lab.sh up` (python3 -m lab up) — ssh -F this-file HOST", ""]
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


def ssh_argv(p: Paths, netns: str, host: str, cmd: Sequence[str] = (), tty: bool = False) -> list[str]:
    return ["ip", "netns", "exec", netns, "ssh", "-F", str(p.ssh_config),
            *(["-t"] if tty else []), host, *cmd]
