# SPDX-License-Identifier: GPL-3.0-or-later
"""The cluster planner: table tests (inventory -> plan), the bad-input corpus, and stability properties."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plan_base import BASE_CLUSTER, inventory  # (pytest puts this test's folder on the import path)

from ansible_collections.diskless.cluster.plugins.module_utils.plan import (
    SECRET_MASK,
    PlanError,
    build_plan,
    make_iqn,
    normalize_mac,
    parse_size,
    place,
    redact,
)

CORPUS = yaml.safe_load((Path(__file__).parent / "fixtures" / "plan_errors.yml").read_text())


def plan_of(**changes):
    return build_plan(*inventory(**changes))


# --------------------------------------------------------------------------------------------- the corpus
def test_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 40
    ids = [case["id"] for case in CORPUS]
    assert len(ids) == len(set(ids))
    assert all(case["errors"] for case in CORPUS), "every corpus case must fail"
    # distinct inventories and distinct failures
    assert len({json.dumps([c.get("cluster"), c.get("hosts"), c.get("groups")], sort_keys=True) for c in CORPUS}) == len(CORPUS)
    assert len({tuple(c["errors"]) for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_bad_inventory_fails_with_exact_lines(case):
    with pytest.raises(PlanError) as info:
        plan_of(cluster=case.get("cluster"), hosts=case.get("hosts"), groups=case.get("groups"))
    assert info.value.errors == case["errors"]
    for line in info.value.errors:
        host, field, problem = line.split(": ", 2)
        assert host and field and problem and "\n" not in line
    assert str(info.value).startswith("cluster plan is invalid (%d problem" % len(case["errors"]))


# --------------------------------------------------------------------------------------------- table tests
def test_base_plan_shape():
    plan = plan_of()
    assert plan["version"] == 1
    assert plan["cluster"] == {
        "name": "lab",
        "domain": "lab.example.org",
        "iqn_authority": "iqn.2026-11.org.example.lab",
        "boot_network": "10.77.0.0/24",
        "netmask": "255.255.255.0",
        "prefixlen": 24,
        "gateway": "10.77.0.1",
        "dhcp_range": ["10.77.0.192", "10.77.0.254"],
        "dhcp_lease_time": "12h",
        "provisioning_ip": "10.77.0.2",
        "http_base": "http://10.77.0.2",
        "ntp_server": "10.77.0.2",
        "syslog_server": "10.77.0.2",
        "iscsi_port": 3260,
        "http_port": 80,
        "mutual_chap_user": "lab-storage",
        "tang_urls": ["http://10.77.0.2/tang"],
        "tang_threshold": 1,
    }
    assert plan["images"]["debian12"] == {
        "name": "debian12", "version": "1", "size_bytes": 2 << 30, "label": "dlroot",
        "http_path": "/images/debian12/1", "golden_volume": "golden/debian12", "snapshot": "v1", "live": False,
        "luks_golden_volume": "golden/debian12-luks", "luks": False,
    }
    assert sorted(plan["nodes"]) == ["node001", "node002", "node003"]
    assert sorted(plan["storage"]) == ["sch1", "sch2"]
    assert sorted(plan["provisioning"]) == ["ips1"]


def test_iscsi_node():
    node = plan_of()["nodes"]["node001"]
    host = place("node001", ["sch1", "sch2"], 1)[0]
    portal = {"sch1": "10.77.0.11", "sch2": "10.77.0.12"}[host]
    assert node["ip"] == "10.77.0.101"
    assert node["mac"] == "52:54:00:00:01:01" and node["mac_hyphen"] == "52-54-00-00-01-01"
    assert node["initiator_iqn"] == "iqn.2026-11.org.example.lab:node001"
    assert node["chap_user"] == "node001" and node["chap_secret"] == "node001-secret-a"
    assert node["mutual_chap_user"] == "lab-storage" and node["mutual_chap_secret"] == "node001-mutual-a"
    assert node["paths"] == [{
        "storage_host": host, "portal": portal, "port": 3260,
        "target_iqn": "iqn.2026-11.org.example.lab:%s.node001-root" % host,
        "lun": 0, "volume": "tank/nodes/node001-root", "readonly": False,
    }]
    assert node["kernel_args"] == [
        "ip=10.77.0.101::10.77.0.1:255.255.255.0:node001::off", "BOOTIF=01-52-54-00-00-01-01",
        "boot=diskless", "ro", "diskless.node=node001",
    ]
    assert node["boot_script"].splitlines() == [
        "#!ipxe",
        "# diskless.cluster: node001 (root iscsi, image debian12 v1). Generated from the inventory; do not edit.",
        "imgfree",
        "kernel http://10.77.0.2/images/debian12/1/vmlinuz " + " ".join(node["kernel_args"]),
        "initrd http://10.77.0.2/images/debian12/1/initrd.img",
        "initrd http://10.77.0.2/nodes/52-54-00-00-01-01.conf /etc/diskless/node.conf mode=600",
        # the node's own SSH host keys, kept by the provisioning host
        "initrd http://10.77.0.2/nodes/52-54-00-00-01-01.ssh_host_ed25519_key /etc/diskless/ssh_host_ed25519_key mode=600",
        "initrd http://10.77.0.2/nodes/52-54-00-00-01-01.ssh_host_ecdsa_key /etc/diskless/ssh_host_ecdsa_key mode=600",
        "boot",
    ]
    assert node["initramfs_conf"].splitlines() == [
        "# diskless.cluster: boot settings of node001 (root iscsi). SECRET: served only to 10.77.0.101; read by the initramfs.",
        "DL_NODE='node001'",
        "DL_HOSTNAME='node001'",
        "DL_ROOT_MODE='iscsi'",
        "DL_MACHINE_ID='%s'" % MACHINE_IDS["node001"],
        "DL_INITIATOR='iqn.2026-11.org.example.lab:node001'",
        "DL_CHAP_USER='node001'",
        "DL_CHAP_SECRET='node001-secret-a'",
        "DL_MUTUAL_USER='lab-storage'",
        "DL_MUTUAL_SECRET='node001-mutual-a'",
        "DL_PATHS='iqn.2026-11.org.example.lab:%s.node001-root,%s,3260,0'" % (host, portal),
        "DL_ISCSI_REPLACEMENT_TIMEOUT='86400'",
        "DL_ISCSI_NOOP_INTERVAL='5'",
        "DL_ISCSI_NOOP_TIMEOUT='5'",
        "DL_PATH_WAIT='0'",
        "DL_MD_NAME=''",
        "DL_OVERLAY=''",
        "DL_OVERLAY_SIZE=''",
        "DL_LIVE_URL=''",
        "DL_LIVE_SUMS_URL=''",
        "DL_LUKS='0'",
        "DL_TANG_URLS=''",
        "DL_TANG_THRESHOLD=''",
    ]
    assert "secret" not in node["boot_script"]
    assert (node["luks"], node["tang_urls"], node["tang_threshold"]) == (False, [], None)


# sha256("lab/<node>")[:32], computed once by hand (sha256sum) so the test does not restate the code
MACHINE_IDS = {
    "node001": "ffa0e77400eaf9b3cebef95918be7848",
    "node002": "f7075904a377f670e9015f5e912deb75",
    "node003": "94c63c23efab50e049a877b7c18c0af4",
    "node004": "6a87e0f03acb97707300e24fc37218fe",
}
KERNEL_ARGS = ["ip=10.77.0.{index}::10.77.0.1:255.255.255.0:{node}::off", "BOOTIF=01-52-54-00-00-01-0{last}", "boot=diskless",
               "ro", "diskless.node={node}"]


def expected_kernel_args(node):
    index = int(node[-3:])
    return [a.format(index=100 + index, node=node, last=index) for a in KERNEL_ARGS]


def conf_lines(text):
    """The DL_* lines of a node.conf as {name: value}; fails on anything that is not NAME='value'."""
    out = {}
    for line in text.splitlines()[1:]:
        name, value = line.split("=", 1)
        assert value.startswith("'") and value.endswith("'"), line
        out[name] = value[1:-1]
    return out


LIVE = {"node004": {"group": "compute", "vars": {"node_mac": "52:54:00:00:01:04", "node_root": "live"}}}
CONTRACT_VARS = ["DL_NODE", "DL_HOSTNAME", "DL_ROOT_MODE", "DL_MACHINE_ID", "DL_INITIATOR", "DL_CHAP_USER", "DL_CHAP_SECRET",
                 "DL_MUTUAL_USER", "DL_MUTUAL_SECRET", "DL_PATHS", "DL_ISCSI_REPLACEMENT_TIMEOUT", "DL_ISCSI_NOOP_INTERVAL",
                 "DL_ISCSI_NOOP_TIMEOUT", "DL_PATH_WAIT", "DL_MD_NAME", "DL_OVERLAY", "DL_OVERLAY_SIZE", "DL_LIVE_URL",
                 "DL_LIVE_SUMS_URL", "DL_LUKS", "DL_TANG_URLS", "DL_TANG_THRESHOLD"]


def test_every_mode_has_the_contract_kernel_args_and_every_conf_variable():
    plan = plan_of(hosts=LIVE)
    for name, node in plan["nodes"].items():
        assert node["kernel_args"] == expected_kernel_args(name)
        assert not [a for a in node["kernel_args"] if a.startswith(("root=", "overlayroot="))]
        assert list(conf_lines(node["initramfs_conf"])) == CONTRACT_VARS, name
        assert "ISCSI_" not in node["initramfs_conf"].replace("DL_ISCSI_", "")
        assert "/etc/diskless/node.conf mode=600" in node["boot_script"]
        assert node["machine_id"] == MACHINE_IDS[name]


def test_mirror_node_conf():
    node = plan_of()["nodes"]["node002"]
    assert conf_lines(node["initramfs_conf"]) == {
        "DL_NODE": "node002", "DL_HOSTNAME": "node002", "DL_ROOT_MODE": "mirror", "DL_MACHINE_ID": MACHINE_IDS["node002"],
        "DL_INITIATOR": "iqn.2026-11.org.example.lab:node002", "DL_CHAP_USER": "node002", "DL_CHAP_SECRET": "node002-secret-a",
        "DL_MUTUAL_USER": "lab-storage", "DL_MUTUAL_SECRET": "node002-mutual-a",
        "DL_PATHS": "iqn.2026-11.org.example.lab:sch1.node002-root,10.77.0.11,3260,0 "
                    "iqn.2026-11.org.example.lab:sch2.node002-root,10.77.0.12,3260,0",
        "DL_ISCSI_REPLACEMENT_TIMEOUT": "5", "DL_ISCSI_NOOP_INTERVAL": "5", "DL_ISCSI_NOOP_TIMEOUT": "5",
        "DL_PATH_WAIT": "30", "DL_MD_NAME": "dlroot", "DL_OVERLAY": "", "DL_OVERLAY_SIZE": "",
        "DL_LIVE_URL": "", "DL_LIVE_SUMS_URL": "", "DL_LUKS": "0", "DL_TANG_URLS": "", "DL_TANG_THRESHOLD": "",
    }


def test_image_node_conf():
    node = plan_of(hosts={"node003": {"node_overlay": "zram", "node_overlay_size": "25%", "node_path_wait": 10,
                                      "node_iscsi_replacement_timeout": 15}})["nodes"]["node003"]
    assert conf_lines(node["initramfs_conf"]) == {
        "DL_NODE": "node003", "DL_HOSTNAME": "node003", "DL_ROOT_MODE": "image", "DL_MACHINE_ID": MACHINE_IDS["node003"],
        "DL_INITIATOR": "iqn.2026-11.org.example.lab:node003", "DL_CHAP_USER": "node003", "DL_CHAP_SECRET": "node003-secret-a",
        "DL_MUTUAL_USER": "lab-storage", "DL_MUTUAL_SECRET": "node003-mutual-a",
        "DL_PATHS": "iqn.2026-11.org.example.lab:shared.debian12-v1,10.77.0.11,3260,0 "
                    "iqn.2026-11.org.example.lab:shared.debian12-v1,10.77.0.12,3260,0",
        "DL_ISCSI_REPLACEMENT_TIMEOUT": "15", "DL_ISCSI_NOOP_INTERVAL": "5", "DL_ISCSI_NOOP_TIMEOUT": "5",
        "DL_PATH_WAIT": "10", "DL_MD_NAME": "", "DL_OVERLAY": "zram", "DL_OVERLAY_SIZE": "25%",
        "DL_LIVE_URL": "", "DL_LIVE_SUMS_URL": "", "DL_LUKS": "0", "DL_TANG_URLS": "", "DL_TANG_THRESHOLD": "",
    }
    default = plan_of()["nodes"]["node003"]
    assert (default["overlay"], default["overlay_size"], default["path_wait"], default["iscsi_replacement_timeout"]) == \
        ("tmpfs", "50%", 30, 5)


def test_live_node_conf():
    plan = plan_of(hosts=LIVE, cluster={"cluster_http_port": 8080})
    node = plan["nodes"]["node004"]
    assert node["initramfs_conf"].splitlines() == [
        "# diskless.cluster: boot settings of node004 (root live). SECRET: served only to 10.77.0.104; read by the initramfs.",
        "DL_NODE='node004'",
        "DL_HOSTNAME='node004'",
        "DL_ROOT_MODE='live'",
        "DL_MACHINE_ID='%s'" % MACHINE_IDS["node004"],
        "DL_INITIATOR=''",
        "DL_CHAP_USER=''",
        "DL_CHAP_SECRET=''",
        "DL_MUTUAL_USER=''",
        "DL_MUTUAL_SECRET=''",
        "DL_PATHS=''",
        "DL_ISCSI_REPLACEMENT_TIMEOUT=''",
        "DL_ISCSI_NOOP_INTERVAL=''",
        "DL_ISCSI_NOOP_TIMEOUT=''",
        "DL_PATH_WAIT=''",
        "DL_MD_NAME=''",
        "DL_OVERLAY='tmpfs'",
        "DL_OVERLAY_SIZE='50%'",
        "DL_LIVE_URL='http://10.77.0.2:8080/images/debian12/1/root.squashfs'",
        "DL_LIVE_SUMS_URL='http://10.77.0.2:8080/images/debian12/1/SHA256SUMS'",
        "DL_LUKS='0'",
        "DL_TANG_URLS=''",
        "DL_TANG_THRESHOLD=''",
    ]
    assert node["kernel_args"] == expected_kernel_args("node004")
    assert (node["paths"], node["initiator_iqn"], node["chap_secret"], node["root_size_bytes"]) == ([], None, None, None)
    assert plan["images"]["debian12"]["live"] is True


def test_live_node_needs_no_chap_entry_and_no_storage_host():
    # node004 has no entry in cluster_chap_secrets (the base inventory's are for node001-003)
    plan = plan_of(hosts=LIVE)
    assert "node004" in plan["nodes"] and "node004" not in json.dumps(plan["storage"])
    # a cluster of live nodes only: no storage host, none demanded
    alone = plan_of(hosts=dict(LIVE, node001=None, node002=None, node003=None, sch1=None, sch2=None),
                    cluster={"cluster_chap_secrets": None})
    assert sorted(alone["nodes"]) == ["node004"] and alone["storage"] == {}
    assert alone["images"]["debian12"]["live"] is True
    # ...but an iSCSI root still needs one
    with pytest.raises(PlanError) as info:
        plan_of(hosts=LIVE, groups={"storage": []})
    assert info.value.errors == ["all: groups: compute nodes with an iSCSI root (iscsi, mirror, image) need at least one "
                                 "host in group 'storage'"]


def test_timeouts_from_extra_vars_strings_are_numbers():
    as_text = plan_of(hosts={"node002": {"node_iscsi_replacement_timeout": "7", "node_path_wait": "0"}})
    as_int = plan_of(hosts={"node002": {"node_iscsi_replacement_timeout": 7, "node_path_wait": 0}})
    assert as_text == as_int
    assert as_int["nodes"]["node002"]["iscsi_replacement_timeout"] == 7 and as_int["nodes"]["node002"]["path_wait"] == 0


def test_mirror_halves_on_two_hosts_and_image_on_all():
    plan = plan_of()
    mirror = plan["nodes"]["node002"]["paths"]
    assert sorted(p["storage_host"] for p in mirror) == ["sch1", "sch2"]
    assert {p["volume"] for p in mirror} == {"tank/nodes/node002-root"}
    image = plan["nodes"]["node003"]
    assert [(p["storage_host"], p["target_iqn"], p["readonly"]) for p in image["paths"]] == [
        ("sch1", "iqn.2026-11.org.example.lab:shared.debian12-v1", True),
        ("sch2", "iqn.2026-11.org.example.lab:shared.debian12-v1", True),
    ]
    assert image["root_size_bytes"] is None


def test_storage_slice():
    plan = plan_of()
    sch1 = plan["storage"]["sch1"]
    assert sch1["portal_ip"] == "10.77.0.11" and sch1["pool"] == "tank" and sch1["pool_devices"] == ["/dev/vdb"]
    assert sch1["golden"] == [{"image": "debian12", "volume": "tank/golden/debian12", "size_bytes": 2 << 30,
                               "snapshot": "tank/golden/debian12@v1", "encrypted": False}]
    names = [v["name"] for v in sch1["volumes"]]
    assert "tank/nodes/node002-root" in names and "tank/shared/debian12-v1" in names
    shared = [e for e in sch1["exports"] if e["target_iqn"].endswith(":shared.debian12-v1")][0]
    assert shared["readonly"] is True and shared["device"] == "/dev/zvol/tank/shared/debian12-v1"
    assert shared["backstore"] == "shared-debian12-v1"
    assert [a["node"] for a in shared["acls"]] == ["node003"] and shared["acls"][0]["write_protect"] is True
    # the shared image has the same unit serial on every storage host (multipath), node volumes none
    shared2 = [e for e in plan["storage"]["sch2"]["exports"] if e["target_iqn"] == shared["target_iqn"]][0]
    assert shared["wwn"] == shared2["wwn"] and len(shared["wwn"]) == 36
    mirror = [e for e in sch1["exports"] if e["target_iqn"].endswith("sch1.node002-root")][0]
    assert mirror["wwn"] is None and mirror["readonly"] is False and mirror["lun"] == 0
    assert mirror["portals"] == [{"ip": "10.77.0.11", "port": 3260}]
    assert mirror["acls"] == [{
        "node": "node002", "initiator_iqn": "iqn.2026-11.org.example.lab:node002",
        "userid": "node002", "password": "node002-secret-a",
        "mutual_userid": "lab-storage", "mutual_password": "node002-mutual-a",
        "mapped_lun": 0, "write_protect": False,
    }]
    assert [e["target_iqn"] for e in sch1["exports"]] == sorted(e["target_iqn"] for e in sch1["exports"])


def test_provisioning_slice():
    prov = plan_of()["provisioning"]["ips1"]
    assert prov["ip"] == "10.77.0.2"
    assert prov["dhcp_hosts"][0] == {"node": "node001", "file": "52-54-00-00-01-01.conf",
                                     "line": "52:54:00:00:01:01,10.77.0.101,node001,12h"}
    files = {f["file"]: f for f in prov["boot_files"]}
    assert files["52-54-00-00-01-01.ipxe"]["secret"] is False
    assert files["52-54-00-00-01-01.conf"]["secret"] is True and files["52-54-00-00-01-01.conf"]["allow"] == "10.77.0.101"
    assert len(prov["boot_files"]) == 6
    assert prov["tang_clients"] == []


@pytest.mark.parametrize("changes, node, field, expected", [
    ({"hosts": {"node001": {"node_ip": "10.77.0.50"}}}, "node001", "ip", "10.77.0.50"),
    ({"hosts": {"node001": {"cluster_node_ip_offset": 20}}}, "node001", "ip", "10.77.0.21"),
    ({"cluster": {"cluster_node_ip_offset": 20}}, "node003", "ip", "10.77.0.23"),
    ({"hosts": {"node001": {"node_index": 7}}}, "node001", "ip", "10.77.0.107"),
    ({"hosts": {"node001": {"node_mac": "52-54-00-AA-BB-CC"}}}, "node001", "mac", "52:54:00:aa:bb:cc"),
    ({"hosts": {"node001": {"node_mac": "5254.00aa.bbcc"}}}, "node001", "mac_hyphen", "52-54-00-aa-bb-cc"),
    ({"hosts": {"node001": {"node_hostname": "Compute-1"}}}, "node001", "initiator_iqn", "iqn.2026-11.org.example.lab:compute-1"),
    ({"hosts": {"node001": {"node_root_size": "8G"}}}, "node001", "root_size_bytes", 8 << 30),
    ({"hosts": {"node001": {"node_luks": True}}}, "node001", "luks", True),
    ({"hosts": {"node001": {"node_chap_secret": "per-host-secret-1"}}}, "node001", "chap_secret", "per-host-secret-1"),
    ({"cluster": {"cluster_domain": "Cluster.Example.COM"}}, "node001", "initiator_iqn", "iqn.2026-11.com.example.cluster:node001"),
])
def test_node_table(changes, node, field, expected):
    assert plan_of(**changes)["nodes"][node][field] == expected


def test_pins_and_ports():
    plan = plan_of(cluster={"cluster_iscsi_port": 3261, "cluster_http_port": 8080},
                   hosts={"node001": {"node_storage": ["sch2"]}, "node003": {"node_storage": ["sch1"]}})
    assert [p["storage_host"] for p in plan["nodes"]["node001"]["paths"]] == ["sch2"]
    assert [p["storage_host"] for p in plan["nodes"]["node003"]["paths"]] == ["sch1"]
    assert plan["nodes"]["node001"]["paths"][0]["port"] == 3261
    assert plan["cluster"]["http_base"] == "http://10.77.0.2:8080"
    assert "http://10.77.0.2:8080/nodes/52-54-00-00-01-01.conf" in plan["nodes"]["node001"]["boot_script"]


# ---------------------------------------------------------------------- LUKS2 bound to Tang (issue 14)
LUKS = {"node001": {"node_luks": True}, "node002": {"node_luks": True}}
IPS2 = {"ips2": {"group": "provisioning", "vars": {"ansible_host": "10.77.0.3"}}}


def test_luks_node_conf_names_the_tang_servers_and_holds_no_key():
    plan = plan_of(hosts=LUKS)
    for name in ("node001", "node002"):
        node = plan["nodes"][name]
        conf = conf_lines(node["initramfs_conf"])
        assert list(conf) == CONTRACT_VARS
        assert (conf["DL_LUKS"], conf["DL_TANG_URLS"], conf["DL_TANG_THRESHOLD"]) == ("1", "http://10.77.0.2/tang", "1")
        assert "LUKS_KEY" not in node["initramfs_conf"] and "luks_key" not in node
        assert (node["tang_urls"], node["tang_threshold"]) == (["http://10.77.0.2/tang"], 1)
        # what is secret in node.conf is the CHAP pair only, as without LUKS
        plain = plan_of()["nodes"][name]
        assert {k: v for k, v in conf.items() if not k.startswith(("DL_LUKS", "DL_TANG_"))} == \
            {k: v for k, v in conf_lines(plain["initramfs_conf"]).items() if not k.startswith(("DL_LUKS", "DL_TANG_"))}
        assert "+ luks" in node["boot_script"] and "tang" not in node["boot_script"]
    # the others are untouched
    assert plan["nodes"]["node003"] == plan_of()["nodes"]["node003"]


@pytest.mark.parametrize("cluster, hosts, urls", [
    ({}, {}, ["http://10.77.0.2/tang"]),
    ({"cluster_http_port": 8080}, {}, ["http://10.77.0.2:8080/tang"]),
    # one URL per provisioning host, sorted by host name (not by inventory order, not the HTTP address)
    ({"cluster_http_address": "10.77.0.9"}, {"ips0": {"group": "provisioning", "vars": {"provisioning_ip": "10.77.0.4"}}},
     ["http://10.77.0.4/tang", "http://10.77.0.2/tang"]),
    ({"cluster_http_port": 8080}, IPS2, ["http://10.77.0.2:8080/tang", "http://10.77.0.3:8080/tang"]),
])
def test_tang_urls_one_per_provisioning_host(cluster, hosts, urls):
    plan = plan_of(cluster=cluster, hosts=dict(hosts, **LUKS))
    assert plan["cluster"]["tang_urls"] == urls
    for name in ("node001", "node002"):
        assert plan["nodes"][name]["tang_urls"] == urls
        assert conf_lines(plan["nodes"][name]["initramfs_conf"])["DL_TANG_URLS"] == " ".join(urls)
    assert plan["nodes"]["node003"]["tang_urls"] == []


@pytest.mark.parametrize("threshold", [1, 2, "2"])
def test_tang_threshold_from_1_to_the_provisioning_hosts(threshold):
    plan = plan_of(cluster={"cluster_tang_threshold": threshold}, hosts=dict(IPS2, **LUKS))
    assert plan["cluster"]["tang_threshold"] == int(threshold)
    assert plan["nodes"]["node001"]["tang_threshold"] == int(threshold)
    assert conf_lines(plan["nodes"]["node002"]["initramfs_conf"])["DL_TANG_THRESHOLD"] == str(threshold)
    assert plan["nodes"]["node003"]["tang_threshold"] is None


@pytest.mark.parametrize("threshold, hosts", [(0, {}), (2, {}), (3, IPS2), (-1, IPS2)])
def test_tang_threshold_out_of_bounds_is_one_line(threshold, hosts):
    with pytest.raises(PlanError) as info:
        plan_of(cluster={"cluster_tang_threshold": threshold}, hosts=hosts)
    assert info.value.errors == [
        "all: cluster_tang_threshold: %d must be from 1 to the number of provisioning hosts (%d): it is how many of their "
        "Tang servers must answer to unlock a LUKS root" % (threshold, 1 + len(hosts))]


def test_luks_clone_keeps_room_for_the_luks_header():
    plan = plan_of(hosts=LUKS)
    image = 2 << 30
    assert plan["nodes"]["node001"]["root_size_bytes"] == image + (32 << 20)
    assert plan["nodes"]["node002"]["root_size_bytes"] == image + (32 << 20)
    for host in ("sch1", "sch2"):
        sizes = {v["node"]: v["size_bytes"] for v in plan["storage"][host]["volumes"]}
        assert sizes.get("node002") == image + (32 << 20)
    assert plan_of()["nodes"]["node001"]["root_size_bytes"] == image          # without LUKS: the image size
    # an explicit size is taken as it is when it leaves the room
    sized = plan_of(hosts={"node001": {"node_luks": True, "node_root_size": "2080M"},
                           "node002": {"node_luks": True, "node_root_size": "8G"}})
    assert (sized["nodes"]["node001"]["root_size_bytes"], sized["nodes"]["node002"]["root_size_bytes"]) == \
        (image + (32 << 20), 8 << 30)
    # ...and refused, with the minimum, when it does not
    with pytest.raises(PlanError) as info:
        plan_of(hosts={"node001": {"node_luks": True, "node_root_size": "2049M"}})
    assert info.value.errors == ["node001: node_root_size: 2049M is too small for a LUKS root (node_luks): image 'debian12' "
                                 "(2G) + 32M for the LUKS header is at least 2080M"]


def test_luks_is_refused_where_there_is_no_volume():
    with pytest.raises(PlanError) as info:
        plan_of(hosts={"node003": {"node_root": "live", "node_luks": True}})
    assert info.value.errors == ["node003: node_luks: root mode 'live' has no volume to encrypt (its root is in RAM)"]


def test_a_luks_image_node_boots_the_image_encrypted_once_on_a_lun_of_its_own_kind():
    """One encrypted golden volume per image version and storage host (the same ciphertext everywhere: one serial),
    beside the plain one; its shared export has another serial and target than the plain image's."""
    secrets = dict(BASE_CLUSTER["cluster_chap_secrets"],
                   node004={"secret": "node004-secret-a", "mutual_secret": "node004-mutual-a"})
    node004 = {"node_mac": "52:54:00:00:01:04", "node_root": "image", "node_luks": True}
    plan = plan_of(cluster={"cluster_chap_secrets": secrets}, hosts={"node004": {"group": "compute", "vars": node004}})
    assert plan["images"]["debian12"]["luks"] is True
    node = plan["nodes"]["node004"]
    assert [p["volume"] for p in node["paths"]] == ["tank/shared/debian12-v1-luks"] * 2
    assert all(p["target_iqn"].endswith(":shared.debian12-v1-luks") and p["readonly"] for p in node["paths"])
    assert "DL_LUKS='1'" in node["initramfs_conf"] and "DL_ROOT_MODE='image'" in node["initramfs_conf"]
    assert node["tang_urls"] and node["ip"] in plan["provisioning"]["ips1"]["tang_clients"]
    for host in ("sch1", "sch2"):
        sch = plan["storage"][host]
        assert sch["golden"] == [
            {"image": "debian12", "volume": "tank/golden/debian12", "size_bytes": 2 << 30,
             "snapshot": "tank/golden/debian12@v1", "encrypted": False},
            {"image": "debian12", "volume": "tank/golden/debian12-luks", "size_bytes": (2 << 30) + (32 << 20),
             "snapshot": "tank/golden/debian12-luks@v1", "encrypted": True}]
        shared = {v["name"]: v for v in sch["volumes"]}["tank/shared/debian12-v1-luks"]
        assert shared["origin"] == "tank/golden/debian12-luks@v1" and shared["readonly"]
        assert shared["size_bytes"] == (2 << 30) + (32 << 20)
        exports = {e["target_iqn"].rsplit(":", 1)[1]: e for e in sch["exports"]}
        assert exports["shared.debian12-v1-luks"]["wwn"] != exports["shared.debian12-v1"]["wwn"]
        assert [a["node"] for a in exports["shared.debian12-v1-luks"]["acls"]] == ["node004"]
    assert (plan["storage"]["sch1"]["exports"][-1]["wwn"] == plan["storage"]["sch2"]["exports"][-1]["wwn"])


