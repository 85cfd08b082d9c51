# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The cluster planner: one inventory in, one plan out.

Pure Python, no I/O. ``build_plan()`` validates everything (collecting every problem, one line each,
``<host>: <field>: <problem>``) and derives every name, address and placement the roles use: node IPs,
initiator and target IQNs, volume names and their placement across storage hosts, LUN ids, CHAP pairs,
the Tang servers a LUKS root is bound to, DHCP host lines and per-node boot files. The shape of the result is
documented in docs/plan.md.

Stability: everything derived for a node depends only on that node's own variables, the cluster-wide
variables and the set of storage hosts -- never on other nodes or on inventory order -- so a cluster
that grows never re-addresses or moves a running node.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence

from ansible_collections.diskless.cluster.plugins.module_utils import _schema as schema
from ansible_collections.diskless.cluster.plugins.module_utils._size import format_size, parse_size

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - exercised only without netaddr
    HAS_NETADDR = False

PLAN_VERSION = 1
ROOT_MODES = ("iscsi", "mirror", "image", "live")
STORAGE_MODES = ("iscsi", "mirror", "image")    # the root is on iSCSI LUNs of the storage hosts
OVERLAY_MODES = ("image", "live")               # a read-only root under a RAM overlay
OVERLAYS = ("tmpfs", "zram")
DEFAULT_REPLACEMENT_TIMEOUT = {"iscsi": 86400, "mirror": 5, "image": 5}  # one path: ride out a reboot of its host
DEFAULT_PATH_WAIT = {"iscsi": 0, "mirror": 30, "image": 30}              # 0: wait for the one path forever
ISCSI_NOOP_INTERVAL = 5
ISCSI_NOOP_TIMEOUT = 5
DEFAULT_OVERLAY = "tmpfs"
DEFAULT_OVERLAY_SIZE = "50%"
MD_NAME = "dlroot"
# the node SSH host keys the provisioning host keeps per node and iPXE hands to the initramfs (no RSA: slow to
# make, and every client speaks ed25519)
SSH_HOST_KEY_TYPES = ("ed25519", "ecdsa")
GROUPS = ("provisioning", "storage", "compute")
IQN_MAX_BYTES = 223
DEFAULT_NODE_IP_OFFSET = 100
DEFAULT_POOL = "tank"
DEFAULT_LEASE_TIME = "12h"
# LUKS2 (node_luks): the node's first boot encrypts its clone in place (cryptsetup reencrypt --encrypt
# --reduce-device-size 32M), which needs the last 32 MiB of the volume unused: a LUKS clone is that much larger
LUKS_HEADER_ROOM = 32 << 20
# Clevis binds a LUKS root to Tang on every provisioning host, served by its HTTP server under this path
TANG_PATH = "/tang"
DEFAULT_TANG_THRESHOLD = 1
SECRET_MASK = "********"
# node_luks_recovery: long enough to resist guessing offline against a stolen LUKS header (it is the one keyslot
# that is not random), short enough to be typed at a console
MIN_RECOVERY, MAX_RECOVERY = 20, 512

# The inventory variables are declared once, in _schema.py.
CLUSTER_VARS = frozenset(schema.names("cluster"))
NODE_VARS = frozenset(schema.names("compute"))
# What may reach an iPXE script or a kernel command line as given: no quotes, blanks, shell or iPXE syntax.
_BOOT_ARG_RE = re.compile(r"^[A-Za-z0-9._,:=/+@%-]+\Z")
_BOOT_ARG_HELP = "letters, digits and . _ , : = / + @ % - (no blanks, quotes, $, ;, #, &, | or braces)"
_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,252}[A-Za-z0-9])?\Z")

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_DNS_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_IQN_RE = re.compile(r"^iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9.:-]+\Z")
_IQN_DATE_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])\Z")
_SECRET_RE = re.compile(r"^[A-Za-z0-9!#%+,./:=?@^_~-]+\Z")
_VERSION_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,31}\Z")
_POOL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,254}\Z")
_CANONICAL_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}\Z")
_TRAILING_DIGITS = re.compile(r"([0-9]+)$")
_OVERLAY_SIZE_RE = re.compile(r"^([1-9]|[1-8][0-9]|90)%\Z")
_SERIAL_NAMESPACE = uuid.UUID("6f0b8a52-8f3e-4c55-9d0e-5e7c1f6a2b10")


class PlanError(Exception):
    """The inventory does not describe a valid cluster. ``errors`` holds one line per problem."""

    def __init__(self, errors: Sequence[str]):
        self.errors = sorted(set(errors))
        super().__init__(
            "cluster plan is invalid (%d problem%s):\n%s"
            % (len(self.errors), "" if len(self.errors) == 1 else "s", "\n".join(self.errors))
        )


# ---------------------------------------------------------------------------------------------------------
# Small pure helpers (also exposed as filters)
# ---------------------------------------------------------------------------------------------------------

def normalize_mac(value, style: str = "colon") -> str:
    """Normalise a MAC address to lower case ``52:54:00:aa:bb:cc`` (or ``52-54-00-aa-bb-cc``)."""
    if style not in ("colon", "hyphen"):
        raise ValueError("style must be 'colon' or 'hyphen'")
    if not isinstance(value, str):
        raise ValueError("is not a MAC address")
    if _CANONICAL_MAC_RE.match(value):  # fast path for the common spelling (10,000 nodes plan in ~1 s)
        text = value.lower()
        return text.replace(":", "-") if style == "hyphen" else text
    if not HAS_NETADDR:
        raise ValueError("needs the Python library netaddr on the controller")
    try:
        eui = netaddr.EUI(value.strip(), dialect=netaddr.mac_unix_expanded)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise ValueError("is not a MAC address") from None
    if eui.version != 48:
        raise ValueError("is not a 48-bit MAC address")
    text = str(eui).lower()
    return text.replace(":", "-") if style == "hyphen" else text


def iqn_authority(date: str, domain: str) -> str:
    """``iqn.<yyyy-mm>.<reversed domain>`` (RFC 3720 section 3.2.6.3.1)."""
    return "iqn.%s.%s" % (date, ".".join(reversed(domain.lower().rstrip(".").split("."))))


def make_iqn(date: str, domain: str, *names: str) -> str:
    """Build ``iqn.<date>.<reversed domain>:<name>[.<name>...]``, lower case; raise ValueError if invalid."""
    iqn = "%s:%s" % (iqn_authority(date, domain), ".".join(n.lower() for n in names))
    check_iqn(iqn)
    return iqn


def check_iqn(iqn: str) -> None:
    if len(iqn.encode("utf-8")) > IQN_MAX_BYTES:
        raise ValueError("'%s' is %d bytes; an IQN may have at most %d" % (iqn, len(iqn.encode("utf-8")), IQN_MAX_BYTES))
    if not _IQN_RE.match(iqn):
        raise ValueError("'%s' is not a valid IQN (only a-z, 0-9, '.', ':' and '-' are allowed)" % iqn)


