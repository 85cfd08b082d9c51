"""Where the lab keeps things: the repository's recipes and inventory, and the cache (images, SSH keys, run
state, console logs) under $DL_CACHE (default ~/.cache/diskless-cluster)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMAGES_SRC = REPO / "lab" / "images"
DEFAULT_INVENTORY = REPO / "inventories" / "lab"


def cache_dir() -> Path:
    env = os.environ.get("DL_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "diskless-cluster"


@dataclasses.dataclass(frozen=True)
class Paths:
    cache: Path

    @property
    def images(self) -> Path:
        # images are keyed by a hash of their recipe, so labs with caches of their own can share them
        env = os.environ.get("DL_IMAGE_CACHE")
        return Path(env) if env else self.cache / "images"

    @property
    def lab(self) -> Path:
        return self.cache / "lab"

    @property
    def ssh(self) -> Path:
        return self.lab / "ssh"

    @property
    def run(self) -> Path:
        return self.lab / "run"

    @property
    def logs(self) -> Path:
        return self.lab / "logs"

    @property
    def state(self) -> Path:
        return self.run / "lab.json"

    @property
    def ssh_key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.ssh / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.ssh / "config"

    def vm_dir(self, name: str) -> Path:
        return self.run / "vms" / name


def read_state(p: Paths) -> dict[str, Any] | None:
    """The running lab's state (lab/run/lab.json: netns, bridge, inventory, accel), None when down."""
    try:
        return json.loads(p.state.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(p: Paths, data: dict[str, Any]) -> None:
    tmp = p.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.rename(p.state)
