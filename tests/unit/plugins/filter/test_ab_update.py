# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the A/B update role: ab_update_grub_cfg (the grub.cfg of module_utils grub, checked by GRUB's own
script parser when installed) and ab_update_partners (who holds the other path of this host's node roots)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.diskless.cluster.plugins.filter.ab_update import ab_update_grub_cfg, ab_update_partners
from ansible_collections.diskless.cluster.plugins.module_utils.grub import render_grub_cfg
from ansible_collections.diskless.cluster.plugins.module_utils.plan import build_plan


def _plan_base():
    """The example inventory of the planner tests (tests/unit/plugins/module_utils/plan_base.py), by path."""
    path = Path(__file__).resolve().parents[1] / "module_utils" / "plan_base.py"
    spec = importlib.util.spec_from_file_location("plan_base_for_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


inventory = _plan_base().inventory

SCRIPT_CHECK = shutil.which("grub-script-check")
ENTRIES = {
    "A": {"fs_uuid": "0b6c7e2a-1111-4c55-9d1e-5f0000000001", "kernel": "/boot/vmlinuz-6.1.0-40-amd64",
          "initrd": "/boot/initrd.img-6.1.0-40-amd64", "args": "ro console=ttyS0,115200", "title": "slot A (initial)"},
    "B": {"fs_uuid": "0b6c7e2a-1111-4c55-9d1e-5f0000000002"},
}


def test_grub_ab_cfg_is_render_grub_cfg():
    text = ab_update_grub_cfg(ENTRIES, slots=["A", "B"], env_fs_uuid="0b6c7e2a-1111-4c55-9d1e-5f00000000ee", panic=30)
    assert text == render_grub_cfg(["A", "B"], ENTRIES, env_file="/grub/grubenv",
                                   env_fs_uuid="0b6c7e2a-1111-4c55-9d1e-5f00000000ee", panic=30)
    assert "search --no-floppy --fs-uuid --set=dl_ab_env 0b6c7e2a-1111-4c55-9d1e-5f00000000ee" in text
    assert "linux /boot/vmlinuz-6.1.0-40-amd64 root=UUID=0b6c7e2a-1111-4c55-9d1e-5f0000000001 ro console=ttyS0,115200 " \
           "dl.slot=A panic=30" in text
    assert 'menuentry "slot A (initial)" --id dl_ab_A {' in text
    # slots default to the sorted keys: A is entry 0, B entry 1 (fallback indexes)
    assert ab_update_grub_cfg(ENTRIES, env_fs_uuid="0b6c7e2a-1111-4c55-9d1e-5f00000000ee") == text


@pytest.mark.skipif(SCRIPT_CHECK is None, reason="grub-script-check (grub-common) is not installed")
def test_grub_ab_cfg_parses_with_grub(tmp_path):
    cfg = tmp_path / "grub.cfg"
    cfg.write_text("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n"
                   + ab_update_grub_cfg(ENTRIES, env_fs_uuid="0b6c7e2a-1111-4c55-9d1e-5f00000000ee"))
    subprocess.run([SCRIPT_CHECK, str(cfg)], check=True)


@pytest.mark.parametrize("entries, kwargs, words", [
    (["A"], {}, "must map each slot"),
    ({"A": ENTRIES["A"]}, {"slots": ["A", "B"]}, "no menu entry for slot B"),
    ({"A": dict(ENTRIES["A"], args='ro "x'), "B": ENTRIES["B"]}, {}, "slot A args"),
    ({"A": dict(ENTRIES["A"], fs_uuid=""), "B": ENTRIES["B"]}, {}, "fs_uuid"),
])
def test_grub_ab_cfg_refuses(entries, kwargs, words):
    with pytest.raises(AnsibleFilterError) as exc:
        ab_update_grub_cfg(entries, **kwargs)
    assert words in str(exc.value) and str(exc.value).startswith("ab_update_grub_cfg: ")


def plan(**hosts):
    return build_plan(*inventory(hosts=hosts))


def test_storage_partners_mirror_and_image_roots():
    p = plan()  # node001 iscsi, node002 mirror (sch1 + sch2), node003 image (every storage host)
    assert ab_update_partners(p, "sch1") == [{"host": "sch2", "nodes": ["node002", "node003"], "modes": ["mirror", "image"], "pool": "tank"}]
    assert ab_update_partners(p, "sch2") == [{"host": "sch1", "nodes": ["node002", "node003"], "modes": ["mirror", "image"], "pool": "tank"}]


def test_storage_partners_none_without_second_paths():
    p = plan(node002={"node_root": "iscsi"}, node003={"node_root": "iscsi"})
    assert ab_update_partners(p, "sch1") == [] and ab_update_partners(p, "sch2") == []


def test_storage_partners_three_hosts_only_the_holders():
    p = plan(sch3={"group": "storage", "vars": {"ansible_host": "10.77.0.13", "storage_pool_devices": ["/dev/vdb"]}},
             node002={"node_storage": ["sch1", "sch3"]}, node003={"node_root": "iscsi"})
    assert ab_update_partners(p, "sch1") == [{"host": "sch3", "nodes": ["node002"], "modes": ["mirror"], "pool": "tank"}]
    assert ab_update_partners(p, "sch2") == []


@pytest.mark.parametrize("value, host, words", [
    ({}, "sch1", "must be the cluster plan"),
    ("plan", "sch1", "must be the cluster plan"),
])
def test_storage_partners_refuses(value, host, words):
    with pytest.raises(AnsibleFilterError) as exc:
        ab_update_partners(value, host)
    assert words in str(exc.value)


def test_storage_partners_unknown_host():
    with pytest.raises(AnsibleFilterError) as exc:
        ab_update_partners(plan(), "node001")
    assert "node001 is not a storage host" in str(exc.value)
