# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One host's slice of the cluster plan, shaped like the arguments of the modules that take it.

A role passes the parts of its slice to its modules as they are: a storage host's ``zfs_volumes`` part is the
``diskless.cluster.zfs_volumes`` arguments, its ``lio_iscsi`` part the ``diskless.cluster.lio_iscsi`` ones; a
provisioning host's ``file_sets`` parts are ``diskless.cluster.file_set`` arguments. A slice holds what
its host needs and nothing of any other host: a compute node's slice has no secret at all (its own CHAP
secrets reach it through the initramfs file of the provisioning host; a LUKS root has no key anywhere, Clevis
unlocks it with the provisioning hosts' Tang); a storage host's holds the CHAP credentials of the nodes it
exports to; a provisioning host's the boot files it serves and the addresses its Tang answers.

``SLICE_MODULES`` names, per part, the module that takes it (tests/unit/.../test_plan_slice.py checks every
part against that module's argument_spec). Pure Python, no I/O.
"""

from __future__ import annotations

from ansible_collections.diskless.cluster.plugins.module_utils import _schema
from ansible_collections.diskless.cluster.plugins.module_utils.plan import TANG_PATH

MULTIPATH_MODES = ("mirror", "image")

# part of a slice -> the module whose arguments it is (role name of the host class first)
SLICE_MODULES = {
    "storage": {"zfs_volumes": "zfs_volumes", "lio_iscsi": "lio_iscsi"},
    "provisioning": {"public": "file_set", "restricted": "file_set", "reservations": "file_set"},
}

# The storage_host role's volume settings (role arguments), as the plan slice takes them.
VOLUME_DEFAULTS = {
    "volblocksize": "16K",
    "golden_readonly": True,
    "golden_properties": {},
    "golden_snapshot": True,
    "node_properties": {},
}


class SliceError(Exception):
    pass


def storage_partners(plan, host):
    """The other storage hosts holding another path of a node root that has a path on ``host`` (the other
    half of a ``mirror``, the other paths of an ``image``): ``[{host, nodes, modes, pool}]`` sorted by host.
    A ``live`` node has no path: it is nobody's partner."""
    partners = {}
    for name in sorted(plan["nodes"]):
        node = plan["nodes"][name]
        if node.get("root") not in MULTIPATH_MODES:
            continue
        holders = [p.get("storage_host") for p in node.get("paths", [])]
        if host not in holders:
            continue
        for other in holders:
            if other == host:
                continue
            entry = partners.setdefault(other, {"host": other, "nodes": [], "modes": [],
                                                "pool": plan["storage"].get(other, {}).get("pool")})
            if name not in entry["nodes"]:
                entry["nodes"].append(name)
            if node["root"] not in entry["modes"]:
                entry["modes"].append(node["root"])
    return [partners[h] for h in sorted(partners)]


def role_of(plan, host):
    for role, key in (("storage", "storage"), ("provisioning", "provisioning"), ("compute", "nodes")):
        if host in plan[key]:
            return role
    return None


def host_slice(plan, host, volume_defaults=None):
    """The slice of ``host``; SliceError when the plan has none for it."""
    role = role_of(plan, host)
    if role == "storage":
        return _storage(plan, host, volume_defaults)
    if role == "provisioning":
        return _provisioning(plan, host)
    if role == "compute":
        return _compute(plan, host)
    raise SliceError("%s is in none of the groups provisioning, storage and compute: it has no part in the plan" % host)


def luks_image_file(image):
    """Where the controller keeps an image version encrypted for the LUKS nodes of root mode image, relative to the
    bundles directory: beside the bundle (whose files its manifest lists), with its luks_image record at ``.json``."""
    return "%s/%s.root.luks.img" % (image["name"], image["version"])


def _storage(plan, host, volume_defaults):
    opts = dict(VOLUME_DEFAULTS)
    unknown = sorted(set(volume_defaults or {}) - set(opts))
    if unknown:
        raise SliceError("volume_defaults: unknown key(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(opts))))
    opts.update({k: v for k, v in (volume_defaults or {}).items() if v is not None})
    for key in ("golden_readonly", "golden_snapshot"):
        try:
            opts[key] = _schema.coerce(_schema.Var(key, "storage", "bool", key), opts[key])
        except ValueError as exc:
            raise SliceError("volume_defaults.%s: %s" % (key, exc)) from None
    spec = plan["storage"][host]
    images = plan["images"]
    golden_props = dict(opts["golden_properties"])
    if opts["golden_readonly"]:
        golden_props["readonly"] = "on"
    golden, volumes = [], []
    for g in spec["golden"]:
        image = images[g["image"]]
        entry = {"name": g["volume"], "size": g["size_bytes"], "sparse": True, "properties": golden_props,
                 "snapshots": [image["snapshot"]] if opts["golden_snapshot"] else []}
        if opts["volblocksize"]:
            entry["volblocksize"] = str(opts["volblocksize"])
        volumes.append(entry)
        golden.append({
            "image": image["name"],
            "version": image["version"],
            "bundle": "%s/%s" % (image["name"], image["version"]),
            "volume": g["volume"],
            "snapshot": g["snapshot"],
            # the image encrypted once on the controller (luks_image): LUKS nodes of root mode image boot it
            "encrypted": g["encrypted"],
            "luks_file": luks_image_file(image) if g["encrypted"] else None,
            # the zfs_volumes entry that writes the image: writable, no snapshot yet
            "unwritten": dict(entry, snapshots=[], properties=dict(golden_props, readonly="off")),
        })
    golden_names = {g["volume"] for g in spec["golden"]}
    for v in spec["volumes"]:
        if v["name"] in golden_names:
            continue
        props = dict(opts["node_properties"])
        if v.get("readonly"):
            props["readonly"] = "on"
        volumes.append({"name": v["name"], "origin": v["origin"], "size": v["size_bytes"], "properties": props})
    return {
        "role": "storage",
        "name": host,
        "pool": spec["pool"],
        "portal_ip": spec["portal_ip"],
        "zfs_volumes": {"pool": spec["pool"], "pool_devices": list(spec["pool_devices"]), "volumes": volumes,
                        "volmode": "dev"},
        "prune_scope": ["%s/nodes" % spec["pool"]],
        "golden": golden,
        "lio_iscsi": {"exports": spec["exports"]},
        "partners": storage_partners(plan, host),
    }


def _provisioning(plan, host):
    spec = plan["provisioning"][host]
    public, restricted, secret, allow = {}, {}, {}, {}
    for f in spec["boot_files"]:
        if f.get("allow"):
            (secret if f["secret"] else restricted)[f["file"]] = f["content"]
            allow[f["file"]] = f["allow"]
        elif f["secret"]:
            raise SliceError("%s: boot file %s is secret but has no allowed address" % (host, f["file"]))
        else:
            public[f["file"]] = f["content"]
    cluster = plan["cluster"]
    return {
        "role": "provisioning",
        "name": host,
        "ip": spec["ip"],
        "cluster": {k: cluster[k] for k in ("name", "domain", "boot_network", "netmask", "prefixlen", "gateway",
                                            "dhcp_range", "dhcp_lease_time", "http_base", "http_port", "provisioning_ip",
                                            "ntp_server", "syslog_server")},
        # live: some live node boots this image's root.squashfs over HTTP, so it is published too; luks: some LUKS
        # node of root mode image boots it, so it is encrypted once, bound to every provisioning host's Tang
        "images": [{"name": i["name"], "version": i["version"], "http_path": i["http_path"],
                    "bundle": "%s/%s" % (i["name"], i["version"]), "live": i["live"], "luks": i["luks"],
                    "luks_file": luks_image_file(i) if i["luks"] else None}
                   for i in (plan["images"][name] for name in sorted(plan["images"]))],
        "public": {"files": public},
        "restricted": {"files": restricted, "secret_files": secret},
        "allow": allow,
        "reservations": {"files": {h["file"]: h["line"] + "\n" for h in spec["dhcp_hosts"]}},
        "nodes": [{"name": n["name"], "mac_hyphen": n["mac_hyphen"], "index": n["index"], "ip": n["ip"]}
                  for n in (plan["nodes"][name] for name in sorted(plan["nodes"]))],
        # the SSH host key files this host keeps for every node (the nodes' boot scripts fetch them)
        "ssh_host_key_types": list(spec["ssh_host_key_types"]),
        # its Tang server, under <http_base>/tang, answering the LUKS nodes' addresses only
        # (url: where the nodes reach it; threshold: how many Tang servers a binding needs, cluster_tang_threshold)
        "tang": {"path": TANG_PATH, "clients": list(spec["tang_clients"]), "url": spec["tang_url"],
                 "urls": list(cluster["tang_urls"]), "threshold": cluster["tang_threshold"]},
    }


def _compute(plan, host):
    node = plan["nodes"][host]
    image = plan["images"][node["image"]]
    cluster = plan["cluster"]
    return {
        "role": "compute",
        "name": node["name"],
        "hostname": node["hostname"],
        "ip": node["ip"],
        "mac": node["mac"],
        "root": node["root"],
        "luks": node["luks"],
        "image": image["name"],
        "image_version": image["version"],
        "initiator_iqn": node["initiator_iqn"],
        "paths": [{k: p[k] for k in ("storage_host", "portal", "port", "target_iqn", "lun", "readonly")}
                  for p in node["paths"]],
        "kernel_args": node["kernel_args"],
        # what the initramfs was told (its /etc/diskless/node.conf without the secrets), for checks on the node
        "machine_id": node["machine_id"],
        "iscsi_replacement_timeout": node["iscsi_replacement_timeout"],
        "iscsi_noop_interval": node["iscsi_noop_interval"],
        "iscsi_noop_timeout": node["iscsi_noop_timeout"],
        "path_wait": node["path_wait"],
        "md_name": node["md_name"],
        "overlay": node["overlay"],
        "overlay_size": node["overlay_size"],
        "live_url": node["live_url"],
        "tang_urls": list(node["tang_urls"]),
        "tang_threshold": node["tang_threshold"],
        # SECRET when set: the passphrase of its recovery keyslot (node_luks_recovery)
        "luks_recovery": node["luks_recovery"],
        "ntp_server": cluster["ntp_server"],
        "syslog_server": cluster["syslog_server"],
    }
