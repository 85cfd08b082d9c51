# SPDX-License-Identifier: GPL-3.0-or-later
"""The planner against the classes of bad input users really write: YAML typing traps, strings that would
change a boot script, the cluster's own addresses overlapping, cluster-wide problems, other roles' names."""

from __future__ import annotations

import datetime

import pytest
from plan_base import BASE_CLUSTER, inventory

from ansible_collections.diskless.cluster.plugins.module_utils import _schema as schema
from ansible_collections.diskless.cluster.plugins.module_utils.plan import PlanError, build_plan


def errors_of(**changes):
    with pytest.raises(PlanError) as info:
        build_plan(*inventory(**changes))
    return info.value.errors


def plan_of(**changes):
    return build_plan(*inventory(**changes))


# ------------------------------------------------------------------------------------- YAML typing traps
@pytest.mark.parametrize("changes, line", [
    # an unquoted MAC of digits only is a base-60 integer in YAML 1.1
    ({"hosts": {"node001": {"node_mac": 41135040061}}},
     'node001: node_mac: 41135040061 was read by YAML as a base-60 number (an unquoted MAC of digits only): quote it '
     '(node_mac: "52:54:00:00:01:01")'),
    ({"cluster": {"cluster_images": {"debian12": {"version": 1.10, "size": "2G"}}}},
     'all: cluster_images.debian12.version: 1.1 was read by YAML as a number: quote it (version: "1.1")'),
    ({"cluster": {"cluster_iqn_date": datetime.date(2026, 11, 1)}},
     "all: cluster_iqn_date: datetime.date(2026, 11, 1) was read by YAML as a date, not text: quote it "
     '(cluster_iqn_date: "2026-11-01")'),
    ({"hosts": {"node001": {"node_root": True}}},
     "node001: node_root: True was read by YAML as a boolean (YAML reads unquoted yes/no/on/off/true/false so), "
     'not text: quote it (node_root: "yes")'),
    ({"cluster": {"cluster_name": False}},
     "all: cluster_name: False was read by YAML as a boolean (YAML reads unquoted yes/no/on/off/true/false so), "
     'not text: quote it (cluster_name: "no")'),
    ({"hosts": {"node001": {"node_image": 12}}},
     'node001: node_image: 12 was read by YAML as a number, not text: quote it (node_image: "12")'),
    ({"hosts": {"sch1": {"storage_pool_size": 1.5}}},
     'sch1: storage_pool_size: 1.5 was read by YAML as a number (YAML drops trailing zeros of unquoted decimals): '
     'write a size like "2G" in quotes'),
])
def test_typing_traps_say_quote_it(changes, line):
    assert errors_of(**changes) == [line]


@pytest.mark.parametrize("var, text, value", [
    ("cluster_http_port", "8080", 8080), ("cluster_iscsi_port", "3261", 3261), ("cluster_node_ip_offset", "120", 120),
])
def test_extra_vars_strings_that_are_numbers_are_numbers(var, text, value):
    assert build_plan(*inventory(cluster={var: text})) == build_plan(*inventory(cluster={var: value}))


@pytest.mark.parametrize("text", ["yes", "true", "True", "on", "1"])
def test_extra_vars_strings_that_are_booleans_are_booleans(text):
    changes = {"node001": {"node_luks": text}}
    assert plan_of(hosts=changes)["nodes"]["node001"]["luks"] is True


# --------------------------------------------------------------------------- boot script / kernel line
BAD_CHARS = [" ", "'", '"', "$", ";", "&", "|", "`", "#", "{", "}", "\n", "\\", "<", ">", "*"]

# a valid value per variable that reaches a boot script or a kernel command line, and how to spoil it
BOOT_VARS = {
    "cluster_name": ("cluster", "lab"), "cluster_domain": ("cluster", "lab.example.org"),
    "cluster_iqn_date": ("cluster", "2026-11"), "cluster_boot_network": ("cluster", "10.77.0.0/24"),
    "cluster_boot_gateway": ("cluster", "10.77.0.1"), "cluster_default_image": ("cluster", "debian12"),
    "cluster_http_address": ("cluster", "10.77.0.2"), "cluster_kernel_args": ("cluster", ["quiet"]),
    "provisioning_ip": ("ips1", "10.77.0.2"),
    "node_mac": ("node001", "52:54:00:00:01:01"), "node_ip": ("node001", "10.77.0.101"),
    "node_hostname": ("node001", "node001"), "node_root": ("node001", "iscsi"), "node_image": ("node001", "debian12"),
    "node_kernel_args": ("node001", ["quiet"]),
}
# variables that are typed (not text) or structured: their text cannot carry these characters
TYPED = {"cluster_node_ip_offset", "cluster_http_port", "node_index", "cluster_images"}


