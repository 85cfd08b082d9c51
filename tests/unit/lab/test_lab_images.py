"""lab/images.py without building anything: recipes and the image cache key.

The cache key is a pinned function of the recipe files and the lab's SSH keys: the images in every
$DL_CACHE/images/ stay valid only as long as it computes exactly the same hash (a change that must rebuild
the images bumps IMAGE_BUILDER_VERSION instead)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab import images
from lab.paths import REPO, Paths
from lab.util import LabError

PIN_RECIPE = """suite = "bookworm"
mirror = "http://deb.debian.org/debian"
components = ["main"]
packages = ["linux-image-amd64", "openssh-server"]
disk_size = "2G"
hooks = ["hooks/a.sh"]

[files]
"/etc/x.conf" = "files/x.conf"
"""
# computed by lab/labctl.py (the harness before it became this package) for the recipe above
PIN_KEY = "748ee80656045c7b016d7d6dc11a48ba97e2b9a15bbb8492d2476e31fcc151b7"


def lab_keys(tmp_path: Path) -> Paths:
    p = Paths(tmp_path / "cache")
    p.ssh.mkdir(parents=True)
    for key in (p.ssh_key, p.host_key):
        key.write_text("private\n")
        key.with_suffix(".pub").write_text(f"ssh-ed25519 AAAA {key.name}\n")
    return p


def recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy_repo: bool) -> Path:
    src = tmp_path / "lab" / "images"
    if copy_repo:
        shutil.copytree(REPO / "lab" / "images", src)
    else:
        (src / "hooks").mkdir(parents=True)
        (src / "files").mkdir()
    monkeypatch.setattr(images, "IMAGES_SRC", src)
    monkeypatch.setattr(images, "REPO", tmp_path)
    return src


def test_image_cache_key_is_the_pinned_function_of_the_recipe(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    src = recipes(tmp_path, monkeypatch, copy_repo=False)
    (src / "pin.toml").write_text(PIN_RECIPE)
    (src / "hooks" / "a.sh").write_text("#!/bin/sh\necho a\n")
    (src / "files" / "x.conf").write_text("x = 1\n")
    p = lab_keys(tmp_path)
    recipe = images.Recipe.load("pin")
    assert recipe.cache_key(p) == PIN_KEY
    assert images.image_dir(p, recipe) == p.images / f"pin-{PIN_KEY[:16]}"


def test_image_cache_key_follows_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = recipes(tmp_path, monkeypatch, copy_repo=True)
    p = lab_keys(tmp_path)

    def key() -> str:
        return images.Recipe.load("storage").cache_key(p)

    first = key()
    assert key() == first
    hook = src / "hooks" / "vm-base.sh"
    hook.write_text(hook.read_text() + "\n# changed\n")
    second = key()
    assert second != first
    p.ssh_key.with_suffix(".pub").write_text("ssh-ed25519 BBBB other\n")
    assert key() not in (first, second)
    assert images.image_dir(p, images.Recipe.load("storage")).name.startswith("storage-")


def test_a_recipe_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = recipes(tmp_path, monkeypatch, copy_repo=False)
    (src / "bad.toml").write_text('suite = "bookworm"\nhooks = ["hooks/none.sh"]\n[files]\n"etc/x" = "files/x"\n')
    with pytest.raises(LabError) as exc:
        images.Recipe.load("bad")
    lines = [line.strip() for line in str(exc.value).splitlines()[1:]]
    assert lines == ["mirror: required (str)", "components: required (list)", "packages: required (list)",
                     "disk_size: required (str)", "lab/images/hooks/none.sh: missing", "lab/images/files/x: missing",
                     "files: 'etc/x': must be an absolute path in the image"]
    with pytest.raises(LabError, match="no image recipe 'nope'.*known images: bad"):
        images.Recipe.load("nope")


def test_the_build_runs_mmdebstrap_through_the_collections_builder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab image's mmdebstrap command line (built by plugins/module_utils/image.py): the recipe's packages,
    no docs, the baked files and the lab's keys installed first, then the recipe's hooks in order."""
    src = recipes(tmp_path, monkeypatch, copy_repo=False)
    (src / "pin.toml").write_text(PIN_RECIPE)
    (src / "hooks" / "a.sh").write_text("#!/bin/sh\necho a\n")
    (src / "files" / "x.conf").write_text("x = 1\n")
    p = lab_keys(tmp_path)
    calls: list[list[str]] = []
    monkeypatch.setattr(images.subprocess, "run",
                        lambda argv, **kw: calls.append(argv) or subprocess.CompletedProcess(argv, 0))
    images._mmdebstrap(p, images.Recipe.load("pin"), tmp_path / "rootfs", tmp_path / "build.log")
    assert calls == [[
        "mmdebstrap", "--mode=root", "--format=directory", "--variant=minbase", "--components=main",
        '--aptopt=APT::Install-Recommends "false"', '--aptopt=APT::Install-Suggests "false"',
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/lintian/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--include=linux-image-amd64,openssh-server",
        f'--customize-hook=install -D -m 0644 {src}/files/x.conf "$1"/etc/x.conf',
        f'--customize-hook=install -D -m 0600 {p.ssh_key}.pub "$1"/root/.ssh/authorized_keys',
        f'--customize-hook=install -D -m 0600 {p.host_key} "$1"/etc/ssh/ssh_host_ed25519_key',
        f'--customize-hook=install -D -m 0644 {p.host_key}.pub "$1"/etc/ssh/ssh_host_ed25519_key.pub',
        '--customize-hook=chmod 0700 "$1/root/.ssh"',
        f'--customize-hook=bash {src}/hooks/a.sh "$1"',
        "bookworm", str(tmp_path / "rootfs"), "http://deb.debian.org/debian",
    ]]
