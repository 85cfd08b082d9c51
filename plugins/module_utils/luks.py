# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The LUKS2 root of a booted node (PRIVATE to the collection): which keyslots Clevis owns, which one is the
recovery passphrase's, and the cryptsetup/clevis calls that read and change them.

A node's LUKS root (``node_luks``) has keyslots of two kinds: the ones a Clevis token names (bound to the
provisioning hosts' Tang; the initramfs unlocks with them) and at most one other, the recovery passphrase
(``node_luks_recovery``) that an admin types when no Tang answers. Every keyslot that no Clevis token names is
taken for a recovery keyslot: the first boot's one-time keyslot is removed by the initramfs, nothing else adds one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError


RECOVERY_PBKDF_MEMORY_KIB = 262144


class LuksError(Exception):
    """What is wrong with the node's LUKS root, in one line that says what to do."""


def parse_status(text):
    """The backing device of an active dm-crypt mapping, from ``cryptsetup status NAME``; None if not LUKS."""
    fields = {}
    for line in (text or "").splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if not fields.get("type", "").startswith("LUKS"):
        return None
    return fields.get("device") or None


def keyslots(metadata):
    """``(clevis, other)``: the sorted keyslot numbers a Clevis token names, and the others, from the LUKS2 JSON
    metadata (``cryptsetup luksDump --dump-json-metadata``)."""
    meta = json.loads(metadata) if isinstance(metadata, str) else metadata
    slots = sorted(int(k) for k in (meta.get("keyslots") or {}))
    clevis = set()
    for token in (meta.get("tokens") or {}).values():
        if token.get("type") == "clevis":
            clevis.update(int(k) for k in token.get("keyslots") or [])
    return sorted(s for s in slots if s in clevis), [s for s in slots if s not in clevis]


def recovery_plan(clevis, other, opens):
    """What to do to make the recovery passphrase the node's only non-Clevis keyslot.

    ``opens``: the keyslot the wanted passphrase opens, or None. Returns ``(add, kill)``: whether to add a keyslot
    for it, and the keyslots to remove (any other non-Clevis keyslot: a replaced recovery passphrase must stop
    working). Raises LuksError when no Clevis keyslot is left to unlock the root with.
    """
    if not clevis:
        raise LuksError("the LUKS root has no keyslot bound to Tang by Clevis (is its first boot finished?): "
                        "refusing to touch its keyslots")
    if opens is not None and opens in clevis:
        raise LuksError("node_luks_recovery opens keyslot %d, which Clevis owns: choose another passphrase" % opens)
    return opens is None, [s for s in other if s != opens]


class Luks:
    """cryptsetup and clevis on one LUKS device, through a ``_run.Runner``."""

    def __init__(self, run, device):
        self.run, self.device = run, device

    @classmethod
    def of_mapping(cls, run, name):
        """The LUKS device under the active mapping ``/dev/mapper/NAME``; LuksError if there is none."""
        rc, out, err = run.raw(["cryptsetup", "status", name])
        device = parse_status(out) if rc == 0 else None
        if device is None:
            raise LuksError("/dev/mapper/%s is not an open LUKS device (%s): only a node_luks root has a recovery "
                            "keyslot" % (name, (err or out or "not active").strip().splitlines()[0]))
        return cls(run, device)

    def slots(self):
        try:
            return keyslots(self.metadata())
        except (ValueError, AttributeError, TypeError) as exc:
            raise LuksError("cannot read the LUKS2 keyslots of %s: %s" % (self.device, exc)) from None

    def metadata(self):
        out = self.run(["cryptsetup", "luksDump", "--dump-json-metadata", self.device],
                       "reading the LUKS2 metadata of %s" % self.device)
        try:
            return json.loads(out)
        except ValueError as exc:
            raise LuksError("cannot read the LUKS2 metadata of %s: %s" % (self.device, exc)) from None

    def bindings(self):
        try:
            return tang_bindings(self.metadata())
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            raise LuksError("cannot read the Clevis tokens of %s: %s" % (self.device, exc)) from None

    def regen(self, slot):
        """Bind keyslot ``slot`` anew to the keys its Tang servers advertise now (``clevis luks regen``)."""
        self.run(["clevis", "luks", "regen", "-q", "-d", self.device, "-s", str(slot)],
                 "binding keyslot %d of %s to the new Tang keys (clevis luks regen)" % (slot, self.device))

    def opens(self, passphrase, candidates):
        """The keyslot among ``candidates`` that ``passphrase`` opens, or None."""
        for slot in candidates:
            rc, _out, _err = self.run.raw(["cryptsetup", "open", "--test-passphrase", "--key-slot", str(slot),
                                           "--key-file", "-", self.device], data=passphrase)
            if rc == 0:
                return slot
        return None

    def clevis_key(self, slot):
        """The passphrase of Clevis keyslot ``slot``, recovered through Tang (SECRET)."""
        return self.run(["clevis", "luks", "pass", "-d", self.device, "-s", str(slot)],
                        "recovering the key of keyslot %d of %s from Tang (clevis luks pass)" % (slot, self.device))

    def add(self, existing, passphrase, iter_time):
        """A new keyslot for ``passphrase``, unlocked with ``existing``; both secrets through pipes, never argv."""
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, passphrase.encode() if isinstance(passphrase, str) else passphrase)
            os.close(write_fd)
            write_fd = None
            argv = [self.run.bin("cryptsetup"), "luksAddKey", "--batch-mode", "--pbkdf", "argon2id",
                    # the one keyslot a person chose: argon2id, with memory that a small node's initramfs can
                    # spare when it is typed at the console
                    "--pbkdf-memory", str(RECOVERY_PBKDF_MEMORY_KIB), "--iter-time", str(iter_time),
                    "--key-file", "-", self.device,
                    "/dev/fd/%d" % read_fd]
            rc, out, err = self.run.module.run_command(argv, data=existing, binary_data=True, check_rc=False,
                                                       expand_user_and_vars=False, pass_fds=(read_fd,))
        finally:
            os.close(read_fd)
            if write_fd is not None:
                os.close(write_fd)
        if rc != 0:
            raise CommandError("adding the recovery keyslot to %s failed (cryptsetup, rc %d): %s"
                               % (self.device, rc, (err or out or "no error output").strip().splitlines()[0]),
                               argv, rc, out, err)

    def kill(self, slot):
        self.run(["cryptsetup", "luksKillSlot", "--batch-mode", self.device, str(slot)],
                 "removing keyslot %d of %s" % (slot, self.device))


