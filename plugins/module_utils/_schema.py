# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The inventory schema: every inventory variable the collection reads, declared ONCE.

The planner's type checks (``coerce``), the unknown-name check (``near_miss``), the tables of docs/plan.md
(``markdown_tables``) and the tests of the roles' ``argument_specs`` all derive from ``VARIABLES``.

The collection claims no prefix: a variable is ours only if it is declared here. Another role's
``node_exporter_version`` or another collection's ``cluster_fqdn`` is none of our business; a name that is
one or two keystrokes away from a declared one (``node_imgae``) is reported with "did you mean".

Pure Python, no I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

try:  # ansible-core's own boolean rules (yes/no/true/false/1/0/on/off), as -e and module arguments use them
    from ansible.module_utils.parsing.convert_bool import BOOLEANS_FALSE, BOOLEANS_TRUE
except ImportError:  # pragma: no cover - ansible-core is always there on the controller
    BOOLEANS_TRUE = frozenset(("y", "yes", "on", "1", "true", "t", 1, 1.0, True))
    BOOLEANS_FALSE = frozenset(("n", "no", "off", "0", "false", "f", 0, 0.0, False))

# Where a variable is read: the scope names the inventory group whose hosts carry it.
SCOPES = {
    "cluster": "every host (group_vars/all or -e)",
    "provisioning": "hosts of group provisioning",
    "storage": "hosts of group storage",
    "compute": "hosts of group compute",
    "playbook": "every host (read by the playbooks, not by the planner)",
}


class Var:
    """One inventory variable. ``type``: str, int, bool, list, dict, mac, size, address (IPv4)."""

    __slots__ = ("name", "scope", "type", "default", "required", "example", "meaning", "boot", "per_group", "secret")

    def __init__(self, name, scope, type, meaning, default=None, required=False, example=None, boot=False,
                 per_group=False, secret=False):
        self.name = name
        self.scope = scope
        self.type = type
        self.meaning = meaning
        self.default = default
        self.required = required
        self.example = example
        self.boot = boot            # reaches an iPXE script or a kernel command line
        self.per_group = per_group  # a cluster variable that a group may override
        self.secret = secret


