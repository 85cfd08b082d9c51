# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the A/B update role (roles/ab_update): the slot-selection grub.cfg and the mirror
partners (the old names ab_update_grub_cfg and ab_update_partners are redirects in meta/runtime.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.diskless.cluster.plugins.module_utils.grub import GrubError, render_grub_cfg

MULTIPATH_MODES = ("mirror", "image")


def ab_update_grub_cfg(entries, slots=None, env_file="/grub/grubenv", env_fs_uuid=None, cmdline_key="dl.slot",
                       timeout=3, panic=30):
    """``{A: {fs_uuid, kernel, initrd, args, title}, B: {...}} | diskless.cluster.ab_update_grub_cfg(env_fs_uuid=...)``:
    the grub.cfg text of module_utils ``grub.render_grub_cfg`` (slot selection + one menu entry per slot)."""
    if not isinstance(entries, dict):
        raise AnsibleFilterError("ab_update_grub_cfg: the input must map each slot name to its menu entry, got %r"
                                 % type(entries).__name__)
    slots = list(slots) if slots else sorted(entries)
    try:
        return render_grub_cfg(slots, entries, env_file=env_file, env_fs_uuid=env_fs_uuid or None,
                               cmdline_key=cmdline_key, timeout=None if timeout is None else int(timeout),
                               panic=None if panic is None else int(panic))
    except GrubError as exc:
        raise AnsibleFilterError("ab_update_grub_cfg: %s" % exc) from None


def ab_update_partners(plan, host):
    """``cluster_plan | diskless.cluster.ab_update_partners(inventory_hostname)``: the other storage hosts that
    hold another path of a node root that has a path on ``host`` (the other half of a ``mirror``, the other
    paths of a shared ``image``), as ``[{host, nodes, modes}]`` sorted by host. Empty when no node root of
    ``host`` has a second path (``iscsi`` roots have one): then nothing depends on a partner."""
    if not isinstance(plan, dict) or "nodes" not in plan or "storage" not in plan:
        raise AnsibleFilterError("ab_update_partners: the input must be the cluster plan (cluster_plan)")
    if host not in plan["storage"]:
        raise AnsibleFilterError("ab_update_partners: %s is not a storage host of the plan" % host)
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
            entry = partners.setdefault(other, {"host": other, "nodes": [], "modes": []})
            if name not in entry["nodes"]:
                entry["nodes"].append(name)
            if node["root"] not in entry["modes"]:
                entry["modes"].append(node["root"])
    return [partners[h] for h in sorted(partners)]


class FilterModule:
    def filters(self):
        return {"ab_update_grub_cfg": ab_update_grub_cfg, "ab_update_partners": ab_update_partners}
