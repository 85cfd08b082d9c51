# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Everything about the ``zfs``/``zpool`` command line tools.

Pure functions only (no I/O): argv builders, parsers of ``zfs list -Hp`` / ``zfs get -Hp`` /
``zpool list -Hp`` output, and :func:`plan_zvol_changes` which turns
(current state, desired volume set) into an ordered list of actions. Modules run the argv lists.
"""

from __future__ import annotations

from ansible_collections.diskless.cluster.plugins.module_utils._size import parse_size


# Columns read by the one ``zfs list`` call of the zfs_volumes module (extra property columns are appended).
LIST_COLUMNS = ("name", "type", "volsize", "volblocksize", "origin", "refreservation", "volmode", "readonly")

# Properties whose values are sizes: compared numerically, never as strings.
SIZE_PROPERTIES = frozenset(("volsize", "volblocksize", "refreservation", "reservation", "quota", "refquota", "recordsize"))

# Properties that can only be chosen when the volume is created.
CREATE_ONLY_PROPERTIES = frozenset(("volblocksize",))


class ZfsError(Exception):
    """A one-line, user-facing problem (refusal or bad input)."""


# ---------------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------------
def byte_count(cell):
    """A byte count as ``zfs``/``zpool ... -p`` prints it (``0`` included) as an int, else None. User-written
    sizes (``10G``) are module_utils ``_size.parse_size``."""
    if isinstance(cell, int) and not isinstance(cell, bool):
        return cell
    text = str(cell).strip()
    return int(text) if text.isdigit() else None


def zfs_value(value) -> str:
    """The string zfs prints for a property value we were given (bools become on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def same_value(prop: str, current, desired) -> bool:
    """Compare a current (parsed, string) property value with a desired one; sizes numerically."""
    if current is None:
        return False
    if prop in SIZE_PROPERTIES:
        have = byte_count(current)
        try:
            want = parse_size(desired)
        except ValueError:
            want = byte_count(desired)  # 0 (e.g. refreservation) is no user size, but a valid value
        if have is not None and want is not None:
            return have == want
    return str(current) == zfs_value(desired)


def _cell(value: str):
    return None if value in ("-", "") else value


# ---------------------------------------------------------------------------------------------------------
# parsers
# ---------------------------------------------------------------------------------------------------------
def parse_zfs_list(text: str, columns) -> dict:
    """Parse ``zfs list -Hp -o <columns>`` output into ``{name: {column: value|None}}``.

    ``-`` (not applicable) and empty cells become None. Size columns are converted to int.
    """
    columns = list(columns)
    if "name" not in columns:
        raise ValueError("the name column is required")
    datasets: dict = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(columns):
            raise ValueError("zfs list line %d has %d columns, expected %d: %r" % (lineno, len(cells), len(columns), line))
        row: dict = {}
        for column, cell in zip(columns, cells):
            row[column] = _typed(column, cell)
        datasets[row["name"]] = row
    return datasets


def _typed(prop: str, cell: str):
    """A ``-Hp`` cell as Python: ``None`` for ``-``, an int for size properties, else the text."""
    value = _cell(cell)
    if value is not None and prop in SIZE_PROPERTIES:
        count = byte_count(value)
        if count is not None:
            return count
    return value


def parse_zfs_get(text: str) -> dict:
    """Parse ``zfs get -Hp <props> <datasets>`` (name, property, value, source) into
    ``{name: {property: {"value": v, "source": s}}}``. Size properties become int."""
    result: dict = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != 4:
            raise ValueError("zfs get line %d has %d columns, expected 4: %r" % (lineno, len(cells), line))
        name, prop, value, source = cells
        result.setdefault(name, {})[prop] = {"value": _typed(prop, value), "source": _cell(source)}
    return result


ZPOOL_LIST_COLUMNS = ("name", "size", "allocated", "free", "health")


def parse_zpool_list(text: str, columns=ZPOOL_LIST_COLUMNS) -> dict:
    """Parse ``zpool list -Hp -o <columns>`` into ``{pool: {column: value}}`` (sizes as int)."""
    columns = list(columns)
    pools: dict = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(columns):
            raise ValueError("zpool list line has %d columns, expected %d: %r" % (len(cells), len(columns), line))
        row: dict = {}
        for column, cell in zip(columns, cells):
            value = _cell(cell)
            if value is not None and column in ("size", "allocated", "free", "freeing", "expandsize"):
                value = int(value)
            row[column] = value
        pools[row["name"]] = row
    return pools


def dataset_missing(stderr: str) -> bool:
    """True when zfs/zpool said the dataset or pool does not exist."""
    return "dataset does not exist" in stderr or "no such pool" in stderr


# ---------------------------------------------------------------------------------------------------------
# argv builders (binaries are resolved by the caller)
# ---------------------------------------------------------------------------------------------------------
def argv_list(zfs: str, pool: str, extra_columns=()) -> list:
    columns = list(LIST_COLUMNS) + [c for c in extra_columns if c not in LIST_COLUMNS]
    return [zfs, "list", "-Hp", "-t", "filesystem,volume,snapshot", "-o", ",".join(columns), "-r", pool]


def list_columns(extra_columns=()) -> list:
    return list(LIST_COLUMNS) + [c for c in extra_columns if c not in LIST_COLUMNS]


def _props_argv(props: dict) -> list:
    argv: list = []
    for key in sorted(props):
        argv += ["-o", "%s=%s" % (key, zfs_value(props[key]))]
    return argv


def argv_create_volume(zfs: str, name: str, size: int, sparse: bool = True, volblocksize=None, properties=None) -> list:
    argv = [zfs, "create", "-p"]
    if sparse:
        argv.append("-s")
    argv += ["-V", str(size)]
    if volblocksize:
        argv += ["-b", str(parse_size(volblocksize))]
    argv += _props_argv(properties or {})
    argv.append(name)
    return argv


def argv_clone(zfs: str, origin: str, name: str, properties=None) -> list:
    return [zfs, "clone", "-p"] + _props_argv(properties or {}) + [origin, name]


def argv_snapshot(zfs: str, snapshot: str) -> list:
    return [zfs, "snapshot", snapshot]


def argv_set(zfs: str, name: str, props: dict) -> list:
    return [zfs, "set"] + ["%s=%s" % (k, zfs_value(props[k])) for k in sorted(props)] + [name]


def argv_destroy(zfs: str, name: str, recursive: bool = False) -> list:
    return [zfs, "destroy"] + (["-r"] if recursive else []) + [name]


def argv_zpool_create(zpool: str, pool: str, devices, force=False, pool_properties=None, filesystem_properties=None) -> list:
    argv = [zpool, "create"]
    if force:
        argv.append("-f")
    for key in sorted(pool_properties or {}):
        argv += ["-o", "%s=%s" % (key, zfs_value(pool_properties[key]))]
    for key in sorted(filesystem_properties or {}):
        argv += ["-O", "%s=%s" % (key, zfs_value(filesystem_properties[key]))]
    return argv + [pool] + list(devices)


def argv_zpool_list(zpool: str, pool=None, columns=ZPOOL_LIST_COLUMNS) -> list:
    return [zpool, "list", "-Hp", "-o", ",".join(columns)] + ([pool] if pool else [])


# ---------------------------------------------------------------------------------------------------------
# the planner
# ---------------------------------------------------------------------------------------------------------
def normalize_volume(spec: dict, default_properties=None) -> dict:
    """Validate one desired volume and fill defaults. Raises ZfsError (one line)."""
    name = spec.get("name")
    if not name or "@" in name or "/" not in name:
        raise ZfsError("volume name %r must be <pool>/<path> without '@'" % (name,))
    size = spec.get("size")
    if size is not None:
        try:
            size = parse_size(size)
        except ValueError as exc:
            raise ZfsError("%s: size %s" % (name, exc))
    origin = spec.get("origin") or None
    if origin is not None and "@" not in origin:
        raise ZfsError("%s: origin %r must be a snapshot <volume>@<snap>" % (name, origin))
    if origin is None and size is None:
        raise ZfsError("%s: size is required for a volume that is not a clone" % name)
    props = dict(default_properties or {})
    props.update(spec.get("properties") or {})
    props = {k: zfs_value(v) for k, v in props.items()}
    for key in props:
        if key in ("volsize", "origin", "type", "name"):
            raise ZfsError("%s: property %s cannot be set through properties; use size/origin" % (name, key))
    snapshots = []
    for snap in spec.get("snapshots") or []:
        snap = snap.split("@", 1)[1] if "@" in snap else snap
        if not snap:
            raise ZfsError("%s: empty snapshot name" % name)
        snapshots.append(snap)
    return {
        "name": name,
        "size": size,
        "origin": origin,
        "sparse": bool(spec.get("sparse", True)),
        "volblocksize": parse_size(spec["volblocksize"]) if spec.get("volblocksize") else None,
        "properties": props,
        "snapshots": snapshots,
    }


def _snapshots_of(current: dict, name: str) -> list:
    prefix = name + "@"
    return sorted(n for n in current if n.startswith(prefix))


def _clones_of(current: dict, snapshot: str) -> list:
    return sorted(n for n, row in current.items() if row.get("origin") == snapshot)


def _dependents(current: dict, name: str) -> tuple:
    """(snapshots, clones) that depend on volume ``name``."""
    snaps = _snapshots_of(current, name)
    clones = sorted({c for s in snaps for c in _clones_of(current, s)})
    return snaps, clones


def _action(kind: str, name: str, text: str, argv_args: dict) -> dict:
    return {"action": kind, "name": name, "text": text, "args": argv_args}


def plan_zvol_changes(current: dict, desired: list, force: bool = False, prune: bool = False,
                      exported=(), pool=None, scope=None) -> list:
    """Ordered actions turning ``current`` (parsed zfs list) into the ``desired`` volume set.

    ``desired`` are normalized volumes (see :func:`normalize_volume`). ``exported`` is a set of
    dataset names currently used by an LIO backstore. ``scope`` (dataset prefixes) limits pruning.
    Raises ZfsError with ONE line for every refusal (all refusals joined with '; ').

    Order: create goldens, snapshots, clones, grow, set properties, then (prune) destroys (clones
    before their origins).
    """
    refusals: list = []
    creates: list = []
    snaps: list = []
    clones: list = []
    grows: list = []
    sets: list = []
    destroys: list = []
    reimage: list = []
    warnings: list = []
    exported = set(exported)
    wanted = {v["name"] for v in desired}
    # snapshots that will exist after this run (so a clone of one created in this run is fine)
    future_snapshots = {n for n, r in current.items() if r.get("type") == "snapshot"}
    for vol in desired:
        for snap in vol["snapshots"]:
            future_snapshots.add("%s@%s" % (vol["name"], snap))

    for vol in desired:
        name = vol["name"]
        row = current.get(name)
        if row is not None and row.get("type") != "volume":
            refusals.append("%s exists but is a %s, not a volume: rename or remove it" % (name, row.get("type")))
            continue
        recreate = False
        if row is not None and vol["origin"] and row.get("origin") != vol["origin"]:
            snapshots, dependents = _dependents(current, name)
            if not force:
                refusals.append("%s is a clone of %s, not %s: re-imaging destroys its data, set force: true to recreate it"
                                % (name, row.get("origin") or "nothing", vol["origin"]))
                continue
            if dependents:
                refusals.append("%s has dependent clones %s: retire them first" % (name, ", ".join(dependents)))
                continue
            reimage.append(_action("destroy", name, "destroy %s (re-image from %s)" % (name, vol["origin"]),
                                   {"recursive": bool(snapshots)}))
            recreate = True
            row = None
        if row is None:
            if vol["origin"]:
                if vol["origin"] not in future_snapshots:
                    refusals.append("%s: origin snapshot %s does not exist: create the golden volume and its snapshot first"
                                    % (name, vol["origin"]))
                    continue
                props = {k: v for k, v in vol["properties"].items() if k not in CREATE_ONLY_PROPERTIES}
                clones.append(_action("clone", name, "clone %s from %s" % (name, vol["origin"]),
                                      {"origin": vol["origin"], "properties": props}))
                origin_size = (current.get(vol["origin"]) or {}).get("volsize")
                if origin_size is None:
                    origin_name = vol["origin"].split("@", 1)[0]
                    origin_size = (current.get(origin_name) or {}).get("volsize")
                    for other in desired:
                        if other["name"] == origin_name and other["size"] is not None and origin_size is None:
                            origin_size = other["size"]
                if vol["size"] is not None and origin_size is not None and vol["size"] > origin_size:
                    grows.append(_action("grow", name, "grow %s to %d bytes" % (name, vol["size"]),
                                         {"volsize": vol["size"]}))
                elif vol["size"] is not None and origin_size is not None and vol["size"] < origin_size:
                    refusals.append("%s: size %d is smaller than its origin %s (%d): ZFS volumes never shrink, raise the size"
                                    % (name, vol["size"], vol["origin"], origin_size))
            else:
                props = {k: v for k, v in vol["properties"].items() if k not in CREATE_ONLY_PROPERTIES}
                creates.append(_action("create", name, "create %s%s (%d bytes)"
                                       % (name, " sparse" if vol["sparse"] else "", vol["size"]),
                                       {"size": vol["size"], "sparse": vol["sparse"],
                                        "volblocksize": vol["volblocksize"], "properties": props}))
            for snap in vol["snapshots"]:
                full = "%s@%s" % (name, snap)
                if recreate or full not in current:
                    snaps.append(_action("snapshot", full, "snapshot %s" % full, {}))
            continue
        # existing volume: grow, properties, snapshots
        cur_size = row.get("volsize")
        if vol["size"] is not None and cur_size is not None:
            if vol["size"] > cur_size:
                grows.append(_action("grow", name, "grow %s from %d to %d bytes" % (name, cur_size, vol["size"]),
                                     {"volsize": vol["size"]}))
            elif vol["size"] < cur_size:
                refusals.append("%s: size %d is smaller than the current %d: ZFS volumes never shrink, raise the size"
                                % (name, vol["size"], cur_size))
        if vol["volblocksize"] and row.get("volblocksize") not in (None, vol["volblocksize"]):
            warnings.append("%s: volblocksize is %s, wanted %s: it is fixed at creation and left alone"
                            % (name, row.get("volblocksize"), vol["volblocksize"]))
        changes = {}
        for key, value in sorted(vol["properties"].items()):
            if key in CREATE_ONLY_PROPERTIES:
                continue
            if not same_value(key, row.get(key), value):
                changes[key] = value
        if changes:
            sets.append(_action("set", name, "set %s on %s" % (" ".join("%s=%s" % kv for kv in sorted(changes.items())), name),
                                {"properties": changes}))
        for snap in vol["snapshots"]:
            full = "%s@%s" % (name, snap)
            if full not in current:
                snaps.append(_action("snapshot", full, "snapshot %s" % full, {}))

    if prune:
        in_scope = [n for n, r in current.items() if r.get("type") == "volume" and n not in wanted
                    and (not scope or any(n == s or n.startswith(s.rstrip("/") + "/") for s in scope))]
        doomed = set(in_scope)

        # clones first (a clone of a doomed volume is destroyed before the volume itself)
        def depth(n, seen=()):
            origin = (current.get(n) or {}).get("origin")
            parent = origin.split("@", 1)[0] if origin else None
            return 1 + depth(parent, seen + (n,)) if parent in doomed and parent not in seen else 0
        for name in sorted(in_scope, key=lambda n: (-depth(n), n)):
            snapshots, dependents = _dependents(current, name)
            live = [c for c in dependents if c not in doomed]
            if live:
                refusals.append("%s has dependent clones %s that stay: retire them first" % (name, ", ".join(live)))
                continue
            if name in exported and not force:
                refusals.append("%s is exported by LIO: remove its export first (lio_iscsi) or set force: true" % name)
                continue
            if snapshots and not force:
                refusals.append("%s has snapshots %s: set force: true to destroy it with them" % (name, ", ".join(snapshots)))
                continue
            destroys.append(_action("destroy", name, "destroy %s%s" % (name, " and its snapshots" if snapshots else ""),
                                    {"recursive": bool(snapshots)}))

    if refusals:
        raise ZfsError("; ".join(refusals))
    # destroys for re-image run before the clone that replaces them; prune destroys run last
    actions = reimage + creates + snaps + clones + grows + sets + destroys
    for warning in warnings:
        actions.append({"action": "warn", "name": "", "text": warning, "args": {}})
    return actions


def action_argv(zfs: str, action: dict):
    """argv for one planned action (None for warnings)."""
    kind, name, args = action["action"], action["name"], action["args"]
    if kind == "create":
        return argv_create_volume(zfs, name, args["size"], args["sparse"], args["volblocksize"], args["properties"])
    if kind == "snapshot":
        return argv_snapshot(zfs, name)
    if kind == "clone":
        return argv_clone(zfs, args["origin"], name, args["properties"])
    if kind == "grow":
        return argv_set(zfs, name, {"volsize": args["volsize"]})
    if kind == "set":
        return argv_set(zfs, name, args["properties"])
    if kind == "destroy":
        return argv_destroy(zfs, name, args["recursive"])
    return None


def volume_view(row: dict, current: dict, props=()) -> dict:
    """Compact view of one volume for diff/return values."""
    view = {
        "volsize": row.get("volsize"),
        "origin": row.get("origin"),
        "volmode": row.get("volmode"),
        "readonly": row.get("readonly"),
        "sparse": row.get("refreservation") in (None, 0),
        "snapshots": [s.split("@", 1)[1] for s in _snapshots_of(current, row["name"])],
    }
    for prop in props:
        if prop not in view:
            view[prop] = row.get(prop)
    return view


def simulate(current: dict, actions: list) -> dict:
    """The zfs list view after ``actions`` (for diff 'after' and check mode)."""
    after = {k: dict(v) for k, v in current.items()}
    for action in actions:
        kind, name, args = action["action"], action["name"], action["args"]
        if kind == "create":
            row = {"name": name, "type": "volume", "volsize": args["size"], "origin": None,
                   "refreservation": None if args["sparse"] else args["size"],
                   "volblocksize": args["volblocksize"]}
            row.update(args["properties"])
            after[name] = row
        elif kind == "clone":
            # zfs lists a snapshot's volblocksize as "-": the clone keeps the one of the origin's volume
            snapshot = after.get(args["origin"]) or {}
            volume = after.get(args["origin"].split("@", 1)[0]) or {}
            volsize = snapshot.get("volsize") if snapshot.get("volsize") is not None else volume.get("volsize")
            row = {"name": name, "type": "volume", "volsize": volsize, "origin": args["origin"],
                   "refreservation": None, "volblocksize": volume.get("volblocksize")}
            row.update(args["properties"])
            after[name] = row
        elif kind == "snapshot":
            base = after.get(name.split("@", 1)[0]) or {}
            after[name] = {"name": name, "type": "snapshot", "volsize": base.get("volsize"), "origin": None}
        elif kind == "grow":
            after[name]["volsize"] = args["volsize"]
        elif kind == "set":
            after[name].update(args["properties"])
        elif kind == "destroy":
            for key in [k for k in after if k == name or k.startswith(name + "@")]:
                del after[key]
    return after