VARIABLES = (
    # -- cluster-wide ---------------------------------------------------------------------------------
    Var("cluster_name", "cluster", "str", "short name, `[a-z0-9-]`; the storage hosts' mutual CHAP user is `<name>-storage`",
        required=True, example="lab", boot=True),
    Var("cluster_domain", "cluster", "str", "DNS domain (at least two labels); reversed, the IQN naming authority",
        required=True, example="lab.example.org", boot=True),
    Var("cluster_iqn_date", "cluster", "str", "month the naming authority owned the domain, `YYYY-MM` (quote it)",
        required=True, example="2026-11", boot=True),
    Var("cluster_boot_network", "cluster", "str", "IPv4 boot network, CIDR, at most /29", required=True,
        example="10.77.0.0/24", boot=True),
    Var("cluster_boot_gateway", "cluster", "address", "default gateway handed to the nodes", example="10.77.0.1",
        boot=True),
    Var("cluster_dhcp_range", "cluster", "list", "`[first, last]` dynamic pool: unknown MACs get the discovery script only",
        default="the top quarter of the network, at most 64 addresses", example=["10.77.0.200", "10.77.0.250"]),
    Var("cluster_dhcp_lease_time", "cluster", "str", "lease time of the reservations (`12h`, `3600`, `infinite`)", default="12h", example="12h"),
    Var("cluster_node_ip_offset", "cluster", "int", "a node's derived address is network + offset + node index",
        default=100, example=100, boot=True, per_group=True),
    Var("cluster_images", "cluster", "dict",
        "images `{name: {version, size, label}}`; `version` (quote it) names the golden snapshot `@v<version>`", required=True,
        example={"debian12": {"version": "1", "size": "2G", "label": "dlroot"}}, boot=True),
    Var("cluster_default_image", "cluster", "str", "image of the nodes that name none",
        default="the only image, if there is one", example="debian12", boot=True),
    Var("cluster_storage_pool", "cluster", "str", "ZFS pool name on the storage hosts", default="tank",
        example="tank"),
    Var("cluster_iscsi_port", "cluster", "int", "iSCSI portal port", default=3260, example=3260),
    Var("cluster_http_port", "cluster", "int", "port of the HTTP boot tree", default=80, example=8080, boot=True),
    Var("cluster_http_address", "cluster", "address", "address the nodes fetch boot files from (e.g. a VRRP address)",
        default="the first provisioning host", example="10.77.0.3", boot=True),
    Var("cluster_chap_secrets", "cluster", "dict", "per node with an iSCSI root `{secret, mutual_secret}`, in vault (or per host "
        "`node_chap_*`)", example={"node001": {"secret": "…", "mutual_secret": "…"}}, secret=True),
    Var("cluster_tang_threshold", "cluster", "int",
        "how many provisioning hosts' Tang servers must answer to unlock a `node_luks` root (Clevis `sss` threshold), "
        "1 to the number of provisioning hosts", default=1, example=1),
    Var("cluster_kernel_args", "cluster", "list", "extra kernel arguments of every node", default=[],
        example=["console=ttyS0,115200n8"], boot=True),
    Var("cluster_power_on_command", "playbook", "list",
        "argv that powers a node on, the node's name appended (playbooks/compute.yml)", default=[],
        example=["ipmi-power-on"]),
    Var("cluster_boot_timeout", "playbook", "int", "seconds playbooks/compute.yml waits for a node to boot",
        default=900, example=900),
    # -- provisioning hosts ---------------------------------------------------------------------------
    Var("provisioning_ip", "provisioning", "address", "its address on the boot network (outside the DHCP range)", default="ansible_host",
        example="10.77.0.2", boot=True),
    # -- storage hosts --------------------------------------------------------------------------------
    Var("storage_ip", "storage", "address", "its iSCSI portal address", default="ansible_host",
        example="10.77.0.11"),
    Var("storage_pool_devices", "storage", "list", "devices of the pool, e.g. `[/dev/sdb, /dev/sdc]`", required=True,
        example=["/dev/vdb"]),
    Var("storage_pool", "storage", "str", "ZFS pool name", default="cluster_storage_pool", example="tank"),
    Var("storage_pool_size", "storage", "size", "usable pool size: volumes larger than it are refused by the planner", example="100G"),
    # -- compute nodes --------------------------------------------------------------------------------
    Var("node_mac", "compute", "mac", "MAC it boots from, quoted; any common spelling, normalised", required=True,
        example="52:54:00:00:01:01", boot=True),
    Var("node_ip", "compute", "address", "fixed address; derived = network + `cluster_node_ip_offset` + index", default="derived: network + offset + index",
        example="10.77.0.101", boot=True),
    Var("node_index", "compute", "int", "index for the derived address (`node007` -> 7)",
        default="the trailing digits of its name", example=1, boot=True),
    Var("node_hostname", "compute", "str", "host name; the initiator IQN is `iqn.<date>.<authority>:<hostname>`",
        default="its inventory name", example="node001",
        boot=True),
    Var("node_root", "compute", "str",
        "`iscsi` (one LUN), `mirror` (md RAID1 over two storage hosts), `image` (shared read-only LUN + RAM overlay) "
        "or `live` (the image's squashfs over HTTP into RAM + RAM overlay; no storage host)", default="iscsi",
        example="mirror", boot=True),
    Var("node_luks", "compute", "bool",
        "LUKS2 on the root, unlocked at boot by Clevis bound to the provisioning hosts' Tang (not `live`): no key is "
        "stored or sent anywhere; an `iscsi`/`mirror` clone gets 32M more for the LUKS header and is encrypted by its "
        "first boot, an `image` node boots its image encrypted once on the controller", default=False, example=False),
    Var("node_image", "compute", "str", "its image, a key of `cluster_images`", default="cluster_default_image",
        example="debian12", boot=True),
    Var("node_root_size", "compute", "size",
        "size of its clone (at least the image, + 32M with `node_luks`; not for `image` or `live` mode)",
        default="the image size (+ 32M with `node_luks`)", example="8G"),
    Var("node_storage", "compute", "list", "pin to storage hosts (1 for `iscsi`, 2 for `mirror`; not for `live` mode)",
        default="placement by hashing", example=["sch1", "sch2"]),
    Var("node_iscsi_replacement_timeout", "compute", "int",
        "seconds a lost iSCSI path holds I/O before failing it (>= 1; short where md or multipath has another path; "
        "not for `live` mode)", default="by root mode: 86400 `iscsi`, 5 `mirror` and `image`", example=86400),
    Var("node_path_wait", "compute", "int",
        "seconds the initramfs waits for all paths before it boots degraded; 0 waits forever (not for `live` mode)",
        default="by root mode: 0 `iscsi`, 30 `mirror` and `image`", example=30),
    Var("node_overlay", "compute", "str", "RAM overlay over the read-only root: `tmpfs` or `zram` (`image` and `live` modes only)",
        default="tmpfs", example="zram"),
    Var("node_overlay_size", "compute", "str", "size of the RAM overlay, percent of RAM, `1%`-`90%` (`image` and `live` modes only)",
        default="50%", example="25%"),
    Var("node_chap_secret", "compute", "str", "its CHAP secret, 12-255 characters (or in `cluster_chap_secrets`)", example="…",
        secret=True),
    Var("node_chap_mutual_secret", "compute", "str", "the storage hosts' mutual CHAP secret for it, distinct from its own", example="…",
        secret=True),
    Var("node_luks_recovery", "compute", "str", "a recovery passphrase for its LUKS root (`node_luks`), 20-512 printable "
        "characters, in vault: Ansible adds it as a keyslot of its own once the node is up, for the day no Tang answers",
        example="…", secret=True),
    Var("node_kernel_args", "compute", "list", "extra kernel arguments of this node", default=[],
        example=["nomodeset"], boot=True),
)