def test_every_boot_variable_of_the_schema_is_covered():
    assert {v.name for v in schema.VARIABLES if v.boot} == set(BOOT_VARS) | TYPED


@pytest.mark.parametrize("var", sorted(BOOT_VARS))
@pytest.mark.parametrize("char", BAD_CHARS, ids=[repr(c) for c in BAD_CHARS])
def test_a_character_that_would_change_a_boot_script_is_refused(var, char):
    where, good = BOOT_VARS[var]
    bad = [good[0] + char + "x"] if isinstance(good, list) else good[:3] + char + good[3:]
    changes = {"cluster": {var: bad}} if where == "cluster" else {"hosts": {where: {var: bad}}}
    lines = errors_of(**changes)
    host = "all" if where == "cluster" else where
    assert any(line.startswith("%s: %s: " % (host, var)) for line in lines), lines


@pytest.mark.parametrize("char", BAD_CHARS, ids=[repr(c) for c in BAD_CHARS])
def test_an_image_name_version_or_label_that_would_change_a_boot_script_is_refused(char):
    for image in ({"deb" + char + "ian": {"version": "1", "size": "2G"}},
                  {"debian12": {"version": "1" + char, "size": "2G"}},
                  {"debian12": {"version": "1", "size": "2G", "label": "dl" + char}}):
        assert any(line.startswith("all: cluster_images") for line in errors_of(cluster={"cluster_images": image}))


@pytest.mark.parametrize("name", ["node$1", "node;1", "node 1", "node'1", "-node1"])
def test_a_node_name_that_would_change_a_boot_script_is_refused(name):
    hosts = {"node001": None, name: {"group": "compute", "vars": {"node_mac": "52:54:00:00:01:01", "node_index": 1}}}
    secrets = dict(BASE_CLUSTER["cluster_chap_secrets"], **{name: {"secret": "abcdefghijklmn", "mutual_secret": "nmlkjihgfedcba"}})
    lines = errors_of(hosts=hosts, cluster={"cluster_chap_secrets": secrets})
    assert any(line.startswith("%s: inventory_hostname: " % name) for line in lines), lines


# ------------------------------------------------------------------------------------ the cluster's addresses
@pytest.mark.parametrize("changes, line", [
    ({"cluster": {"cluster_boot_gateway": "10.77.0.200"}},
     "all: cluster_boot_gateway: 10.77.0.200 is inside the dynamic DHCP range 10.77.0.192-10.77.0.254"),
    ({"cluster": {"cluster_http_address": "10.77.0.101"}}, "all: cluster_http_address: 10.77.0.101 is already used by node001"),
    ({"cluster": {"cluster_http_address": "10.77.0.11"}}, "all: cluster_http_address: 10.77.0.11 is already used by sch1"),
    ({"cluster": {"cluster_http_address": "10.77.0.1"}}, "all: cluster_http_address: 10.77.0.1 is already used by the gateway"),
    ({"cluster": {"cluster_http_address": "10.77.0.200"}},
     "all: cluster_http_address: 10.77.0.200 is inside the dynamic DHCP range 10.77.0.192-10.77.0.254"),
    ({"hosts": {"node002": {"node_ip": "10.77.0.1"}}}, "node002: node_ip: 10.77.0.1 is already used by the gateway"),
    ({"hosts": {"node002": {"node_ip": "10.77.0.230"}}},
     "node002: node_ip: 10.77.0.230 is inside the dynamic DHCP range 10.77.0.192-10.77.0.254"),
    ({"hosts": {"sch1": {"ansible_host": "10.77.0.2"}}}, "sch1: storage_ip: 10.77.0.2 is already used by ips1"),
    ({"cluster": {"cluster_dhcp_range": ["10.77.0.100", "10.77.0.120"]}},
     "node001: node_ip: 10.77.0.101 is inside the dynamic DHCP range 10.77.0.100-10.77.0.120"),
])
def test_the_clusters_own_addresses_never_overlap(changes, line):
    assert line in errors_of(**changes)


