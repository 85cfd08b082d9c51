# SPDX-License-Identifier: GPL-3.0-or-later
"""The slice contract: every part of a host's slice that a module takes is exactly that module's arguments,
and a slice holds nothing of another host."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from plan_base import BASE_CLUSTER, inventory

from ansible_collections.diskless.cluster.plugins.module_utils.plan import build_plan
from ansible_collections.diskless.cluster.plugins.module_utils.plan_slice import (SLICE_MODULES, SliceError, host_slice,
                                                                                  storage_partners)

# what the roles add to a part (arguments that are role settings, not plan data)
ROLE_SUPPLIED = {"file_set": {"path": "/srv/tftp"}}


class _Captured(Exception):
    pass


def module_spec(name, monkeypatch):
    """The argument_spec (and constraints) a module hands AnsibleModule, taken from its real main()."""
    module = importlib.import_module("ansible_collections.diskless.cluster.plugins.modules.%s" % name)
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise _Captured

    monkeypatch.setattr(module, "AnsibleModule", fake)
    with pytest.raises(_Captured):
        module.main()
    return seen


def plans():
    # the base inventory, plus LUKS (two provisioning hosts' Tang), a pinned mirror and extra ZFS settings
    yield "base", build_plan(*inventory()), None
    yield "luks", build_plan(*inventory(cluster={"cluster_tang_threshold": 2},
                                        hosts={"node001": {"node_luks": True, "node_root_size": "4G"},
                                               "node002": {"node_storage": ["sch2", "sch1"], "node_luks": True},
                                               "ips2": {"group": "provisioning", "vars": {"ansible_host": "10.77.0.3"}}})), \
        {"volblocksize": "", "golden_properties": {"compression": "zstd"}, "node_properties": {"sync": "always"},
         "golden_snapshot": "false", "golden_readonly": "no"}
    yield "live", build_plan(*live_inventory()), None


# the base inventory (iscsi node001, mirror node002 with LUKS, image node003) plus two live nodes, one of them on
# a second image that no iSCSI node uses, without a CHAP entry
def live_inventory():
    images = dict(BASE_CLUSTER["cluster_images"], bookworm={"version": "2", "size": "3G"})
    return inventory(cluster={"cluster_images": images, "cluster_default_image": "debian12"},
                     hosts={"node002": {"node_luks": True},
                            "node003": {"node_overlay": "zram"},
                            "node004": {"group": "compute", "vars": {"node_mac": "52:54:00:00:01:04", "node_root": "live"}},
                            "node005": {"group": "compute", "vars": {"node_mac": "52:54:00:00:01:05", "node_root": "live",
                                                                     "node_image": "bookworm", "node_overlay_size": "30%"}}})


@pytest.mark.parametrize("name, plan, defaults", list(plans()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_part_a_module_takes_is_valid_arguments_of_it(name, plan, defaults, monkeypatch):
    checked = 0
    for host in sorted(set(plan["storage"]) | set(plan["provisioning"]) | set(plan["nodes"])):
        part_of = host_slice(plan, host, defaults)
        for part, module in SLICE_MODULES.get(part_of["role"], {}).items():
            spec = module_spec(module, monkeypatch)
            params = dict(ROLE_SUPPLIED.get(module, {}), **part_of[part])
            assert set(part_of[part]) <= set(spec["argument_spec"]), (host, part)
            validator = ArgumentSpecValidator(spec["argument_spec"], **{k: v for k, v in spec.items() if k.startswith(
                ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by"))})
            result = validator.validate(params)
            assert not result.error_messages, (host, part, result.error_messages)
            assert not result.unsupported_parameters, (host, part, result.unsupported_parameters)
            checked += 1
    assert checked == 2 * len(plan["storage"]) + 3 * len(plan["provisioning"])


def test_storage_volumes_follow_the_role_settings():
    plan = build_plan(*inventory())
    plain = host_slice(plan, "sch1")["zfs_volumes"]["volumes"]
    golden = [v for v in plain if "origin" not in v][0]
    assert golden == {"name": "tank/golden/debian12", "size": 2147483648, "sparse": True, "volblocksize": "16K",
                      "properties": {"readonly": "on"}, "snapshots": ["v1"]}
    tuned = host_slice(plan, "sch1", {"volblocksize": "", "golden_readonly": False, "golden_snapshot": False,
                                      "node_properties": {"sync": "always"}})["zfs_volumes"]["volumes"]
    golden = [v for v in tuned if "origin" not in v][0]
    assert "volblocksize" not in golden and golden["snapshots"] == [] and golden["properties"] == {}
    assert all(v["properties"]["sync"] == "always" for v in tuned if "origin" in v)
    shared = [v for v in tuned if v["name"].startswith("tank/shared/")]
    assert shared and all(v["properties"]["readonly"] == "on" for v in shared)
    with pytest.raises(SliceError, match="volume_defaults: unknown key"):
        host_slice(plan, "sch1", {"blocksize": "8K"})


@pytest.mark.parametrize("inv", [inventory, live_inventory], ids=["base", "live"])
def test_a_slice_holds_nothing_of_another_host(inv):
    cluster, hostvars, groups = inv()
    plan = build_plan(cluster, hostvars, groups)
    secrets = {(n, k): v for n, e in cluster["cluster_chap_secrets"].items() for k, v in e.items()}
    for node in plan["nodes"]:
        text = json.dumps(host_slice(plan, node))
        assert not [k for k, v in secrets.items() if v in text], node          # a node: no secret at all
        others = [n for n in plan["nodes"] if n != node]
        assert not [n for n in others if n in text], node                      # nor another node's name
    for host in plan["storage"]:
        part = host_slice(plan, host)
        served = {a["node"] for e in part["lio_iscsi"]["exports"] for a in e["acls"]}
        text = json.dumps(part)
        assert {key[0] for key, v in secrets.items() if v in text} == served
        assert all(v["name"].startswith("tank/") for v in part["zfs_volumes"]["volumes"])
        assert {p["storage_host"] for n in served for p in plan["nodes"][n]["paths"]} >= {host}


def test_partners_are_the_hosts_holding_the_other_paths():
    plan = build_plan(*inventory())
    assert storage_partners(plan, "sch1") == host_slice(plan, "sch1")["partners"]
    partners = {p["host"]: p for p in storage_partners(plan, "sch1")}
    assert set(partners) == {"sch2"} and partners["sch2"]["pool"] == "tank"
    assert set(partners["sch2"]["modes"]) == {"mirror", "image"}


def test_a_host_outside_the_groups_has_no_slice():
    with pytest.raises(SliceError, match="in none of the groups"):
        host_slice(build_plan(*inventory()), "localhost")


def test_live_nodes_are_in_no_storage_slice_and_nobodys_partner():
    plan = build_plan(*live_inventory())
    for host in plan["storage"]:
        part = host_slice(plan, host)
        text = json.dumps(part)
        assert "node004" not in text and "node005" not in text and "bookworm" not in text
        assert all(n not in ("node004", "node005") for p in part["partners"] for n in p["nodes"])
    assert storage_partners(plan, "sch1") == storage_partners(build_plan(*inventory()), "sch1")


def test_provisioning_publishes_root_squashfs_only_for_live_images():
    plan = build_plan(*live_inventory())
    images = {i["name"]: i for i in host_slice(plan, "ips1")["images"]}
    assert images == {
        "bookworm": {"name": "bookworm", "version": "2", "http_path": "/images/bookworm/2", "bundle": "bookworm/2", "live": True,
                     "luks": False, "luks_file": None},
        "debian12": {"name": "debian12", "version": "1", "http_path": "/images/debian12/1", "bundle": "debian12/1", "live": True,
                     "luks": False, "luks_file": None},
    }
    plain = {i["name"]: i["live"] for i in host_slice(build_plan(*inventory()), "ips1")["images"]}
    assert plain == {"debian12": False}
    # the provisioning_host role's loop: the bundle files of every image, root.squashfs of the live ones
    tasks = (Path(__file__).resolve().parents[4] / "roles/provisioning_host/tasks/main.yml").read_text()
    assert "slice.images | selectattr('live') | product(['root.squashfs'])" in tasks


NO_TANG = {"luks": False, "tang_urls": [], "tang_threshold": None}


@pytest.mark.parametrize("node, expected", [
    ("node001", dict(NO_TANG, root="iscsi", iscsi_replacement_timeout=86400, path_wait=0, md_name=None, overlay=None,
                     overlay_size=None, live_url=None)),
    ("node002", {"root": "mirror", "iscsi_replacement_timeout": 5, "path_wait": 30, "md_name": "dlroot", "overlay": None,
                 "overlay_size": None, "live_url": None,
                 "luks": True, "tang_urls": ["http://10.77.0.2/tang"], "tang_threshold": 1}),
    ("node003", dict(NO_TANG, root="image", iscsi_replacement_timeout=5, path_wait=30, md_name=None, overlay="zram",
                     overlay_size="50%", live_url=None)),
    ("node005", dict(NO_TANG, root="live", iscsi_replacement_timeout=None, path_wait=None, md_name=None, overlay="tmpfs",
                     overlay_size="30%", live_url="http://10.77.0.2/images/bookworm/2/root.squashfs")),
])
def test_a_nodes_slice_has_its_boot_settings_and_no_secret(node, expected):
    plan = build_plan(*live_inventory())
    part = host_slice(plan, node)
    assert {k: part[k] for k in expected} == expected
    assert part["machine_id"] == plan["nodes"][node]["machine_id"] and len(part["machine_id"]) == 32
    text = json.dumps(part)
    for secret in ("secret-a", "mutual-a"):
        assert secret not in text, (node, secret)
    if node == "node005":
        assert (part["paths"], part["initiator_iqn"]) == ([], None)


def test_tang_in_the_provisioning_and_compute_slices():
    plan = build_plan(*inventory(cluster={"cluster_tang_threshold": 2, "cluster_http_port": 8080},
                                 hosts={"node001": {"node_luks": True}, "node002": {"node_luks": True},
                                        "ips2": {"group": "provisioning", "vars": {"ansible_host": "10.77.0.3"}}}))
    for host, ip in (("ips1", "10.77.0.2"), ("ips2", "10.77.0.3")):
        # its Tang answers the LUKS nodes only: node003 (image) is not a client
        assert host_slice(plan, host)["tang"] == {"path": "/tang", "clients": ["10.77.0.101", "10.77.0.102"],
                                                  "url": "http://%s:8080/tang" % ip, "threshold": 2,
                                                  "urls": ["http://10.77.0.2:8080/tang", "http://10.77.0.3:8080/tang"]}
    for node in ("node001", "node002"):
        part = host_slice(plan, node)
        assert (part["luks"], part["tang_urls"], part["tang_threshold"]) == \
            (True, ["http://10.77.0.2:8080/tang", "http://10.77.0.3:8080/tang"], 2)
    assert (host_slice(plan, "node003")["tang_urls"], host_slice(plan, "node003")["tang_threshold"]) == ([], None)
    for host in ("sch1", "sch2"):
        assert "tang" not in json.dumps(host_slice(plan, host))
    assert host_slice(build_plan(*inventory()), "ips1")["tang"] == {
        "path": "/tang", "clients": [], "url": "http://10.77.0.2/tang", "threshold": 1, "urls": ["http://10.77.0.2/tang"]}


def test_a_luks_recovery_passphrase_reaches_its_own_node_only():
    secret = "node001-recovery-passphrase-0123"
    plan = build_plan(*inventory(hosts={"node001": {"node_luks": True, "node_luks_recovery": secret},
                                        "node002": {"node_luks": True}}))
    assert host_slice(plan, "node001")["luks_recovery"] == secret
    assert host_slice(plan, "node002")["luks_recovery"] is None           # LUKS without a recovery keyslot
    for host in ("node002", "node003", "sch1", "sch2", "ips1"):
        assert secret not in json.dumps(host_slice(plan, host))
    # nor in what the initramfs or the HTTP tree is given
    assert secret not in plan["nodes"]["node001"]["initramfs_conf"] + plan["nodes"]["node001"]["boot_script"]
