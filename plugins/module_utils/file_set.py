# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Reconcile a directory so that it holds exactly one given set of small text files.

Used for dnsmasq's ``dhcp-hostsdir`` (one reservation file per node) and for the per-node boot files of
the HTTP tree. The whole set is handled in one pass, which is what makes 1,000 nodes cost milliseconds.

Rules that matter for the consumers:

* Every write is atomic (module_utils ``_atomic``): the content goes to a temporary file whose name starts
  with ``.`` in the same directory, is flushed to disk, then ``rename()``d over the final name. dnsmasq's inotify watcher ignores
  dot files, so it only ever sees one complete ``IN_MOVED_TO`` per file; nginx never serves a half file.
* Hidden files (name starting with ``.``) are never managed and never pruned.
* Nothing here knows about signals or services: the caller reads ``created``/``updated``/``removed`` and
  decides (dnsmasq picks up new files by inotify but needs SIGHUP for edits and removals).

This file has no Ansible dependency apart from being importable as module_utils; all I/O goes through
the small functions below so the planning step (:func:`plan_changes`) is pure and unit-testable.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from ansible_collections.diskless.cluster.plugins.module_utils._atomic import FileContent, fsync_directory, write_atomic_many


class FileSetError(Exception):
    """A problem the caller should report as a module failure (one line)."""


class FileState(FileContent):
    """What is on disk (or wanted) for one file: ``content`` bytes and permissions/ownership (None: do not
    care), compared as a whole."""

    __slots__ = ()

    def __eq__(self, other):
        return isinstance(other, FileState) and (self.content, self.mode, self.uid, self.gid) == (
            other.content,
            other.mode,
            other.uid,
            other.gid,
        )

    def __repr__(self):
        return "FileState(%d bytes, mode=%r, uid=%r, gid=%r)" % (len(self.content), self.mode, self.uid, self.gid)


class Changes:
    """Result of :func:`plan_changes`: names per action, sorted."""

    def __init__(self, create, update_content, update_attributes, remove, unchanged):
        self.create = create
        self.update_content = update_content
        self.update_attributes = update_attributes
        self.remove = remove
        self.unchanged = unchanged

    @property
    def updated(self):
        return sorted(self.update_content + self.update_attributes)

    @property
    def changed(self):
        return bool(self.create or self.update_content or self.update_attributes or self.remove)


def parse_mode(value):
    """Permission bits from an octal string (``"0640"``) or an int; None stays None."""
    if value is None:
        return None
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in "01234567" for c in text):
            raise FileSetError("mode must be an octal number like '0644', got %r" % (value,))
        mode = int(text, 8)
    if mode < 0 or mode > 0o7777:
        raise FileSetError("mode %r is out of range" % (value,))
    return mode


def resolve_uid(owner):
    if owner is None:
        return None
    if str(owner).isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise FileSetError("owner %r does not exist" % (owner,))


def resolve_gid(group):
    if group is None:
        return None
    if str(group).isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise FileSetError("group %r does not exist" % (group,))


def check_name(name, subpaths=False):
    """File names are plain names inside the directory; dot files are reserved for temporaries.

    With ``subpaths`` (only when nothing is pruned) a name may also be a relative path below the directory
    (``etc/chrony/conf.d/x.conf``) whose components follow the same rules.
    """
    parts = name.split("/") if subpaths and name else [name]
    if not name or "\0" in name or any(
        not part or "/" in part or part.startswith(".") or part.endswith("~") for part in parts
    ):
        raise FileSetError(
            "invalid file name %r: must be a plain name%s, not start with '.' and not end with '~'"
            % (name, " or a relative path of such names" if subpaths else "")
        )


def plan_changes(current, desired, prune):
    """Compare the directory's state with the desired one.

    :arg current: ``{name: FileState}`` of the managed (non-hidden, regular) files on disk.
    :arg desired: ``{name: FileState}``; ``None`` attributes mean "leave as they are".
    :arg prune: remove files present on disk but not desired.
    """
    create, update_content, update_attributes, unchanged = [], [], [], []
    for name in sorted(desired):
        want = desired[name]
        have = current.get(name)
        if have is None:
            create.append(name)
        elif have.content != want.content:
            update_content.append(name)
        elif (
            (want.mode is not None and want.mode != have.mode)
            or (want.uid is not None and want.uid != have.uid)
            or (want.gid is not None and want.gid != have.gid)
        ):
            update_attributes.append(name)
        else:
            unchanged.append(name)
    remove = sorted(set(current) - set(desired)) if prune else []
    return Changes(create, update_content, update_attributes, remove, len(unchanged))


def is_managed_name(name):
    return not name.startswith(".")