BY_NAME = {v.name: v for v in VARIABLES}

# Variables that are gone: setting one is an error that says why and what to do instead (never silently ignored).
# ``name``: a variable (a host or cluster variable of ``scope``) or ``<variable>.<key>`` for a key of a per-node
# mapping entry (``cluster_chap_secrets.<node>.<key>``).
_LUKS_RETIRED = ("is retired: a LUKS root is unlocked by Clevis bound to the provisioning hosts' Tang "
                 "(docs/security.md); remove it from the inventory and vault (a recovery passphrase is node_luks_recovery)")
RETIRED = {
    "node_luks_key": ("compute", _LUKS_RETIRED),
}
RETIRED_KEYS = {  # keys of the per-node entries of a mapping variable
    "cluster_chap_secrets": {"luks_key": _LUKS_RETIRED},
}
# Variables the planner reads (the playbook-scope ones are read by playbooks only).
PLANNER_SCOPES = ("cluster", "provisioning", "storage", "compute")
# The prefixes of the names a near-miss is looked for in (a name outside them is never ours).
PREFIXES = ("cluster_", "provisioning_", "storage_", "node_")


def names(scope):
    return tuple(v.name for v in VARIABLES if v.scope == scope)


# ------------------------------------------------------------------------------------------------ typing
def _yaml_word(value):
    """What YAML made of an unquoted scalar, for the 'quote it' messages."""
    if isinstance(value, bool):
        return "a boolean (YAML reads unquoted yes/no/on/off/true/false so)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    if isinstance(value, float):
        return "a number (YAML drops trailing zeros of unquoted decimals)"
    return "a number"