def _b64url_json(text):
    text = text.split(".", 1)[0]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _kids(header):
    """The Tang exchange keys (their S256 thumbprints, "kid") a Clevis JWE header needs, through sss."""
    clevis = header.get("clevis") or {}
    if clevis.get("pin") == "tang":
        return [header.get("kid")]
    if clevis.get("pin") == "sss":
        return [kid for jwe in (clevis.get("sss") or {}).get("jwe") or [] for kid in _kids(_b64url_json(jwe))]
    return []


def tang_bindings(metadata):
    """``{keyslot: [kid, ...]}``: for each keyslot of a Clevis token, the Tang keys its binding needs (a keyslot
    bound with another pin, e.g. tpm2, needs none), from the LUKS2 JSON metadata."""
    meta = json.loads(metadata) if isinstance(metadata, str) else metadata
    out = {}
    for token in (meta.get("tokens") or {}).values():
        if token.get("type") != "clevis":
            continue
        kids = sorted(set(_kids(_b64url_json((token.get("jwe") or {}).get("protected") or ""))))
        for slot in token.get("keyslots") or []:
            out[int(slot)] = kids
    return out


def stale_bindings(bindings, advertised):
    """The keyslots bound to a Tang key that is not among ``advertised`` (the keys the Tang servers advertise now)."""
    return sorted(slot for slot, kids in bindings.items() if any(kid not in advertised for kid in kids))


def sss_policy(threshold, pins):
    """The Clevis ``sss`` configuration that binds to Tang servers offline: ``pins`` is a list of ``{"url": URL,
    "adv": ADVERTISEMENT}`` (each server's signed advertisement, as JSON, read from the server itself over a trusted
    channel), ``threshold`` how many of them must answer to unlock."""
    if not pins:
        raise LuksError("no Tang server to bind to: the cluster has no provisioning host")
    if not 1 <= threshold <= len(pins):
        raise LuksError("threshold %r must be from 1 to the number of Tang servers (%d)" % (threshold, len(pins)))
    tang = []
    for pin in pins:
        adv = pin.get("adv")
        if isinstance(adv, str):
            try:
                adv = json.loads(adv)
            except ValueError:
                adv = None
        if not isinstance(adv, dict) or "payload" not in adv:
            raise LuksError("the Tang advertisement of %s is not a JWS (JSON with a payload): read it again with "
                            "diskless-tang-keys adv on its provisioning host" % pin.get("url"))
        tang.append({"url": pin["url"], "adv": adv})
    return json.dumps({"t": threshold, "pins": {"tang": tang}}, sort_keys=True)