def read_directory(path, names=None):
    """``{name: FileState}`` of ``path``'s files ({} if the directory does not exist).

    With ``names=None`` every non-hidden entry is read, and anything that is not a regular file (a
    sub-directory, a symlink, a socket) is an error: a pruned directory is owned by the set and we refuse
    to guess. With a collection of ``names`` only those entries are looked at (other entries are left
    alone, as with ``prune=false``).
    """
    current = {}
    try:
        if names is None:
            entries = [(e.name, e.path) for e in os.scandir(path) if is_managed_name(e.name)]
        else:
            os.listdir(path)  # same errors as scandir for a missing path or a non-directory
            entries = [(n, os.path.join(path, n)) for n in names]
    except FileNotFoundError:
        return current
    except NotADirectoryError:
        raise FileSetError("%s exists and is not a directory" % path)
    for name, full in entries:
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise FileSetError("%s is not a regular file; refusing to manage it" % full)
        with open(full, "rb") as f:
            content = f.read()
        current[name] = FileState(content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return current


def directory_changes(path, mode, uid, gid):
    """What must change on the directory itself: ``None`` if it is missing, else a list of attribute names."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    changes = []
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        changes.append("mode")
    if uid is not None and st.st_uid != uid:
        changes.append("owner")
    if gid is not None and st.st_gid != gid:
        changes.append("group")
    return changes


def ensure_directory(path, mode, uid, gid):
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o755 if mode is None else mode)
    _set_attributes(path, mode, uid, gid)


def _set_attributes(path, mode, uid, gid):
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.chmod(path, mode)


class FileSet:
    """The desired set for one directory, and the operations to reach it."""

    def __init__(self, path, files, secret_files=None, mode=None, owner=None, group=None,
                 directory_mode=None, prune=True):
        if not os.path.isabs(path):
            raise FileSetError("path must be absolute, got %r" % (path,))
        self.path = os.path.normpath(path)
        self.mode = parse_mode(mode)
        self.directory_mode = parse_mode(directory_mode)
        self.uid = resolve_uid(owner)
        self.gid = resolve_gid(group)
        self.prune = prune
        secret_files = secret_files or {}
        both = sorted(set(files) & set(secret_files))
        if both:
            raise FileSetError("names given both as files and secret_files: %s" % ", ".join(both))
        self.secret_names = frozenset(secret_files)
        self.desired = {}
        for name, content in list(files.items()) + list(secret_files.items()):
            check_name(name, subpaths=not prune)
            if not isinstance(content, str):
                raise FileSetError("content of %r must be a string" % (name,))
            self.desired[name] = FileState(content.encode("utf-8"), self.mode, self.uid, self.gid)

    def reconcile(self, check_mode=False, want_diff=False):
        """Bring the directory to the desired state (or predict it in check mode); return a result dict."""
        dir_changes = directory_changes(self.path, self.directory_mode, self.uid, self.gid)
        if dir_changes is None:
            current = {}
        else:
            current = read_directory(self.path, None if self.prune else sorted(self.desired))
        changes = plan_changes(current, self.desired, self.prune)

        if not check_mode:
            if dir_changes is None or dir_changes:
                ensure_directory(self.path, self.directory_mode, self.uid, self.gid)
            write_atomic_many(self.path, {name: self.desired[name] for name in changes.create + changes.update_content},
                              parent_mode=self.directory_mode)
            for name in changes.update_attributes:
                want = self.desired[name]
                _set_attributes(os.path.join(self.path, name), want.mode, want.uid, want.gid)
            for name in changes.remove:
                os.unlink(os.path.join(self.path, name))
            if changes.changed:
                for where in sorted({os.path.dirname(os.path.join(self.path, name)) for name in
                                     changes.create + changes.update_content + changes.remove}
                                    | {self.path}):
                    fsync_directory(where)

        result = {
            "changed": changes.changed or dir_changes is None or bool(dir_changes),
            "directory": "created" if dir_changes is None else ("updated" if dir_changes else "unchanged"),
            "created": changes.create,
            "updated": changes.updated,
            "removed": changes.remove,
            "unchanged": changes.unchanged,
        }
        if want_diff:
            result["diff"] = self._diff(current, changes, dir_changes)
        return result

    def _text(self, name, state):
        if state is None:
            return ""
        if name in self.secret_names:
            return "(secret content, %d bytes)\n" % len(state.content)
        return state.content.decode("utf-8", "replace")

    def _diff(self, current, changes, dir_changes):
        diffs = []
        if dir_changes is None:
            diffs.append({"before_header": self.path, "after_header": self.path,
                          "before": "(absent)\n", "after": "(directory)\n"})
        elif dir_changes:
            diffs.append({"before_header": self.path, "after_header": self.path,
                          "before": "", "after": "(directory %s changed)\n" % ", ".join(dir_changes)})
        for name in changes.create + changes.update_content + changes.update_attributes + changes.remove:
            path = os.path.join(self.path, name)
            before = current.get(name)
            after = self.desired.get(name)
            entry = {
                "before_header": path if before is not None else "%s (absent)" % path,
                "after_header": path if after is not None else "%s (absent)" % path,
                "before": self._text(name, before),
                "after": self._text(name, after),
            }
            if name in changes.update_attributes:
                entry["before"] = _attributes_line(before)
                entry["after"] = _attributes_line(after, before)
            elif name in self.secret_names and before is not None and after is not None:
                entry["after"] = "(new secret content, %d bytes)\n" % len(after.content)
            diffs.append(entry)
        return diffs


def invocation_args(params):
    """The module's arguments as its result echoes them (``invocation.module_args``), without file contents.

    A set of 1,000 files would otherwise travel back whole, and Ansible sanitises every string of a result
    against every no_log value (each secret file's content): O(files x secrets) for nothing. Each name keeps
    its size; secret contents show as Ansible shows any no_log value.
    """
    args = dict(params)
    args["files"] = {name: "(%d bytes)" % len(content.encode("utf-8")) for name, content in (params.get("files") or {}).items()}
    args["secret_files"] = {name: "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" for name in (params.get("secret_files") or {})}
    return args


def longest_leaf(value):
    """Length of the longest text among the scalars of ``value`` (a JSON-like result), as Ansible compares them.

    ``remove_values()`` masks a no_log value in a result string (or number) only where the value equals it or
    occurs in it, so a value longer than every leaf can never match: the caller may leave such values out
    of the comparison without changing the result.
    """
    longest = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, bytes):
            longest = max(longest, len(item.decode("utf-8", "surrogateescape")))
        else:
            longest = max(longest, len(str(item)))
    return longest


def _attributes_line(state, fallback=None):
    fallback = fallback or state

    def pick(attr):
        value = getattr(state, attr)
        return getattr(fallback, attr) if value is None else value

    return "mode=%04o uid=%d gid=%d\n" % (pick("mode"), pick("uid"), pick("gid"))