def sexagesimal(value):
    """The text of an unquoted ``52:54:00:00:01:01`` that YAML 1.1 read as a base-60 integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 60:
        return None
    groups = []
    while value:
        value, rest = divmod(value, 60)
        groups.append(rest)
    return ":".join("%02d" % g for g in reversed(groups))


def coerce(var, value):
    """``value`` as the declared type, or raise ValueError with what to fix (one line, no host/field).

    Strings from ``-e`` that are valid numbers or booleans are accepted as such; YAML's typing traps
    (unquoted MACs, versions, dates, yes/no) get a message that says to quote the value.
    """
    kind = var.type
    if value is None:
        return None
    if kind in ("str", "address"):
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float, datetime.date)):
            raise ValueError("%r was read by YAML as %s, not text: quote it (%s: \"%s\")"
                             % (value, _yaml_word(value), var.name, _plain_text(value)))
        raise ValueError("must be a string, got %s" % type(value).__name__)
    if kind == "mac":
        if isinstance(value, str):
            return value
        text = sexagesimal(value)
        if text is not None:
            raise ValueError("%r was read by YAML as a base-60 number (an unquoted MAC of digits only): quote it "
                             "(node_mac: \"%s\")" % (value, text))
        raise ValueError("%r is not a MAC address: quote it (node_mac: \"52:54:00:00:01:01\")" % (value,))
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError("%r must be a whole number" % (value,))
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
        raise ValueError("%r must be a whole number" % (value,))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        key = value.lower() if isinstance(value, str) else value
        if key in BOOLEANS_TRUE:
            return True
        if key in BOOLEANS_FALSE:
            return False
        raise ValueError("%r must be true or false" % (value,))
    if kind == "size":
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError("%r was read by YAML as %s: write a size like \"2G\" in quotes" % (value, _yaml_word(value)))
        return value
    if kind == "list":
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            return list(value)
        raise ValueError("must be a list (YAML: [a, b]), got %s" % _type_word(value))
    if kind == "dict":
        if isinstance(value, Mapping):
            return value
        raise ValueError("must be a mapping, got %s" % _type_word(value))
    raise AssertionError("unknown schema type %r" % kind)  # pragma: no cover


def _type_word(value):
    if isinstance(value, str):
        return "the text %r" % (value if len(value) <= 40 else value[:37] + "...")
    return type(value).__name__


def _plain_text(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------------------- unknown names
def _distance(a, b, limit):
    """Damerau-Levenshtein (optimal string alignment) distance, or limit + 1 once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2 = None
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def near_miss(name, known=None):
    """The declared name ``name`` is probably a typo of, or None.

    Only names with one of our prefixes are looked at; a name is a near miss when it is at most two edits
    (one for short names) away from a declared name of the same prefix. Anything else is another role's.
    """
    if not isinstance(name, str) or name in BY_NAME or not name.startswith(PREFIXES):
        return None
    candidates = known if known is not None else BY_NAME
    prefix = name.split("_", 1)[0] + "_"
    limit = 1 if len(name) - len(prefix) <= 5 else 2
    best = None
    for other in sorted(candidates):
        if not other.startswith(prefix) or other == name:
            continue
        d = _distance(name, other, limit)
        if d <= limit and (best is None or d < best[0]):
            best = (d, other)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------- docs
def _md(value):
    if value is None:
        return ""
    if isinstance(value, str) and not value.startswith(("[", "{")) and " " in value:
        return value
    if isinstance(value, str):
        return "`%s`" % value
    import json

    return "`%s`" % json.dumps(value, ensure_ascii=False)


def markdown_tables():
    """The inventory-variable tables of docs/plan.md (generated: a unit test compares them)."""
    out = ["Column *boot*: the value reaches an iPXE script or a kernel command line and is checked against a "
           "strict character set.", ""]
    for scope in ("cluster", "provisioning", "storage", "compute", "playbook"):
        out.append("### %s: %s" % (scope, SCOPES[scope]))
        out.append("")
        out.append("| variable | type | required | default | example | boot | meaning |")
        out.append("|---|---|---|---|---|---|---|")
        for v in VARIABLES:
            if v.scope != scope:
                continue
            meaning = v.meaning
            if v.per_group:
                meaning += " (a group may override it)"
            if v.secret:
                meaning += " (secret)"
            out.append("| `%s` | %s | %s | %s | %s | %s | %s |" % (
                v.name, v.type, "yes" if v.required else "no", _md(v.default), "" if v.secret else _md(v.example),
                "yes" if v.boot else "", meaning))
        out.append("")
    out.append("### retired: setting one is an error")
    out.append("")
    out.append("| variable | why |")
    out.append("|---|---|")
    rows = [(name, why) for name, (_scope, why) in RETIRED.items()]
    rows += [("%s.<node>.%s" % (var, key), why) for var, keys in RETIRED_KEYS.items() for key, why in keys.items()]
    for name, why in sorted(rows):
        out.append("| `%s` | %s |" % (name, why[len("is retired: "):] if why.startswith("is retired: ") else why))
    out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
