# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""LIO (Linux kernel iSCSI target) through the rtslib-fb Python API.

Three steps, so that check mode never touches configfs:

1. :func:`read_state` walks the existing rtslib objects READ ONLY (lookups only, no constructor that
   creates anything) into a plain dict;
2. :func:`plan_lio_changes` (pure) compares it with the desired export set and returns an ordered
   list of actions, refusing (one line) to remove anything that carries a live session unless forced;
3. :func:`apply_actions` performs exactly those actions with rtslib, object by object.

The rtslib module is passed in (``rtslib_fb`` on the host, a fake in unit tests). Tolerates rtslib-fb
2.1.75 (Debian 12) and 2.2.x: only the common API is used, the ``exclusive`` keyword is never
passed, and errors are caught as the common base ``RTSLibError``.
"""

from __future__ import annotations

import copy
import importlib
import re
import traceback

MASK = "********"
TPG_TAG = 1
# TPG attributes every managed TPG must have: CHAP enforced, explicit ACLs only, demo mode read-only.
TPG_ATTRIBUTES = {"authentication": "1", "generate_node_acls": "0", "demo_mode_write_protect": "1"}
CHAP_FIELDS = ("userid", "password", "mutual_userid", "mutual_password")
SECRET_FIELDS = ("password", "mutual_password")
DEBIAN_SAVE_FILE = "/etc/rtslib-fb-target/saveconfig.json"
DEFAULT_SAVE_FILE = "/etc/target/saveconfig.json"
CONFIGFS_TARGET = "/sys/kernel/config/target"

_IQN_RE = re.compile(r"^iqn\.[0-9]{4}-[0-1][0-9]\..*\..*$")


class LioError(Exception):
    """A one-line, user-facing problem (refusal or bad input)."""


def import_rtslib():
    """(module, None) or (None, traceback). Looked up at run time so tests can inject a fake."""
    try:
        return importlib.import_module("rtslib_fb"), None
    except ImportError:
        return None, traceback.format_exc()


class ReadOnlyRoot:
    """The two listings read_state needs, without RTSRoot() (whose constructor may mount configfs,
    load kernel modules and write dbroot)."""

    def __init__(self, rtslib, fabric="iscsi"):
        self.rtslib = rtslib
        self.fabric = fabric

    @property
    def storage_objects(self):
        tcm = importlib.import_module(self.rtslib.__name__ + ".tcm")
        return list(tcm.StorageObject.all())

    @property
    def targets(self):
        fabric = self.rtslib.FabricModule(self.fabric)
        if not fabric.exists:
            return []
        return list(fabric.targets)


def default_save_file(debian: bool) -> str:
    return DEBIAN_SAVE_FILE if debian else DEFAULT_SAVE_FILE


def check_iqn(iqn: str) -> str:
    """Lower-cased IQN, or LioError if rtslib would reject it (it needs a second dot after the date)."""
    value = (iqn or "").strip().lower()
    if not _IQN_RE.match(value) or " " in value or "_" in value or len(value.encode()) > 223:
        raise LioError("%r is not an IQN rtslib accepts (iqn.yyyy-mm.reversed.domain:name, no '_', <= 223 bytes)" % iqn)
    return value


def portal_ip(ip: str) -> str:
    """configfs spelling of a portal address (IPv6 in brackets)."""
    ip = str(ip).strip()
    if ":" in ip and not ip.startswith("["):
        return "[%s]" % ip
    return ip


def portal_key(ip, port) -> str:
    return "%s:%d" % (portal_ip(ip), int(port))


# ---------------------------------------------------------------------------------------------------------
# desired state
# ---------------------------------------------------------------------------------------------------------
def normalize_exports(exports) -> dict:
    """The export list (plan ``storage.<host>.exports`` shape) as a state dict like :func:`read_state`."""
    state: dict = {"backstores": {}, "targets": {}}
    errors: list = []
    for export in exports:
        try:
            iqn = check_iqn(export["target_iqn"])
        except LioError as exc:
            errors.append("target_iqn: %s" % exc)
            continue
        name = export["backstore"]
        if not name or any(c in name for c in "/ \t\n"):
            errors.append("%s: backstore name %r must not be empty or contain '/' or spaces" % (iqn, name))
            continue
        backstore = {"plugin": "block", "dev": export["device"], "readonly": bool(export.get("readonly")),
                     "wwn": (export.get("wwn") or None)}
        known = state["backstores"].get(name)
        if known is not None and known != backstore:
            errors.append("backstore %s is used with two different devices or settings" % name)
            continue
        state["backstores"][name] = backstore
        target = state["targets"].setdefault(iqn, {"tpgs": {TPG_TAG: {
            "enable": True, "attributes": dict(TPG_ATTRIBUTES), "portals": [], "luns": {}, "acls": {}}}})
        tpg = target["tpgs"][TPG_TAG]
        lun = int(export.get("lun") or 0)
        so_ref = "block/%s" % name
        if tpg["luns"].get(lun, so_ref) != so_ref:
            errors.append("%s: LUN %d is given two backstores" % (iqn, lun))
            continue
        tpg["luns"][lun] = so_ref
        for portal in export.get("portals") or []:
            key = portal_key(portal["ip"], portal.get("port") or 3260)
            if key not in tpg["portals"]:
                tpg["portals"].append(key)
        tpg["portals"].sort()
        for acl in export.get("acls") or []:
            try:
                initiator = check_iqn(acl["initiator_iqn"])
            except LioError as exc:
                errors.append("%s: initiator_iqn: %s" % (iqn, exc))
                continue
            want = {field: (acl.get(field) or "") for field in CHAP_FIELDS}
            entry = tpg["acls"].setdefault(initiator, dict(want, mapped_luns={}, node=acl.get("node")))
            if any(entry[f] != want[f] for f in CHAP_FIELDS):
                errors.append("%s: ACL %s is given two different CHAP settings" % (iqn, initiator))
                continue
            mapped = int(acl["mapped_lun"]) if acl.get("mapped_lun") is not None else lun
            entry["mapped_luns"][mapped] = {"tpg_lun": lun, "write_protect": bool(acl.get("write_protect"))}
    if errors:
        raise LioError("; ".join(errors))
    return state


# ---------------------------------------------------------------------------------------------------------
# current state (read only)
# ---------------------------------------------------------------------------------------------------------
def _safe(func, default=None):
    try:
        return func()
    except Exception:  # rtslib raises RTSLibError, OSError or IndexError on half-built objects
        return default


def summarize_session(session):
    """The interesting part of NodeACL.session (None when no session)."""
    if not session:
        return None
    return {
        "state": session.get("state"),
        "id": session.get("id"),
        "type": session.get("type"),
        "addresses": sorted(c.get("address") for c in session.get("connections") or [] if c.get("address")),
    }


def read_state(root, fabric: str = "iscsi") -> dict:
    """Walk rtslib objects (lookups only) into a plain dict; never creates or changes anything."""
    state: dict = {"backstores": {}, "targets": {}}
    for so in root.storage_objects:
        entry = {"plugin": so.plugin}
        if so.plugin == "block":
            entry["dev"] = _safe(lambda so=so: so.udev_path)
            entry["readonly"] = bool(_safe(lambda so=so: so.readonly, False))
            entry["wwn"] = _safe(lambda so=so: so.wwn)
        state["backstores"][so.name] = entry
    for target in root.targets:
        if target.fabric_module.name != fabric:
            continue
        tpgs = {}
        for tpg in target.tpgs:
            attributes = {}
            for attr in TPG_ATTRIBUTES:
                value = _safe(lambda tpg=tpg, attr=attr: tpg.get_attribute(attr))
                attributes[attr] = None if value is None else str(value).strip()
            luns = {}
            for lun in tpg.luns:
                so = _safe(lambda lun=lun: lun.storage_object)
                luns[lun.lun] = ("%s/%s" % (so.plugin, so.name)) if so is not None else None
            acls = {}
            for acl in tpg.node_acls:
                entry = {}
                for field in CHAP_FIELDS:
                    entry[field] = _safe(lambda acl=acl, field=field: getattr(acl, "chap_" + field), "") or ""
                mapped = {}
                for mlun in acl.mapped_luns:
                    tpg_lun = _safe(lambda mlun=mlun: mlun.tpg_lun.lun)
                    mapped[mlun.mapped_lun] = {"tpg_lun": tpg_lun,
                                               "write_protect": bool(_safe(lambda mlun=mlun: mlun.write_protect, False))}
                entry["mapped_luns"] = mapped
                entry["session"] = summarize_session(_safe(lambda acl=acl: acl.session))
                acls[acl.node_wwn.lower()] = entry
            tpgs[tpg.tag] = {
                "enable": bool(_safe(lambda tpg=tpg: tpg.enable, False)),
                "attributes": attributes,
                "portals": sorted(portal_key(np.ip_address, np.port) for np in tpg.network_portals),
                "luns": luns,
                "acls": acls,
            }
        state["targets"][target.wwn.lower()] = {"tpgs": tpgs}
    return state


def state_from_dump(dump: dict, fabric: str = "iscsi") -> dict:
    """The same state dict from ``RTSRoot().dump()`` / a ``saveconfig.json`` (no sessions in there)."""
    state: dict = {"backstores": {}, "targets": {}}
    for so in dump.get("storage_objects") or []:
        entry = {"plugin": so.get("plugin")}
        if so.get("plugin") == "block":
            entry.update(dev=so.get("dev"), readonly=bool(so.get("readonly")), wwn=so.get("wwn"))
        state["backstores"][so["name"]] = entry
    for target in dump.get("targets") or []:
        if target.get("fabric") != fabric:
            continue
        tpgs = {}
        for tpg in target.get("tpgs") or []:
            attributes = {}
            for attr in TPG_ATTRIBUTES:
                value = (tpg.get("attributes") or {}).get(attr)
                attributes[attr] = None if value is None else str(value)
            luns = {}
            for lun in tpg.get("luns") or []:
                ref = lun.get("storage_object") or ""
                luns[int(lun["index"])] = ref[len("/backstores/"):] if ref.startswith("/backstores/") else None
            acls = {}
            for acl in tpg.get("node_acls") or []:
                entry = {field: acl.get("chap_" + field) or "" for field in CHAP_FIELDS}
                entry["mapped_luns"] = {int(m["index"]): {"tpg_lun": int(m["tpg_lun"]), "write_protect": bool(m.get("write_protect"))}
                                        for m in acl.get("mapped_luns") or []}
                entry["session"] = None
                acls[acl["node_wwn"].lower()] = entry
            tpgs[int(tpg["tag"])] = {
                "enable": bool(tpg.get("enable", True)),
                "attributes": attributes,
                "portals": sorted(portal_key(p["ip_address"], p["port"]) for p in tpg.get("portals") or []),
                "luns": luns,
                "acls": acls,
            }
        state["targets"][target["wwn"].lower()] = {"tpgs": tpgs}
    return state


def sessions(state: dict) -> list:
    """Live sessions: [{target, tpg, initiator, state, addresses}] sorted."""
    result = []
    for iqn, target in sorted(state["targets"].items()):
        for tag, tpg in sorted(target["tpgs"].items()):
            for initiator, acl in sorted(tpg["acls"].items()):
                if acl.get("session"):
                    result.append(dict(target=iqn, tpg=tag, initiator=initiator, **{
                        k: acl["session"].get(k) for k in ("state", "addresses")}))
    return result


# ---------------------------------------------------------------------------------------------------------
# planning (pure)
# ---------------------------------------------------------------------------------------------------------
def _live(tpg: dict, initiators=None) -> list:
    return sorted(i for i, acl in tpg["acls"].items() if acl.get("session") and (initiators is None or i in initiators))


def _act(op, text, **keys):
    keys["op"] = op
    keys["text"] = text
    return keys


def plan_lio_changes(current: dict, desired: dict, force: bool = False) -> list:
    """Ordered action list: every deletion first (default portals must go before specific ones are
    bound on the same port), then creations in dependency order. Raises LioError (one line) when a
    removal would cut a live session and ``force`` is false."""
    cur = copy.deepcopy(current)
    refusals: list = []
    deletes: list = []

    def guard(what, live):
        if live and not force:
            refusals.append("%s has live sessions from %s: set force: true to drop them" % (what, ", ".join(live)))
            return False
        return True

    def drop_lun_refs(tpg, lun_index):
        for acl in tpg["acls"].values():
            for m in [m for m, v in acl["mapped_luns"].items() if v["tpg_lun"] == lun_index]:
                del acl["mapped_luns"][m]

    # 1. stale targets, stale TPGs
    for iqn in sorted(cur["targets"]):
        target = cur["targets"][iqn]
        if iqn not in desired["targets"]:
            live = sorted({i for tpg in target["tpgs"].values() for i in _live(tpg)})
            if guard("target %s" % iqn, live):
                deletes.append(_act("delete_target", "delete target %s" % iqn, target=iqn))
                del cur["targets"][iqn]
            continue
        for tag in sorted(t for t in target["tpgs"] if t != TPG_TAG):
            if guard("target %s tpg %d" % (iqn, tag), _live(target["tpgs"][tag])):
                deletes.append(_act("delete_tpg", "delete target %s tpg %d" % (iqn, tag), target=iqn, tag=tag))
                del target["tpgs"][tag]

    # 2. backstores: stale ones and ones whose device/readonly/wwn differ (those are recreated)
    for name in sorted(cur["backstores"]):
        have = cur["backstores"][name]
        if have.get("plugin") != "block":
            continue
        want = desired["backstores"].get(name)
        if want is not None and have.get("dev") == want["dev"] and bool(have.get("readonly")) == want["readonly"] \
                and (want["wwn"] is None or (have.get("wwn") or "").lower() == want["wwn"].lower()):
            continue
        users = []
        for target in cur["targets"].values():
            for tpg in target["tpgs"].values():
                luns = [idx for idx, ref in tpg["luns"].items() if ref == "block/%s" % name]
                if luns:
                    users.append((tpg, luns))
        live = sorted({i for tpg, luns in users for i, acl in tpg["acls"].items()
                       if acl.get("session") and any(m["tpg_lun"] in luns for m in acl["mapped_luns"].values())})
        if want is None:
            what, text = "backstore %s" % name, "delete backstore %s" % name
        else:
            why = []
            if have.get("dev") != want["dev"]:
                why.append("device %s -> %s" % (have.get("dev"), want["dev"]))
            if bool(have.get("readonly")) != want["readonly"]:
                why.append("readonly %s -> %s" % (bool(have.get("readonly")), want["readonly"]))
            if want["wwn"] is not None and (have.get("wwn") or "").lower() != want["wwn"].lower():
                why.append("wwn %s -> %s" % (have.get("wwn"), want["wwn"]))
            what, text = "backstore %s (%s)" % (name, ", ".join(why)), "delete backstore %s to recreate it (%s)" % (name, ", ".join(why))
        if not guard(what, live):
            continue
        deletes.append(_act("delete_backstore", text, name=name))
        del cur["backstores"][name]
        for tpg, luns in users:  # rtslib deletes the LUNs (and their mappings) with the backstore
            for idx in luns:
                del tpg["luns"][idx]
                drop_lun_refs(tpg, idx)

    # 3. inside TPG 1 of wanted targets: LUNs, ACLs, mapped LUNs, portals
    for iqn in sorted(desired["targets"]):
        target = cur["targets"].get(iqn)
        if target is None or TPG_TAG not in target["tpgs"]:
            continue
        tpg = target["tpgs"][TPG_TAG]
        want_tpg = desired["targets"][iqn]["tpgs"][TPG_TAG]
        for idx in sorted(tpg["luns"]):
            if want_tpg["luns"].get(idx) == tpg["luns"][idx]:
                continue
            live = sorted(i for i, acl in tpg["acls"].items()
                          if acl.get("session") and any(m["tpg_lun"] == idx for m in acl["mapped_luns"].values()))
            if guard("target %s lun %d" % (iqn, idx), live):
                deletes.append(_act("delete_lun", "delete target %s lun %d" % (iqn, idx), target=iqn, tag=TPG_TAG, lun=idx))
                del tpg["luns"][idx]
                drop_lun_refs(tpg, idx)
        for initiator in sorted(tpg["acls"]):
            acl = tpg["acls"][initiator]
            want_acl = want_tpg["acls"].get(initiator)
            live = [initiator] if acl.get("session") else []
            if want_acl is None:
                if guard("ACL %s of target %s" % (initiator, iqn), live):
                    deletes.append(_act("delete_acl", "delete target %s acl %s" % (iqn, initiator),
                                        target=iqn, tag=TPG_TAG, acl=initiator))
                    del tpg["acls"][initiator]
                continue
            for idx in sorted(acl["mapped_luns"]):
                want_m = want_acl["mapped_luns"].get(idx)
                if want_m is not None and want_m["tpg_lun"] == acl["mapped_luns"][idx]["tpg_lun"]:
                    continue
                if guard("mapped lun %d of ACL %s on target %s" % (idx, initiator, iqn), live):
                    deletes.append(_act("delete_mapped_lun", "delete target %s acl %s mapped lun %d" % (iqn, initiator, idx),
                                        target=iqn, tag=TPG_TAG, acl=initiator, mapped_lun=idx))
                    del acl["mapped_luns"][idx]
        for key in list(tpg["portals"]):
            if key in want_tpg["portals"]:
                continue
            if guard("portal %s of target %s" % (key, iqn), _live(tpg)):
                ip, port = key.rsplit(":", 1)
                deletes.append(_act("delete_portal", "delete target %s portal %s" % (iqn, key),
                                    target=iqn, tag=TPG_TAG, ip=ip, port=int(port)))
                tpg["portals"].remove(key)

    if refusals:
        raise LioError("; ".join(refusals))

    # 4. creations, in dependency order
    creates: list = []
    for name in sorted(desired["backstores"]):
        if name not in cur["backstores"]:
            want = desired["backstores"][name]
            creates.append(_act("create_backstore", "create backstore %s on %s%s%s" % (
                name, want["dev"], " readonly" if want["readonly"] else "", " wwn %s" % want["wwn"] if want["wwn"] else ""),
                name=name, dev=want["dev"], readonly=want["readonly"], wwn=want["wwn"]))
        elif cur["backstores"][name].get("plugin") != "block":
            raise LioError("backstore name %s is taken by a %s backstore: rename or remove it"
                           % (name, cur["backstores"][name].get("plugin")))
    enables = []
    for iqn in sorted(desired["targets"]):
        want_tpg = desired["targets"][iqn]["tpgs"][TPG_TAG]
        target = cur["targets"].get(iqn)
        if target is None:
            creates.append(_act("create_target", "create target %s" % iqn, target=iqn))
        tpg = (target or {"tpgs": {}})["tpgs"].get(TPG_TAG)
        if tpg is None:
            creates.append(_act("create_tpg", "create target %s tpg %d" % (iqn, TPG_TAG), target=iqn, tag=TPG_TAG))
            tpg = {"enable": False, "attributes": {}, "portals": [], "luns": {}, "acls": {}}
        attrs = {k: v for k, v in want_tpg["attributes"].items() if tpg["attributes"].get(k) != v}
        if attrs:
            creates.append(_act("set_tpg_attributes", "set target %s tpg %d attributes %s" % (
                iqn, TPG_TAG, " ".join("%s=%s" % kv for kv in sorted(attrs.items()))), target=iqn, tag=TPG_TAG, attributes=attrs))
        for key in want_tpg["portals"]:
            if key not in tpg["portals"]:
                ip, port = key.rsplit(":", 1)
                creates.append(_act("create_portal", "create target %s portal %s" % (iqn, key),
                                    target=iqn, tag=TPG_TAG, ip=ip, port=int(port)))
        for idx in sorted(want_tpg["luns"]):
            if idx not in tpg["luns"]:
                creates.append(_act("create_lun", "create target %s lun %d -> %s" % (iqn, idx, want_tpg["luns"][idx]),
                                    target=iqn, tag=TPG_TAG, lun=idx, backstore=want_tpg["luns"][idx].split("/", 1)[1]))
        for initiator in sorted(want_tpg["acls"]):
            want_acl = want_tpg["acls"][initiator]
            acl = tpg["acls"].get(initiator)
            if acl is None:
                creates.append(_act("create_acl", "create target %s acl %s" % (iqn, initiator),
                                    target=iqn, tag=TPG_TAG, acl=initiator))
                acl = {f: "" for f in CHAP_FIELDS}
                acl["mapped_luns"] = {}
            chap = {f: want_acl[f] for f in CHAP_FIELDS if acl.get(f, "") != want_acl[f]}
            if chap:
                creates.append(_act("set_acl_chap", "set target %s acl %s chap %s" % (iqn, initiator, ",".join(
                    f for f in CHAP_FIELDS if f in chap)), target=iqn, tag=TPG_TAG, acl=initiator, chap=chap))
            for idx in sorted(want_acl["mapped_luns"]):
                want_m = want_acl["mapped_luns"][idx]
                have_m = acl["mapped_luns"].get(idx)
                if have_m is None:
                    creates.append(_act("create_mapped_lun", "create target %s acl %s mapped lun %d -> lun %d%s" % (
                        iqn, initiator, idx, want_m["tpg_lun"], " write-protected" if want_m["write_protect"] else ""),
                        target=iqn, tag=TPG_TAG, acl=initiator, mapped_lun=idx, tpg_lun=want_m["tpg_lun"],
                        write_protect=want_m["write_protect"]))
                elif have_m["write_protect"] != want_m["write_protect"]:
                    creates.append(_act("set_write_protect", "set target %s acl %s mapped lun %d write_protect=%s" % (
                        iqn, initiator, idx, int(want_m["write_protect"])), target=iqn, tag=TPG_TAG, acl=initiator,
                        mapped_lun=idx, write_protect=want_m["write_protect"]))
        if not tpg["enable"]:
            enables.append(_act("enable_tpg", "enable target %s tpg %d" % (iqn, TPG_TAG), target=iqn, tag=TPG_TAG))
    return deletes + creates + enables


# ---------------------------------------------------------------------------------------------------------
# views for diff / return values (secrets masked)
# ---------------------------------------------------------------------------------------------------------
def view(state: dict, other=None) -> dict:
    """Managed part of a state (iSCSI targets, backstores), passwords masked; when ``other`` (the
    'before' state) is given, a changed secret shows as '******** (changed)'."""
    out = {"backstores": {}, "targets": {}}
    for name, so in sorted(state["backstores"].items()):
        out["backstores"][name] = dict(sorted(so.items()))
    for iqn, target in sorted(state["targets"].items()):
        tpgs = {}
        for tag, tpg in sorted(target["tpgs"].items()):
            acls = {}
            for initiator, acl in sorted(tpg["acls"].items()):
                entry = {}
                for field in CHAP_FIELDS:
                    value = acl.get(field) or ""
                    if field in SECRET_FIELDS and value:
                        old = None
                        if other is not None:
                            old = (((other["targets"].get(iqn) or {}).get("tpgs", {}).get(tag) or {}).get("acls", {})
                                   .get(initiator) or {}).get(field)
                        value = MASK if other is None or old == acl.get(field) else MASK + " (changed)"
                    entry[field] = value
                entry["mapped_luns"] = {str(k): dict(v) for k, v in sorted(acl["mapped_luns"].items())}
                acls[initiator] = entry
            tpgs[str(tag)] = {
                "enable": tpg["enable"],
                "attributes": dict(sorted(tpg["attributes"].items())),
                "portals": list(tpg["portals"]),
                "luns": {str(k): v for k, v in sorted(tpg["luns"].items())},
                "acls": acls,
            }
        out["targets"][iqn] = {"tpgs": tpgs}
    return out


def expected_after(current: dict, desired: dict) -> dict:
    """State after a successful run: desired managed objects, plus backstores of other plugins."""
    after = copy.deepcopy(desired)
    for name, so in after["backstores"].items():
        have = current["backstores"].get(name) or {}
        if so["wwn"] is None and have.get("dev") == so["dev"] and bool(have.get("readonly")) == so["readonly"]:
            so["wwn"] = have.get("wwn")  # kept; a new backstore gets a kernel-generated serial (shown as null)
    for name, so in current["backstores"].items():
        if so.get("plugin") != "block" and name not in after["backstores"]:
            after["backstores"][name] = copy.deepcopy(so)
    for target in after["targets"].values():
        for tpg in target["tpgs"].values():
            for acl in tpg["acls"].values():
                acl.pop("node", None)
    return after


# ---------------------------------------------------------------------------------------------------------
# applying (the only part that changes configfs)
# ---------------------------------------------------------------------------------------------------------
class Applier:
    """Performs planned actions with an rtslib module, looking objects up by name (mode='lookup')."""

    def __init__(self, rtslib, fabric: str = "iscsi"):
        self.rtslib = rtslib
        self.fabric_name = fabric
        self._fabric = None

    @property
    def fabric(self):
        if self._fabric is None:
            self._fabric = self.rtslib.FabricModule(self.fabric_name)
        return self._fabric

    def target(self, iqn):
        return self.rtslib.Target(self.fabric, iqn, mode="lookup")

    def tpg(self, iqn, tag):
        return self.rtslib.TPG(self.target(iqn), tag, mode="lookup")

    def acl(self, iqn, tag, initiator):
        return self.rtslib.NodeACL(self.tpg(iqn, tag), initiator, mode="lookup")

    def apply(self, action: dict) -> None:
        rts = self.rtslib
        op = action["op"]
        if op == "delete_target":
            self.target(action["target"]).delete()
        elif op == "delete_tpg":
            self.tpg(action["target"], action["tag"]).delete()
        elif op == "delete_backstore":
            rts.BlockStorageObject(action["name"]).delete()
        elif op == "delete_lun":
            rts.LUN(self.tpg(action["target"], action["tag"]), action["lun"]).delete()
        elif op == "delete_acl":
            self.acl(action["target"], action["tag"], action["acl"]).delete()
        elif op == "delete_mapped_lun":
            rts.MappedLUN(self.acl(action["target"], action["tag"], action["acl"]), action["mapped_lun"]).delete()
        elif op == "delete_portal":
            rts.NetworkPortal(self.tpg(action["target"], action["tag"]), action["ip"], action["port"], mode="lookup").delete()
        elif op == "create_backstore":
            kwargs = {"dev": action["dev"], "readonly": action["readonly"]}
            if action["wwn"]:
                kwargs["wwn"] = action["wwn"]
            rts.BlockStorageObject(action["name"], **kwargs)
        elif op == "create_target":
            rts.Target(self.fabric, action["target"], mode="create")
        elif op == "create_tpg":
            rts.TPG(self.target(action["target"]), action["tag"], mode="create")
        elif op == "set_tpg_attributes":
            tpg = self.tpg(action["target"], action["tag"])
            for key, value in sorted(action["attributes"].items()):
                tpg.set_attribute(key, value)
        elif op == "create_portal":
            rts.NetworkPortal(self.tpg(action["target"], action["tag"]), action["ip"], action["port"], mode="create")
        elif op == "create_lun":
            so = rts.BlockStorageObject(action["backstore"])
            rts.LUN(self.tpg(action["target"], action["tag"]), action["lun"], storage_object=so)
        elif op == "create_acl":
            rts.NodeACL(self.tpg(action["target"], action["tag"]), action["acl"], mode="create")
        elif op == "set_acl_chap":
            acl = self.acl(action["target"], action["tag"], action["acl"])
            for field in CHAP_FIELDS:
                if field in action["chap"]:
                    setattr(acl, "chap_" + field, action["chap"][field])
        elif op == "create_mapped_lun":
            rts.MappedLUN(self.acl(action["target"], action["tag"], action["acl"]), action["mapped_lun"],
                          tpg_lun=action["tpg_lun"], write_protect=action["write_protect"])
        elif op == "set_write_protect":
            mlun = rts.MappedLUN(self.acl(action["target"], action["tag"], action["acl"]), action["mapped_lun"])
            mlun.write_protect = action["write_protect"]
        elif op == "enable_tpg":
            self.tpg(action["target"], action["tag"]).enable = True
        else:  # pragma: no cover - planner and applier are kept in step by the tests
            raise LioError("unknown action %s" % op)


def public_action(action: dict) -> dict:
    """An action without secrets (for return values)."""
    out = {k: v for k, v in action.items() if k != "chap"}
    if "chap" in action:
        out["chap_fields"] = sorted(action["chap"])
    return out
