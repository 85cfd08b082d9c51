# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side: read the inventory variables the planner needs, for the action plugins.

Every declared variable (module_utils/_schema.py) is read through ``hostvars``, so it is templated in its
host's context: a vault indirection (``cluster_chap_secrets: "{{ vault_cluster_chap_secrets }}"``) plans like
the literal value. A cluster variable is read from EVERY planned host and must have one value: the plan
never depends on which host happens to run the task or on the order of groups. Only the per-group ones
(``cluster_node_ip_offset``) may differ. Undeclared names are passed by name only (never templated: they
may belong to another role), so that the planner can point out a near miss of a declared one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ansible.errors import AnsibleError

from ansible_collections.diskless.cluster.plugins.module_utils import _schema as schema
from ansible_collections.diskless.cluster.plugins.module_utils.plan import GROUPS, PlanError, build_plan

_CLUSTER = frozenset(v.name for v in schema.VARIABLES if v.scope == "cluster")
_PER_GROUP = frozenset(v.name for v in schema.VARIABLES if v.per_group)
_HOST_SCOPE = {g: frozenset(schema.names(g)) for g in GROUPS}


def plain(value):
    """Templated/tagged values as plain Python containers the pure planner can read."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


_NOT_LITERAL = object()
_JINJA = ("{{", "{%", "{#")


def _literal(value):
    """``value`` as plain data when nothing in it is a template (templating a literal 1,000-entry mapping costs
    ~0.1 s in ansible-core 2.19), else _NOT_LITERAL."""
    if isinstance(value, str):
        return _NOT_LITERAL if any(mark in value for mark in _JINJA) else str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            v = _literal(v)
            if v is _NOT_LITERAL or not isinstance(k, str) or any(mark in k for mark in _JINJA):
                return _NOT_LITERAL
            out[str(k)] = v
        return out
    if isinstance(value, (list, tuple)):
        out = [_literal(v) for v in value]
        return _NOT_LITERAL if any(v is _NOT_LITERAL for v in out) else out
    if isinstance(value, (bool, int, float)) or value is None:
        return plain(value)
    return _NOT_LITERAL


def _key(value):
    return json.dumps(value, sort_keys=True, default=str)


def gather(hostvars, groups, only=None):
    """``(cluster_vars, per_host, wanted, errors)`` for ``build_plan``.

    ``groups``: the inventory's groups; ``only``: plan only these hosts of the three groups (a slice's
    subset), else every host. ``errors``: lines for values that could not be templated or that differ
    between hosts.
    """
    wanted = {g: [h for h in groups.get(g, []) if only is None or h in only] for g in GROUPS}
    errors = []
    per_host = {}
    seen = {}        # cluster variable -> {value key: (value, [hosts])}
    unknown = set()  # undeclared cluster_* names
    # A cluster variable set once (group_vars/all, -e) has the same raw (untemplated) value on every host:
    # template and compare each distinct raw value once, not once per host (cluster_chap_secrets has an entry
    # per node: templated per host it would cost O(n^2)). Raw values compare in C, with no templating.
    once = {}        # variable -> [(raw value, plain value, comparison key)]
    for group in GROUPS:
        for host in wanted[group]:
            if host in per_host:
                continue  # in two groups: the planner says so
            hv = hostvars[host]
            raw = getattr(hv, "_vars", None)  # HostVarsVars' untemplated variables (only used as a cache key)
            picked = {}
            for key in list(hv):
                if not isinstance(key, str):
                    continue
                declared = key in _CLUSTER or key in _HOST_SCOPE[group] or key == "ansible_host"
                if not declared:
                    if key.startswith(schema.PREFIXES) and key not in schema.BY_NAME:
                        if key.startswith("cluster_"):
                            unknown.add(key)
                        else:
                            picked[key] = None  # by name only
                    continue
                cached = None
                if key in _CLUSTER and raw is not None and key in raw:
                    cached = next((c for c in once.get(key, ()) if c[0] is raw[key] or c[0] == raw[key]), None)
                if cached is not None:
                    value, compared = cached[1], cached[2]
                else:
                    try:
                        value = _literal(raw[key]) if raw is not None and key in raw else _NOT_LITERAL
                        if value is _NOT_LITERAL:
                            value = plain(hv[key])
                    except AnsibleError as exc:
                        errors.append("%s: %s: cannot be templated: %s" % (host, key, str(exc).splitlines()[0]))
                        continue
                    compared = _key(value) if key in _CLUSTER else None
                    if key in _CLUSTER and raw is not None and key in raw:
                        once.setdefault(key, []).append((raw[key], value, compared))
                if key in _CLUSTER:
                    seen.setdefault(key, {}).setdefault(compared, (value, []))[1].append(host)
                    if key in _PER_GROUP and group == "compute":
                        picked[key] = value
                    continue
                picked[key] = value
            per_host[host] = picked
    cluster_vars = {name: None for name in sorted(unknown)}
    for key, values in sorted(seen.items()):
        if key in _PER_GROUP:
            # the cluster's value is the one the hosts that are not compute nodes see (group_vars/all); a node
            # group may have its own (the planner tells them apart by value)
            outside = [(v, hs) for v, hs in values.values() if any(h not in wanted["compute"] for h in hs)]
            if outside:
                cluster_vars[key] = max(outside, key=lambda item: len(item[1]))[0]
            continue
        having = {h for pair in values.values() for h in pair[1]}
        if len(values) > 1 or len(having) < len(per_host):
            secret = schema.BY_NAME[key].secret
            parts = ["%s on %s" % ("one value" if secret else repr(v), _hosts(hs)) for v, hs in values.values()]
            if len(having) < len(per_host):
                parts.append("not set on %s" % _hosts(set(per_host) - having))
            errors.append("all: %s: has different values on different hosts (%s); a cluster variable has one value: "
                          "set it once, in group_vars/all" % (key, "; ".join(sorted(parts))))
        cluster_vars[key] = max(values.values(), key=lambda item: len(item[1]))[0]
    return cluster_vars, per_host, wanted, errors


def _hosts(hosts, most=3):
    hosts = sorted(hosts)
    return ", ".join(hosts[:most]) + (" and %d more" % (len(hosts) - most) if len(hosts) > most else "")


def plan_from(task_vars, only=None):
    """The plan of the inventory the task sees (``only``: of these hosts of the three groups); PlanError with
    every problem (templating, differing cluster variables, the planner's) otherwise."""
    cluster_vars, per_host, wanted, errors = gather(task_vars.get("hostvars", {}), task_vars.get("groups", {}), only=only)
    try:
        plan = build_plan(cluster_vars, per_host, wanted)
    except PlanError as exc:
        raise PlanError(list(errors) + list(exc.errors)) from None
    if errors:
        raise PlanError(errors)
    return plan


def fail_with(result, exc):
    """Fill an action result for a PlanError: one line per problem in ``errors``, all of them in ``msg``."""
    result.update(failed=True, errors=exc.errors, msg=str(exc))
    return result
