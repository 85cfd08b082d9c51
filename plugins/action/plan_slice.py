# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.diskless.cluster.plugins.module_utils.plan import GROUPS, PlanError
from ansible_collections.diskless.cluster.plugins.module_utils.plan_slice import SliceError, host_slice
from ansible_collections.diskless.cluster.plugins.plugin_utils._inventory import fail_with, plain, plan_from


class ActionModule(ActionBase):
    """This host's slice of the cluster plan, as a task result (register it): never a fact."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("host", "volume_defaults"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self._task.args
        host = args.get("host") or task_vars.get("inventory_hostname")
        if not isinstance(host, str):
            raise AnsibleActionFail("plan_slice: host must be an inventory host name")
        volume_defaults = plain(args.get("volume_defaults") or {})
        if not isinstance(volume_defaults, Mapping):
            raise AnsibleActionFail("plan_slice: volume_defaults must be a mapping")

        groups = task_vars.get("groups", {})
        # A compute node's slice depends on its own variables, the cluster's and the storage and provisioning
        # hosts: plan just those. A storage or provisioning host serves every node: plan them all.
        only = None
        if host in groups.get("compute", []):
            only = {host} | {h for g in GROUPS if g != "compute" for h in groups.get(g, [])}
        elif not any(host in groups.get(g, []) for g in GROUPS):
            raise AnsibleActionFail("plan_slice: %s is in none of the groups %s: it has no part in the plan"
                                    % (host, ", ".join(GROUPS)))
        try:
            part = host_slice(plan_from(task_vars, only=only), host, volume_defaults)
        except PlanError as exc:
            return fail_with(result, exc)
        except SliceError as exc:
            raise AnsibleActionFail("plan_slice: %s" % exc) from None
        result.update(changed=False, slice=part)
        return result