def jwk_thumbprint(jwk):
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: what Tang and Clevis call a key's "kid"."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "oct": ("k", "kty"), "OKP": ("crv", "kty", "x")}
    required = members.get(jwk.get("kty"))
    if required is None or any(m not in jwk for m in required):
        raise LuksError("a Tang advertisement holds a key that is not a public EC/RSA/OKP JWK")
    text = json.dumps({m: jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=")


def advertised_kids(pins):
    """The thumbprints of the exchange keys (``deriveKey``) that the advertisements of ``pins`` (sss_policy's
    input) offer: a binding that needs only these is current."""
    kids = set()
    for pin in pins:
        adv = pin["adv"] if isinstance(pin["adv"], dict) else json.loads(pin["adv"])
        for jwk in _b64url_json(adv["payload"]).get("keys") or []:
            if "deriveKey" in (jwk.get("key_ops") or []):
                kids.add(jwk_thumbprint(jwk))
    return kids


EXT_MAGIC_OFFSET = 1080      # s_magic of an ext2/3/4 superblock (1024 + 0x38)
MIB = 1 << 20


def is_ext_fs(path):
    """Whether the file ``path`` starts with an ext2/3/4 file system (its superblock magic 0xEF53)."""
    with open(path, "rb") as f:
        f.seek(EXT_MAGIC_OFFSET)
        return f.read(2) == b"\x53\xef"


def ext_fs_sizes(dumpe2fs_header):
    """``(size, used)`` in bytes of the ext file system that ``dumpe2fs -h`` described."""
    fields = {}
    for line in dumpe2fs_header.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    try:
        count, free, block = (int(fields[k]) for k in ("Block count", "Free blocks", "Block size"))
    except (KeyError, ValueError):
        raise LuksError("dumpe2fs -h gave no block count, free blocks and block size: not an ext file system")
    return count * block, (count - free) * block


def shrunk_size(size, used):
    """The size to shrink an ext file system of ``size`` bytes with ``used`` bytes in use to: its data + 10 % + 32
    MiB (the inode tables and directories of a read-only root), in whole MiB (a whole number of sectors of any
    size dm-crypt may choose); never more than ``size``."""
    return min(size, -(-(used + used // 10 + 32 * MIB) // MIB) * MIB)


def shrink_ext_file(run, path):
    """Shrink the ext file system in the file ``path`` to about its data and cut the file there; returns the new
    size. A read-only root (root mode image: the node's writes go to RAM) needs no free space, and every byte left
    out is a byte less to encrypt, ship and write on every storage host. resize2fs's own minimum (-M, -P) is no
    use for an image that mkfs.ext4 -d populated (it estimates the whole size), so the size is set and forced (-f)
    and the result checked by e2fsck: a file system that does not fit fails resize2fs, never the node."""
    run(["e2fsck", "-f", "-y", path], "checking the file system in %s before shrinking it (e2fsck -f)" % path, ok=(0, 1))
    size, used = ext_fs_sizes(run(["dumpe2fs", "-h", path], "reading the size of the file system in %s" % path))
    target = shrunk_size(size, used)
    if target < size:
        run(["resize2fs", "-f", path, "%dK" % (target >> 10)],
            "shrinking the file system in %s to %d MiB (resize2fs)" % (path, target // MIB))
        run(["e2fsck", "-f", "-n", path], "checking the shrunk file system in %s (e2fsck -f -n)" % path)
        with open(path, "r+b") as f:
            f.truncate(target)
    return target


def encrypt_file(run, path, room, policy, key):
    """Encrypt the image file ``path`` in place with LUKS2 (offline: no device-mapper, no loop device) and bind it
    with Clevis to ``policy`` (sss_policy); ``room`` bytes at the end of the file take the LUKS2 header. ``key``
    (SECRET, random) opens the one-time keyslot the encryption and the binding need; it is removed afterwards, so
    only Clevis (Tang) opens the result. Returns ``(uuid, kids)``: the LUKS UUID and the Tang keys the binding needs."""
    # --disable-locks: the file is this call's own (a .part nobody else opens), and the lock directory
    # (/run/cryptsetup) is root's: the controller user need not be root
    run(["cryptsetup", "reencrypt", "--disable-locks", "--encrypt", "--type", "luks2", "--reduce-device-size", "%dM" % (room >> 20),
         # the one-time keyslot lives for a few seconds: a cheap KDF; Clevis's keyslot has a random 256-bit key
         "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--batch-mode", "--key-file", "-", path],
        "encrypting %s (cryptsetup reencrypt --encrypt)" % path, data=key)
    run(["clevis", "luks", "bind", "-y", "-d", path, "-k", "-", "sss", policy],
        "binding %s to Tang (clevis luks bind)" % path, data=key)
    run(["cryptsetup", "luksRemoveKey", "--disable-locks", "--batch-mode", "--key-file", "-", path],
        "removing the one-time keyslot of %s" % path, data=key)
    meta = json.loads(run(["cryptsetup", "luksDump", "--dump-json-metadata", path],
                          "reading the LUKS2 metadata of %s" % path))
    clevis, other = keyslots(meta)
    if not clevis or other:
        raise LuksError("%s: after the binding, keyslots %s are Clevis's and %s others (want >= 1 and none): refusing "
                        "to publish it" % (path, clevis, other))
    kids = sorted({kid for slot_kids in tang_bindings(meta).values() for kid in slot_kids})
    return run(["cryptsetup", "luksUUID", path], "reading the LUKS UUID of %s" % path).strip(), kids
