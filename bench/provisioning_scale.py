# SPDX-License-Identifier: GPL-3.0-or-later
"""How long does the provisioning host role take for 10, 100 and 1,000 nodes?  (Not a test: prints figures.)

    source hack/env.sh && python3 bench/provisioning_scale.py [--sizes 10,100,1000] [--keep]

Starts one systemd container from the molecule image (hack/container-image.sh) on an internal podman
network of its own, converges it once, then for each size N:
  1. resets it to a 1-node cluster (not timed),
  2. times `ansible-playbook playbooks/provisioning.yml` with an N-node inventory (N-1 nodes added:
     reservations, per-node scripts, per-node secrets, nginx locations),
  3. times the same run again (nothing to change),
and prints wall times, the per-node tasks' own times (profile_tasks) and dnsmasq's PID (must not change:
adding nodes never restarts it). Every per-node set is one module call, so N mostly costs bytes.

Wall times swing by tens of seconds on a shared machine (each task waits for several `podman exec`), so
CPU time is printed too: "ctl" is user+sys of the ansible-playbook process tree on the controller (workers
and podman clients included), "tgt" what the container's cgroup used meanwhile (modules, validators,
services). --repeat R keeps the lowest of R figures for each column.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
# one container and network per checkout: benches of two worktrees must not remove each other's container
_CHECKOUT = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
NETWORK = "diskless-bench-%s" % _CHECKOUT
CONTAINER = "diskless-bench-%s-ips1" % _CHECKOUT
IPS_IP = "10.80.0.2"
PER_NODE_TASKS = (
    "Take this host's slice of the cluster plan",
    "Install the per-node public boot files",
    "Install the per-node files restricted to each node's address",
    "Install the DHCP reservations",
    "Configure the HTTP boot tree",
)


def sh(*argv, check=True, capture=True, env=None):
    return subprocess.run(argv, check=check, text=True, env=env,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)


# CHAP secrets: random for this bench run, but the same for a node in every inventory written, so that the
# second run of a size really has nothing to change.
SECRET_KEY = secrets.token_bytes(16)


def chap_secret(node: str, kind: str) -> str:
    return hashlib.sha256(SECRET_KEY + ("%s/%s" % (node, kind)).encode()).hexdigest()[:16]


def write_inventory(directory: pathlib.Path, nodes: int) -> None:
    lines = [
        "all:",
        "  vars:",
        "    cluster_name: bench",
        "    cluster_domain: bench.example.org",
        '    cluster_iqn_date: "2026-11"',
        "    cluster_boot_network: 10.80.0.0/20",
        '    cluster_images: {debian12: {version: "1", size: 2G, label: dlroot}}',
        # the molecule scenario's tiny stand-in bundle: the role publishes the image kernel/initrd from it
        "    provisioning_host_image_bundles: %s" % (ROOT / "extensions/molecule/provisioning/bundles"),
        "    cluster_chap_secrets:",
    ]
    for i in range(1, nodes + 1):
        node = "node%04d" % i
        lines.append('      %s: {secret: "%s", mutual_secret: "%s"}' % (node, chap_secret(node, "secret"), chap_secret(node, "mutual")))
    lines += [
        "  children:",
        "    provisioning:",
        "      hosts:",
        "        ips1: {ansible_host: %s, ansible_connection: containers.podman.podman, provisioning_ip: %s,"
        " provisioning_host_interface: eth0}" % (CONTAINER, IPS_IP),
        "    storage:",
        "      hosts:",
        "        sch1: {storage_ip: 10.80.0.11, storage_pool_devices: [/dev/vdb]}",
        "        sch2: {storage_ip: 10.80.0.12, storage_pool_devices: [/dev/vdb]}",
        "    compute:",
        "      hosts:",
    ]
    for i in range(1, nodes + 1):
        lines.append('        node%04d: {node_mac: "52:54:00:%02x:%02x:%02x"}' % (i, (i >> 16) & 255, (i >> 8) & 255, i & 255))
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")


def container_cpu() -> float:
    """CPU seconds the container's cgroup has used so far (every process in it, podman exec ones included)."""
    return int(sh("podman", "stats", "--no-stream", "--format", "{{.CPUNano}}", CONTAINER).stdout.strip()) / 1e9


class Run:
    """One ansible-playbook run: wall and CPU seconds, each task's own time, the recap of ips1."""

    def __init__(self, wall, cpu, target_cpu, tasks, recap):
        self.wall, self.cpu, self.target_cpu, self.tasks, self.recap = wall, cpu, target_cpu, tasks, recap

    @property
    def per_node(self):
        return sum(self.tasks.get(t, 0.0) for t in PER_NODE_TASKS)


