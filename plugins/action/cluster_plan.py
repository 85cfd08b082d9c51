# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.validation import check_type_bool
from ansible.plugins.action import ActionBase

from ansible_collections.diskless.cluster.plugins.module_utils.plan import (
    GROUPS,
    PlanError,
    build_plan,
    redact,
)

# Host variables the planner reads (prefixes, plus a few exact names).
_HOST_PREFIXES = ("node_", "storage_", "provisioning_", "cluster_node_ip_offset")
_HOST_NAMES = ("ansible_host",)


def _plain(value):
    """Turn templated/tagged values into plain Python containers the pure planner can read."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("redact", "fact"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            do_redact = check_type_bool(args.get("redact", False))
        except TypeError:
            raise AnsibleActionFail("cluster_plan: redact must be true or false") from None
        fact = args.get("fact", "cluster_plan")
        if not isinstance(fact, str) or not fact.isidentifier():
            raise AnsibleActionFail("cluster_plan: fact must be a variable name, got %r" % (fact,))

        groups = task_vars.get("groups", {})
        hostvars = task_vars.get("hostvars", {})
        wanted = {g: list(groups.get(g, [])) for g in GROUPS}
        cluster_vars = {k: _plain(v) for k, v in task_vars.items() if isinstance(k, str) and k.startswith("cluster_")}

        per_host = {}
        for host in sorted({h for hosts in wanted.values() for h in hosts}):
            hv = hostvars[host]
            picked = {}
            for key in hv.keys():
                if key.startswith(_HOST_PREFIXES) or key in _HOST_NAMES:
                    picked[key] = _plain(hv[key])
            per_host[host] = picked

        try:
            plan = build_plan(cluster_vars, per_host, wanted)
        except PlanError as exc:
            result.update(failed=True, errors=exc.errors, msg=str(exc))
            return result

        if do_redact:
            plan = redact(plan)
        modes = {}
        for node in plan["nodes"].values():
            modes[node["root"]] = modes.get(node["root"], 0) + 1
        result.update(
            changed=False,
            ansible_facts={fact: plan},
            summary={
                "nodes": len(plan["nodes"]),
                "storage_hosts": len(plan["storage"]),
                "provisioning_hosts": len(plan["provisioning"]),
                "exports": sum(len(s["exports"]) for s in plan["storage"].values()),
                "root_modes": modes,
            },
        )
        return result