RETIRED = ("is retired: a LUKS root is unlocked by Clevis bound to the provisioning hosts' Tang (docs/security.md); "
           "remove it from the inventory and vault (a recovery passphrase is node_luks_recovery)")


def test_retired_luks_keys_are_one_line_each():
    secrets = {n: dict(e, luks_key="0123456789abcdef-key") for n, e in BASE_CLUSTER["cluster_chap_secrets"].items()}
    with pytest.raises(PlanError) as info:
        plan_of(cluster={"cluster_chap_secrets": secrets},
                hosts={"node001": {"node_luks": True, "node_luks_key": "0123456789abcdef-key"},
                       "sch1": {"node_luks_key": "0123456789abcdef-key"}})   # a storage host's node_* is none of ours
    assert info.value.errors == [
        "node001: cluster_chap_secrets.node001.luks_key: " + RETIRED,
        "node001: node_luks_key: " + RETIRED,
        "node002: cluster_chap_secrets.node002.luks_key: " + RETIRED,
        "node003: cluster_chap_secrets.node003.luks_key: " + RETIRED,
    ]
    assert "0123456789abcdef-key" not in str(info.value)
    # the action plugins pass an undeclared name without its value (None): the name alone is refused
    cluster, hostvars, groups = inventory()
    hostvars["node002"]["node_luks_key"] = None
    with pytest.raises(PlanError) as info:
        build_plan(cluster, hostvars, groups)
    assert info.value.errors == ["node002: node_luks_key: " + RETIRED]


