# SPDX-License-Identifier: GPL-3.0-or-later
"""The luks_recovery and luks_rebind modules with the real cryptsetup on a LUKS2 image file: the Clevis keyslot
is a real keyslot named by a real ``clevis`` token; only what needs device-mapper or Tang is a stub (``cryptsetup
status`` of the root's mapping; ``clevis luks pass``, which prints that keyslot's key as Clevis would after asking
Tang; ``clevis luks regen``, which writes the token Clevis would bind to the keys Tang advertises now)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

from ansible.module_utils import basic
from ansible_collections.diskless.cluster.plugins.module_utils.luks import (
    LuksError, ext_fs_sizes, keyslots, parse_status, recovery_plan, shrunk_size, stale_bindings, tang_bindings)
from ansible_collections.diskless.cluster.plugins.modules import luks_image, luks_rebind, luks_recovery

CRYPTSETUP = shutil.which("cryptsetup") or next((p for p in ("/usr/sbin/cryptsetup", "/sbin/cryptsetup")
                                                 if os.path.exists(p)), None)
TANG_KEY = "key-of-the-clevis-keyslot-from-tang"
RECOVERY = "correct horse battery staple 42"
FAST = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]


def cs(*args, data=None):
    return subprocess.run([CRYPTSETUP] + list(args), input=data, capture_output=True, text=True, check=True).stdout


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def clevis_token(kids, slot="1"):
    """A Clevis LUKS2 token as `clevis luks bind ... sss` writes it: one Tang JWE per server inside the sss one."""
    inner = ["%s..iv.ct.tag" % b64({"alg": "ECDH-ES", "enc": "A256GCM", "kid": kid,
                                    "clevis": {"pin": "tang", "tang": {"url": "http://10.77.0.%d/tang" % (2 + i)}}})
             for i, kid in enumerate(kids)]
    protected = b64({"alg": "dir", "enc": "A256GCM", "clevis": {"pin": "sss", "sss": {"t": 1, "jwe": inner}}})
    return {"type": "clevis", "keyslots": [slot], "jwe": {"ciphertext": "ct", "encrypted_key": "", "iv": "iv",
                                                          "protected": protected, "tag": "tag"}}


@pytest.fixture
def device(tmp_path, monkeypatch):
    """A LUKS2 file whose keyslot 1 is Clevis's (token 0 names it), as a node's root after its first boot."""
    if CRYPTSETUP is None:
        pytest.skip("cryptsetup is not installed")
    dev = tmp_path / "root.img"
    with open(dev, "wb") as handle:
        handle.truncate(32 << 20)
    cs("luksFormat", "--batch-mode", "--type", "luks2", "--key-slot", "1", *FAST, "--key-file", "-", str(dev),
       data=TANG_KEY)
    cs("token", "import", "--token-id", "0", str(dev), data=json.dumps(clevis_token(["old-kid-a", "old-kid-b"])))
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "cryptsetup").write_text(
        '#!/bin/sh\nif [ "$1" = status ]; then\n'
        '  [ "$2" = dlcrypt ] || { echo "/dev/mapper/$2 is inactive."; exit 4; }\n'
        '  printf "/dev/mapper/dlcrypt is active and is in use.\\n  type:    LUKS2\\n  cipher:  aes-xts-plain64\\n'
        '  device:  %s\\n" "' + str(dev) + '"; exit 0\nfi\nexec ' + CRYPTSETUP + ' "$@"\n')
    # clevis: "luks pass" prints the Clevis keyslot's key; "luks regen" binds it to the kids in $T/new.kids (as
    # Clevis would to the keys Tang advertises now)
    (stubs / "clevis").write_text(
        '#!/bin/sh\necho "$*" >> "%(t)s/clevis.calls"\n'
        '[ -e "%(t)s/tang.down" ] && { echo "Error communicating with server" >&2; exit 1; }\n'
        'case "$2" in\npass) printf "%%s" "%(key)s" ;;\n'
        'regen) %(cs)s token remove --token-id 0 "%(dev)s" && %(cs)s token import --token-id 0 "%(dev)s" < "%(t)s/new.token" ;;\n'
        'esac\n' % {"t": tmp_path, "key": TANG_KEY, "cs": CRYPTSETUP, "dev": dev})
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (stubs, os.environ.get("PATH", "")))
    return dev


@pytest.fixture
def run(run_main, monkeypatch):
    argvs = []
    real = basic.AnsibleModule.run_command

    def run_command(self, args, **kwargs):
        argvs.append(list(args))
        return real(self, args, **kwargs)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)

    def _run(args, check=False, diff=False, module=luks_recovery):
        del argvs[:]
        if module is luks_recovery:
            args = dict({"iter_time": 20}, **args)
        ok, result = run_main(module.main, args, check, diff)
        return ok, result, list(argvs)
    return _run


def opens(dev, passphrase):
    return subprocess.run([CRYPTSETUP, "open", "--test-passphrase", "--key-file", "-", str(dev)], input=passphrase,
                          capture_output=True, text=True, check=False).returncode == 0


def test_adds_the_recovery_keyslot_changes_nothing_then_replaces_it(run, device):
    ok, result = run({"passphrase": RECOVERY}, check=True, diff=True)[:2]
    assert ok and result["changed"] and result["added"] and result["keyslot"] is None
    assert keyslots(cs("luksDump", "--dump-json-metadata", str(device))) == ([1], [])   # check mode changed nothing
    ok, result, argvs = run({"passphrase": RECOVERY})
    assert ok and result["changed"] and (result["device"], result["clevis_keyslots"], result["removed"]) == \
        (str(device), [1], [])
    assert keyslots(cs("luksDump", "--dump-json-metadata", str(device))) == ([1], [result["keyslot"]])
    assert opens(device, RECOVERY)
    # no secret on any command line
    assert not [a for a in argvs if RECOVERY in " ".join(a) or TANG_KEY in " ".join(a)]
    ok, again, argvs = run({"passphrase": RECOVERY})
    assert ok and not again["changed"] and again["keyslot"] == result["keyslot"] and not again["added"]
    assert not [a for a in argvs if "luksAddKey" in a or "pass" in a]      # Tang is not even asked
    # a new passphrase replaces the old one; Clevis keeps its keyslot
    ok, result = run({"passphrase": "a-new-recovery-passphrase-2027"}, diff=True)[:2]
    assert ok and result["changed"] and result["added"] and result["removed"] == [again["keyslot"]]
    assert keyslots(cs("luksDump", "--dump-json-metadata", str(device))) == ([1], [result["keyslot"]])
    assert opens(device, "a-new-recovery-passphrase-2027") and opens(device, TANG_KEY)


def test_tang_down_fails_in_one_line_and_changes_nothing(run, device, tmp_path):
    (tmp_path / "tang.down").write_text("")
    ok, result = run({"passphrase": RECOVERY})[:2]
    assert not ok and result["msg"].startswith("recovering the key of keyslot 1 of %s from Tang (clevis luks pass) "
                                               "failed (clevis, rc 1): Error communicating with server" % device)
    assert "\n" not in result["msg"] and not opens(device, RECOVERY)


def test_refuses_a_root_that_is_not_luks_or_not_bound_yet(run, device):
    ok, result = run({"passphrase": RECOVERY, "name": "other"})[:2]
    assert not ok and result["msg"] == ("/dev/mapper/other is not an open LUKS device (/dev/mapper/other is inactive.): "
                                        "only a node_luks root has a recovery keyslot")
    cs("token", "remove", "--token-id", "0", str(device))
    ok, result = run({"passphrase": RECOVERY})[:2]
    assert not ok and "has no keyslot bound to Tang by Clevis" in result["msg"] and not opens(device, RECOVERY)


def test_pure_decisions():
    assert parse_status("/dev/mapper/x is active.\n  type:    LUKS2\n  device:  /dev/md/dlroot\n") == "/dev/md/dlroot"
    assert parse_status("/dev/mapper/x is active.\n  type:    PLAIN\n  device:  /dev/sda\n") is None
    meta = {"keyslots": {"0": {}, "1": {}, "3": {}},
            "tokens": {"0": {"type": "clevis", "keyslots": ["1"]}, "1": {"type": "other", "keyslots": ["3"]}}}
    assert keyslots(meta) == ([1], [0, 3])
    assert recovery_plan([1], [0, 3], None) == (True, [0, 3])
    assert recovery_plan([1], [0, 3], 3) == (False, [0])
    with pytest.raises(LuksError):
        recovery_plan([], [0], None)
    with pytest.raises(LuksError):
        recovery_plan([1], [], 1)
    header = "Filesystem volume name:   dlroot\nBlock count:              261120\nFree blocks:              90324\nBlock size:               4096\n"
    assert ext_fs_sizes(header) == (261120 * 4096, (261120 - 90324) * 4096)
    with pytest.raises(LuksError, match="not an ext file system"):
        ext_fs_sizes("Couldn't find valid filesystem superblock.\n")
    assert shrunk_size(1020 << 20, 667 << 20) == 766 << 20           # data + 10 % + 32 MiB, in whole MiB
    assert shrunk_size(40 << 20, 30 << 20) == 40 << 20               # never larger than it was


def test_rebind_renews_only_bindings_to_keys_no_longer_advertised(run, device, tmp_path):
    (tmp_path / "new.token").write_text(json.dumps(clevis_token(["new-kid-a", "new-kid-b"])))
    # every key still advertised: nothing to do, Tang not asked
    ok, result = run({"advertised": ["old-kid-a", "old-kid-b", "x"]}, module=luks_rebind)[:2]
    assert ok and not result["changed"] and result["bindings"] == {"1": ["old-kid-a", "old-kid-b"]}
    assert not (tmp_path / "clevis.calls").exists()
    advertised = ["new-kid-a", "new-kid-b"]
    ok, result = run({"advertised": advertised}, check=True, diff=True, module=luks_rebind)[:2]
    assert ok and result["changed"] and result["rebound"] == [1] and not (tmp_path / "clevis.calls").exists()
    ok, result = run({"advertised": advertised}, diff=True, module=luks_rebind)[:2]
    assert ok and result["changed"] and result["bindings"] == {"1": advertised}
    assert result["diff"] == {"before": "keyslot 1: old-kid-a old-kid-b\n", "after": "keyslot 1: new-kid-a new-kid-b\n"}
    assert (tmp_path / "clevis.calls").read_text() == "luks regen -q -d %s -s 1\n" % device
    ok, result = run({"advertised": advertised}, module=luks_rebind)[:2]
    assert ok and not result["changed"]


def test_rebind_fails_in_one_line_when_tang_is_down_or_serves_old_keys(run, device, tmp_path):
    (tmp_path / "new.token").write_text(json.dumps(clevis_token(["old-kid-a", "new-kid-b"])))
    ok, result = run({"advertised": ["new-kid-a", "new-kid-b"]}, module=luks_rebind)[:2]
    assert not ok and result["msg"] == ("keyslot 1 of %s still needs Tang keys that are not advertised (old-kid-a) after "
                                        "clevis luks regen: is a provisioning host serving old keys?" % device)
    (tmp_path / "tang.down").write_text("")
    ok, result = run({"advertised": ["new-kid-c"]}, module=luks_rebind)[:2]
    assert not ok and result["msg"] == ("binding keyslot 1 of %s to the new Tang keys (clevis luks regen) failed "
                                        "(clevis, rc 1): Error communicating with server" % device)
    ok, result = run({"advertised": []}, module=luks_rebind)[:2]
    assert not ok and result["msg"].startswith("advertised is empty")


def test_tang_bindings_of_tang_sss_and_other_pins():
    tang = b64({"kid": "k1", "clevis": {"pin": "tang", "tang": {}}})
    meta = {"tokens": {"0": clevis_token(["a", "b"], "1"),
                       "1": {"type": "clevis", "keyslots": ["2"], "jwe": {"protected": tang}},
                       "2": {"type": "clevis", "keyslots": ["3"], "jwe": {"protected": b64({"clevis": {"pin": "tpm2"}})}},
                       "3": {"type": "systemd-fido2", "keyslots": ["4"]}}}
    assert tang_bindings(meta) == {1: ["a", "b"], 2: ["k1"], 3: []}
    assert stale_bindings(tang_bindings(meta), {"a", "b"}) == [2]
    assert stale_bindings(tang_bindings(meta), {"a", "b", "k1"}) == []


CLEVIS = shutil.which("clevis")
JOSE = shutil.which("jose")


def tang_adv(tmp_path):
    """A Tang advertisement as tangd serves it: the signing and exchange public keys, signed by the signing key
    (made with jose, as tangd-keygen does). Returns (adv JSON, thumbprint of the exchange key)."""
    def jose(*args):
        return subprocess.run([JOSE] + list(args), capture_output=True, text=True, check=True).stdout
    jose("jwk", "gen", "-i", '{"alg":"ES512"}', "-o", str(tmp_path / "sig.jwk"))
    jose("jwk", "gen", "-i", '{"alg":"ECMR"}', "-o", str(tmp_path / "exc.jwk"))
    keys = [json.loads(jose("jwk", "pub", "-i", str(tmp_path / name))) for name in ("sig.jwk", "exc.jwk")]
    (tmp_path / "set.json").write_text(json.dumps({"keys": keys}))
    jose("jws", "sig", "-I", str(tmp_path / "set.json"), "-k", str(tmp_path / "sig.jwk"),
         "-s", '{"protected":{"cty":"jwk-set+json"}}', "-o", str(tmp_path / "adv.jws"))
    return json.loads((tmp_path / "adv.jws").read_text()), jose("jwk", "thp", "-i", str(tmp_path / "exc.jwk")).strip()


def test_luks_image_encrypts_once_binds_to_tang_and_keeps_no_other_keyslot(run, tmp_path):
    if CRYPTSETUP is None or CLEVIS is None or JOSE is None:
        pytest.skip("cryptsetup and clevis are not installed (hack/bootstrap.sh installs them)")
    src = tmp_path / "root.img"
    with open(src, "wb") as f:
        f.truncate(96 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "dlroot", str(src)], check=True)
    marker = b"a-line-of-the-image-in-plain-text-3f9c"
    with open(src, "r+b") as f:       # in the file system's free space, as a file's data block would be
        f.seek(30 << 20)
        f.write(marker * 100)
    adv, kid = tang_adv(tmp_path)
    dest = tmp_path / "root.luks.img"
    args = {"src": str(src), "source_checksum": "sum-1", "dest": str(dest), "header_room": 16 << 20,
            "tang": [{"url": "http://10.77.0.2/tang", "adv": adv}]}

    ok, r, _argvs = run(args, check=True, module=luks_image)
    assert ok and r["changed"] and not dest.exists(), r
    ok, r, argvs = run(args, module=luks_image)
    assert ok and r["changed"] and r["kids"] == [kid], r
    # shrunk to its data (read-only under the RAM overlay: no free space needed), then the header room
    assert os.path.getsize(dest) < (64 + 16) << 20, os.path.getsize(dest)
    assert r["size"] == os.path.getsize(dest) and os.path.getsize(dest) % (1 << 20) == 0, r
    assert marker not in dest.read_bytes()
    ok, whole, _argvs = run(dict(args, shrink=False, dest=str(tmp_path / "whole.img")), module=luks_image)
    assert ok and whole["size"] == (96 + 16) << 20 and marker not in (tmp_path / "whole.img").read_bytes(), whole
    meta = json.loads(cs("luksDump", "--dump-json-metadata", str(dest)))
    assert keyslots(meta)[1] == [] and keyslots(meta)[0], meta["keyslots"]
    assert tang_bindings(meta) == {int(keyslots(meta)[0][0]): [kid]}
    assert cs("luksUUID", str(dest)).strip() == r["uuid"]
    # the one-time key went through stdin only
    assert not any("--key-file" in a and a[a.index("--key-file") + 1] != "-" for a in argvs), argvs
    assert json.loads((tmp_path / "root.luks.img.json").read_text())["source_sha256"] == "sum-1"

    ok, again, argvs = run(args, module=luks_image)
    assert ok and not again["changed"] and again["uuid"] == r["uuid"] and argvs == [], again
    ok, other, _argvs = run(dict(args, source_checksum="sum-2"), module=luks_image)
    assert ok and other["changed"] and other["uuid"] != r["uuid"], other   # a new source: a new master key
    # Tang servers with other keys (a new cluster, keys retired): the cached copy is bound to keys nobody serves
    (tmp_path / "new").mkdir()
    adv2, kid2 = tang_adv(tmp_path / "new")
    ok, third, _argvs = run(dict(args, source_checksum="sum-2", tang=[{"url": "http://10.77.0.2/tang", "adv": adv2}]),
                            module=luks_image)
    assert ok and third["changed"] and third["kids"] == [kid2] and third["uuid"] != other["uuid"], third
    # both keys advertised (a rotation under way): the copy bound to either is current
    both = [{"url": "http://10.77.0.2/tang", "adv": adv2}, {"url": "http://10.77.0.3/tang", "adv": adv}]
    ok, fourth, _argvs = run(dict(args, source_checksum="sum-2", tang=both), module=luks_image)
    assert ok and not fourth["changed"] and fourth["uuid"] == third["uuid"], fourth


def test_luks_image_refuses_bad_input_in_one_line(run, tmp_path):
    src = tmp_path / "root.img"
    src.write_bytes(b"\0" * 4096)
    base = {"src": str(src), "source_checksum": "s", "dest": str(tmp_path / "out.img"),
            "tang": [{"url": "http://10.77.0.2/tang", "adv": {"payload": "e30", "signatures": []}}]}
    for args, words in (
            (dict(base, threshold=2), "threshold 2 must be from 1 to the number of Tang servers (1)"),
            (dict(base, tang=[{"url": "http://x/tang", "adv": "not json"}]), "Tang advertisement of http://x/tang"),
            (dict(base, src=str(tmp_path / "none.img")), "build the image bundle first"),
            (dict(base, header_room=1000), "whole number of MiB")):
        ok, r, argvs = run(args, module=luks_image)
        assert not ok and words in r["msg"] and "\n" not in r["msg"] and argvs == [], r
    assert not (tmp_path / "out.img").exists()
