# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GRUB A/B slots in the RAUC style: the grubenv variables, their transitions and the grub.cfg snippet.

The environment block (a 1024-byte file) holds, for slots ``A`` and ``B`` (names are configurable):

``ORDER``    slot names separated by spaces, first = preferred (``"A B"``)
``<S>_OK``   ``1``: the slot may be booted; anything else: it may not (bad)
``<S>_TRY``  ``1``: GRUB has used the slot's one try and nobody confirmed the boot since; ``0``: not used

What GRUB does on every boot (:func:`render_grub_cfg` writes it, :func:`next_boot` simulates it):

1. the first slot of ORDER with ``OK=1`` and ``TRY=0`` is chosen; its ``TRY`` becomes 1 and is saved
   *before* the kernel starts (the try is consumed even if the kernel then hangs or panics);
2. when no slot qualifies, every slot with ``OK=1`` gets ``TRY=0`` again and step 1 is repeated (a new
   round, as RAUC does);
3. when no slot has ``OK=1`` at all, the first known slot of ORDER is booted and nothing is saved.

Userspace (the ``ab_update_slots`` module) confirms a boot by setting the booted slot's ``TRY=0`` (state
``good``) on *every* boot, after the health gate; a boot that is never confirmed is not chosen again
while another slot is good. Everything is read and written with ``grub-editenv`` only: GRUB ignores an
env block that is not exactly 1024 bytes, and ``grub-editenv create`` on an existing file empties it,
so it is only run when the file does not exist.

Pure functions (parsers, the transition planner, the simulation, the snippet generator) plus
:class:`GrubEnv`, a thin runner around ``grub-editenv`` that takes the command runner as a callable
(``Runner.raw`` of module_utils ``_run`` in the modules, ``subprocess`` in the health gate and the tests).

