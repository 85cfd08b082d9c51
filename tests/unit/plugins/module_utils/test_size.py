# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/_size.py: THE user-written size (binary units) and its short spelling."""

from __future__ import annotations

import pytest

from ansible_collections.diskless.cluster.plugins.module_utils._size import format_size, parse_size


@pytest.mark.parametrize("value, expected", [
    ("2G", 2 << 30), ("512M", 512 << 20), ("512MiB", 512 << 20), ("512mib", 512 << 20), ("1.5T", 3 << 39),
    ("10GiB", 10 << 30), ("2GB", 2 << 30), ("100B", 100), ("1k", 1024), ("1.5K", 1536), ("0.5G", 512 << 20),
    (" 16K ", 16384), ("16 K", 16384), ("1P", 1 << 50), (4096, 4096), ("4096", 4096), (1, 1), (4096.0, 4096),
])
def test_sizes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value, message", [
    ("", "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("G", "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("-1G", "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("2 GB extra", "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("10X", "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("1E", "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("1e3", "is not a size (use bytes or a number with K, M, G, T or P)"),
    (None, "is not a size (use bytes or a number with K, M, G, T or P)"),
    ("1.3", "is not a whole, positive number of bytes"),
    ("1.3B", "is not a whole, positive number of bytes"),
    ("0", "is not a whole, positive number of bytes"),
    ("0.5", "is not a whole, positive number of bytes"),
    (0, "must be positive"),
    (-5, "must be positive"),
    (True, "is not a size"),
])
def test_not_sizes(value, message):
    with pytest.raises(ValueError) as exc:
        parse_size(value)
    assert str(exc.value) == message


@pytest.mark.parametrize("size, text", [
    (2 << 30, "2G"), (1536 << 10, "1536K"), (3 << 39, "1536G"), (1 << 50, "1P"), (5 << 40, "5T"), (1024, "1K"),
    (1000, "1000 bytes"), (1, "1 bytes"),
])
def test_format_size(size, text):
    assert format_size(size) == text


@pytest.mark.parametrize("size", [1 << 10, 7 << 20, 3 << 30, 1 << 40, 9 << 50])
def test_format_then_parse_is_the_identity(size):
    assert parse_size(format_size(size)) == size
