#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: luks_image
short_description: Encrypt an image's root file system once with LUKS2 bound to Tang, for the LUKS nodes of root mode image
version_added: 0.1.0
description:
  - The LUKS nodes of root mode C(image) (C(node_luks)) share one read-only LUN per image version, exported by every
    storage host with one serial, so its bytes must be the same everywhere; the image is encrypted once, here, and the
    same ciphertext is written on every storage host. One master key per image version, never per node.
  - Copies O(src) (the bundle's C(root.img)); with O(shrink), shrinks an ext2/3/4 file system in the copy to its data
    (C(resize2fs)), since the nodes mount it read-only under a RAM overlay; every byte of free space left out is a byte
    less to encrypt, ship and write on every storage host. Appends O(header_room) bytes, encrypts the copy in place
    (C(cryptsetup reencrypt --encrypt), offline on the file, with no device-mapper and no loop device), binds it with Clevis
    C(sss) to every Tang server of O(tang) with their advertisements as given (no network), and removes the one-time
    keyslot of the encryption, so that only Tang opens the result. Writes O(dest) and, next to it, C(O(dest).json) (the source
    checksum, the LUKS UUID, the Tang keys of the binding).
  - Runs where the bundle is (the controller, C(delegate_to)). The master key exists only in this module's
    cryptsetup process; nothing secret is written or returned.
  - Does nothing when O(dest) was made from a source with checksum O(source_checksum) and is bound to keys that the
    advertisements of O(tang) offer. Otherwise (a rebuilt bundle; Tang servers with other keys, as in a new cluster, a
    rebuilt provisioning host without its key backup, a retired rotation) it makes a new ciphertext with a new master
    key. A storage host that wrote the former one keeps it (its golden snapshot is never written again), and a node
    refuses to build its multipath map over paths whose LUKS UUIDs differ.
author:
  - diskless.cluster developers (@diskless-cluster)
requirements:
  - cryptsetup 2.4 or later and clevis (C(clevis luks bind)) where it runs.
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports whether O(dest) would be made; writes nothing.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  src:
    description: The image's root file system (the bundle's C(root.img)).
    type: path
    required: true
  source_checksum:
    description: The SHA-256 of O(src) (the bundle manifest's); the encrypted copy is made again only when it changes.
    type: str
    required: true
  dest:
    description: The encrypted image to write (its directory must exist).
    type: path
    required: true
  tang:
    description:
      - The Tang servers to bind to, one per provisioning host, each with its advertisement read on that host
        (C(diskless-tang-keys adv)).
    type: list
    elements: dict
    required: true
    suboptions:
      url:
        description: The Tang URL the nodes use (C(<http_base>/tang) of the provisioning host).
        type: str
        required: true
      adv:
        description: The server's signed advertisement (JWS, JSON).
        type: raw
        required: true
  threshold:
    description: How many of the Tang servers must answer to unlock (C(cluster_tang_threshold)).
    type: int
    default: 1
  header_room:
    description: Bytes appended to the image for the LUKS2 header, whole MiB (the planner sizes the golden volume for it).
    type: int
    default: 33554432
  shrink:
    description:
      - Shrink an ext2/3/4 file system to its data before encrypting it (C(e2fsck -f), C(resize2fs -f)); other file
        systems are encrypted whole. The golden volume keeps the planned size, and the rest of it stays unwritten.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Encrypt image debian12 v1 for the LUKS image nodes
  diskless.cluster.luks_image:
    src: /var/lib/diskless/images/debian12/1/root.img
    source_checksum: 5f0c9d5c3a8b4e3f2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e
    dest: /var/lib/diskless/images/debian12/1.root.luks.img
    tang:
      - url: http://10.77.0.2/tang
        adv: "{{ lookup('ansible.builtin.file', 'prov1.adv.jws') }}"
  delegate_to: localhost
"""

RETURN = r"""
dest:
  description: The encrypted image.
  returned: success
  type: str
  sample: /var/lib/diskless/images/debian12/1.root.luks.img
uuid:
  description: Its LUKS UUID (the same on every storage host that holds it); null in check mode before it exists.
  returned: success
  type: str
  sample: 7b0e8f2c-3c55-4d7e-9d0a-1c8a5d2e4f61
kids:
  description: The thumbprints of the Tang exchange keys its binding needs.
  returned: success
  type: list
  elements: str
  sample: ["l3nqgkH7Ptc6i2xRz8Yw0SbVf1uQdJ5oMa9eKr4TsW0"]
size:
  description: The size of the encrypted image in bytes (null in check mode before it exists).
  returned: success
  type: int
  sample: 765460480
seconds:
  description: How long the encryption took (0 when nothing was done).
  returned: success
  type: float
  sample: 21.4
"""

import base64
import json
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.diskless.cluster.plugins.module_utils._atomic import unlink_quietly, write_atomic
from ansible_collections.diskless.cluster.plugins.module_utils._run import CommandError, Runner, fail
from ansible_collections.diskless.cluster.plugins.module_utils.luks import (
    LuksError, advertised_kids, encrypt_file, is_ext_fs, shrink_ext_file, sss_policy)


def _read_sidecar(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            source_checksum=dict(type="str", required=True),
            dest=dict(type="path", required=True),
            tang=dict(type="list", elements="dict", required=True, options=dict(
                url=dict(type="str", required=True),
                adv=dict(type="raw", required=True),
            )),
            threshold=dict(type="int", default=1),
            header_room=dict(type="int", default=32 << 20),
            shrink=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    src, dest = p["src"], p["dest"]
    sidecar = dest + ".json"
    run = Runner(module)
    try:
        if p["header_room"] < 1 << 20 or p["header_room"] % (1 << 20):
            raise LuksError("header_room %d: must be a whole number of MiB, at least 1 MiB" % p["header_room"])
        policy = sss_policy(p["threshold"], p["tang"])
        advertised = advertised_kids(p["tang"])
        if not os.path.isfile(src):
            raise LuksError("%s does not exist: build the image bundle first (playbooks/images.yml)" % src)
        before = _read_sidecar(sidecar) if os.path.exists(dest) else None
        if (before and before.get("source_sha256") == p["source_checksum"] and before.get("kids")
                and set(before["kids"]) <= advertised):
            module.exit_json(changed=False, dest=dest, uuid=before.get("uuid"), kids=before.get("kids") or [],
                             size=os.path.getsize(dest), seconds=0.0)
        if module.check_mode:
            result = dict(changed=True, dest=dest, uuid=None, kids=[], size=None, seconds=0.0)
            if module._diff:
                result["diff"] = dict(before="%s\n" % (before or {}).get("source_sha256", "absent"),
                                      after="%s\n" % p["source_checksum"])
            module.exit_json(**result)
        t0 = time.monotonic()
        part = os.path.join(os.path.dirname(dest), ".%s.part" % os.path.basename(dest))
        try:
            shutil.copyfile(src, part)
            os.chmod(part, 0o600)
            size = shrink_ext_file(run, part) if p["shrink"] and is_ext_fs(part) else os.path.getsize(src)
            with open(part, "r+b") as f:
                f.truncate(size + p["header_room"])
            # 64 random bytes as text: the one-time keyslot's passphrase, on stdin only
            key = base64.b64encode(os.urandom(64))
            uuid, kids = encrypt_file(run, part, p["header_room"], policy, key)
            os.rename(part, dest)
            write_atomic(sidecar, json.dumps({"source_sha256": p["source_checksum"], "uuid": uuid, "kids": kids},
                                             sort_keys=True).encode(), mode=0o644)
        finally:
            unlink_quietly(part)
    except (LuksError, CommandError, OSError) as exc:
        fail(module, exc)
    result = dict(changed=True, dest=dest, uuid=uuid, kids=kids, size=os.path.getsize(dest),
                  seconds=round(time.monotonic() - t0, 1))
    if module._diff:
        result["diff"] = dict(before="%s\n" % (before or {}).get("source_sha256", "absent"), after="%s\n" % p["source_checksum"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
