# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.validation import check_type_bool
from ansible.plugins.action import ActionBase

from ansible_collections.diskless.cluster.plugins.module_utils.plan import PlanError, redact
from ansible_collections.diskless.cluster.plugins.plugin_utils._inventory import fail_with, plan_from


class ActionModule(ActionBase):
    """Validate the whole inventory once; return a summary (and, on request, the redacted plan). Sets no fact."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("redact", "fact"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        if "fact" in args:
            raise AnsibleActionFail(
                "cluster_plan: 'fact' is gone: the plan is no longer set as a fact on every host. Register this "
                "task's result (redact: true puts the plan without secrets in result.plan), and let each host take "
                "its own part with diskless.cluster.plan_slice")
        try:
            do_redact = check_type_bool(args.get("redact", False))
        except TypeError:
            raise AnsibleActionFail("cluster_plan: redact must be true or false") from None

        try:
            plan = plan_from(task_vars)
        except PlanError as exc:
            return fail_with(result, exc)

        modes = {}
        for node in plan["nodes"].values():
            modes[node["root"]] = modes.get(node["root"], 0) + 1
        result.update(
            changed=False,
            images=[{k: i[k] for k in ("name", "version", "size_bytes", "label", "http_path")}
                    for i in (plan["images"][name] for name in sorted(plan["images"]))],
            summary={
                "nodes": len(plan["nodes"]),
                "storage_hosts": len(plan["storage"]),
                "provisioning_hosts": len(plan["provisioning"]),
                "exports": sum(len(s["exports"]) for s in plan["storage"].values()),
                "root_modes": modes,
            },
        )
        if do_redact:
            result["plan"] = redact(plan)
        return result
