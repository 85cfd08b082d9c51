# SPDX-License-Identifier: GPL-3.0-or-later
"""The provisioning host, seen by real clients on the internal boot network.

Runs after converge, idempotence and side_effect.yml (which took client1's first lease, tried a broken
dnsmasq option, added node003 and re-ran the role). Expected values come from the real planner's
output (slices.json written by side_effect.yml), never from copies in this file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import subprocess
import time

import pytest
import testinfra
import yaml

SCENARIO = pathlib.Path(__file__).resolve().parents[1]
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LAB = yaml.safe_load((SCENARIO / "vars" / "lab.yml").read_text())
IPS = LAB["lab_provisioning"]["name"]
IPS_IP = LAB["lab_provisioning"]["address"].split("/")[0]
CLIENT1, CLIENT2, CLIENT3 = (c["name"] for c in LAB["lab_clients"])
UNKNOWN_MAC = LAB["lab_clients"][1]["mac"]
BASE = "http://%s" % IPS_IP


@pytest.fixture(scope="module")
def plan():
    """What the plan gave the provisioning host and the nodes (their slices, written by side_effect.yml)."""
    slices = json.loads((EPHEMERAL / "slices.json").read_text())
    ips = next(s for s in slices.values() if s["role"] == "provisioning")
    nodes = {}
    for node in ips["nodes"]:
        mac = node["mac_hyphen"]
        nodes[node["name"]] = dict(node, ip=slices[node["name"]]["ip"],
                                   boot_script=ips["restricted"]["files"][mac + ".ipxe"],
                                   initramfs_conf=ips["restricted"]["secret_files"][mac + ".conf"])
    return {"cluster": ips["cluster"], "nodes": nodes, "images": {i["name"]: i for i in ips["images"]}}


def host(name):
    return testinfra.get_host("podman://" + name)


def lease(name, conf=None, leasefile="/var/lib/dhcp/dhclient.leases", script=None):
    """Run a real DHCP exchange from a client container; return (address, lease file text, log)."""
    client = host(name)
    client.run("test -f /run/dhclient.pid && kill $(cat /run/dhclient.pid); rm -f /run/dhclient.pid")
    cmd = ["dhclient", "-1", "-v", "-lf", leasefile, "-pf", "/run/dhclient.pid"]
    if conf:
        client.run("cat > /tmp/dhclient-test.conf <<'EOF'\n%s\nEOF" % conf)
        cmd += ["-cf", "/tmp/dhclient-test.conf"]
    if script:
        cmd += ["-sf", script]
    out = client.run_expect([0], " ".join(cmd + ["eth0"]))
    text = client.file(leasefile).content_string
    last = text.rsplit("lease {", 1)[-1]
    address = next(line.split()[1].rstrip(";") for line in last.splitlines() if "fixed-address" in line)
    return address, last, out.stderr


def http_status(name, path):
    return host(name).check_output("curl -s -o /dev/null -w '%%{http_code}' %s%s", BASE, path)


def http_get(name, path):
    return host(name).check_output("curl -fsS %s%s", BASE, path) + "\n"


# --- a known node ------------------------------------------------------------------------------------

def test_known_node_renews_its_reserved_address(plan):
    """client1 took its lease before node003 was added; asking again gets an ACK for the same address."""
    address, last, log = lease(CLIENT1)
    assert address == plan["nodes"]["node001"]["ip"]
    assert "DHCPACK of %s from %s" % (address, IPS_IP) in log
    assert 'filename "undionly.kpxe";' in last
    assert "option ntp-servers %s;" % plan["cluster"]["ntp_server"] in last
    assert host(CLIENT1).interface("eth0").addresses[0] == address


def test_known_node_fetches_ipxe_by_tftp():
    client, ips = host(CLIENT1), host(IPS)
    client.run_expect([0], "rm -f /tmp/undionly.kpxe && tftp -m binary %s -c get undionly.kpxe /tmp/undionly.kpxe", IPS_IP)
    got = client.check_output("sha256sum /tmp/undionly.kpxe").split()[0]
    assert got == ips.check_output("sha256sum /usr/lib/ipxe/undionly.kpxe").split()[0]


def test_known_node_fetches_its_own_script_and_secret(plan):
    node = plan["nodes"]["node001"]
    assert http_get(CLIENT1, "/nodes/%s.ipxe" % node["mac_hyphen"]).rstrip("\n") == node["boot_script"].rstrip("\n")
    assert http_get(CLIENT1, "/nodes/%s.conf" % node["mac_hyphen"]).rstrip("\n") == node["initramfs_conf"].rstrip("\n")


def test_known_node_fetches_its_own_ssh_host_keys_and_nobody_else_does(plan):
    """The provisioning host keeps one key pair per node and type; only the node's address may read it."""
    ips = host(IPS)
    lease(CLIENT2)      # another machine of the boot network (a dynamic address) asks for node001's keys
    node = plan["nodes"]["node001"]
    for t in ("ed25519", "ecdsa"):
        url = "/nodes/%s.ssh_host_%s_key" % (node["mac_hyphen"], t)
        assert "%s /etc/diskless/ssh_host_%s_key mode=600" % (url, t) in node["boot_script"]
        stored = "/var/lib/diskless-cluster/node-ssh-host-keys/node001/ssh_host_%s_key" % t
        key = ips.file(stored)
        assert (key.user, key.group, key.mode) == ("root", "www-data", 0o640)
        got = http_get(CLIENT1, url)
        assert got.rstrip("\n") == key.content_string.rstrip("\n")
        assert got.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert http_status(CLIENT2, url) == "403"
    # every node of the plan has its pair (node003 was added by side_effect.yml)
    for name in plan["nodes"]:
        ips.run_expect([0], "ssh-keygen -l -f /var/lib/diskless-cluster/node-ssh-host-keys/%s/ssh_host_ed25519_key.pub", name)