def test_provisioning_tang_clients_are_the_luks_nodes():
    hosts = dict(IPS2, node001={"node_luks": True}, node002={"node_luks": True, "node_ip": "10.77.0.99"},
                 node005={"group": "compute", "vars": {"node_mac": "52:54:00:00:01:05", "node_root": "mirror",
                                                       "node_chap_secret": "node005-secret-a",
                                                       "node_chap_mutual_secret": "node005-mutual-a"}})
    plan = plan_of(hosts=hosts)
    for host in ("ips1", "ips2"):
        assert plan["provisioning"][host]["tang_clients"] == ["10.77.0.99", "10.77.0.101"]   # by address, not text
    assert plan_of()["provisioning"]["ips1"]["tang_clients"] == []
    storage = json.dumps(plan["storage"])
    assert "tang" not in storage


def test_redact_masks_every_secret():
    hosts = copy.deepcopy(LUKS)
    hosts["node002"]["node_luks_recovery"] = "node002-recovery-passphrase"
    plan = plan_of(hosts=hosts)
    text = json.dumps(redact(plan))
    for secret in ("node001-secret-a", "node001-mutual-a", "node002-mutual-a", "node002-recovery-passphrase"):
        assert secret in json.dumps(plan) and secret not in text
    assert SECRET_MASK in text
    assert "#!ipxe" in text  # the non-secret boot scripts stay readable
    assert "http://10.77.0.2/tang" in text  # Tang URLs are no secret