def converge(directory: pathlib.Path, nodes: int) -> Run:
    """Run the provisioning playbook for an N-node inventory."""
    write_inventory(directory, nodes)
    env = dict(os.environ, ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_TASK_OUTPUT_LIMIT="100",
               ANSIBLE_GATHERING="explicit", ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3", ANSIBLE_NOCOLOR="1")
    target_before = container_cpu()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = sh("ansible-playbook", "-i", str(directory / "hosts.yml"), str(ROOT / "playbooks" / "provisioning.yml"),
              check=False, env=env)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    target_cpu = container_cpu() - target_before
    if proc.returncode:
        sys.exit("ansible-playbook failed for %d nodes:\n%s\n%s" % (nodes, proc.stdout[-4000:], proc.stderr[-2000:]))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    tasks = {}
    for m in re.finditer(r"^diskless\.cluster\.provisioning_host : (.+?) -+ (\d+\.\d+)s$", proc.stdout, re.M):
        tasks[m.group(1).strip()] = float(m.group(2))
    recap = re.search(r"^ips1\s+: (.*)$", proc.stdout, re.M).group(1)
    return Run(wall, cpu, target_cpu, tasks, recap)


def best(runs, attribute):
    return min(getattr(r, attribute) for r in runs)


def dnsmasq_pid() -> str:
    return sh("podman", "exec", CONTAINER, "systemctl", "show", "--property=MainPID", "--value", "dnsmasq.service").stdout.strip()


def start_container() -> None:
    """A fresh systemd container from the molecule image, alone on an internal network (no route out)."""
    image = sh(str(ROOT / "hack" / "container-image.sh")).stdout.strip()
    sh("podman", "rm", "--force", "--ignore", CONTAINER)
    if sh("podman", "network", "exists", NETWORK, check=False).returncode:
        sh("podman", "network", "create", "--internal", "--disable-dns", "--ipam-driver", "none", NETWORK)
    sh("podman", "run", "--detach", "--name", CONTAINER, "--hostname", "ips1", "--systemd", "always",
       "--network", NETWORK, "--cap-add", "NET_ADMIN,NET_RAW", image, "/sbin/init")
    sh("podman", "exec", CONTAINER, "ip", "address", "replace", IPS_IP + "/20", "dev", "eth0")
    sh("podman", "exec", CONTAINER, "systemctl", "is-system-running", "--wait", check=False)
    # containers may not set the clock: chrony serves time without touching it (as in the molecule prepare)
    sh("podman", "exec", CONTAINER, "sh", "-c",
       "mkdir -p /etc/systemd/system/chrony.service.d && printf '[Unit]\\nConditionCapability=\\n' "
       "> /etc/systemd/system/chrony.service.d/container.conf && echo 'DAEMON_OPTS=\"-F 0 -x\"' > /etc/default/chrony "
       "&& systemctl daemon-reload")


def stop_container() -> None:
    sh("podman", "rm", "--force", "--time", "5", CONTAINER, check=False)
    sh("podman", "network", "rm", NETWORK, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--keep", action="store_true", help="leave the container running afterwards")
    parser.add_argument("--tasks", action="store_true", help="print every task's own time for each size")
    parser.add_argument("--repeat", type=int, default=1, metavar="R",
                        help="measure each size R times and keep the lowest figure of each column (noisy machines)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    start_container()
    try:
        with tempfile.TemporaryDirectory(prefix="diskless-bench-") as tmp:
            inv = pathlib.Path(tmp)
            wall = converge(inv, 1).wall
            print("first converge (1 node, services configured and restarted): %.1f s" % wall)
            print()
            print("%6s  %-26s  %-9s  %-26s" % ("", "------ apply: wall, cpu --", "per-node", "------ again: wall, cpu --"))
            print("%6s  %8s %8s %8s  %9s  %8s %8s %8s  %10s  %s" % (
                "nodes", "wall [s]", "ctl [s]", "tgt [s]", "tasks [s]", "wall [s]", "ctl [s]", "tgt [s]", "dnsmasq",
                "apply / again"))
            for n in sizes:
                applies, agains, same = [], [], True
                for _round in range(args.repeat):
                    converge(inv, 1)
                    pid = dnsmasq_pid()
                    applies.append(converge(inv, n))
                    agains.append(converge(inv, n))
                    same = same and dnsmasq_pid() == pid
                print("%6d  %8.1f %8.1f %8.1f  %9.2f  %8.1f %8.1f %8.1f  %10s  %s" % (
                    n, best(applies, "wall"), best(applies, "cpu"), best(applies, "target_cpu"), best(applies, "per_node"),
                    best(agains, "wall"), best(agains, "cpu"), best(agains, "target_cpu"),
                    "same PID" if same else "RESTARTED", "%s / %s" % (applies[-1].recap.split()[1], agains[-1].recap.split()[1])))
                if args.tasks:
                    for name, seconds in sorted(applies[-1].tasks.items(), key=lambda kv: -kv[1]):
                        print("        %6.2f  %s" % (seconds, name))
            files = sh("podman", "exec", CONTAINER, "sh", "-c",
                       "ls /etc/dnsmasq.hosts.d | wc -l; ls /srv/diskless/restricted | wc -l").stdout.split()
            print()
            print("after the last size: %s reservation files, %s restricted boot files" % tuple(files))
            print("per-node tasks = own wall time (profile_tasks) of taking the host's plan slice (plan_slice), the 3")
            print("file_set calls and the nginx site template. ctl = CPU of ansible-playbook and its children (workers,")
            print("podman clients); tgt = CPU of the container's cgroup. With --repeat, the lowest of the runs.")
    finally:
        if not args.keep:
            stop_container()


if __name__ == "__main__":
    main()