def test_generic_script_chains_to_the_mac_script(plan):
    script = http_get(CLIENT1, "/boot.ipxe")
    assert script.startswith("#!ipxe\n")
    assert "chain --replace --autofree %s/nodes/${mac:hexhyp}.ipxe || goto unknown" % plan["cluster"]["http_base"] in script


@pytest.mark.parametrize(
    "options, filename",
    [
        ("", "undionly.kpxe"),
        ("option arch code 93 = unsigned integer 16;\nsend arch 7;", "snponly.efi"),
        ('send user-class "iPXE";', "http://10.77.0.2/boot.ipxe"),
        ('option arch code 93 = unsigned integer 16;\nsend arch 7;\nsend user-class "iPXE";', "http://10.77.0.2/boot.ipxe"),
    ],
    ids=["bios", "uefi-x86-64", "ipxe-bios", "ipxe-uefi"],
)
def test_boot_file_follows_arch_and_breaks_the_ipxe_loop(options, filename):
    """Option 93 picks the firmware's iPXE binary; an iPXE client (user class) gets the HTTP script."""
    last = lease(CLIENT2, conf=options, leasefile="/tmp/arch-test.leases", script="/bin/true")[1]
    assert 'filename "%s";' % filename in last


# --- an unknown MAC ----------------------------------------------------------------------------------

def test_unknown_mac_gets_a_dynamic_address_and_discovery_only(plan):
    address = lease(CLIENT2)[0]
    first, last = (ipaddress.ip_address(a) for a in plan["cluster"]["dhcp_range"])
    assert first <= ipaddress.ip_address(address) <= last
    own = UNKNOWN_MAC.replace(":", "-")
    known = plan["nodes"]["node001"]["mac_hyphen"]
    assert http_status(CLIENT2, "/nodes/%s.ipxe" % own) == "404"
    assert http_status(CLIENT2, "/nodes/%s.ipxe" % known) == "403"
    assert http_status(CLIENT2, "/nodes/%s.conf" % known) == "403"
    assert "imgfetch --name report %s/discover?mac=${mac:hexhyp}" % plan["cluster"]["http_base"] in http_get(
        CLIENT2, "/discover.ipxe"
    )


