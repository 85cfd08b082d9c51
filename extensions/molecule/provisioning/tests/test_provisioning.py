# SPDX-License-Identifier: GPL-3.0-or-later
"""The provisioning host, seen by real clients on the internal boot network.

Runs after converge, idempotence and side_effect.yml (which took client1's first lease, tried a broken
dnsmasq option, bound a secret to Tang from client1 and wiped Tang's keys, added node003 and re-ran the role).
Expected values come from the real planner's output (slices.json written by side_effect.yml), never from
copies in this file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import os
import pathlib
import subprocess
import time

import tarfile

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
    return {"cluster": ips["cluster"], "nodes": nodes, "images": {i["name"]: i for i in ips["images"]},
            "tang": ips["tang"]}


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


# --- Tang: the LUKS nodes' key server ----------------------------------------------------------------

TANG_URL = BASE + "/tang"
TANG_SECRET, TANG_JWE = LAB["lab_tang_secret"], LAB["lab_tang_jwe"]
TANG_PORT = 7500  # provisioning_host_tang_port (the role's default; the scenario keeps it)


def clevis_encrypt(name, secret):
    return host(name).check_output("echo %s | clevis encrypt tang %s -y", secret, json.dumps({"url": TANG_URL}))


def clevis_decrypt(name, jwe):
    # no newline after the JWE: clevis decrypt prints the secret but fails with one (as clevis luks never sends)
    return host(name).run("printf %%s %s | clevis decrypt", jwe)


def thumbprint(jwk):
    """RFC 7638 SHA-256 thumbprint of an EC key (what `jose jwk thp -a S256` prints, and Tang's key names)."""
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


def tang_keys(name=IPS):
    """{file name: (thumbprint, sha256 of the file)} of the keys tangd reads, as side_effect.yml recorded them."""
    out = host(name).check_output(
        "for k in $(find /var/lib/tang -maxdepth 1 -type f -name '*.jwk' | sort); do "
        "echo \"$(basename \"$k\") $(jose jwk thp -a S256 -i \"$k\") $(sha256sum < \"$k\" | cut -d' ' -f1)\"; done")
    return parse_keys(out)


def parse_keys(text):
    return {name: (thp, digest) for name, thp, digest in (line.split() for line in text.splitlines() if line.strip())}


def test_tang_answers_exactly_the_luks_nodes(plan):
    """The plan's Tang clients are the LUKS nodes' addresses (node001 only), and nginx allows those alone."""
    assert plan["tang"]["path"] == "/tang"
    assert plan["tang"]["clients"] == [plan["nodes"]["node001"]["ip"]]
    site = host(IPS).file("/etc/nginx/conf.d/diskless-cluster.conf").content_string
    block = site.split("location ^~ /tang/ {", 1)[1].split("}", 1)[0]
    rules = [line.strip().rstrip(";") for line in block.splitlines() if line.strip()]
    assert rules == ["allow %s" % ip for ip in plan["tang"]["clients"]] + [
        "deny all", "proxy_pass http://127.0.0.1:%d/" % TANG_PORT]


def test_luks_node_binds_and_unlocks_with_tang(plan):
    """(a) a round trip from the LUKS node: Clevis fetches /tang/adv, encrypts, then recovers through /tang/rec."""
    assert host(CLIENT1).interface("eth0").addresses[0] == plan["nodes"]["node001"]["ip"]
    jwe = clevis_encrypt(CLIENT1, "round-trip")
    assert json.loads(base64.urlsafe_b64decode(jwe.split(".")[0] + "==="))["clevis"]["tang"]["url"] == TANG_URL
    out = clevis_decrypt(CLIENT1, jwe)
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == "round-trip"


def test_tang_refuses_every_other_address(plan):
    """(b) an unknown machine, a node without LUKS and the provisioning host's own address get 403: no
    advertisement, and client1's secret cannot be recovered from there."""
    jwe = host(CLIENT1).file(TANG_JWE).content_string.strip()
    others = {CLIENT2: lease(CLIENT2)[0], CLIENT3: lease(CLIENT3)[0]}
    assert others[CLIENT3] == plan["nodes"]["node003"]["ip"]
    for name, address in others.items():
        assert address not in plan["tang"]["clients"]
        assert http_status(name, "/tang/adv") == "403", name
        out = clevis_decrypt(name, jwe)
        assert out.rc != 0 and TANG_SECRET not in out.stdout, name
    assert http_status(IPS, "/tang/adv") == "403"


def test_rebuilt_host_restored_its_tang_keys_from_the_backup():
    """(c) side_effect.yml wiped /var/lib/tang and re-ran the role: the keys are back, byte for byte as before and
    as in the controller's backup, and the secret client1 bound before the wipe still unlocks."""
    before = parse_keys((EPHEMERAL / "tang-keys-before-the-wipe").read_text())
    now = tang_keys()
    assert len(before) >= 2 and now == before
    for name, (thp, _digest) in now.items():
        assert name.lstrip(".") == thp + ".jwk"
    backup_dir = EPHEMERAL / "tang-backup"
    assert sorted(p.name for p in backup_dir.iterdir()) == ["ips1.tang"]  # never rewritten: no older copy beside it
    backup = backup_dir / "ips1.tang"
    assert backup.stat().st_mode & 0o777 == 0o600 and backup_dir.stat().st_mode & 0o777 == 0o700
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(backup.read_text()))) as tar:
        saved = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert {name: (thumbprint(json.loads(data)), hashlib.sha256(data).hexdigest()) for name, data in saved.items()} == now
    for name in now:
        key = host(IPS).file("/var/lib/tang/" + name)
        assert (key.user, key.group, key.mode) == ("_tang", "_tang", 0o440)
    out = clevis_decrypt(CLIENT1, host(CLIENT1).file(TANG_JWE).content_string.strip())
    assert out.rc == 0, out.stderr
    assert out.stdout.strip() == TANG_SECRET


def test_tang_listens_on_the_loopback_only():
    """(d) tangd's socket (held by systemd, socket activation) is 127.0.0.1:<port> alone; port 80 is nginx's."""
    ips = host(IPS)
    listening = {}  # address:port -> the processes holding it
    for line in ips.check_output("ss -Hltnp").splitlines():
        fields = line.split()
        listening[fields[3]] = " ".join(fields[5:])
    assert [a for a, users in listening.items() if '"systemd"' in users] == ["127.0.0.1:%d" % TANG_PORT]
    assert [a for a in listening if a.rsplit(":", 1)[1] == str(TANG_PORT)] == ["127.0.0.1:%d" % TANG_PORT]
    port80 = {a: users for a, users in listening.items() if a.rsplit(":", 1)[1] == "80"}
    assert port80 and all(users.startswith('users:(("nginx",') for users in port80.values()), port80
    assert ips.check_output("systemctl show --property=Listen --value tangd.socket") == "127.0.0.1:%d (Stream)" % TANG_PORT
    assert ips.service("tangd.socket").is_enabled