This file imports nothing from the collection: the module ``ab_update_host`` installs it on the storage host
as the health gate's library (``dl_ab_grub.py``), where it runs at boot without Ansible.
"""

from __future__ import annotations

import os
import re

SLOT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,15}$")
ORDER = "ORDER"
STATES = ("facts", "init", "try", "good", "bad", "rollback")

# characters that GRUB's script parser would interpret inside a menuentry line or a quoted string
_UNSAFE_WORD = re.compile(r"[\s\"'\\$;&|<>{}#`]")
_UNSAFE_ARGS = re.compile(r"[\"'\\$;&|<>{}#`\n\r\t]")
_UNSAFE_QUOTED = re.compile(r"[\"\\$\n\r`]")
_UUID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]*$")


class GrubError(Exception):
    """A one-line, user-facing problem (refusal or bad input)."""


class GrubCommandError(GrubError):
    """A grub-editenv call that failed; carries argv, rc and output for fail_json."""

    def __init__(self, msg, argv, rc, out, err):
        super().__init__(msg)
        self.argv, self.rc, self.out, self.err = list(argv), rc, out, err


def first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "no error output"


# ---------------------------------------------------------------------------------------------------------
# names and parsers
# ---------------------------------------------------------------------------------------------------------
def ok_key(slot: str) -> str:
    return "%s_OK" % slot


def try_key(slot: str) -> str:
    return "%s_TRY" % slot


def slot_keys(slots) -> list:
    """The env keys this collection manages, in the order they are written."""
    keys = [ORDER]
    for slot in slots:
        keys += [ok_key(slot), try_key(slot)]
    return keys


def validate_slots(slots) -> list:
    """Slot names as a list; raises GrubError unless there are 2+ distinct names like A, B, root1."""
    slots = [str(s) for s in (slots or [])]
    if len(slots) < 2:
        raise GrubError("slots needs at least two slot names, got %s" % (slots or "none"))
    bad = [s for s in slots if not SLOT_RE.match(s)]
    if bad:
        raise GrubError("slot names must be a letter then up to 15 letters or digits (they become GRUB variable "
                        "names <slot>_OK): %s" % ", ".join(repr(s) for s in bad))
    dupes = sorted({s for s in slots if slots.count(s) > 1})
    if dupes:
        raise GrubError("slots listed twice: %s" % ", ".join(dupes))
    return slots


def parse_env_list(text: str) -> dict:
    """``grub-editenv FILE list`` output (KEY=value lines) as a dict in file order.

    A line without ``=`` continues the previous value (grub-editenv prints a value's newlines as is).
    """
    env: dict = {}
    last = None
    for line in (text or "").split("\n"):
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
            last = key
        elif last is not None and line:
            env[last] += "\n" + line
    return env


def env_lines(env) -> str:
    """The env as ``KEY=value`` lines (diff view); an absent env is the empty string."""
    if not env:
        return ""
    return "".join("%s=%s\n" % (k, v) for k, v in env.items())


def parse_cmdline(text: str, key: str):
    """Value of ``key=value`` on a kernel command line (the last one wins), or None."""
    value = None
    for word in (text or "").split():
        if word.startswith(key + "="):
            value = word[len(key) + 1:].strip("\"'") or None
    return value


# ---------------------------------------------------------------------------------------------------------
# reading the state
# ---------------------------------------------------------------------------------------------------------
def is_ok(env, slot) -> bool:
    return (env or {}).get(ok_key(slot), "0") == "1"


def is_tried(env, slot) -> bool:
    return (env or {}).get(try_key(slot), "0") != "0"


def slot_state(env, slot) -> str:
    """``bad`` (OK is not 1), ``trying`` (OK=1, TRY=1: its try is used, not confirmed) or ``good``."""
    if not is_ok(env, slot):
        return "bad"
    return "trying" if is_tried(env, slot) else "good"


def raw_order(env) -> list:
    return ((env or {}).get(ORDER) or "").split()


def initialized(env) -> bool:
    return bool(raw_order(env))


def normalized_order(env, slots) -> list:
    """ORDER as a full permutation of ``slots``: known names in ORDER order, then the missing ones.

    Raises GrubError when ORDER names a slot that is not in ``slots``.
    """
    order = raw_order(env)
    unknown = [s for s in order if s not in slots]
    if unknown:
        raise GrubError("ORDER=%r names %s, not in slots %s: fix the slots option"
                        % (env.get(ORDER), ", ".join(unknown), " ".join(slots)))
    result = []
    for slot in order + list(slots):
        if slot not in result:
            result.append(slot)
    return result


def next_boot(env, slots):
    """Simulate the grub.cfg of :func:`render_grub_cfg`: (slot GRUB boots, env after GRUB saved it).

    Defaults before ``load_env`` are those of the script: ORDER = ``slots``, every OK and TRY 0.
    """
    env = dict(env or {})
    order = (env.get(ORDER) or " ".join(slots)).split()

    def pick():
        for slot in order:
            if slot in slots and is_ok(env, slot) and not is_tried(env, slot):
                return slot
        return None

    slot = pick()
    if slot is None:
        for name in slots:
            if is_ok(env, name):
                env[try_key(name)] = "0"
        slot = pick()
    if slot is None:
        known = [s for s in order if s in slots]
        return (known[0] if known else slots[0]), env
    env[try_key(slot)] = "1"
    return slot, env


def describe(env, slots, booted=None, env_file=None) -> dict:
    """The facts the module returns about ``env`` (None = file absent)."""
    order = raw_order(env)
    nxt, _dummy = next_boot(env, slots)
    return {
        "env_file": env_file,
        "exists": env is not None,
        "initialized": initialized(env),
        "booted": booted,
        "others": [s for s in slots if s != booted],
        "order": order,
        "next_boot": nxt,
        "slots": {s: {"ok": is_ok(env, s), "try": is_tried(env, s), "state": slot_state(env, s),
                      "booted": s == booted, "position": order.index(s) if s in order else None}
                  for s in slots},
        "env": dict(env or {}),
    }


# ---------------------------------------------------------------------------------------------------------
# transitions
# ---------------------------------------------------------------------------------------------------------
def _default_other(slots, booted, state):
    others = [s for s in slots if s != booted]
    if len(others) != 1:
        raise GrubError("state=%s with %d other slots (%s): give slot" % (state, len(others), ", ".join(others)))
    return others[0]


def _need_booted(booted, state, cmdline_key):
    if booted is None:
        raise GrubError("state=%s needs the booted slot but the kernel command line has no %s=: boot through the "
                        "generated grub.cfg (or set slot_cmdline_key/cmdline_file)" % (state, cmdline_key))


def _bootable(values, slots) -> list:
    return [s for s in slots if values.get(ok_key(s)) == "1"]


def plan_transition(env, slots, state, booted=None, slot=None, force=False, cmdline_key="dl.slot") -> dict:
    """The keys to write (``{KEY: value}`` in write order, only those that differ) for ``state``.

    ``env`` is the parsed env (None when the file does not exist). Raises GrubError with one line for
    every refusal. ``facts`` never changes anything.
    """
    slots = validate_slots(slots)
    if state not in STATES:
        raise GrubError("unknown state %r (use one of %s)" % (state, ", ".join(STATES)))
    if booted is not None and booted not in slots:
        raise GrubError("booted slot %r (%s= on the kernel command line) is not in slots %s"
                        % (booted, cmdline_key, " ".join(slots)))
    if slot is not None and slot not in slots:
        raise GrubError("slot %r is not in slots %s" % (slot, " ".join(slots)))
    if state == "facts":
        return {}
    cur = dict(env or {})

    if state == "init":
        target = slot or booted or slots[0]
        desired = {}
        if not initialized(cur):
            desired[ORDER] = " ".join([target] + [s for s in slots if s != target])
        else:
            normalized_order(cur, slots)  # refuse unknown names
        for name in slots:
            if ok_key(name) not in cur:
                desired[ok_key(name)] = "1" if name == target and not initialized(cur) else "0"
            if try_key(name) not in cur:
                desired[try_key(name)] = "0"
        after = dict(cur, **desired)
        if not _bootable(after, slots):
            raise GrubError("the env is initialised but no slot has <slot>_OK=1: mark the booted slot good "
                            "(state=good) or try a slot")
        return _only_changes(cur, desired, slots)

    if not initialized(cur):
        raise GrubError("the GRUB env has no ORDER (not initialised): run state=init first")
    order = normalized_order(cur, slots)
    desired = {}

    if state == "good":
        _need_booted(booted, state, cmdline_key)
        if slot is not None and slot != booted:
            raise GrubError("state=good marks the booted slot (%s) good, not %s: to boot %s once use state=try"
                            % (booted, slot, slot))
        # move the booted slot in front of every slot that is not good; a pending try (a good slot put in
        # front by state=try during this boot) stays in front
        rest = [s for s in order if s != booted]
        ahead = []
        for name in order:
            if name == booted:
                break
            if slot_state(cur, name) == "good":
                ahead.append(name)
        new_order = ahead + [booted] + [s for s in rest if s not in ahead]
        desired = {ORDER: " ".join(new_order), ok_key(booted): "1", try_key(booted): "0"}

    elif state == "try":
        _need_booted(booted, state, cmdline_key)
        target = slot or _default_other(slots, booted, state)
        if target == booted:
            raise GrubError("slot %s is the booted slot: try the other slot (write the new image there first)" % target)
        fallback = [s for s in order if s != target and slot_state(cur, s) == "good"]
        if not fallback:
            raise GrubError("no slot other than %s is good to fall back to (booted %s is %s): confirm the booted "
                            "slot first (state=good)" % (target, booted, slot_state(cur, booted)))
        desired = {ORDER: " ".join([target] + [s for s in order if s != target]),
                   ok_key(target): "1", try_key(target): "0"}

    elif state == "bad":
        if slot is None:
            raise GrubError("state=bad needs slot")
        if slot == booted and not force:
            raise GrubError("slot %s is the booted slot: marking it bad needs force: true (or use state=rollback)"
                            % slot)
        desired = {ORDER: " ".join([s for s in order if s != slot] + [slot]),
                   ok_key(slot): "0", try_key(slot): "0"}
        if not _bootable(dict(cur, **desired), slots):
            raise GrubError("slot %s is the last slot with %s=1: marking it bad leaves GRUB nothing to boot"
                            % (slot, ok_key(slot)))

    elif state == "rollback":
        _need_booted(booted, state, cmdline_key)
        target = slot or _default_other(slots, booted, state)
        if target == booted:
            raise GrubError("slot %s is the booted slot: roll back to another slot" % target)
        if slot_state(cur, target) != "good":
            raise GrubError("slot %s is %s, not good: nothing to roll back to" % (target, slot_state(cur, target)))
        middle = [s for s in order if s not in (target, booted)]
        desired = {ORDER: " ".join([target] + middle + [booted]), ok_key(booted): "0", try_key(booted): "0"}

    return _only_changes(cur, desired, slots)


def _only_changes(cur, desired, slots) -> dict:
    changes = {}
    for key in slot_keys(slots):
        if key in desired and cur.get(key) != desired[key]:
            changes[key] = desired[key]
    return changes


def apply_changes(env, changes) -> dict:
    """The env after ``grub-editenv set`` of ``changes``: existing keys keep their place, new ones append."""
    after = dict(env or {})
    after.update(changes)
    return after


# ---------------------------------------------------------------------------------------------------------
# grub-editenv
# ---------------------------------------------------------------------------------------------------------
def argv_list(editenv: str, path: str) -> list:
    return [editenv, path, "list"]


def argv_create(editenv: str, path: str) -> list:
    return [editenv, path, "create"]


def argv_set(editenv: str, path: str, changes: dict) -> list:
    return [editenv, path, "set"] + ["%s=%s" % (k, v) for k, v in changes.items()]


class GrubEnv:
    """One env file edited with grub-editenv. ``run(argv) -> (rc, stdout, stderr)``."""

    def __init__(self, editenv: str, path: str, run):
        self.editenv, self.path, self.run = editenv, path, run

    def _run(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise GrubCommandError("grub-editenv %s %s failed: %s" % (self.path, what, first_line(err)),
                                   argv, rc, out, err)
        return out

    def read(self):
        """The env as a dict, or None when the file does not exist (``list`` would create it)."""
        if not os.path.exists(self.path):
            return None
        if not os.path.isfile(self.path):
            raise GrubError("env_file %s is not a regular file" % self.path)
        try:
            return parse_env_list(self._run(argv_list(self.editenv, self.path), "list"))
        except GrubCommandError as exc:
            if "invalid environment block" in (exc.err or ""):
                exc.args = ("%s is not a GRUB environment block (grub-editenv: invalid environment block): move it "
                            "away, state=init creates a new one" % self.path,)
            raise


def run_transition(genv: GrubEnv, slots, state, booted=None, slot=None, force=False, check_mode=False,
                   cmdline_key="dl.slot") -> dict:
    """Read the env, plan ``state``, write it (unless ``check_mode``), re-read and verify.

    Returns ``{changed, changes, commands, before, after, facts}``; ``before``/``after`` are env dicts
    (``before`` None when the file did not exist). Raises GrubError / GrubCommandError.
    """
    slots = validate_slots(slots)
    before = genv.read()
    changes = plan_transition(before, slots, state, booted, slot, force, cmdline_key)
    commands = []
    if before is None and state == "init":
        parent = os.path.dirname(os.path.abspath(genv.path))
        if not os.path.isdir(parent):
            raise GrubError("directory %s of env_file does not exist: mount the boot-env partition first" % parent)
        commands.append(argv_create(genv.editenv, genv.path))
    if changes:
        commands.append(argv_set(genv.editenv, genv.path, changes))
    after = apply_changes(before, changes) if (before is not None or commands) else None
    if not check_mode and commands:
        for argv in commands:
            genv._run(argv, argv[2])
        written = genv.read()
        wrong = {k: v for k, v in changes.items() if (written or {}).get(k) != v}
        if wrong:
            raise GrubError("grub-editenv %s set did not stick: %s" % (genv.path, ", ".join(
                "%s is %r, wanted %r" % (k, (written or {}).get(k), v) for k, v in wrong.items())))
        after = written
    return {
        "changed": bool(commands),
        "changes": changes,
        "commands": commands,
        "before": before,
        "after": after,
        "facts": describe(after, slots, booted, genv.path),
    }


# ---------------------------------------------------------------------------------------------------------
# grub.cfg snippet
# ---------------------------------------------------------------------------------------------------------
def _check(value, pattern, what):
    value = str(value)
    if not value or pattern.search(value):
        raise GrubError("%s %r is empty or has characters GRUB would interpret (quotes, $, ;, braces, ...)"
                        % (what, value))
    return value


def _select_loop(slots, indent):
    pad = " " * indent
    lines = [pad + "for dl_ab_s in ${ORDER}; do"]
    for slot in slots:
        lines.append(pad + '  if [ "${dl_ab_s}" = "%s" -a "${%s}" = "1" -a "${%s}" = "0" ]; then'
                     % (slot, ok_key(slot), try_key(slot)))
        lines.append(pad + "    set dl_ab_slot=%s" % slot)
        lines.append(pad + "    set %s=1" % try_key(slot))
        lines.append(pad + "    break")
        lines.append(pad + "  fi")
    lines.append(pad + "done")
    return lines


def render_grub_cfg(slots, entries, env_file="/grubenv", env_fs_uuid=None, cmdline_key="dl.slot", timeout=3,
                    panic=30, index_base=0, insmods=("part_gpt", "part_msdos", "ext2", "fat")) -> str:
    """Text of the A/B slot-selection script and one menu entry per slot (pure; for a template or
    /etc/grub.d/05_ab). See the module docstring for what it does.

    ``entries`` maps every slot to ``{fs_uuid, root, kernel, initrd, args, title}``: ``fs_uuid`` (required) is
    the file system GRUB loads the slot's kernel and initrd from; ``root`` is the kernel's ``root=``
    (default ``UUID=<fs_uuid>``); ``kernel``/``initrd`` default to ``/vmlinuz``/``/initrd.img``; ``args``
    (default ``ro``) are more kernel arguments. ``<cmdline_key>=<slot>`` (so the module knows the booted
    slot) and ``panic=<panic>`` (unless ``panic`` is None or ``args`` has one) are appended.

    ``env_file`` is the env block's path on the file system with UUID ``env_fs_uuid``; without
    ``env_fs_uuid`` it is used as a GRUB path as is (``$prefix/grubenv``, ``(hd0,gpt2)/grubenv``).
    The menu entries must be the first of the final grub.cfg (``index_base`` if others come first):
    ``fallback`` takes entry numbers only. Raises GrubError on unsafe input.
    """
    slots = validate_slots(slots)
    if not re.match(r"^[A-Za-z0-9._-]+$", cmdline_key or ""):
        raise GrubError("cmdline_key %r must be letters, digits, '.', '_' or '-'" % (cmdline_key,))
    missing = [s for s in slots if s not in (entries or {})]
    if missing:
        raise GrubError("no menu entry for slot %s" % ", ".join(missing))
    extra = sorted(set(entries) - set(slots))
    if extra:
        raise GrubError("menu entries for unknown slots %s" % ", ".join(extra))
    # a GRUB path may use $prefix/${root} on purpose when no UUID is given
    _check(env_file, _UNSAFE_QUOTED if env_fs_uuid else re.compile(r"[\"\\\n\r`]"), "env_file")
    lines = [
        "# diskless.cluster A/B slot selection (RAUC-style grubenv: ORDER, <slot>_OK, <slot>_TRY).",
        "# Generated; edit the Ansible inputs, not this text. Env written only by grub-editenv / save_env.",
    ]
    for mod in insmods or ():
        lines.append("insmod %s" % _check(mod, _UNSAFE_WORD, "insmod"))
    if timeout is not None:
        lines.append("set timeout=%d" % int(timeout))
    if env_fs_uuid:
        _check(env_fs_uuid, re.compile(r"[^0-9A-Za-z-]"), "env_fs_uuid")
        lines.append("search --no-floppy --fs-uuid --set=dl_ab_env %s" % env_fs_uuid)
        lines.append('set dl_ab_file="(${dl_ab_env})/%s"' % env_file.lstrip("/"))
    else:
        lines.append('set dl_ab_file="%s"' % env_file)
    lines.append('set ORDER="%s"' % " ".join(slots))
    for slot in slots:
        lines.append("set %s=0" % ok_key(slot))
        lines.append("set %s=0" % try_key(slot))
    lines.append('if [ -f "${dl_ab_file}" ]; then')
    lines.append('  load_env --file "${dl_ab_file}" %s' % " ".join(slot_keys(slots)))
    lines.append("fi")
    lines.append("set dl_ab_slot=")
    lines.append("# 1. the first slot of ORDER that is OK and has its try left")
    lines += _select_loop(slots, 0)
    lines.append('if [ -z "${dl_ab_slot}" ]; then')
    lines.append("  # 2. every OK slot used its try without being confirmed: start a new round")
    for slot in slots:
        lines.append('  if [ "${%s}" = "1" ]; then set %s=0; fi' % (ok_key(slot), try_key(slot)))
    lines += _select_loop(slots, 2)
    lines.append("fi")
    lines.append('if [ -z "${dl_ab_slot}" ]; then')
    lines.append("  # 3. no slot is OK: boot the first slot of ORDER and record nothing")
    lines.append("  for dl_ab_s in ${ORDER}; do")
    for slot in slots:
        lines.append('    if [ "${dl_ab_s}" = "%s" ]; then set dl_ab_slot=%s; break; fi' % (slot, slot))
    lines.append("  done")
    lines.append('  if [ -z "${dl_ab_slot}" ]; then set dl_ab_slot=%s; fi' % slots[0])
    lines.append("else")
    lines.append("  # consume the try before the kernel starts: a hang or panic (watchdog, panic=) falls back")
    lines.append('  if save_env --file "${dl_ab_file}" %s; then' % " ".join(try_key(s) for s in slots))
    lines.append("    set dl_ab_saved=1")
    lines.append("  else")
    lines.append('    echo "diskless A/B: cannot write ${dl_ab_file}: this boot of slot ${dl_ab_slot} is not recorded"')
    lines.append("  fi")
    lines.append("fi")
    lines.append('set default="dl_ab_${dl_ab_slot}"')
    for slot in slots:
        others = [str(index_base + i) for i, other in enumerate(slots) if other != slot]
        lines.append('if [ "${dl_ab_slot}" = "%s" ]; then set fallback="%s"; fi' % (slot, " ".join(others)))
    for slot in slots:
        entry = dict(entries[slot] or {})
        fs_uuid = _check(entry.get("fs_uuid") or "", re.compile(r"[^0-9A-Za-z-]"), "slot %s fs_uuid" % slot)
        if not _UUID_RE.match(fs_uuid):
            raise GrubError("slot %s fs_uuid %r is not a file system UUID" % (slot, fs_uuid))
        root = _check(entry.get("root") or "UUID=%s" % fs_uuid, _UNSAFE_WORD, "slot %s root" % slot)
        kernel = _check(entry.get("kernel") or "/vmlinuz", _UNSAFE_WORD, "slot %s kernel" % slot)
        initrd = _check(entry.get("initrd") or "/initrd.img", _UNSAFE_WORD, "slot %s initrd" % slot)
        args = entry.get("args")
        args = "ro" if args is None else " ".join(str(args).split())
        if args:
            _check(args, _UNSAFE_ARGS, "slot %s args" % slot)
        words = args.split()
        if any(w.startswith(cmdline_key + "=") for w in words):
            raise GrubError("slot %s args must not set %s= (the snippet adds it)" % (slot, cmdline_key))
        words = ["root=%s" % root] + words + ["%s=%s" % (cmdline_key, slot)]
        if panic is not None and not any(w.startswith("panic=") for w in words):
            words.append("panic=%d" % int(panic))
        title = _check(entry.get("title") or "Slot %s" % slot, _UNSAFE_QUOTED, "slot %s title" % slot)
        lines.append('menuentry "%s" --id dl_ab_%s {' % (title, slot))
        lines.append("  search --no-floppy --fs-uuid --set=root %s" % fs_uuid)
        lines.append("  linux %s %s" % (kernel, " ".join(words)))
        lines.append("  initrd %s" % initrd)
        lines.append("}")
    return "\n".join(lines) + "\n"
