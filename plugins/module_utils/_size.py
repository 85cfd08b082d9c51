# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""THE size a user writes (PRIVATE to the collection): ``2G``, ``512MiB``, ``1.5T``, ``4096`` -> bytes, and back.

Binary units (powers of 1024, as ZFS uses), suffixes K, M, G, T, P with an optional ``B``/``iB``, any case.
ansible-core's ``human_to_bytes`` does not fit: it refuses ``512MiB`` and ``1Kb`` and its messages name no
remedy; ``bytes_to_human`` prints ``2.00 GB`` where the inventory and the messages use ``2G``.
A byte count that a tool prints (``zfs list -p``) is not a user size: parse it with ``int()``.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(value) -> int:
    """Bytes of ``2G``, ``512MiB``, ``1.5T`` or a positive byte count; ValueError (a phrase to put after the
    field's name) for anything else, zero included."""
    if isinstance(value, bool):
        raise ValueError("is not a size")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError("is not a size (use bytes or a number with K, M, G, T or P)")
    number = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if number < 1 or number != int(number):
        raise ValueError("is not a whole, positive number of bytes")
    return int(number)


def format_size(size: int) -> str:
    """The shortest exact spelling: ``2G``, ``1536K``; ``1000 bytes`` when no unit divides it."""
    for unit, factor in (("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor and size % factor == 0:
            return "%d%s" % (size // factor, unit)
    return "%d bytes" % size