def test_plan_is_json_and_deterministic():
    first = plan_of()
    assert json.loads(json.dumps(first)) == first
    assert plan_of() == first


@pytest.mark.parametrize("value, expected", [
    ("2G", 2 << 30), ("512M", 512 << 20), ("1.5T", 3 << 39), ("10GiB", 10 << 30), (4096, 4096), ("4096", 4096), ("1k", 1024),
])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "G", "-1G", "1.3", 0, True, "2 GB extra", None])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        parse_size(value)


def test_iqn_and_mac_helpers():
    assert make_iqn("2026-11", "lab.example.org", "SCH1", "node001-root") == "iqn.2026-11.org.example.lab:sch1.node001-root"
    with pytest.raises(ValueError, match="not a valid IQN"):
        make_iqn("2026-11", "lab.example.org", "node_1")
    with pytest.raises(ValueError, match="at most 223"):
        make_iqn("2026-11", "lab.example.org", "x" * 200)
    assert normalize_mac("52:54:00:AA:bb:0c", "hyphen") == "52-54-00-aa-bb-0c"
    with pytest.raises(ValueError):
        normalize_mac("52:54:00:aa:bb")


def test_placement_is_balanced():
    hosts = ["sch1", "sch2", "sch3", "sch4"]
    counts = {h: 0 for h in hosts}
    for i in range(4000):
        counts[place("node%04d" % i, hosts, 1)[0]] += 1
    assert all(850 < c < 1150 for c in counts.values()), counts
    for i in range(500):
        pair = place("node%04d" % i, hosts, 2)
        assert len(set(pair)) == 2


