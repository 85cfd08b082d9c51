"""Encrypted roots whose key never travels: LUKS2 bound to the provisioning host's Tang (docs/security.md).

The lab's LUKS nodes (`node_luks: true`: one `iscsi`, one `mirror`, one `image`) unlock their root at every boot
with Clevis, which asks Tang on the provisioning host; Tang answers the LUKS nodes' addresses only. The per-node
roots were encrypted in place at their node's first boot; the image version was encrypted once, on the
controller. What is read here: the dm-crypt stack and the LUKS header on the node, the node's boot data and the
whole HTTP tree on the provisioning host (scanned for the volume key), the node's volumes on the storage hosts
(a block the node reads in plain: located with filefrag, the same ciphertext on every path; the volumes
grepped), Tang's answers to a storage host, the recovery passphrase's keyslot (node_luks_recovery), and a Tang
key rotation (playbooks/tang_rotate.yml). Destructive, last: Tang stopped, the node does not mount its root and
says why on its console; Tang back, the next boot unlocks.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import shlex
import subprocess
import tarfile
import time
from typing import Any

import pytest

from lab.client import (LabInfo, console_text, labctl, record_timing, run_playbook, ssh_answers, wait_ssh,
                        wait_until)
from lab.faults import ssh
from lab.paths import Paths, cache_dir

# what the provisioning host serves (the roles' defaults; the lab keeps them): provisioning_host_http_root, the
# per-node files served to their node's address only (provisioning_host_restricted_root) and TFTP
SERVED = ("/srv/diskless/http", "/srv/diskless/restricted", "/srv/diskless/tftp")
RESTRICTED = "/srv/diskless/restricted"
LOCKED_TIMEOUT = 600

# on the node: the dm-crypt device under /, the device it decrypts and its LUKS header, and the volume key in
# hex: from the dm table, or (when cryptsetup put it in the kernel keyring: the table says ":64:logon:...")
# dumped with the passphrase Clevis recovers from Tang (into RAM, deleted at once)
ROOT_LUKS_SH = r"""
src=$(findmnt -no SOURCE /)
[ "$src" = overlay ] && src=$(findmnt -no SOURCE /run/diskless/lower)   # root mode image: the overlay's lower layer
d=$(basename "$(readlink -f "$src")")
name=$(cat /sys/block/$d/dm/name)
echo "uuid $(cat /sys/block/$d/dm/uuid)"
echo "name $name"
for s in /sys/block/$d/slaves/*; do b=${s##*/}; done
echo "backing $b"
key=$(dmsetup table --showkeys "$name" | awk '{print $5}')
case $key in
:*)
    slot=$(cryptsetup luksDump --dump-json-metadata "/dev/$b" | python3 -c 'import json, sys
print(next(t["keyslots"][0] for t in json.load(sys.stdin)["tokens"].values() if t["type"] == "clevis"))')
    umask 077; d=$(mktemp -d /run/dl-vk.XXXXXX); f=$d/key   # cryptsetup writes only a new file
    clevis luks pass -d "/dev/$b" -s "$slot" | cryptsetup luksDump --dump-volume-key --batch-mode --key-file - \
        --volume-key-file "$f" "/dev/$b" >/dev/null
    key=$(od -An -v -tx1 "$f" | tr -d ' \n'); rm -rf "$d" ;;
esac
echo "key $key"
cryptsetup luksDump --dump-json-metadata "/dev/$b"
"""


def luks_nodes(slices: dict[str, Any]) -> list[str]:
    found = sorted(h for h, s in slices.items() if s.get("role") == "compute" and s.get("luks"))
    if not found:
        pytest.skip("the inventory under test has no node_luks node")
    return found


def provisioning(slices: dict[str, Any]) -> tuple[str, str]:
    prov = next(h for h, s in slices.items() if s.get("role") == "provisioning")
    return prov, f"dl-lab-{prov}"


def root_luks(lab: LabInfo, node: str) -> dict[str, Any]:
    out = ssh(lab.ssh_config, node, ROOT_LUKS_SH)
    head, _brace, meta = out.partition("{")
    info: dict[str, Any] = {}
    for line in head.splitlines():
        key, _space, value = line.partition(" ")
        info[key] = value.strip()
    info["meta"] = json.loads("{" + meta)
    return info


def podman(container: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", "exec", container, *argv], capture_output=True, text=True, check=False)
    assert not check or proc.returncode == 0, f"{container}: {argv}: {proc.stderr}"
    return proc


def node_volumes(slices: dict[str, Any], node: str) -> list[tuple[str, str]]:
    """(storage host, zvol device) of every volume exported to ``node``."""
    return [(h, e["device"]) for h, s in sorted(slices.items()) if s.get("role") == "storage"
            for e in s["lio_iscsi"]["exports"] if any(a["node"] == node for a in e["acls"])]


def http_status(lab: LabInfo, host: str, url: str, post: bool = False) -> int:
    """The HTTP status ``host`` gets for ``url`` (python3 urllib: on every lab machine)."""
    script = ("import sys, urllib.request, urllib.error\n"
              "req = urllib.request.Request(sys.argv[1], data=b'{}' if sys.argv[2] == 'post' else None,\n"
              "                             headers={'Content-Type': 'application/jwk+json'})\n"
              "try:\n    print(urllib.request.urlopen(req, timeout=20).status)\n"
              "except urllib.error.HTTPError as e:\n    print(e.code)\n")
    return int(ssh(lab.ssh_config, host, f"python3 -c {shlex.quote(script)} {shlex.quote(url)} {'post' if post else 'get'}").strip())


# one 4 KiB block read with O_DIRECT (no stale page cache on a storage host), its sha256 and how often NEEDLE is in it
BLOCK_SH = ("dd if={dev} bs=4096 skip={block} count=1 iflag=direct status=none | python3 -c "
            "'import hashlib, sys; b = sys.stdin.buffer.read(); "
            "print(len(b), hashlib.sha256(b).hexdigest(), b.count(sys.argv[1].encode()))' {needle}")


def read_block(lab: LabInfo, host: str, dev: str, offset: int, needle: str) -> tuple[str, int]:
    """(sha256, occurrences of ``needle``) of the 4 KiB block at byte ``offset`` of ``dev`` on ``host``."""
    assert offset % 4096 == 0, f"{dev}: offset {offset} is not on a 4 KiB block"
    out = ssh(lab.ssh_config, host, BLOCK_SH.format(dev=dev, block=offset // 4096, needle=shlex.quote(needle)))
    size, sha, count = out.split()
    assert size == "4096", f"{host}: {dev} gave {size} bytes at {offset}"
    return sha, int(count)


def check_no_plaintext(lab: LabInfo, slices: dict[str, Any], node: str, path: str, needle: str) -> None:
    """``path`` on the node holds ``needle`` in its first block. Locate that block (filefrag) on the dm-crypt
    device, where it reads in plain (the control that the location is right), then the same bytes on the device
    under dm-crypt (past the LUKS header; past md's data offset on each member) and in every one of the node's
    volumes on the storage hosts: all the same ciphertext, with no ``needle`` in it."""
    frag = ssh(lab.ssh_config, node, f"filefrag -v -b4096 {shlex.quote(path)}")
    match = re.search(r"^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\.", frag, re.M)
    assert match, f"{node}: no first extent for {path} in filefrag's output:\n{frag}"
    plain_offset = int(match.group(1)) * 4096
    info = root_luks(lab, node)
    _sha, count = read_block(lab, node, "/dev/mapper/dlcrypt", plain_offset, needle)
    assert count, f"{node}: block {plain_offset // 4096} of /dev/mapper/dlcrypt does not hold {needle!r}"
    cipher_offset = int(info["meta"]["segments"]["0"]["offset"]) + plain_offset
    cipher, count = read_block(lab, node, f"/dev/{info['backing']}", cipher_offset, needle)
    assert not count, f"{node}: {needle!r} is in plain on /dev/{info['backing']}"
    member_offset = 0
    if info["backing"].startswith("md"):           # RAID1: every member holds the array's bytes past its data offset
        out = ssh(lab.ssh_config, node, f"cat /sys/block/{info['backing']}/md/dev-*/offset")
        offsets = {int(sectors) * 512 for sectors in out.split()}
        assert len(offsets) == 1, f"{node}: md members with different data offsets: {offsets}"
        member_offset = offsets.pop()
    volumes = node_volumes(slices, node)
    assert volumes, f"no volume of {node} in the storage slices"
    for host, device in volumes:
        sha, count = read_block(lab, host, device, member_offset + cipher_offset, needle)
        assert not count, f"{host}: {needle!r} of {node} is in plain in {device}"
        assert sha == cipher, f"{host}: {device} at {member_offset + cipher_offset} is not the block {node} wrote"
        # and nowhere else in the volume either (a stale plain copy: a block the in-place encryption missed)
        t0 = time.monotonic()
        found = ssh(lab.ssh_config, host, f"LANG=C grep -caF {shlex.quote(needle)} {device} || true", timeout=900).strip()
        record_timing(f"{host}: grep of {node}'s {device} for the marker", time.monotonic() - t0)
        assert found == "0", f"{host}: {needle!r} of {node} is in plain in {device}"


# ------------------------------------------------------------------------------------------ tests
def test_luks_roots_are_dm_crypt_bound_to_tang_with_keys_of_their_own(
        converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """Each LUKS node: / is dm-crypt (LUKS2) over its mode's device (the LUN, the md array, or under the RAM
    overlay the multipath map of the encrypted image), the header has one keyslot and a Clevis token (sss over
    every provisioning host's Tang), and no two nodes share a volume key (an image node has its image's)."""
    keys, digests = {}, {}
    for node in luks_nodes(slices):
        info = root_luks(lab, node)
        assert info["uuid"].startswith("CRYPT-LUKS2-") and info["name"] == "dlcrypt", info
        want = {"mirror": "md", "image": "dm-"}.get(slices[node]["root"], "sd")   # image: the multipath map
        assert info["backing"].startswith(want), info
        meta = info["meta"]
        # the Clevis slot, and the recovery passphrase's when the inventory sets one; the one-time key is gone
        assert len(meta["keyslots"]) == 1 + bool(slices[node]["luks_recovery"]), meta["keyslots"]
        tokens = [t for t in meta["tokens"].values() if t["type"] == "clevis"]
        assert len(tokens) == 1 and len(tokens[0]["keyslots"]) == 1, meta["tokens"]
        header = json.loads(_b64(tokens[0]["jwe"]["protected"]))
        assert header["clevis"]["pin"] == "sss", header
        urls = sorted(json.loads(_b64(c.split(".")[0]))["clevis"]["tang"]["url"] for c in header["clevis"]["sss"]["jwe"])
        assert urls == sorted(slices[node]["tang_urls"]), urls
        assert header["clevis"]["sss"]["t"] == slices[node]["tang_threshold"], header["clevis"]["sss"]
        keys[node] = info["key"]
        digests[node] = sorted(d["digest"] for d in meta["digests"].values())
    assert len(set(keys.values())) == len(keys), "two LUKS nodes share a volume key"
    assert len({tuple(d) for d in digests.values()}) == len(digests), digests


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_no_key_in_the_boot_data_nor_the_http_tree(converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """The volume key of every LUKS node (read from the node's kernel) appears nowhere on the provisioning host's
    HTTP tree, in no form; the nodes' boot files name Tang and no key."""
    prov, container = provisioning(slices)
    for node in luks_nodes(slices):
        key = root_luks(lab, node)["key"]
        assert re.fullmatch(r"[0-9a-f]{64,128}", key), "no volume key read from the node's dm table"
        raw = bytes.fromhex(key)
        forms = [key, key.upper(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]
        for form in forms:
            proc = podman(container, "grep", "-rlaF", form[:32], *SERVED, check=False)
            assert proc.returncode == 1 and not proc.stdout, f"{node}'s volume key found in {proc.stdout}"
        mac = next(n["mac_hyphen"] for n in slices[prov]["nodes"] if n["name"] == node)
        conf = podman(container, "cat", f"{RESTRICTED}/{mac}.conf").stdout
        assert "DL_LUKS='1'" in conf and "DL_TANG_URLS=" in conf, conf
        assert not re.search(r"^DL_\w*(KEY|PASS)\w*=", conf, re.M), conf
        recovery = slices[node]["luks_recovery"]
        if recovery:
            proc = podman(container, "grep", "-rlaF", recovery, *SERVED, check=False)
            assert proc.returncode == 1 and not proc.stdout, f"{node}'s recovery passphrase found in {proc.stdout}"


def test_the_storage_hosts_hold_no_plaintext(converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """A marker the node writes reads back in plain on the node and on its dm-crypt device, but the same block
    under dm-crypt, as the node sees it and in each of the node's zvols on the storage hosts, is ciphertext.
    (An image node writes into RAM: its image is checked by
    test_the_encrypted_image_is_one_ciphertext_that_only_tang_opens.)"""
    for node in (n for n in luks_nodes(slices) if slices[n]["root"] != "image"):
        marker = f"dl-luks-marker-{secrets.token_hex(12)}"
        ssh(lab.ssh_config, node, f"for i in $(seq 64); do echo {marker}; done > /var/tmp/dl-marker; sync; "
            "echo 3 > /proc/sys/vm/drop_caches")
        try:
            assert marker in ssh(lab.ssh_config, node, "cat /var/tmp/dl-marker")
            check_no_plaintext(lab, slices, node, "/var/tmp/dl-marker", marker)
        finally:
            ssh(lab.ssh_config, node, "rm -f /var/tmp/dl-marker", check=False)


def test_the_encrypted_image_is_one_ciphertext_that_only_tang_opens(
        converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """Root mode image with LUKS: the image was encrypted once (luks_image, on the controller) and every storage
    host exports the same ciphertext (one LUKS UUID, one serial: one multipath map on the node); a line of the
    image that the node reads in plain through its root is nowhere in the exported volume."""
    nodes = [n for n in luks_nodes(slices) if slices[n]["root"] == "image"]
    if not nodes:
        pytest.skip("no LUKS node of root mode image in the inventory under test")
    node = nodes[0]
    line = ssh(lab.ssh_config, node, "grep -m1 '^PRETTY_NAME=' /usr/lib/os-release").strip()
    assert line.startswith("PRETTY_NAME="), line
    volumes = node_volumes(slices, node)
    assert len(volumes) >= 2, f"{node}: the image should come from every storage host: {volumes}"
    uuids = {host: ssh(lab.ssh_config, host, f"blkid -p -o value -s UUID {device}").strip() for host, device in volumes}
    assert len(set(uuids.values())) == 1 and all(uuids.values()), f"{node}: LUKS UUIDs per storage host: {uuids}"
    kinds = {host: ssh(lab.ssh_config, host, f"blkid -p -o value -s TYPE {device}").strip() for host, device in volumes}
    assert set(kinds.values()) == {"crypto_LUKS"}, kinds
    # the block of os-release in the image's file system, read in plain through dm-crypt, is ciphertext on every path
    check_no_plaintext(lab, slices, node, "/run/diskless/lower/usr/lib/os-release", line)


def test_tang_answers_the_luks_nodes_only(converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """A storage host holds the ciphertext and the header but cannot have Tang recover the key: Tang refuses
    its address (advertisement and recovery), while the LUKS node itself is answered."""
    nodes = luks_nodes(slices)
    url = slices[nodes[0]]["tang_urls"][0]
    for node in nodes:
        assert http_status(lab, node, f"{url}/adv") == 200, node
    info = root_luks(lab, nodes[0])
    token = next(t for t in info["meta"]["tokens"].values() if t["type"] == "clevis")
    sss = json.loads(_b64(token["jwe"]["protected"]))["clevis"]["sss"]
    kid = json.loads(_b64(sss["jwe"][0].split(".")[0]))["kid"]      # the Tang key the node's secret is bound to
    for host in sorted(h for h, s in slices.items() if s.get("role") == "storage"):
        assert http_status(lab, host, f"{url}/adv") == 403, host
        assert http_status(lab, host, f"{url}/rec/{kid}", post=True) == 403, host
    plain = [h for h, s in slices.items() if s.get("role") == "compute" and not s.get("luks")]
    for host in plain[:1]:
        assert http_status(lab, host, f"{url}/adv") == 403, host


def test_the_recovery_passphrase_opens_the_root_and_nothing_else_does(
        converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """node_luks_recovery (vault) is a keyslot of its own, beside the Clevis one: it opens the LUKS header on the
    node (as typed at the console when no Tang answers); a wrong passphrase opens nothing."""
    nodes = [n for n in luks_nodes(slices) if slices[n]["luks_recovery"]]   # (never an image node: the planner refuses)
    if not nodes:
        pytest.skip("no LUKS node of the inventory has node_luks_recovery")
    for node in nodes:
        info = root_luks(lab, node)
        clevis = {int(s) for t in info["meta"]["tokens"].values() if t["type"] == "clevis" for s in t["keyslots"]}
        [recovery_slot] = [int(s) for s in info["meta"]["keyslots"] if int(s) not in clevis]
        dev = "/dev/" + info["backing"]
        for passphrase, slot, want in ((slices[node]["luks_recovery"], recovery_slot, "0"),
                                       (slices[node]["luks_recovery"] + "x", recovery_slot, "2")):
            rc = ssh(lab.ssh_config, node, f"rc=0; printf %s {shlex.quote(passphrase)} | cryptsetup open --test-passphrase "
                     f"--key-slot {slot} --key-file - {dev} || rc=$?; echo $rc").strip()
            assert rc == want, f"{node}: cryptsetup open --test-passphrase (keyslot {slot}) exited {rc}, not {want}"


def tang_keys(container: str) -> dict[str, list[str]]:
    return json.loads(podman(container, "/usr/local/sbin/diskless-tang-keys", "list", "/var/lib/tang").stdout)


def bound_kids(lab: LabInfo, node: str) -> list[str]:
    info = root_luks(lab, node)
    token = next(t for t in info["meta"]["tokens"].values() if t["type"] == "clevis")
    sss = json.loads(_b64(token["jwe"]["protected"]))["clevis"]["sss"]
    return sorted(json.loads(_b64(c.split(".")[0]))["kid"] for c in sss["jwe"])


def test_tang_key_rotation_binds_every_node_anew_then_retires_the_old_keys(
        converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """playbooks/tang_rotate.yml: new Tang keys, every LUKS node bound to them, the old keys removed (and the
    controller's backup holding the new ones); each node's root still unlocks through Tang, which now has only
    the new keys (and the destructive Tang test below reboots a node on them). An encrypted image (LUKS nodes of
    root mode image) is read-only: bound to the old keys, it keeps them: the run binds every other node anew,
    names the image and retires nothing."""
    nodes = luks_nodes(slices)
    images = sorted({slices[n]["image"] for n in nodes if slices[n]["root"] == "image"})
    prov, container = provisioning(slices)
    before = tang_keys(container)
    assert before["advertised"] and not before["hidden"], before
    for node in nodes:
        assert set(bound_kids(lab, node)) <= set(before["advertised"]), node
    run = run_playbook(lab.inventory, "tang_rotate.yml", "rotate the Tang keys, bind every LUKS node anew",
                       key="tang_rotate", check=not images)
    after = tang_keys(container)
    assert after["advertised"] and not set(after["advertised"]) & set(before["advertised"]), (before, after)
    if images:
        assert run["rc"] != 0 and len(run["failed"]) == 1, run["failed"]
        assert "Keep the old keys while an image is still bound to them" in run["failed"][0], run["failed"]
        assert all(image in run["failed"][0] for image in images) and "new image version" in run["failed"][0], run["failed"]
        assert sorted(after["hidden"]) == sorted(before["advertised"]), after     # kept: the image needs them
    else:
        assert not after["hidden"], after
    for node in nodes:
        kids = bound_kids(lab, node)
        # per-node roots: bound to the new keys only; an image: still to the old (hidden, still answered) keys
        want = set(before["advertised"]) if slices[node]["root"] == "image" else set(after["advertised"])
        assert kids and set(kids) <= want, (node, kids, after)
        # the root's key comes back from Tang
        out = ssh(lab.ssh_config, node, "b=$(cryptsetup status dlcrypt | awk '$1 == \"device:\" {print $2}'); "
                  "slot=$(clevis luks list -d $b | cut -d: -f1 | head -1); "
                  "clevis luks pass -d $b -s $slot | wc -c", check=False)
        assert int(out.strip().splitlines()[-1]) > 0, f"{node}: clevis luks pass failed after the rotation: {out}"
    backup = Paths(cache_dir()).run / "tang-backup" / f"{prov}.tang"     # the lab inventory's backup dir
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(backup.read_text()))) as tar:
        names = sorted(m.name for m in tar.getmembers())
    listed = podman(container, "sh", "-c", "cd /var/lib/tang && ls -A | sort").stdout.split()
    assert names == listed, (names, listed)


@pytest.mark.destructive
def test_with_tang_stopped_the_node_does_not_mount_its_root_and_says_why(
        converged: None, lab: LabInfo, slices: dict[str, Any]) -> None:
    """Tang stopped: the LUKS node, power-cycled, stays in its initramfs saying on the console that it cannot
    unlock; Tang back, the next boot unlocks and the node runs from its encrypted root again."""
    node = next(n for n in luks_nodes(slices) if slices[n]["root"] == "iscsi")
    _prov, container = provisioning(slices)
    podman(container, "systemctl", "stop", "tangd.socket")
    try:
        before = console_text(node).count("luks: cannot unlock")
        labctl("down", node)
        labctl("up", node)
        wait_until(f"{node}: the console says it cannot unlock its root",
                   lambda: console_text(node).count("luks: cannot unlock") > before, LOCKED_TIMEOUT)
        assert not ssh_answers(lab.ssh_config, node), f"{node} answers SSH without Tang"
    finally:
        podman(container, "systemctl", "start", "tangd.socket")
    labctl("down", node)
    t0 = time.monotonic()
    labctl("up", node)
    wait_ssh(lab.ssh_config, node)
    record_timing(f"{node}: power-on to SSH (iSCSI root + LUKS unlock, reboot)", time.monotonic() - t0,
                  key="boot_iscsi_luks", node=node)
    info = root_luks(lab, node)
    assert info["uuid"].startswith("CRYPT-LUKS2-"), info