def test_discovery_report_becomes_an_inventory_line(plan):
    own = UNKNOWN_MAC.replace(":", "-")
    uuid = "8e2c0f3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    query = "/discover?mac=%s&arch=x86_64&platform=pcbios&uuid=%s&serial=LAB-0001" % (own, uuid)
    assert http_status(CLIENT2, query) == "200"
    # a known node reporting itself (e.g. a wiped NIC ROM setting) must not be proposed again
    assert http_status(CLIENT1, "/discover?mac=%s&arch=x86_64&platform=efi&uuid=" % plan["nodes"]["node001"]["mac_hyphen"]) == "200"
    out = EPHEMERAL / "register.yml"
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="default")
    subprocess.run(
        ["ansible-playbook", "-i", str(SCENARIO / "inventory"), str(SCENARIO.parents[2] / "playbooks" / "register.yml"),
         "-e", "register_output=%s" % out],
        check=True, env=env, cwd=SCENARIO.parents[2], stdout=subprocess.DEVNULL,
    )
    proposed = yaml.safe_load(out.read_text())
    # register.yml reads the static inventory (node003 only exists in side_effect.yml's memory)
    inventory = yaml.safe_load((SCENARIO / "inventory" / "hosts.yml").read_text())
    next_index = max(plan["nodes"][n]["index"] for n in inventory["all"]["children"]["compute"]["hosts"]) + 1
    assert proposed == {"node%03d" % next_index: {"node_mac": UNKNOWN_MAC}}
    assert "uuid=%s" % uuid in out.read_text()


# --- adding a node on a running host -----------------------------------------------------------------

def test_new_node_boots_without_dnsmasq_restart(plan):
    node = plan["nodes"]["node003"]
    address = lease(CLIENT3)[0]
    assert address == node["ip"]
    assert http_get(CLIENT3, "/nodes/%s.ipxe" % node["mac_hyphen"]).rstrip("\n") == node["boot_script"].rstrip("\n")
    before = (EPHEMERAL / "dnsmasq-pid-before").read_text().strip()
    now = host(IPS).check_output("systemctl show --property=MainPID --value dnsmasq.service")
    assert before != "0" and now == before


def test_refused_config_never_went_live():
    ips = host(IPS)
    assert "no-such-option" not in ips.file("/etc/dnsmasq.d/diskless-cluster.conf").content_string
    assert ips.service("dnsmasq").is_running


# --- cluster services --------------------------------------------------------------------------------

def test_ntp_server_answers_the_boot_network():
    out = host(CLIENT1).run_expect([0], "chronyd -Q -t 20 'server %s iburst maxsamples 1'", IPS_IP)
    assert "System clock wrong by" in out.stdout + out.stderr


@pytest.mark.parametrize("transport", ["-d", "-T"], ids=["udp", "tcp"])
def test_node_logs_land_in_one_file_per_node_with_a_boot_session_tag(transport):
    boot_id = "3f2a9c1e-7d4b-4e8a-9c0d-2b1e5f6a7c8d"
    marker = "diskless-test-%s-%d" % (transport, time.time_ns())
    host(CLIENT1).run_expect(
        [0],
        "logger -n %s -P 514 %s --rfc5424 --sd-id diskless@32473 --sd-param 'boot=\"%s\"' -t kernel %s",
        IPS_IP, transport, boot_id, marker,
    )
    log = host(IPS).file("/var/log/diskless/nodes/client1.log")
    for _attempt in range(50):
        if log.exists and marker in log.content_string:
            break
        time.sleep(0.1)
    line = next(line for line in log.content_string.splitlines() if marker in line)
    assert " client1/3f2a9c1e kernel" in line


def test_image_kernel_and_initrd_are_served_as_built(plan):
    """Every image of the plan is published from its bundle: kernel and initrd, byte for byte."""
    image = plan["images"]["debian12"]
    bundle = SCENARIO / "bundles" / image["name"] / image["version"]
    for name in ("vmlinuz", "initrd.img"):
        served = host(CLIENT1).check_output("curl -sf %s%s/%s | sha256sum", BASE, image["http_path"], name).split()[0]
        expected = subprocess.run(["sha256sum", str(bundle / name)], check=True, capture_output=True,
                                  text=True).stdout.split()[0]
        assert served == expected, name