# --------------------------------------------------------------------------------------------- stability
MODES = ("iscsi", "mirror", "image", "live")


@st.composite
def clusters(draw):
    """A random valid cluster: 2-4 storage hosts, 1-40 nodes with unique indices/MACs in random order."""
    n_storage = draw(st.integers(2, 4))
    indices = draw(st.lists(st.integers(0, 140), min_size=1, max_size=40, unique=True))
    nodes = []
    for index in indices:
        node = {"name": "n%03d" % index, "mode": draw(st.sampled_from(MODES)),
                "mac": "52:54:00:%02x:%02x:%02x" % (index // 65536, index // 256 % 256, index % 256)}
        if draw(st.booleans()) and node["mode"] in ("iscsi", "mirror"):
            node["size"] = draw(st.sampled_from(["2G", "3G", "8G"]))
        nodes.append(node)
    nodes = draw(st.permutations(nodes))
    return n_storage, nodes


def _inventory(n_storage, nodes, order=None):
    cluster = {
        "cluster_name": "prop", "cluster_domain": "prop.example.org", "cluster_iqn_date": "2026-11",
        "cluster_boot_network": "10.80.0.0/16", "cluster_images": {"img": {"version": "2", "size": "2G"}},
        "cluster_node_ip_offset": 1000,
        "cluster_chap_secrets": {n["name"]: {"secret": n["name"] + "-secret-xx", "mutual_secret": n["name"] + "-mutual-xx"}
                                 for n in nodes},
    }
    hostvars = {"ips1": {"ansible_host": "10.80.0.2"}}
    groups = {"provisioning": ["ips1"], "storage": [], "compute": []}
    for i in range(n_storage):
        name = "sch%d" % (i + 1)
        hostvars[name] = {"ansible_host": "10.80.0.%d" % (11 + i), "storage_pool_devices": ["/dev/vdb"]}
        groups["storage"].append(name)
    for n in nodes:
        hostvars[n["name"]] = {"node_mac": n["mac"], "node_root": n["mode"]}
        if "size" in n:
            hostvars[n["name"]]["node_root_size"] = n["size"]
        groups["compute"].append(n["name"])
    return cluster, hostvars, groups


def _identity(node):
    """What must never change for a running node."""
    return {k: node[k] for k in ("ip", "mac", "initiator_iqn", "paths", "hostname", "boot_script", "initramfs_conf")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.data())
def test_adding_removing_reordering_nodes_never_changes_other_nodes(cluster, data):
    n_storage, nodes = cluster
    before = build_plan(*_inventory(n_storage, nodes))

    # reorder
    shuffled = data.draw(st.permutations(nodes))
    assert build_plan(*_inventory(n_storage, shuffled)) == before

    # remove one node
    if len(nodes) > 1:
        gone = data.draw(st.sampled_from(nodes))
        after = build_plan(*_inventory(n_storage, [n for n in nodes if n is not gone]))
        for name, node in after["nodes"].items():
            assert _identity(node) == _identity(before["nodes"][name])

    # add a node with an unused index
    used = {int(n["name"][1:]) for n in nodes}
    free = [i for i in range(141, 400) if i not in used]
    index = data.draw(st.sampled_from(free))
    extra = {"name": "n%03d" % index, "mode": data.draw(st.sampled_from(MODES)),
             "mac": "52:54:00:%02x:%02x:%02x" % (index // 65536, index // 256 % 256, index % 256)}
    position = data.draw(st.integers(0, len(nodes)))
    grown = build_plan(*_inventory(n_storage, nodes[:position] + [extra] + nodes[position:]))
    for name, node in before["nodes"].items():
        assert _identity(grown["nodes"][name]) == _identity(node)
    # ...and nothing already exported on a storage host is re-keyed (same target, backstore, device, LUN)
    for host, spec in before["storage"].items():
        new_exports = {e["target_iqn"]: e for e in grown["storage"][host]["exports"]}
        for export in spec["exports"]:
            new = new_exports[export["target_iqn"]]
            assert (new["backstore"], new["device"], new["lun"], new["wwn"]) == \
                   (export["backstore"], export["device"], export["lun"], export["wwn"])


def test_inputs_are_not_mutated():
    cluster, hostvars, groups = inventory()
    snapshot = copy.deepcopy((cluster, hostvars, groups))
    build_plan(cluster, hostvars, groups)
    assert (cluster, hostvars, groups) == snapshot