def test_the_http_address_may_be_a_provisioning_hosts_own():
    assert plan_of(cluster={"cluster_http_address": "10.77.0.2"})["cluster"]["http_base"] == "http://10.77.0.2"


# ------------------------------------------------------------------------------ cluster-wide problems once
@pytest.mark.parametrize("cluster, line", [
    ({"cluster_node_ip_offset": -5}, "all: cluster_node_ip_offset: -5 must be a whole number >= 0"),
    ({"cluster_node_ip_offset": "many"}, "all: cluster_node_ip_offset: 'many' must be a whole number"),
    ({"cluster_chap_secrets": "{{ vault_x }}"}, "all: cluster_chap_secrets: must be a mapping, got the text '{{ vault_x }}'"),
    ({"cluster_images": ["debian12"]}, "all: cluster_images: must be a mapping, got list"),
    ({"cluster_tang_threshold": 5}, "all: cluster_tang_threshold: 5 must be from 1 to the number of provisioning hosts (1): "
                                    "it is how many of their Tang servers must answer to unlock a LUKS root"),
    ({"cluster_boot_network": 10}, 'all: cluster_boot_network: 10 was read by YAML as a number, not text: quote it '
                                   '(cluster_boot_network: "10")'),
])
def test_a_cluster_wide_problem_is_one_line(cluster, line):
    # every node sees the cluster's value too (hostvars): still one line, for 'all'
    cv, hv, groups = inventory(cluster=cluster)
    for host in hv:
        hv[host].update({k: v for k, v in cv.items() if k in cluster})
    with pytest.raises(PlanError) as info:
        build_plan(cv, hv, groups)
    assert info.value.errors == [line]


# --------------------------------------------------------------------------------------- names
def test_other_roles_variables_with_our_prefixes_are_not_ours():
    others = {"node_exporter_version": "1.8.2", "node_exporter_port": 9100, "storage_class": "fast",
              "cluster_fqdn": "c.example.org", "provisioning_tool": "foreman", "storage_host_force": True}
    plain = plan_of()
    assert plan_of(cluster={"cluster_fqdn": "c.example.org", "cluster_power_on_command": ["x"], "cluster_boot_timeout": 9},
                   hosts={"node001": others, "sch1": others, "ips1": others}) == plain


def test_a_retired_variable_in_group_vars_all_is_one_line_per_node():
    # what the action plugins pass for an undeclared name with our prefix: the name, never its value
    cv, hv, groups = inventory()
    for host in hv:
        hv[host]["node_luks_key"] = None
    with pytest.raises(PlanError) as info:
        build_plan(cv, hv, groups)
    why = ("is retired: a LUKS root is unlocked by Clevis bound to the provisioning hosts' Tang (docs/security.md); "
           "remove it from the inventory and vault (a recovery passphrase is node_luks_recovery)")
    assert info.value.errors == ["%s: node_luks_key: %s" % (n, why) for n in ("node001", "node002", "node003")]
    assert schema.near_miss("node_luks_key") is None


@pytest.mark.parametrize("where, name, means", [
    ("cluster", "cluster_iscsi_prot", "cluster_iscsi_port"), ("cluster", "cluster_imgaes", "cluster_images"),
    ("node001", "node_mca", "node_mac"), ("node001", "node_kernel_arg", "node_kernel_args"),
    ("sch1", "storage_pool_device", "storage_pool_devices"), ("ips1", "provisioning_iip", "provisioning_ip"),
])
def test_a_near_miss_is_one_line_with_the_name_it_means(where, name, means):
    changes = {"cluster": {name: "x"}} if where == "cluster" else {"hosts": {where: {name: "x"}}}
    host = "all" if where == "cluster" else where
    assert "%s: %s: unknown variable; did you mean %s?" % (host, name, means) in errors_of(**changes)
