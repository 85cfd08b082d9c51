# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters of the A/B update role (roles/ab_update): the slot-selection grub.cfg and the mirror
partners (the old names ab_update_grub_cfg and ab_update_partners are redirects in meta/runtime.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.diskless.cluster.plugins.module_utils.grub import GrubError, render_grub_cfg
from ansible_collections.diskless.cluster.plugins.module_utils.plan_slice import storage_partners


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
    """``plan | diskless.cluster.ab_update_partners(inventory_hostname)``: the other storage hosts that hold
    another path of a node root that has a path on ``host`` (the other half of a ``mirror``, the other paths
    of a shared ``image``), as ``[{host, nodes, modes, pool}]`` sorted by host (the ``partners`` of the host's
    plan slice). Empty when no node root of ``host`` has a second path."""
    if not isinstance(plan, dict) or "nodes" not in plan or "storage" not in plan:
        raise AnsibleFilterError("ab_update_partners: the input must be the cluster plan (cluster_plan with redact=true)")
    if host not in plan["storage"]:
        raise AnsibleFilterError("ab_update_partners: %s is not a storage host of the plan" % host)
    return storage_partners(plan, host)


class FilterModule:
    def filters(self):
        return {"ab_update_grub_cfg": ab_update_grub_cfg, "ab_update_partners": ab_update_partners}