def placement_score(node: str, host: str) -> int:
    """Rendezvous-hash weight of ``host`` for ``node``: the highest weights win (stable, balanced)."""
    return int.from_bytes(hashlib.sha256(("%s\0%s" % (node, host)).encode("utf-8")).digest()[:8], "big")


def place(node: str, hosts: Sequence[str], count: int) -> list[str]:
    """The ``count`` storage hosts for ``node`` by rendezvous hashing: depends only on node and host set."""
    return sorted(hosts, key=lambda h: (-placement_score(node, h), h))[:count]


def shared_image_serial(authority: str, image: str, version: str) -> str:
    """Unit serial for a shared image LUN: identical on every storage host (multipath needs it)."""
    return str(uuid.uuid5(_SERIAL_NAMESPACE, "%s/%s@%s" % (authority, image, version)))


def _golden_size(image, encrypted):
    """Bytes of an image's golden volume: the encrypted image (root mode 'image' with LUKS) holds the LUKS2 header too."""
    if image["size_bytes"] is None:
        return None
    return image["size_bytes"] + (LUKS_HEADER_ROOM if encrypted else 0)


def _shell_quote(value: str) -> str:
    return "'%s'" % value.replace("'", "'\\''")


def machine_id(cluster: str, node: str) -> str:
    """The node's /etc/machine-id: 32 lower-case hex digits, stable per cluster and node name."""
    return hashlib.sha256(("%s/%s" % (cluster, node)).encode("utf-8")).hexdigest()[:32]


def _is_str(value) -> bool:
    return isinstance(value, str) and value != ""


# ---------------------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------------------

