# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters for users' own playbooks: the same IQN and MAC rules the cluster planner applies."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.diskless.cluster.plugins.module_utils.plan import make_iqn, normalize_mac


def iqn(name, date, domain, *more):
    """``'node001' | diskless.cluster.iqn('2026-11', 'lab.example.org')`` -> ``iqn.2026-11.org.example.lab:node001``."""
    names = [name] + list(more)
    if not all(isinstance(n, str) and n for n in names):
        raise AnsibleFilterError("iqn: the names must be non-empty strings, got %r" % (names,))
    try:
        return make_iqn(str(date), str(domain), *names)
    except ValueError as exc:
        raise AnsibleFilterError("iqn: %s" % exc) from None


def mac(value, style="colon"):
    """``'52-54-00-AA-BB-CC' | diskless.cluster.mac`` -> ``52:54:00:aa:bb:cc`` (``'hyphen'`` for iPXE file names)."""
    try:
        return normalize_mac(value, style)
    except ValueError as exc:
        raise AnsibleFilterError("mac: %r %s" % (value, exc)) from None


class FilterModule:
    def filters(self):
        return {"iqn": iqn, "mac": mac}
