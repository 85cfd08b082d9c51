# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""THE atomic file writer of the collection (PRIVATE to the collection).

A file's new content goes to a temporary file whose name starts with ``.`` in the same directory, is made
durable, then ``rename()``d over the final name: a reader (dnsmasq's inotify watcher, nginx, GRUB, a
rebooting host) sees the old file or the new one, never a half file, and never the dot-named temporary.

``states`` map names to objects with ``content`` (bytes), ``mode``, ``uid`` and ``gid`` (None: default mode,
owner unchanged), such as module_utils file_set's ``FileState``.
"""

from __future__ import annotations

import os
import tempfile

# Above this many files in one run, the temporary files are made durable with one sync() instead of one
# fsync() each: 2,000 fsyncs cost ~5 s, one sync well under a second, with the same crash guarantee
# (every file's content is on disk before any rename makes it visible).
BATCH_SYNC_THRESHOLD = 16
TEMP_PREFIX = ".file_set-"


class FileContent:
    """One file to write: ``content`` bytes, ``mode`` (None: ``default_mode``), ``uid``/``gid`` (None: as made)."""

    __slots__ = ("content", "mode", "uid", "gid")

    def __init__(self, content, mode=None, uid=None, gid=None):
        self.content, self.mode, self.uid, self.gid = content, mode, uid, gid


def _stage(where, state, default_mode, sync_now, prefix):
    """Write ``state`` to a dot-prefixed temporary file in ``where``; return its name."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=where)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(state.content)
            f.flush()
            if state.uid is not None or state.gid is not None:
                os.fchown(f.fileno(), -1 if state.uid is None else state.uid, -1 if state.gid is None else state.gid)
            os.fchmod(f.fileno(), default_mode if state.mode is None else state.mode)
            if sync_now:
                os.fsync(f.fileno())
    except BaseException:
        unlink_quietly(tmp)
        raise
    return tmp


def unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic_many(path, states, default_mode=0o644, parent_mode=None, prefix=TEMP_PREFIX):
    """Write every ``{name: state}`` below directory ``path`` through temporary files, make them durable, then
    ``rename()`` each.

    A name may be a relative path: its temporary file is made in its own directory (created with
    ``parent_mode``, default 0755, when missing) so that the rename stays atomic."""
    batch = len(states) > BATCH_SYNC_THRESHOLD
    staged = []
    try:
        for name, state in states.items():
            where = os.path.dirname(os.path.join(path, name))
            _make_parents(path, where, 0o755 if parent_mode is None else parent_mode)
            staged.append((_stage(where, state, default_mode, not batch, prefix), name))
        if batch:
            os.sync()
        while staged:
            tmp, name = staged[0]
            os.rename(tmp, os.path.join(path, name))
            staged.pop(0)
    finally:
        for tmp, _name in staged:
            unlink_quietly(tmp)


def write_atomic(path, content, mode=0o644, prefix=TEMP_PREFIX):
    """Write ``content`` (bytes) to ``path`` atomically with permission bits ``mode``; missing parent
    directories are made (0755)."""
    parent, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    write_atomic_many(parent, {name: FileContent(content, mode)}, prefix=prefix)


def same_file(path, content, mode):
    """Whether ``path`` holds exactly ``content`` (bytes) with permission bits ``mode``."""
    try:
        with open(path, "rb") as handle:
            if handle.read() != content:
                return False
        return (os.stat(path).st_mode & 0o7777) == mode
    except OSError:
        return False


def _make_parents(top, where, mode):
    """Create the missing directories from ``top`` down to ``where``, each with exactly ``mode``."""
    missing = []
    while where != top and not os.path.isdir(where):
        missing.append(where)
        where = os.path.dirname(where)
    for directory in reversed(missing):
        os.mkdir(directory)
        os.chmod(directory, mode)  # not subject to the umask


def fsync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