class _Planner:
    def __init__(self, cluster_vars: Mapping, hostvars: Mapping[str, Mapping], groups: Mapping[str, Sequence[str]]):
        self.errors: list[str] = []
        self.typed_badly: set = set()  # (host, field) whose type was refused: nothing more is said of them
        self.groups = {g: list(groups.get(g) or []) for g in GROUPS}
        self.cv = self._typed("all", "cluster", cluster_vars)
        self.hostvars = {}
        scope_of = {h: g for g in ("compute", "storage", "provisioning") for h in self.groups[g]}
        for host, hv in hostvars.items():
            # a cluster variable a host sees with the cluster's own value is the cluster's (checked once, as 'all')
            own = {k: v for k, v in hv.items() if not (k in cluster_vars and k.startswith("cluster_") and v == cluster_vars[k])}
            self.hostvars[host] = self._typed(host, scope_of.get(host), own)

    def err(self, host: str, field: str, problem: str) -> None:
        if (host, field) in self.typed_badly:
            return
        self.errors.append("%s: %s: %s" % (host, field, problem))

    def _typed(self, host, scope, variables) -> dict:
        """The variables of ``host`` with their declared types (schema.coerce); a refused value is reported once
        and dropped; an undeclared name that is a near miss of a declared one is reported with the suggestion."""
        out = {}
        for key in sorted(k for k in variables if isinstance(k, str)):
            value = variables[key]
            var = schema.BY_NAME.get(key)
            retired = schema.RETIRED.get(key)
            if var is None and retired is not None:
                if scope in (None, "cluster", retired[0]):
                    self.err(host, key, retired[1])
                continue
            if var is None:
                guess = schema.near_miss(key)
                if guess is not None and (host == "all") == guess.startswith("cluster_"):
                    self.err(host, key, "unknown variable; did you mean %s?" % guess)
                if key == "ansible_host":  # the default of provisioning_ip / storage_ip
                    out[key] = value
                continue
            if var.scope not in ("cluster", "playbook") and scope is not None and var.scope != scope:
                continue  # another group's variable (e.g. node_* in group_vars/all): not this host's business
            try:
                out[key] = schema.coerce(var, value)
            except ValueError as exc:
                # a secret is never repeated in a message, not even a mistyped one
                self.err(host, key, "must be text (quote it; the value is secret and not shown here)" if var.secret and var.type == "str"
                         else str(exc))
                self.typed_badly.add((host, key))
        return out

    # -- cluster-wide -------------------------------------------------------------------------------------
    def plan_cluster(self) -> None:
        cv = self.cv
        self.name = cv.get("cluster_name")
        if not _is_str(self.name):
            self.err("all", "cluster_name", "is required (a short name like 'lab')")
            self.name = "cluster"
        elif not _NAME_RE.match(self.name):
            self.err("all", "cluster_name", "'%s' must be lower case letters, digits and '-' (at most 63)" % self.name)

        self.domain = cv.get("cluster_domain")
        if not _is_str(self.domain):
            self.err("all", "cluster_domain", "is required (the DNS domain that names the cluster, e.g. lab.example.org)")
            self.domain = "invalid.example"
        else:
            labels = self.domain.rstrip(".").split(".")
            if len(labels) < 2 or not all(_DNS_LABEL_RE.match(label) for label in labels):
                self.err("all", "cluster_domain", "'%s' is not a DNS domain with at least two labels" % self.domain)
                self.domain = "invalid.example"

        self.iqn_date = cv.get("cluster_iqn_date")
        if not isinstance(self.iqn_date, str) or not _IQN_DATE_RE.match(self.iqn_date):
            self.err("all", "cluster_iqn_date", "%s must be a quoted 'YYYY-MM' month (when the domain was owned)"
                     % ("is required and" if self.iqn_date is None else repr(self.iqn_date)))
            self.iqn_date = "2000-01"
        self.authority = iqn_authority(self.iqn_date, self.domain)

        self.network = None
        net = cv.get("cluster_boot_network")
        if not _is_str(net):
            self.err("all", "cluster_boot_network", "is required in CIDR form, e.g. 10.77.0.0/24")
        elif "/" not in net:
            self.err("all", "cluster_boot_network", "'%s' has no prefix length; write it in CIDR form, e.g. 10.77.0.0/24" % net)
        else:
            try:
                network = netaddr.IPNetwork(net)
                if network.version != 4:
                    raise ValueError
            except (netaddr.AddrFormatError, ValueError, TypeError):
                self.err("all", "cluster_boot_network", "'%s' is not an IPv4 network in CIDR form" % net)
            else:
                if network.ip != network.network:
                    self.err("all", "cluster_boot_network", "'%s' has host bits set; did you mean %s?" % (net, network.cidr))
                elif network.prefixlen > 29:
                    self.err("all", "cluster_boot_network", "'%s' is too small for a cluster (at most /29)" % net)
                else:
                    self.network = network

        self.gateway = None
        gateway = cv.get("cluster_boot_gateway")
        if gateway not in (None, ""):
            address = self._address("all", "cluster_boot_gateway", gateway)
            if address is not None:
                self.gateway = address

        self.dhcp_range = None
        if self.network is not None:
            rng = cv.get("cluster_dhcp_range")
            if rng is None:
                usable = self.network.size - 2
                count = min(64, usable // 4)
                if count > 0:
                    last = netaddr.IPAddress(self.network.last - 1)
                    self.dhcp_range = (netaddr.IPAddress(int(last) - count + 1), last)
            elif not isinstance(rng, Sequence) or isinstance(rng, str) or len(rng) != 2:
                self.err("all", "cluster_dhcp_range", "must be a list [first, last] of two addresses")
            else:
                first = self._address("all", "cluster_dhcp_range", rng[0])
                last = self._address("all", "cluster_dhcp_range", rng[1])
                if first is not None and last is not None:
                    if first > last:
                        self.err("all", "cluster_dhcp_range", "first address %s is after last address %s" % (first, last))
                    else:
                        self.dhcp_range = (first, last)

        self.lease_time = cv.get("cluster_dhcp_lease_time", DEFAULT_LEASE_TIME)
        if not (isinstance(self.lease_time, str) and re.match(r"^([0-9]+[smhdw]?|infinite)\Z", self.lease_time)):
            self.err("all", "cluster_dhcp_lease_time", "%r must be like '12h', '3600' or 'infinite'" % (self.lease_time,))
            self.lease_time = DEFAULT_LEASE_TIME

        self.offset = cv.get("cluster_node_ip_offset", DEFAULT_NODE_IP_OFFSET)
        if self.offset < 0:
            self.err("all", "cluster_node_ip_offset", "%r must be a whole number >= 0" % (self.offset,))
            self.offset = None
        elif ("all", "cluster_node_ip_offset") in self.typed_badly:
            self.offset = None
        self.iscsi_port = self._port("cluster_iscsi_port", 3260)
        self.http_port = self._port("cluster_http_port", 80)

        self.pool = cv.get("cluster_storage_pool", DEFAULT_POOL)
        if not isinstance(self.pool, str) or not _POOL_RE.match(self.pool):
            self.err("all", "cluster_storage_pool", "%r is not a valid ZFS pool name" % (self.pool,))
            self.pool = DEFAULT_POOL

        self.kernel_args = self._boot_args("all", "cluster_kernel_args", cv.get("cluster_kernel_args"))

        # When a cluster-wide setting is broken, nodes that depend on it are not reported again.
        self.secrets_broken = ("all", "cluster_chap_secrets") in self.typed_badly
        self.secrets = cv.get("cluster_chap_secrets") or {}
        if not isinstance(self.secrets, Mapping):
            self.err("all", "cluster_chap_secrets", "must be a mapping {node: {secret, mutual_secret}}")
            self.secrets, self.secrets_broken = {}, True
        for var, retired in schema.RETIRED_KEYS.items():  # cluster_chap_secrets.<node>.luks_key
            entries = cv.get(var)
            if not isinstance(entries, Mapping):
                continue
            for node in sorted(k for k, e in entries.items() if isinstance(e, Mapping) and isinstance(k, str)):
                for key in sorted(set(entries[node]) & set(retired)):
                    self.err(node, "%s.%s.%s" % (var, node, key), retired[key])

        self.tang_threshold = cv.get("cluster_tang_threshold", DEFAULT_TANG_THRESHOLD)
        if ("all", "cluster_tang_threshold") in self.typed_badly:
            self.tang_threshold = None

        self.images = {}
        errors_before = len(self.errors)
        images = cv.get("cluster_images")
        if not isinstance(images, Mapping) or not images:
            self.err("all", "cluster_images", "is required: a mapping {name: {version, size, label}} with at least one image")
            images = {}
        for name in sorted(images):
            self._plan_image(name, images[name])
        self.default_image = cv.get("cluster_default_image")
        if self.default_image is None and len(images) == 1:
            self.default_image = next(iter(images))
        elif self.default_image is not None and self.default_image not in images:
            self.err("all", "cluster_default_image", "'%s' is not one of cluster_images (%s)"
                     % (self.default_image, ", ".join(sorted(images)) or "none"))
            self.default_image = None
        self.images_broken = len(self.errors) > errors_before or ("all", "cluster_images") in self.typed_badly

    def _plan_image(self, name, spec) -> None:
        field = "cluster_images"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self.err("all", field, "image name %r must be lower case letters, digits and '-'" % (name,))
            return
        if not isinstance(spec, Mapping):
            self.err("all", "%s.%s" % (field, name), "must be a mapping with version, size and label")
            return
        version = spec.get("version", "1")
        if isinstance(version, (bool, float)):
            self.err("all", "%s.%s.version" % (field, name), "%r was read by YAML as %s: quote it (version: \"%s\")"
                     % (version, "a boolean" if isinstance(version, bool) else "a number", version))
            version = "1"
        version = str(version)
        if not _VERSION_RE.match(version):
            self.err("all", "%s.%s.version" % (field, name), "%r must be lower case letters, digits, '.' and '-'" % version)
        try:
            size = parse_size(spec.get("size"))
        except ValueError as exc:
            self.err("all", "%s.%s.size" % (field, name), "%r %s" % (spec.get("size"), exc))
            size = None
        label = spec.get("label", "dlroot")
        if not isinstance(label, str) or not re.match(r"^[A-Za-z0-9_-]{1,16}\Z", label):
            self.err("all", "%s.%s.label" % (field, name), "%r must be 1-16 letters, digits, '_' or '-' (an ext4 label)" % (label,))
        self.images[name] = {
            "name": name,
            "version": version,
            "size_bytes": size,
            "label": label,
            "http_path": "/images/%s/%s" % (name, version),
            "golden_volume": "golden/%s" % name,
            # the image encrypted once (LUKS2 bound to Tang) for the LUKS nodes of root mode 'image': one master key
            # per image version, the same ciphertext on every storage host
            "luks_golden_volume": "golden/%s-luks" % name,
            "snapshot": "v%s" % version,
            "live": False,  # some live node boots its root.squashfs: the provisioning host publishes it
            "luks": False,  # some LUKS node of root mode 'image' boots it: its encrypted copy is made and written
        }

    def _port(self, key, default) -> int:
        value = self.cv.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            self.err("all", key, "%r must be a TCP port number (1-65535)" % (value,))
            return default
        return value

    def _address(self, host, field, value):
        try:
            address = netaddr.IPAddress(str(value))
            if address.version != 4 or str(value).count(".") != 3:
                raise ValueError
        except (netaddr.AddrFormatError, ValueError, TypeError):
            self.err(host, field, "%r is not an IPv4 address" % (value,))
            return None
        if self.network is not None and address not in self.network:
            self.err(host, field, "%s is outside the boot network %s" % (address, self.network))
            return None
        if self.network is not None and address in (self.network.network, self.network.broadcast):
            self.err(host, field, "%s is the %s address of %s" % (
                address, "network" if address == self.network.network else "broadcast", self.network))
            return None
        return address

    def _boot_args(self, host, field, value) -> list[str]:
        """Kernel arguments: each reaches the iPXE script and the kernel command line as it is."""
        args = self._str_list(host, field, value)
        bad = [a for a in args if not _BOOT_ARG_RE.match(a)]
        if bad:
            self.err(host, field, "%s: a kernel argument may use only %s" % (", ".join(repr(a) for a in bad), _BOOT_ARG_HELP))
            return []
        return args

    def _str_list(self, host, field, value) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(_is_str(v) for v in value):
            self.err(host, field, "must be a list of strings")
            return []
        return list(value)

    # -- hosts --------------------------------------------------------------------------------------------
    def check_groups(self) -> None:
        seen: dict[str, str] = {}
        for group in GROUPS:
            for host in self.groups[group]:
                if host in seen:
                    self.err(host, "groups", "is in both '%s' and '%s'; a host has one role" % (seen[host], group))
                else:
                    seen[host] = group
        if not self.groups["provisioning"]:
            self.err("all", "groups", "no host in group 'provisioning' (the DHCP/TFTP/HTTP boot server)")
        if not self.groups["storage"] and any(self.hostvars.get(n, {}).get("node_root", "iscsi") != "live"
                                              for n in self.groups["compute"]):
            self.err("all", "groups", "compute nodes with an iSCSI root (iscsi, mirror, image) need at least one host "
                     "in group 'storage'")
        # a storage or provisioning host that is also compute was reported; plan each host once
        for group in ("storage", "compute"):
            self.groups[group] = [h for h in self.groups[group] if seen.get(h) == group]

    def plan_provisioning(self) -> None:
        self.prov = {}
        for host in self.groups["provisioning"]:
            hv = self.hostvars.get(host, {})
            value = hv.get("provisioning_ip", hv.get("ansible_host"))
            if value in (None, ""):
                self.err(host, "provisioning_ip", "is required (its address on the boot network; defaults to ansible_host)")
                continue
            address = self._address(host, "provisioning_ip", value)
            if address is not None:
                self._claim(address, host, "provisioning_ip")
                self.prov[host] = address
        # Tang: every provisioning host runs one; a LUKS root is bound to all of them (Clevis sss)
        self.tang_urls = [self._http_url(self.prov[host]) + TANG_PATH for host in sorted(self.prov)]
        count = len(self.groups["provisioning"])
        if self.tang_threshold is not None and count and not 1 <= self.tang_threshold <= count:
            self.err("all", "cluster_tang_threshold", "%r must be from 1 to the number of provisioning hosts (%d): it is how "
                     "many of their Tang servers must answer to unlock a LUKS root" % (self.tang_threshold, count))

    def _http_url(self, host) -> str:
        """``http://<host>[:<cluster_http_port>]``: where the nodes reach a provisioning host's HTTP server."""
        return "http://%s%s" % (host, "" if self.http_port == 80 else ":%d" % self.http_port)

    def plan_storage(self) -> None:
        self.storage = {}
        for host in self.groups["storage"]:
            hv = self.hostvars.get(host, {})
            if not _NAME_RE.match(host):
                self.err(host, "inventory_hostname", "storage host names go into IQNs: use lower case letters, digits and '-'")
            value = hv.get("storage_ip", hv.get("ansible_host"))
            portal = None
            if value in (None, ""):
                self.err(host, "storage_ip", "is required (the iSCSI portal address; defaults to ansible_host)")
            else:
                try:
                    portal = netaddr.IPAddress(str(value))
                    if portal.version != 4 or str(value).count(".") != 3:
                        raise ValueError
                except (netaddr.AddrFormatError, ValueError, TypeError):
                    self.err(host, "storage_ip", "%r is not an IPv4 address" % (value,))
                    portal = None
                if portal is not None and self.network is not None and portal in self.network:
                    self._claim(portal, host, "storage_ip")
            devices = hv.get("storage_pool_devices")
            if not isinstance(devices, Sequence) or isinstance(devices, str) or not devices:
                self.err(host, "storage_pool_devices", "is required: a list of block devices like [/dev/vdb]")
                devices = []
            elif not all(isinstance(d, str) and d.startswith("/dev/") for d in devices):
                self.err(host, "storage_pool_devices", "%s: every entry must be a device path like /dev/vdb"
                         % ", ".join(repr(d) for d in devices if not (isinstance(d, str) and d.startswith("/dev/"))))
                devices = []
            if len(set(devices)) != len(devices):
                self.err(host, "storage_pool_devices", "lists a device twice")
            pool = hv.get("storage_pool", self.pool)
            if not isinstance(pool, str) or not _POOL_RE.match(pool):
                self.err(host, "storage_pool", "%r is not a valid ZFS pool name" % (pool,))
                pool = self.pool
            pool_size = hv.get("storage_pool_size")
            if pool_size is not None:
                try:
                    pool_size = parse_size(pool_size)
                except ValueError as exc:
                    self.err(host, "storage_pool_size", "%r %s" % (pool_size, exc))
                    pool_size = None
            self.storage[host] = {
                "name": host,
                "portal_ip": str(portal) if portal is not None else None,
                "pool": pool,
                "pool_devices": list(devices),
                "pool_size_bytes": pool_size,
                "golden": [],
                "volumes": [],
                "exports": [],
            }
        for image in self.images.values():
            for host, spec in self.storage.items():
                if image["size_bytes"] and spec["pool_size_bytes"] and image["size_bytes"] > spec["pool_size_bytes"]:
                    self.err(host, "storage_pool_size", "image '%s' (%s) does not fit in the pool (%s)"
                             % (image["name"], format_size(image["size_bytes"]), format_size(spec["pool_size_bytes"])))

    def _claim(self, address, host, field) -> None:
        owner = self.addresses.get(address)
        if owner is not None:
            self.err(host, field, "%s is already used by %s" % (address, owner))
            return
        self.addresses[address] = host
        if self.dhcp_range is not None and self.dhcp_range[0] <= address <= self.dhcp_range[1]:
            self.err(host, field, "%s is inside the dynamic DHCP range %s-%s" % (address, self.dhcp_range[0], self.dhcp_range[1]))

    # -- compute nodes ------------------------------------------------------------------------------------
    def plan_nodes(self) -> None:
        self.nodes = {}
        macs: dict[str, str] = {}
        hostnames: dict[str, str] = {}
        storage_hosts = sorted(self.storage)
        for node in sorted(self.groups["compute"]):
            hv = self.hostvars.get(node, {})
            ok = True
            if not _HOST_NAME_RE.match(node):
                self.err(node, "inventory_hostname", "a node's name goes into IQNs, volume names and the kernel command "
                         "line: use letters, digits, '.', '_' and '-' only")
                ok = False

            hostname = hv.get("node_hostname", node)
            if not isinstance(hostname, str) or not _DNS_LABEL_RE.match(hostname):
                self.err(node, "node_hostname" if "node_hostname" in hv else "inventory_hostname",
                         "%r is not a valid host name (letters, digits and '-', at most 63)" % (hostname,))
                ok = False
            else:
                hostname = hostname.lower()
                if hostname in hostnames:
                    self.err(node, "node_hostname", "'%s' is also the host name of %s" % (hostname, hostnames[hostname]))
                    ok = False
                hostnames.setdefault(hostname, node)

            mac = hv.get("node_mac")
            if mac in (None, ""):
                self.err(node, "node_mac", "is required (the MAC address of the NIC it boots from)")
                ok = False
            else:
                try:
                    mac = normalize_mac(mac)
                except ValueError as exc:
                    self.err(node, "node_mac", "%r %s" % (mac, exc))
                    ok = False
                else:
                    if mac in macs:
                        self.err(node, "node_mac", "%s is also the MAC of %s" % (mac, macs[mac]))
                        ok = False
                    macs.setdefault(mac, node)

            index = None
            raw_index = hv.get("node_index")
            if raw_index is not None:
                if isinstance(raw_index, bool) or not isinstance(raw_index, int) or raw_index < 0:
                    self.err(node, "node_index", "%r must be a whole number >= 0" % (raw_index,))
                    ok = False
                else:
                    index = raw_index
            else:
                match = _TRAILING_DIGITS.search(node)
                index = int(match.group(1)) if match else None

            if index is None and raw_index is not None:
                ip = None  # node_index is reported; no address can be derived from it
            else:
                ip = self._node_ip(node, hv, index)
            ok = ok and ip is not None

            mode = hv.get("node_root", "iscsi")
            if mode not in ROOT_MODES:
                self.err(node, "node_root", "%r is not a root mode; use one of %s" % (mode, ", ".join(ROOT_MODES)))
                ok = False
            luks = hv.get("node_luks", False)
            if not isinstance(luks, bool):
                self.err(node, "node_luks", "%r must be true or false" % (luks,))
                ok, luks = False, False
            elif luks and mode == "live":
                self.err(node, "node_luks", "root mode 'live' has no volume to encrypt (its root is in RAM)")
                ok = False
            recovery = self._luks_recovery(node, hv, luks, mode)
            ok = ok and recovery is not False

            image_name = hv.get("node_image", self.default_image)
            image = self.images.get(image_name) if isinstance(image_name, str) else None
            if image is None and self.images_broken:
                ok = False
            elif image_name is None:
                self.err(node, "node_image", "is required (cluster_images has %d images and no cluster_default_image)" % len(self.images))
                ok = False
            elif image is None:
                self.err(node, "node_image", "%r is not one of cluster_images (%s)" % (image_name, ", ".join(sorted(self.images)) or "none"))
                ok = False

            # a LUKS clone keeps its last LUKS_HEADER_ROOM bytes free for the in-place encryption of its first boot
            least = None
            if image and image["size_bytes"]:
                least = image["size_bytes"] + (LUKS_HEADER_ROOM if luks else 0)
            root_size = least
            if "node_root_size" in hv:
                try:
                    root_size = parse_size(hv["node_root_size"])
                except ValueError as exc:
                    self.err(node, "node_root_size", "%r %s" % (hv["node_root_size"], exc))
                    root_size, ok = None, False
                else:
                    if mode == "image":
                        self.err(node, "node_root_size", "does not apply to root mode 'image' (the shared image is read-only)")
                        ok = False
                    elif mode == "live":
                        self.err(node, "node_root_size", "does not apply to root mode 'live' (its root is the image's "
                                 "squashfs in RAM)")
                        ok = False
                    elif least is not None and root_size < least and not luks:
                        self.err(node, "node_root_size", "%s is smaller than image '%s' (%s); a clone can only grow"
                                 % (format_size(root_size), image["name"], format_size(image["size_bytes"])))
                        ok = False
                    elif least is not None and root_size < least:
                        self.err(node, "node_root_size", "%s is too small for a LUKS root (node_luks): image '%s' (%s) + "
                                 "%s for the LUKS header is at least %s"
                                 % (format_size(root_size), image["name"], format_size(image["size_bytes"]),
                                    format_size(LUKS_HEADER_ROOM), format_size(least)))
                        ok = False

            boot = self._node_boot_settings(node, hv, mode)
            ok = ok and boot is not None
            on_iscsi = mode != "live"
            if on_iscsi:
                hosts = self._node_storage(node, hv, mode, storage_hosts)
                ok = ok and hosts is not None
            else:
                hosts = []
                if hv.get("node_storage") is not None:
                    self.err(node, "node_storage", "does not apply to root mode 'live' (it has no storage host)")
                    ok = False
            secrets = self._node_secrets(node, hv, chap=on_iscsi)
            ok = ok and secrets is not None

            # the host name is the unique part of the initiator IQN; an invalid one is already reported
            initiator = None
            if on_iscsi:
                initiator = self._iqn(node, "initiator_iqn", hostname) if ok or _DNS_LABEL_RE.match(str(hostname)) else None
                ok = ok and initiator is not None
            kernel_args = self._boot_args(node, "node_kernel_args", hv.get("node_kernel_args"))
            if not ok or mode not in ROOT_MODES or image is None:
                continue

            paths = []
            for host in hosts:
                spec = self.storage[host]
                if mode == "image":
                    shared = "%s-v%s%s" % (image["name"], image["version"], "-luks" if luks else "")
                    volume = "%s/shared/%s" % (spec["pool"], shared)
                    target = self._iqn(node, "target_iqn", "shared", shared)
                else:
                    volume = "%s/nodes/%s-root" % (spec["pool"], node)
                    target = self._iqn(node, "target_iqn", host, "%s-root" % node)
                if target is None:
                    break
                if (("node_root_size" in hv or luks) and root_size and spec["pool_size_bytes"]
                        and root_size > spec["pool_size_bytes"]):
                    self.err(node, "node_root_size", "%s does not fit in the pool of %s (%s)"
                             % (format_size(root_size), host, format_size(spec["pool_size_bytes"])))
                    break
                paths.append({
                    "storage_host": host,
                    "portal": spec["portal_ip"],
                    "port": self.iscsi_port,
                    "target_iqn": target,
                    "lun": 0,
                    "volume": volume,
                    "readonly": mode == "image",
                })
            else:
                if mode == "live":
                    image["live"] = True
                elif mode == "image" and luks:
                    image["luks"] = True
                self.nodes[node] = dict({
                    "name": node,
                    "hostname": hostname,
                    "mac": mac,
                    "mac_hyphen": mac.replace(":", "-"),
                    "ip": str(ip),
                    "index": index,
                    "root": mode,
                    "luks": luks,
                    "image": image["name"],
                    "machine_id": machine_id(self.name, node),
                    "initiator_iqn": initiator,
                    "chap_user": node if on_iscsi else None,
                    "chap_secret": secrets[0],
                    "mutual_chap_user": self.mutual_user if on_iscsi else None,
                    "mutual_chap_secret": secrets[1],
                    "root_size_bytes": root_size if mode in ("iscsi", "mirror") else None,
                    "tang_urls": list(self.tang_urls) if luks else [],
                    "tang_threshold": self.tang_threshold if luks else None,
                    "luks_recovery": recovery,
                    "paths": paths,
                    "extra_kernel_args": kernel_args,
                }, **boot)

    def _node_boot_settings(self, node, hv, mode):
        """What the initramfs does with the root: iSCSI timeouts, path wait, md name, RAM overlay (None if invalid)."""
        ok = True
        out = {"iscsi_replacement_timeout": None, "iscsi_noop_interval": None, "iscsi_noop_timeout": None,
               "path_wait": None, "md_name": MD_NAME if mode == "mirror" else None, "overlay": None, "overlay_size": None}
        for var, key, least, defaults in (
                ("node_iscsi_replacement_timeout", "iscsi_replacement_timeout", 1, DEFAULT_REPLACEMENT_TIMEOUT),
                ("node_path_wait", "path_wait", 0, DEFAULT_PATH_WAIT)):
            value = hv.get(var)
            if mode == "live":
                if value is not None:
                    self.err(node, var, "does not apply to root mode 'live' (it has no iSCSI path)")
                    ok = False
                continue
            if value is None:
                value = defaults.get(mode)
            elif value < least:
                self.err(node, var, "%r must be a whole number of seconds >= %d" % (value, least))
                ok = False
            out[key] = value
        if mode in STORAGE_MODES:
            out["iscsi_noop_interval"], out["iscsi_noop_timeout"] = ISCSI_NOOP_INTERVAL, ISCSI_NOOP_TIMEOUT
        overlay, size = hv.get("node_overlay"), hv.get("node_overlay_size")
        if mode in OVERLAY_MODES:
            out["overlay"] = DEFAULT_OVERLAY if overlay is None else overlay
            out["overlay_size"] = DEFAULT_OVERLAY_SIZE if size is None else size
            if overlay is not None and overlay not in OVERLAYS:
                self.err(node, "node_overlay", "%r is not an overlay; use one of %s" % (overlay, ", ".join(OVERLAYS)))
                ok = False
            if size is not None and not _OVERLAY_SIZE_RE.match(size):
                self.err(node, "node_overlay_size", "%r must be a percentage of RAM from '1%%' to '90%%', like '50%%'" % (size,))
                ok = False
        elif mode in ROOT_MODES:
            for var, value in (("node_overlay", overlay), ("node_overlay_size", size)):
                if value is not None:
                    self.err(node, var, "does not apply to root mode '%s' (only 'image' and 'live' have a RAM overlay)" % mode)
                    ok = False
        return out if ok else None

    def _node_ip(self, node, hv, index):
        if self.network is None:
            return None
        if hv.get("node_ip") not in (None, ""):
            address = self._address(node, "node_ip", hv["node_ip"])
            field = "node_ip"
        else:
            field = "node_ip"
            if index is None:
                self.err(node, "node_ip", "cannot be derived: the host name has no trailing number; set node_index or node_ip")
                return None
            if "cluster_node_ip_offset" in hv:  # a group's own offset
                offset = hv["cluster_node_ip_offset"]
                if offset < 0:
                    self.err(node, "cluster_node_ip_offset", "%r must be a whole number >= 0" % (offset,))
                    return None
            elif self.offset is None:
                return None  # reported once, for the cluster
            else:
                offset = self.offset
            value = self.network.first + offset + index
            if value >= self.network.last:
                self.err(node, "node_ip", "derived address (offset %d + index %d) is beyond %s; set node_ip or a smaller "
                         "cluster_node_ip_offset" % (offset, index, self.network))
                return None
            address = netaddr.IPAddress(value)
        if address is None:
            return None
        before = len(self.errors)
        self._claim(address, node, field)
        return address if len(self.errors) == before else None

    def _node_storage(self, node, hv, mode, storage_hosts):
        want = {"iscsi": 1, "mirror": 2}.get(mode)
        pinned = hv.get("node_storage")
        if not storage_hosts:
            return None  # reported once for the cluster
        if mode == "mirror" and len(storage_hosts) < 2:
            self.err(node, "node_root", "'mirror' needs two storage hosts; the inventory has %d" % len(storage_hosts))
            return None
        if pinned is None:
            hosts = list(storage_hosts) if mode == "image" else place(node, storage_hosts, want)
            if any(self.storage[h]["portal_ip"] is None for h in hosts):
                return None  # the storage host's own error says why
            return hosts
        if isinstance(pinned, str):
            pinned = [pinned]
        if not isinstance(pinned, Sequence) or not all(isinstance(h, str) for h in pinned):
            self.err(node, "node_storage", "must be a list of storage host names")
            return None
        unknown = [h for h in pinned if h not in self.storage]
        if unknown:
            self.err(node, "node_storage", "%s not in group 'storage'" % ", ".join(map(repr, unknown)))
            return None
        if len(set(pinned)) != len(pinned):
            self.err(node, "node_storage", "lists a storage host twice; mirror halves must be on different hosts")
            return None
        if want is not None and len(pinned) != want:
            self.err(node, "node_storage", "root mode '%s' needs exactly %d storage host%s, got %d"
                     % (mode, want, "" if want == 1 else "s", len(pinned)))
            return None
        if not pinned:
            self.err(node, "node_storage", "must name at least one storage host")
            return None
        hosts = sorted(pinned)
        if any(self.storage[h]["portal_ip"] is None for h in hosts):
            return None  # the storage host's own error says why
        return hosts

    def _node_secrets(self, node, hv, chap=True):
        """(CHAP secret, mutual CHAP secret); a node without an iSCSI root (``chap`` false) has no CHAP pair and
        needs no entry in cluster_chap_secrets. None if invalid. (A LUKS root has no key here: Clevis and Tang.)"""
        if not chap:
            return (None, None)
        if self.secrets_broken:
            return None
        entry = self.secrets.get(node) or {}
        if not isinstance(entry, Mapping):
            self.err(node, "cluster_chap_secrets", "the entry for %s must be a mapping {secret, mutual_secret}" % node)
            return None
        values = []
        ok = True
        for var, key, what in (("node_chap_secret", "secret", "CHAP secret"),
                               ("node_chap_mutual_secret", "mutual_secret", "mutual CHAP secret")):
            value = hv.get(var, entry.get(key))
            if value in (None, ""):
                self.err(node, var, "is required: the node's %s (set it in vault, or cluster_chap_secrets.%s.%s)" % (what, node, key))
                ok = False
            elif not isinstance(value, str) or not 12 <= len(value) <= 255:
                self.err(node, var, "must be 12 to 255 characters")
                ok = False
            elif not _SECRET_RE.match(value):
                self.err(node, var, "may use only letters, digits and !#%+,./:=?@^_~- (no spaces, quotes or $)")
                ok = False
            values.append(value)
        if ok and values[0] == values[1]:
            self.err(node, "node_chap_mutual_secret", "must differ from node_chap_secret (RFC 3720 forbids reusing it)")
            ok = False
        return (values[0], values[1]) if ok else None

    def _luks_recovery(self, node, hv, luks, mode):
        """The node's recovery passphrase (``node_luks_recovery``: a LUKS keyslot of its own, for the day no Tang
        answers), None when unset, False when invalid."""
        value = hv.get("node_luks_recovery")
        if value is None or (node, "node_luks_recovery") in self.typed_badly:
            return None if value is None else False
        if not luks:
            self.err(node, "node_luks_recovery", "is set but node_luks is not true: only a LUKS root has a recovery passphrase")
            return False
        if mode == "image":
            self.err(node, "node_luks_recovery", "does not apply to root mode 'image': its LUKS image is one volume per image "
                     "version, shared read-only by its nodes (its keyslots are the image's, not the node's)")
            return False
        if not MIN_RECOVERY <= len(value) <= MAX_RECOVERY:
            self.err(node, "node_luks_recovery", "must be %d to %d characters" % (MIN_RECOVERY, MAX_RECOVERY))
            return False
        if not value.isprintable():
            self.err(node, "node_luks_recovery", "must be one line of printable characters (it is typed at a console)")
            return False
        return value

    def _iqn(self, node, field, *names):
        try:
            return make_iqn(self.iqn_date, self.domain, *names)
        except ValueError as exc:
            self.err(node, field, str(exc))
            return None

    # -- derived per storage / provisioning host -------------------------------------------------------------
    def derive_storage(self) -> None:
        goldens: dict[str, set] = {h: set() for h in self.storage}   # (image, encrypted)
        exports: dict[str, dict] = {h: {} for h in self.storage}
        volumes: dict[str, dict] = {h: {} for h in self.storage}
        for node in sorted(self.nodes):
            plan = self.nodes[node]
            image = self.images[plan["image"]]
            for path in plan["paths"]:
                host = path["storage_host"]
                spec = self.storage[host]
                encrypted = plan["root"] == "image" and plan["luks"]
                goldens[host].add((image["name"], encrypted))
                golden = image["luks_golden_volume"] if encrypted else image["golden_volume"]
                origin = "%s/%s@%s" % (spec["pool"], golden, image["snapshot"])
                if path["volume"] not in volumes[host]:
                    volumes[host][path["volume"]] = {
                        "name": path["volume"],
                        "origin": origin,
                        "size_bytes": plan["root_size_bytes"] or _golden_size(image, encrypted),
                        "readonly": path["readonly"],
                        "node": None if path["readonly"] else node,
                    }
                export = exports[host].get(path["target_iqn"])
                if export is None:
                    export = exports[host][path["target_iqn"]] = {
                        "target_iqn": path["target_iqn"],
                        "backstore": path["volume"].split("/", 1)[1].replace("/", "-"),
                        "device": "/dev/zvol/%s" % path["volume"],
                        "readonly": path["readonly"],
                        # the encrypted image is another LUN (other bytes): another serial, never one map with the plain one
                        "wwn": shared_image_serial(self.authority, image["name"] + ("-luks" if encrypted else ""),
                                                   image["version"]) if path["readonly"] else None,
                        "lun": path["lun"],
                        "portals": [{"ip": spec["portal_ip"], "port": self.iscsi_port}],
                        "acls": [],
                    }
                export["acls"].append({
                    "node": node,
                    "initiator_iqn": plan["initiator_iqn"],
                    "userid": plan["chap_user"],
                    "password": plan["chap_secret"],
                    "mutual_userid": plan["mutual_chap_user"],
                    "mutual_password": plan["mutual_chap_secret"],
                    "mapped_lun": path["lun"],
                    "write_protect": path["readonly"],
                })
        for host, spec in self.storage.items():
            spec["golden"] = []
            for name, encrypted in sorted(goldens[host]):
                image = self.images[name]
                golden = image["luks_golden_volume"] if encrypted else image["golden_volume"]
                spec["golden"].append({
                    "image": name,
                    "volume": "%s/%s" % (spec["pool"], golden),
                    # the encrypted image: the image's file system and the LUKS2 header in front of it
                    "size_bytes": _golden_size(image, encrypted),
                    "snapshot": "%s/%s@%s" % (spec["pool"], golden, image["snapshot"]),
                    "encrypted": encrypted,
                })
            spec["volumes"] = [volumes[host][v] for v in sorted(volumes[host])]
            spec["exports"] = [exports[host][t] for t in sorted(exports[host])]

    def derive_boot(self) -> None:
        first = sorted(self.prov)[0] if self.prov else None
        address = self.cv.get("cluster_http_address")
        if address not in (None, ""):
            address = self._address("all", "cluster_http_address", address)
            if address is not None and address not in self.prov.values():
                owner = self.addresses.get(address)
                if owner is not None:
                    self.err("all", "cluster_http_address", "%s is already used by %s" % (address, owner))
                elif self.dhcp_range is not None and self.dhcp_range[0] <= address <= self.dhcp_range[1]:
                    self.err("all", "cluster_http_address", "%s is inside the dynamic DHCP range %s-%s"
                             % (address, self.dhcp_range[0], self.dhcp_range[1]))
                else:
                    self.addresses[address] = "the HTTP address"
        self.http_host = str(address) if address not in (None, "") else (str(self.prov[first]) if first else None)
        self.http_base = None
        if self.http_host:
            self.http_base = self._http_url(self.http_host)
        for plan in self.nodes.values():
            image = self.images[plan["image"]]
            live = plan["root"] == "live" and self.http_base is not None
            plan["live_url"] = "%s%s/root.squashfs" % (self.http_base, image["http_path"]) if live else None
            plan["live_sums_url"] = "%s%s/SHA256SUMS" % (self.http_base, image["http_path"]) if live else None
            plan["kernel_args"] = self._kernel_args(plan)
            plan["boot_script"] = self._boot_script(plan, image)
            plan["initramfs_conf"] = self._initramfs_conf(plan)

    def _kernel_args(self, plan) -> list[str]:
        """The kernel command line (docs/compute.md): initramfs-tools' /init runs scripts/diskless (boot=diskless),
        which reads everything else from the per-node file; no root=, no secret."""
        net = self.network
        return [
            "ip=%s::%s:%s:%s::off" % (plan["ip"], self.gateway or "", net.netmask if net is not None else "", plan["hostname"]),
            "BOOTIF=01-%s" % plan["mac_hyphen"],
            "boot=diskless",
            "ro",
            "diskless.node=%s" % plan["name"],
        ] + self.kernel_args + plan.pop("extra_kernel_args")

    def _boot_script(self, plan, image) -> str:
        base = "%s%s" % (self.http_base or "", image["http_path"])
        nodes = "%s/nodes/%s" % (self.http_base or "", plan["mac_hyphen"])
        return "\n".join([
            "#!ipxe",
            "# diskless.cluster: %s (root %s%s, image %s v%s). Generated from the inventory; do not edit."
            % (plan["name"], plan["root"], " + luks" if plan["luks"] else "", image["name"], image["version"]),
            "imgfree",
            "kernel %s/vmlinuz %s" % (base, " ".join(plan["kernel_args"])),
            "initrd %s/initrd.img" % base,
            "initrd %s.conf /etc/diskless/node.conf mode=600" % nodes,
        ] + [
            # the node's SSH host keys, kept by the provisioning host (served to this node's address only); next to
            # node.conf: iPXE's initrd wrapper makes no parent directory (a file in a new one is dropped)
            "initrd %s.ssh_host_%s_key /etc/diskless/ssh_host_%s_key mode=600" % (nodes, t, t) for t in SSH_HOST_KEY_TYPES
        ] + ["boot", ""])

    @staticmethod
    def _initramfs_conf(plan) -> str:
        """/etc/diskless/node.conf: the DL_* variables scripts/diskless sources (docs/compute.md), every value
        single-quoted, '' where the root mode has no use for it."""
        def text(value):
            return "" if value is None else str(value)

        values = (
            ("DL_NODE", plan["name"]),
            ("DL_HOSTNAME", plan["hostname"]),
            ("DL_ROOT_MODE", plan["root"]),
            ("DL_MACHINE_ID", plan["machine_id"]),
            ("DL_INITIATOR", plan["initiator_iqn"]),
            ("DL_CHAP_USER", plan["chap_user"]),
            ("DL_CHAP_SECRET", plan["chap_secret"]),
            ("DL_MUTUAL_USER", plan["mutual_chap_user"]),
            ("DL_MUTUAL_SECRET", plan["mutual_chap_secret"]),
            ("DL_PATHS", " ".join("%s,%s,%d,%d" % (p["target_iqn"], p["portal"], p["port"], p["lun"]) for p in plan["paths"])),
            ("DL_ISCSI_REPLACEMENT_TIMEOUT", plan["iscsi_replacement_timeout"]),
            ("DL_ISCSI_NOOP_INTERVAL", plan["iscsi_noop_interval"]),
            ("DL_ISCSI_NOOP_TIMEOUT", plan["iscsi_noop_timeout"]),
            ("DL_PATH_WAIT", plan["path_wait"]),
            ("DL_MD_NAME", plan["md_name"]),
            ("DL_OVERLAY", plan["overlay"]),
            ("DL_OVERLAY_SIZE", plan["overlay_size"]),
            ("DL_LIVE_URL", plan["live_url"]),
            ("DL_LIVE_SUMS_URL", plan["live_sums_url"]),
            ("DL_LUKS", "1" if plan["luks"] else "0"),
            ("DL_TANG_URLS", " ".join(plan["tang_urls"])),
            ("DL_TANG_THRESHOLD", plan["tang_threshold"]),
        )
        lines = ["# diskless.cluster: boot settings of %s (root %s). SECRET: served only to %s; read by the initramfs."
                 % (plan["name"], plan["root"], plan["ip"])]
        lines += ["%s=%s" % (name, _shell_quote(text(value))) for name, value in values]
        return "\n".join(lines) + "\n"

    def derive_provisioning(self) -> dict:
        dhcp_hosts = []
        boot_files = []
        # the only addresses Tang answers: the LUKS nodes' own (boot network), never the storage network
        tang_clients = sorted((self.nodes[n]["ip"] for n in self.nodes if self.nodes[n]["luks"]), key=netaddr.IPAddress)
        for node in sorted(self.nodes):
            plan = self.nodes[node]
            dhcp_hosts.append({
                "node": node,
                "file": "%s.conf" % plan["mac_hyphen"],
                "line": "%s,%s,%s,%s" % (plan["mac"], plan["ip"], plan["hostname"], self.lease_time),
            })
            boot_files.append({"node": node, "file": "%s.ipxe" % plan["mac_hyphen"], "content": plan["boot_script"],
                               "secret": False, "allow": plan["ip"]})
            boot_files.append({"node": node, "file": "%s.conf" % plan["mac_hyphen"], "content": plan["initramfs_conf"],
                               "secret": True, "allow": plan["ip"]})
        return {
            host: {"name": host, "ip": str(address), "dhcp_hosts": dhcp_hosts, "boot_files": boot_files,
                   "ssh_host_key_types": list(SSH_HOST_KEY_TYPES), "tang_clients": list(tang_clients),
                   "tang_url": self._http_url(address) + TANG_PATH}
            for host, address in sorted(self.prov.items())
        }

    def run(self) -> dict:
        if not HAS_NETADDR:
            raise PlanError(["all: controller: the cluster planner needs the Python library netaddr (pip install netaddr)"])
        self.addresses: dict = {}
        self.plan_cluster()
        self.mutual_user = "%s-storage" % self.name
        if self.gateway is not None:
            self.addresses[self.gateway] = "the gateway"
            if self.dhcp_range is not None and self.dhcp_range[0] <= self.gateway <= self.dhcp_range[1]:
                self.err("all", "cluster_boot_gateway", "%s is inside the dynamic DHCP range %s-%s"
                         % (self.gateway, self.dhcp_range[0], self.dhcp_range[1]))
        self.check_groups()
        self.plan_provisioning()
        self.plan_storage()
        self.plan_nodes()
        self.derive_boot()
        if self.errors:
            raise PlanError(self.errors)
        self.derive_storage()
        provisioning = self.derive_provisioning()
        net = self.network
        return {
            "version": PLAN_VERSION,
            "cluster": {
                "name": self.name,
                "domain": self.domain,
                "iqn_authority": self.authority,
                "boot_network": str(net.cidr),
                "netmask": str(net.netmask),
                "prefixlen": net.prefixlen,
                "gateway": str(self.gateway) if self.gateway is not None else None,
                "dhcp_range": [str(a) for a in self.dhcp_range] if self.dhcp_range else None,
                "dhcp_lease_time": self.lease_time,
                "provisioning_ip": str(self.prov[sorted(self.prov)[0]]),
                "http_base": self.http_base,
                "ntp_server": str(self.prov[sorted(self.prov)[0]]),
                "syslog_server": str(self.prov[sorted(self.prov)[0]]),
                "iscsi_port": self.iscsi_port,
                "http_port": self.http_port,
                "mutual_chap_user": self.mutual_user,
                "tang_urls": list(self.tang_urls),
                "tang_threshold": self.tang_threshold,
            },
            "images": self.images,
            "nodes": self.nodes,
            "storage": self.storage,
            "provisioning": provisioning,
        }


def build_plan(cluster_vars: Mapping, hostvars: Mapping[str, Mapping], groups: Mapping[str, Sequence[str]]) -> dict:
    """Validate the inventory and compute the cluster plan; raise PlanError listing every problem.

    ``cluster_vars``: the ``cluster_*`` variables (as seen by any host). ``hostvars``: per host, its variables
    (``ansible_host``, ``node_*``, ``storage_*``, ``provisioning_*``; per-group overrides of
    ``cluster_node_ip_offset`` are read here). ``groups``: at least ``provisioning``, ``storage``, ``compute``.
    """
    return _Planner(cluster_vars, hostvars, groups).run()


def redact(plan: dict) -> dict:
    """A copy of ``plan`` with every secret (CHAP secrets, LUKS recovery passphrases, secret boot files) masked. (A
    LUKS root has no key in the plan: Clevis unlocks it with the provisioning hosts' Tang.)"""
    secret_keys = {"chap_secret", "mutual_chap_secret", "password", "mutual_password", "initramfs_conf", "luks_recovery"}

    def walk(value, parent_secret=False):
        if isinstance(value, dict):
            secret_file = value.get("secret") is True
            return {
                k: (SECRET_MASK if (k in secret_keys and v is not None) or (secret_file and k == "content") else walk(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(plan)
