# SPDX-License-Identifier: GPL-3.0-or-later
"""scripts/diskless (the initramfs boot script) and md-readd (the booted node) under dash, with stub commands
on PATH that record their argv (iscsistart, mdadm, dmsetup, mount, curl, modprobe, ...) and a fake sysfs /dev.

These prove the logic (argv, decision table, refusals); the lab proves it against the real tools."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess

import pytest

NODE = os.path.join(os.path.dirname(__file__), "../../../roles/image_builder/files/node")
SCRIPT = os.path.join(NODE, "usr/share/initramfs-tools/scripts/diskless")
READD = os.path.join(NODE, "usr/lib/diskless-cluster/md-readd")
TIMEOUTS = os.path.join(NODE, "usr/lib/diskless-cluster/iscsi-timeouts")
SHELL = shutil.which("dash") or "/bin/sh"
LUKS_FIXTURES = os.path.join(os.path.dirname(__file__), "../fixtures/luks")

T1 = "iqn.2026-11.org.example:sch1.node001-root"
T2 = "iqn.2026-11.org.example:sch2.node001-root"
GOLD = "iqn.2026-11.org.example:golden.debian12"

# Stubs: every call appends "name|arg|arg..." to $T/calls (in one write). Behaviour from files under $T.
STUBS = {
    # logs in unless $T/down.<portal> exists; makes the session + SCSI disk named in $T/disk.<portal>
    "iscsistart": r'''
t= a= p=
while [ $# -gt 0 ]; do case "$1" in -t) t=$2; shift;; -a) a=$2; shift;; -p) p=$2; shift;; esac; shift; done
[ -e "$T/down.$a" ] && exit 1
n=$(ls "$DL_SYS/class/iscsi_session" 2>/dev/null | wc -l); n=$((n + 1))
disk=$(cat "$T/disk.$a")
s="$DL_SYS/class/iscsi_session/session$n"; c="$DL_SYS/class/iscsi_connection/connection$n:0"
mkdir -p "$s/device/target$n:0:0/$n:0:0:${LUN:-0}/block/$disk" "$c"
echo "$t" > "$s/targetname"; echo LOGGED_IN > "$s/state"
echo "$a" > "$c/persistent_address"; echo "$p" > "$c/persistent_port"
exit 0
''',
    "mdadm": r'''
case "$1" in
--examine) [ -e "$T/sb.${2##*/}" ]; exit $? ;;
--create|--assemble) mkdir -p "$DL_DEV/md"; if [ -e "$T/md.img" ]; then cp "$T/md.img" "$2"; else : > "$2"; fi; exit 0 ;;
esac
case "$2" in --re-add) exit "$(cat "$T/readd_rc" 2>/dev/null || echo 0)" ;; esac
exit 0
''',
    "dmsetup": 'mkdir -p "$DL_DEV/mapper"; : > "$DL_DEV/mapper/$2"',
    "mount": "exit 0",
    "modprobe": "exit 0",
    "mkfs.ext4": "exit 0",
    "timeout": 'shift; "$@"',
    "dd": "exit 0",
    # advances the fake clock instead of sleeping
    "sleep": 'read -r up _ < "$DL_PROC/uptime"; echo "$(( ${up%%.*} + ${1%%.*} )).00 0" > "$DL_PROC/uptime"',
    # curl -o FILE URL: copies $T/http/<basename of URL>; -sfI: its headers (Content-Length); -w '%{http_code}':
    # the status in $T/http/<basename>.code, else 200 when the file exists, else 000 (no answer)
    "curl": r'''
out= url= head= w=
while [ $# -gt 0 ]; do
    case "$1" in -o) out=$2; shift;; -w) w=$2; shift;; -sfI) head=1;; --max-time|--connect-timeout) shift;; -*) ;; *) url=$1;; esac
    shift
done
f="$T/http/${url##*/}"
if [ -n "$w" ]; then
    if [ -e "$f.code" ]; then cat "$f.code"; elif [ -e "$f" ]; then echo 200; else echo 000; exit 7; fi
    exit 0
fi
[ -e "$f" ] || exit 22
if [ -n "$head" ]; then printf 'HTTP/1.1 200 OK\r\nContent-Length: %s\r\n' "$(wc -c < "$f")"; exit 0; fi
cp "$f" "$out"
''',
    # the LUKS state of a device is $T/luks.<name>: absent = no LUKS header, else what luksDump prints. What the
    # key-taking commands read on stdin goes to $T/stdin.<what> (outside the node's /run)
    "cryptsetup": r'''
dev=; for a in "$@"; do dev=$a; done
n=${dev##*/}
case "$1" in
isLuks) [ -e "$T/luks.$n" ]; exit $? ;;
luksDump) cat "$T/luks.$n"; exit 0 ;;
luksUUID) cat "$T/uuid.$n" 2>/dev/null; exit $? ;;
reencrypt)
    cat > "$T/stdin.reencrypt"
    rc=$(cat "$T/reencrypt_rc" 2>/dev/null || echo 0)
    [ -e "$T/reencrypt_dump" ] && cp "$T/reencrypt_dump" "$T/luks.$n"
    exit "$rc" ;;
luksRemoveKey) cat > "$T/stdin.luksRemoveKey"; exit 0 ;;
open) cat > "$T/stdin.open"; [ -s "$T/stdin.open" ] || exit 2; mkdir -p "$DL_DEV/mapper"; : > "$DL_DEV/mapper/$n"; exit 0 ;;
esac
exit 0
''',
    # clevis encrypt sss / luks bind / luks unlock / luks pass: fail (as with no Tang) while $T/tang.down exists;
    # bind adds a clevis token to $T/luks.<dev>, unlock makes /dev/mapper/<name>, pass prints the slot's key
    "clevis": r'''
cmd="$1 $2"; shift 2
dev= name=
while [ $# -gt 0 ]; do case "$1" in -d) dev=$2; shift;; -n) name=$2; shift;; -s) slot=$2; shift;; esac; shift; done
case "$cmd" in
"encrypt sss")
    cat > /dev/null
    if [ -e "$T/tang.down" ]; then echo "Unable to fetch advertisement: 'http://10.0.0.1/tang/adv/'!" >&2; exit 1; fi
    echo eyJhbGciOiJkaXIiLCJjbGV2aXMiOnt9fQ..iv.ct.tag ;;
"luks bind")
    cat > "$T/stdin.bind"
    if [ -e "$T/tang.down" ] || [ -e "$T/bind.fail" ]; then echo "Error adding new binding to $dev" >&2; exit 1; fi
    printf '  0: clevis\n\tKeyslot:    1\n' >> "$T/luks.${dev##*/}" ;;
"luks unlock")
    if [ -e "$T/tang.down" ]; then echo "Error communicating with server http://10.0.0.1/tang" >&2; echo "$dev could not be opened." >&2; exit 1; fi
    mkdir -p "$DL_DEV/mapper"; : > "$DL_DEV/mapper/$name" ;;
"luks pass")
    if [ -e "$T/tang.down" ]; then echo "It was not possible to decrypt the passphrase associated to slot $slot in $dev!" >&2; exit 1; fi
    printf 'key-of-slot-%s' "$slot" ;;
esac
exit 0
''',
}

PRELUDE = r'''
# the emergency shell: what a person types there is $T/console (absent: they reboot, here exit 42)
panic() { echo "PANIC: $*" >> "$T/panic"; echo "PANIC: $*"; if [ -e "$T/console" ]; then . "$T/console"; return 0; fi; exit 42; }
configure_networking() { DEVICE=ens3; }
wait_for_udev() { :; }
run_scripts() { :; }
log_begin_msg() { :; }
log_end_msg() { :; }
'''


def ext4_sb(mtime=0, mnt_count=0, wtime=1, uuid=b"\x11" * 16, blocks=0, log_block_size=2):
    """The first 2 KiB of an ext4 file system: the fields scripts/diskless reads (blocks of 1024 << log_block_size)."""
    sb = bytearray(2048)
    struct.pack_into("<I", sb, 1024 + 4, blocks)
    struct.pack_into("<I", sb, 1024 + 24, log_block_size)
    struct.pack_into("<I", sb, 1024 + 44, mtime)
    struct.pack_into("<I", sb, 1024 + 48, wtime)
    struct.pack_into("<H", sb, 1024 + 52, mnt_count)
    struct.pack_into("<H", sb, 1024 + 56, 0xEF53)
    sb[1024 + 104:1024 + 120] = uuid
    return bytes(sb)


class Env:
    def __init__(self, tmp_path):
        self.t = tmp_path
        for d in ("bin", "sys/class/iscsi_session", "sys/block", "dev", "proc", "run/diskless", "run/initramfs",
                  "root/etc", "http", "tmp"):
            (tmp_path / d).mkdir(parents=True, exist_ok=True)
        for name, body in STUBS.items():
            f = tmp_path / "bin" / name
            # one write per call: a stub run in the background (cryptsetup reencrypt &) must not interleave with
            # the foreground's (sleep 1) in the log
            f.write_text('#!/bin/sh\nline="' + name + '"; for a in "$@"; do line="$line|$a"; done\n'
                         'printf "%s\\n" "$line" >> "$T/calls"\n' + body)
            f.chmod(0o755)
        (tmp_path / "proc/uptime").write_text("100.00 0\n")
        (tmp_path / "proc/meminfo").write_text("MemTotal:        2048000 kB\n")
        (tmp_path / "calls").write_text("")
        self.conf = {}

    def disk(self, portal, name, content=b"", wwid="naa.6001405aaaa", sectors=4194304, dev="8:0", sb=False):
        (self.t / ("disk." + portal)).write_text(name)
        (self.t / "dev" / name).write_bytes(content)
        blk = self.t / "sys/block" / name
        (blk / "device").mkdir(parents=True, exist_ok=True)
        (blk / "device/wwid").write_text(wwid + "\n")
        (blk / "size").write_text("%d\n" % sectors)
        (blk / "dev").write_text(dev + "\n")
        if sb:
            (self.t / ("sb." + name)).write_text("")

    def down(self, portal):
        (self.t / ("down." + portal)).write_text("")

    def node_conf(self, **kw):
        conf = dict(DL_NODE="node001", DL_HOSTNAME="node001", DL_MACHINE_ID="0123456789abcdef0123456789abcdef",
                    DL_INITIATOR="iqn.2026-11.org.example:node001", DL_CHAP_USER="node001",
                    DL_CHAP_SECRET="s3cret-out", DL_MUTUAL_USER="sch", DL_MUTUAL_SECRET="s3cret-in",
                    DL_ISCSI_NOOP_INTERVAL="5", DL_ISCSI_NOOP_TIMEOUT="5", DL_MD_NAME="", DL_OVERLAY="",
                    DL_OVERLAY_SIZE="50%", DL_LIVE_URL="", DL_LIVE_SUMS_URL="", DL_LUKS="0")
        conf.update(kw)
        (self.t / "node.conf").write_text("".join("%s='%s'\n" % kv for kv in conf.items()))

    def run(self, body, script=SCRIPT):
        env = {"PATH": "%s:/usr/bin:/bin" % (self.t / "bin"), "T": str(self.t), "DL_SYS": str(self.t / "sys"),
               "DL_DEV": str(self.t / "dev"), "DL_PROC": str(self.t / "proc"), "DL_RUN": str(self.t / "run/diskless"),
               "DL_RUN_INITRAMFS": str(self.t / "run/initramfs"), "DL_CONF": str(self.t / "node.conf"),
               "rootmnt": str(self.t / "root"), "TMPDIR": str(self.t / "tmp")}
        prog = PRELUDE + ". %s\n%s\n" % (script, body)
        return subprocess.run([SHELL, "-c", prog], env=env, capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL)

    def calls(self, name=None):
        rows = [line.split("|") for line in (self.t / "calls").read_text().splitlines()]
        return [r for r in rows if name is None or r[0] == name]

    def root_env(self):
        out = {}
        for line in (self.t / "run/diskless/root.env").read_text().splitlines():
            k, v = line.split("=", 1)
            out[k] = v.strip("'")
        return out


@pytest.fixture
def env(tmp_path):
    if not shutil.which("dash"):
        pytest.skip("dash not installed")
    return Env(tmp_path)


def paths(*rows):
    return " ".join(",".join(r) for r in rows)


# --- iscsi ---------------------------------------------------------------------------------------------

def test_iscsi_login_argv_timeouts_chap_and_root_env(env):
    env.disk("10.0.0.11", "sda", ext4_sb())
    env.node_conf(DL_ROOT_MODE="iscsi", DL_PATHS=paths((T1, "10.0.0.11", "3260", "0")),
                  DL_ISCSI_REPLACEMENT_TIMEOUT="86400", DL_PATH_WAIT="0")
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout + r.stderr
    [call] = env.calls("iscsistart")
    assert call[1:] == [
        "-i", "iqn.2026-11.org.example:node001", "-t", T1, "-g", "1", "-a", "10.0.0.11", "-p", "3260",
        "-u", "node001", "-w", "s3cret-out", "-U", "sch", "-W", "s3cret-in",
        "-P", "node.session.timeo.replacement_timeout=86400",
        "-P", "node.conn[0].timeo.noop_out_interval=5",
        "-P", "node.conn[0].timeo.noop_out_timeout=5",
        "-P", "node.session.initial_login_retry_max=1",
        "-P", "node.conn[0].timeo.login_timeout=5",
    ]
    assert ["mount", "-t", "ext4", "-o", "ro", str(env.t / "dev/sda"), str(env.t / "root")] in env.calls("mount")
    assert "s3cret" not in r.stdout + r.stderr                   # secrets never on the console
    renv = env.root_env()
    assert renv["DL_ROOT_MODE"] == "iscsi" and renv["DL_ROOT_DEVICE"] == str(env.t / "dev/sda")
    assert renv["DL_ISCSI_REPLACEMENT_TIMEOUT"] == "86400" and renv["DL_MULTIPATH_WWID"] == ""
    text = (env.t / "run/diskless/root.env").read_text()
    assert "s3cret" not in text and "CHAP" not in text
    assert (env.t / "run/initramfs/open-iscsi.interface").read_text() == "ens3\n"
    assert "diskless: node001 root iscsi: sda (10.0.0.11)" in r.stdout
    # DL_LUKS='0': no LUKS step at all
    assert env.calls("cryptsetup") == [] and env.calls("clevis") == []
    assert not (env.t / "run/diskless/luks").exists() and renv["DL_LUKS_DEVICE"] == "" and renv["DL_LUKS"] == "0"


def test_iscsi_without_chap_has_no_auth_args(env):
    env.disk("10.0.0.11", "sda")
    env.node_conf(DL_ROOT_MODE="iscsi", DL_PATHS=paths((T1, "10.0.0.11", "3260", "0")), DL_CHAP_USER="",
                  DL_CHAP_SECRET="", DL_MUTUAL_USER="", DL_MUTUAL_SECRET="")
    assert env.run("mountroot").returncode == 0
    args = env.calls("iscsistart")[0]
    assert not {"-u", "-w", "-U", "-W"} & set(args)


def test_iscsi_waits_for_its_path_and_names_the_portal(env):
    env.disk("10.0.0.11", "sda")
    env.down("10.0.0.11")
    env.node_conf(DL_ROOT_MODE="iscsi", DL_PATHS=paths((T1, "10.0.0.11", "3260", "0")), DL_PATH_WAIT="0")
    # the portal comes back after ~25 s of the fake clock
    (env.t / "bin/sleep").write_text((env.t / "bin/sleep").read_text() +
                                     '\n[ "${up%%.*}" -ge 124 ] && rm -f "$T/down.10.0.0.11"\n')
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout
    assert "still waiting" in r.stdout and "10.0.0.11:3260(%s)" % T1 in r.stdout
    assert len(env.calls("iscsistart")) > 5


def test_unknown_mode_panics_naming_it(env):
    env.node_conf(DL_ROOT_MODE="nfs", DL_PATHS="")
    r = env.run("mountroot")
    assert r.returncode == 42 and "unknown DL_ROOT_MODE 'nfs'" in r.stdout


def test_missing_node_conf_panics(env):
    r = env.run("mountroot")
    assert r.returncode == 42 and "node.conf" in r.stdout


# --- mirror --------------------------------------------------------------------------------------------

MIRROR = dict(DL_ROOT_MODE="mirror", DL_MD_NAME="dlroot", DL_ISCSI_REPLACEMENT_TIMEOUT="5", DL_PATH_WAIT="30",
              DL_PATHS=paths((T1, "10.0.0.11", "3260", "0"), (T2, "10.0.0.12", "3260", "0")))


def md_calls(env):
    return [c[1:] for c in env.calls("mdadm") if c[1] != "--examine"]


def test_mirror_both_untouched_clones_created_assume_clean(env):
    env.disk("10.0.0.11", "sda", ext4_sb())
    env.disk("10.0.0.12", "sdb", ext4_sb())
    env.node_conf(**MIRROR)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout + r.stderr
    md = str(env.t / "dev/md/dlroot")
    assert md_calls(env) == [["--create", md, "--run", "--level=1", "--raid-devices=2", "--metadata=1.0",
                              "--bitmap=internal", "--homehost=any", "--name=dlroot", "--assume-clean", "--failfast",
                              str(env.t / "dev/sda"), str(env.t / "dev/sdb")]]
    assert ["mount", "-t", "ext4", "-o", "ro", md, str(env.t / "root")] in env.calls("mount")
    assert (env.t / "run/diskless/mode-mirror").exists()
    assert env.root_env()["DL_ROOT_DEVICE"] == md
    assert "root mirror: md dlroot over sda (10.0.0.11) sdb (10.0.0.12) clean" in r.stdout


@pytest.mark.parametrize("sb1, sb2, source", [
    (ext4_sb(mtime=1700000000, mnt_count=3, wtime=1700000000), ext4_sb(), "sda"),   # leg 1 was used
    (ext4_sb(), ext4_sb(mnt_count=1, wtime=5), "sdb"),                                 # leg 2 was used
    (ext4_sb(), ext4_sb(uuid=b"\x22" * 16), "sda"),                                   # not the same golden
    (b"\0" * 2048, ext4_sb(), "sdb"),                                                  # leg 1 no ext4: leg 2 is the source
])
def test_mirror_create_without_assume_clean_unless_both_never_mounted(env, sb1, sb2, source):
    env.disk("10.0.0.11", "sda", sb1)
    env.disk("10.0.0.12", "sdb", sb2)
    env.node_conf(**MIRROR)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout + r.stderr
    [create] = md_calls(env)
    assert create[0] == "--create" and "--assume-clean" not in create
    other = "sdb" if source == "sda" else "sda"
    assert create[-3:] == ["--failfast", str(env.t / "dev" / source), str(env.t / "dev" / other)]
    assert "FULL resync from %s" % (env.t / "dev" / source) in r.stdout


def test_mirror_both_superblocks_assemble(env):
    env.disk("10.0.0.11", "sda", ext4_sb(mtime=5, mnt_count=2), sb=True)
    env.disk("10.0.0.12", "sdb", ext4_sb(mtime=5, mnt_count=2), sb=True)
    env.node_conf(**MIRROR)
    assert env.run("mountroot").returncode == 0
    md = str(env.t / "dev/md/dlroot")
    assert md_calls(env) == [["--assemble", md, "--run", "--homehost=any", str(env.t / "dev/sda"), str(env.t / "dev/sdb")]]


def test_mirror_one_superblock_assembles_degraded_then_adds_never_creates(env):
    env.disk("10.0.0.11", "sda", ext4_sb())                      # no md superblock: a fresh clone
    env.disk("10.0.0.12", "sdb", ext4_sb(mtime=5), sb=True)
    env.node_conf(**MIRROR)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout
    md = str(env.t / "dev/md/dlroot")
    assert md_calls(env) == [["--assemble", md, "--run", "--homehost=any", str(env.t / "dev/sdb")],
                             [md, "--add", "--failfast", str(env.t / "dev/sda")]]
    assert "FULL resync" in r.stdout


def test_mirror_leg_missing_after_wait_degraded(env):
    env.disk("10.0.0.11", "sda", ext4_sb(), sb=True)
    env.disk("10.0.0.12", "sdb", ext4_sb(), sb=True)
    env.down("10.0.0.12")
    env.node_conf(**MIRROR)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout
    assert md_calls(env) == [["--assemble", str(env.t / "dev/md/dlroot"), "--run", "--homehost=any",
                              str(env.t / "dev/sda")]]
    assert "gave up after 30s on iSCSI path(s) 10.0.0.12:3260" in r.stdout
    assert "root mirror: md dlroot over sda (10.0.0.11) degraded" in r.stdout


def test_mirror_no_superblock_one_missing_creates_degraded(env):
    env.disk("10.0.0.11", "sda", ext4_sb())
    env.disk("10.0.0.12", "sdb", ext4_sb())
    env.down("10.0.0.11")
    env.node_conf(**MIRROR)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout
    [create] = md_calls(env)
    assert create[0] == "--create" and create[-3:] == ["--failfast", str(env.t / "dev/sdb"), "missing"]
    assert "--assume-clean" not in create and "added in FULL" in r.stdout


def test_mirror_never_creates_over_a_superblock(env):
    """Every row of the decision table: a device with an md superblock is never a --create member."""
    for sb1 in (False, True):
        for sb2 in (False, True):
            for down in (None, "10.0.0.11", "10.0.0.12"):
                e = Env(env.t / ("case-%s-%s-%s" % (sb1, sb2, down)))
                e.disk("10.0.0.11", "sda", ext4_sb(), sb=sb1)
                e.disk("10.0.0.12", "sdb", ext4_sb(), sb=sb2)
                if down:
                    e.down(down)
                e.node_conf(**MIRROR)
                r = e.run("mountroot")
                assert r.returncode == 0, r.stdout
                for c in md_calls(e):
                    if c[0] == "--create":
                        assert not (sb1 and str(e.t / "dev/sda") in c) and not (sb2 and str(e.t / "dev/sdb") in c)


# --- image ---------------------------------------------------------------------------------------------

IMAGE = dict(DL_ROOT_MODE="image", DL_OVERLAY="tmpfs", DL_OVERLAY_SIZE="50%", DL_ISCSI_REPLACEMENT_TIMEOUT="5",
             DL_PATH_WAIT="30", DL_PATHS=paths((GOLD, "10.0.0.11", "3260", "0"), (GOLD, "10.0.0.12", "3260", "0")))


def test_image_builds_the_multipath_map_and_overlay(env):
    env.disk("10.0.0.11", "sda", wwid="naa.6001405abc", sectors=4186112, dev="8:0")
    env.disk("10.0.0.12", "sdb", wwid="naa.6001405abc", sectors=4186112, dev="8:16")
    env.node_conf(**IMAGE)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout + r.stderr
    [dm] = env.calls("dmsetup")
    assert dm[1:] == ["create", "36001405abc", "--readonly", "--uuid", "mpath-36001405abc", "--table",
                      "0 4186112 multipath 1 queue_if_no_path 0 1 1 service-time 0 2 1 8:0 1 8:16 1"]
    run = env.t / "run/diskless"
    mounts = [c[1:] for c in env.calls("mount")]
    assert ["-t", "ext4", "-o", "ro,noload", str(env.t / "dev/mapper/36001405abc"), str(run / "lower")] in mounts
    assert ["-t", "tmpfs", "-o", "size=50%,mode=0755", "tmpfs", str(run / "rw")] in mounts
    assert ["-t", "overlay", "-o", "lowerdir=%s/lower,upperdir=%s/rw/upper,workdir=%s/rw/work" % (run, run, run),
            "overlay", str(env.t / "root")] in mounts
    assert (env.t / "root/etc/hostname").read_text() == "node001\n"
    assert (env.t / "root/etc/machine-id").read_text() == "0123456789abcdef0123456789abcdef\n"
    mp = (env.t / "root/etc/multipath.conf").read_text()
    assert 'wwid ".*"' in mp and 'wwid "^36001405abc$"' in mp and "no_path_retry queue" in mp
    assert "user_friendly_names no" in mp
    assert "/36001405abc/" in (env.t / "root/etc/multipath/wwids").read_text().splitlines()
    renv = env.root_env()
    assert renv["DL_MULTIPATH_WWID"] == "36001405abc" and renv["DL_ROOT_DEVICE"] == str(env.t / "dev/mapper/36001405abc")
    assert (env.t / "run/diskless/iscsi-root").exists()         # iscsid and the session timeouts run


def test_overlay_root_has_no_fstab_line_for_the_images_label_and_gets_its_host_keys(env):
    (env.t / "root/etc/fstab").write_text("# the image's\nLABEL=dlroot / ext4 defaults,noatime 0 1\n"
                                          "tmpfs /scratch tmpfs defaults 0 0\n")
    (env.t / "ssh_host_ed25519_key").write_text("KEY-ED\n")      # next to node.conf, as iPXE puts them
    (env.t / "ssh_host_ecdsa_key").write_text("KEY-EC\n")
    env.disk("10.0.0.11", "sda", wwid="naa.6001405abc")
    env.down("10.0.0.12")
    env.node_conf(**IMAGE)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout + r.stderr
    fstab = (env.t / "root/etc/fstab").read_text().splitlines()
    assert fstab == ["# the image's",
                     "# diskless.cluster: / is an overlay built by the initramfs; the image has: "
                     "LABEL=dlroot / ext4 defaults,noatime 0 1",
                     "tmpfs /scratch tmpfs defaults 0 0"]
    staged = env.t / "run/diskless/ssh"
    assert (staged / "ssh_host_ed25519_key").read_text() == "KEY-ED\n"
    assert (staged / "ssh_host_ecdsa_key").read_text() == "KEY-EC\n"
    assert oct(staged.stat().st_mode & 0o777) == "0o700"
    assert oct((staged / "ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"


def test_image_wwid_mismatch_panics_naming_the_portals(env):
    env.disk("10.0.0.11", "sda", wwid="naa.6001405abc")
    env.disk("10.0.0.12", "sdb", wwid="naa.6001405def", dev="8:16")
    env.node_conf(**IMAGE)
    r = env.run("mountroot")
    assert r.returncode == 42
    assert "10.0.0.11=naa.6001405abc" in r.stdout and "10.0.0.12=naa.6001405def" in r.stdout
    assert "refusing to boot" in r.stdout and env.calls("dmsetup") == []


def test_image_zram_overlay(env):
    env.disk("10.0.0.11", "sda", wwid="naa.6001405abc")
    env.down("10.0.0.12")
    (env.t / "sys/block/zram0").mkdir(parents=True)
    env.node_conf(**dict(IMAGE, DL_OVERLAY="zram", DL_OVERLAY_SIZE="25%"))
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout
    assert (env.t / "sys/block/zram0/disksize").read_text().strip() == str(2048000 * 1024 * 25 // 100)
    assert env.calls("mkfs.ext4")
    assert ["mount", "-t", "ext4", str(env.t / "dev/zram0"), str(env.t / "run/diskless/rw")] in env.calls("mount")
    assert "service-time 0 1 1 8:0 1" in env.calls("dmsetup")[0][-1]


# --- live ----------------------------------------------------------------------------------------------

LIVE = dict(DL_ROOT_MODE="live", DL_OVERLAY="tmpfs", DL_OVERLAY_SIZE="50%", DL_PATHS="", DL_INITIATOR="",
            DL_CHAP_USER="", DL_CHAP_SECRET="", DL_MUTUAL_USER="", DL_MUTUAL_SECRET="",
            DL_LIVE_URL="http://10.0.0.1/images/debian12/1/root.squashfs",
            DL_LIVE_SUMS_URL="http://10.0.0.1/images/debian12/1/SHA256SUMS")


def test_live_good_download_mounts_squashfs_overlay(env):
    data = b"hsqs" + b"x" * 1000
    (env.t / "http/root.squashfs").write_bytes(data)
    (env.t / "http/SHA256SUMS").write_text("%s  root.squashfs\n%s  vmlinuz\n" % (hashlib.sha256(data).hexdigest(), "0" * 64))
    env.node_conf(**LIVE)
    r = env.run("mountroot")
    assert r.returncode == 0, r.stdout + r.stderr
    live = env.t / "run/diskless/live"
    mounts = [c[1:] for c in env.calls("mount")]
    assert ["-t", "tmpfs", "-o", "size=%d,mode=0700" % (len(data) + 16777216), "tmpfs", str(live)] in mounts
    assert ["-t", "squashfs", "-o", "ro,loop", str(live / "root.squashfs"), str(env.t / "run/diskless/lower")] in mounts
    assert env.calls("iscsistart") == []
    assert (env.t / "root/etc/hostname").read_text() == "node001\n"
    assert env.root_env()["DL_ROOT_DEVICE"] == str(live / "root.squashfs")
    assert not (env.t / "run/initramfs/open-iscsi.interface").exists()
    assert not (env.t / "run/diskless/iscsi-root").exists()     # no iscsid on a live node
    assert not (env.t / "run/diskless/ssh").exists()            # booted without keys: the node makes its own


@pytest.mark.parametrize("sums", ["%s  root.squashfs\n" % ("0" * 64), "%s  vmlinuz\n" % ("0" * 64)])
def test_live_sha_mismatch_panics_with_one_clear_line(env, sums):
    data = b"hsqs" + b"y" * 100
    (env.t / "http/root.squashfs").write_bytes(data)
    (env.t / "http/SHA256SUMS").write_text(sums)
    env.node_conf(**LIVE)
    r = env.run("mountroot")
    assert r.returncode == 42
    [line] = [x for x in r.stdout.splitlines() if x.startswith("PANIC")]
    assert ("diskless: root.squashfs from http://10.0.0.1/images/debian12/1/root.squashfs does not match SHA256SUMS "
            "(sha256 %s, expected " % hashlib.sha256(data).hexdigest()) in line
    assert line.endswith(": refusing to boot")
    assert not [c for c in env.calls("mount") if "squashfs" in c]


def test_live_too_little_ram_panics(env):
    (env.t / "http/root.squashfs").write_bytes(b"z" * 4096)
    (env.t / "http/SHA256SUMS").write_text("")
    (env.t / "proc/meminfo").write_text("MemTotal:        262000 kB\n")
    env.node_conf(**LIVE)
    r = env.run("mountroot")
    assert r.returncode == 42 and "RAM" in r.stdout


# --- LUKS (DL_LUKS=1): first boot encrypts in place and binds to Tang, every boot unlocks -----------------

TANG = "http://10.0.0.1/tang"
MIB = 1048576
RANDOM_BYTES = bytes(range(101, 133))                         # what the fake /dev/urandom gives
KEY = base64.b64encode(RANDOM_BYTES).decode()                 # the one-time key scripts/diskless makes of it
FS_BLOCKS = 2048                                              # the image's ext4: 8 MiB of 4 KiB blocks
LUKS = dict(DL_LUKS="1", DL_TANG_URLS=TANG, DL_TANG_THRESHOLD="1")
ISCSI = dict(DL_ROOT_MODE="iscsi", DL_PATHS=paths((T1, "10.0.0.11", "3260", "0")), DL_PATH_WAIT="0")
POLICY = '{"t":1,"pins":{"tang":[{"url":"%s"}]}}' % TANG


def luks_dump(state):
    with open(os.path.join(LUKS_FIXTURES, "luksDump_%s.txt" % state)) as f:
        return f.read()


def luks_disk(env, state=None, room_mib=32, name="sda", portal="10.0.0.11", **kw):
    """A node volume: the image's ext4 + room_mib MiB; state None = plain, else its luksDump fixture."""
    env.disk(portal, name, ext4_sb(blocks=FS_BLOCKS), sectors=(FS_BLOCKS * 4096 + room_mib * MIB) // 512, **kw)
    if state:
        (env.t / ("luks." + name)).write_text(luks_dump(state))
    (env.t / "random").write_bytes(RANDOM_BYTES)
    # what the encryption leaves: a LUKS2 header with one keyslot and no token (the clevis stub adds one)
    (env.t / "reencrypt_dump").write_text(luks_dump("unbound"))


def luks_calls(env):
    """The cryptsetup/clevis calls that act (not the isLuks/luksDump looks)."""
    return [c for c in env.calls() if c[0] in ("cryptsetup", "clevis") and c[1] not in ("isLuks", "luksDump")]


def boot(env, **conf):
    env.node_conf(**conf)
    return env.run('DL_RANDOM="$T/random"; mountroot')


def panic_line(r):
    [line] = [x for x in r.stdout.splitlines() if x.startswith("PANIC")]
    return line


def files_holding(root, needle):
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and needle in open(path, "rb").read():
                hits.append(path)
    return hits


@pytest.mark.parametrize("urls, threshold", [
    ("http://10.77.0.2/tang", "1"),
    ("http://10.77.0.2/tang http://10.77.0.3:8080/tang", "1"),
    ("http://10.77.0.2/tang http://10.77.0.3:8080/tang", "2"),
])
def test_tang_policy_is_sss_over_every_tang(env, urls, threshold):
    r = env.run("DL_TANG_URLS='%s' DL_TANG_THRESHOLD='%s'; dl_tang_policy" % (urls, threshold))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"t": int(threshold), "pins": {"tang": [{"url": u} for u in urls.split()]}}


@pytest.mark.parametrize("content, dump, state", [
    (ext4_sb(), None, "plain"),                      # an untouched clone of the golden image
    (b"\0" * 2048, None, "unknown"),                 # no LUKS and no ext4: not our image
    (b"LUKS\xba\xbe", "reencrypting", "reencrypting"),  # a first boot cut off in the encryption
    (b"LUKS\xba\xbe", "unbound", "unbound"),         # ... cut off between the encryption and the binding
    (b"LUKS\xba\xbe", "bound", "bound"),
])
def test_luks_state(env, content, dump, state):
    env.disk("10.0.0.11", "sda", content)
    if dump:
        (env.t / "luks.sda").write_text(luks_dump(dump))
    r = env.run('dl_luks_state "$DL_DEV/sda"')
    assert r.returncode == 0 and r.stdout == state + "\n", r.stdout + r.stderr


def test_luks_first_boot_encrypts_in_place_binds_to_tang_and_drops_the_one_time_key(env):
    luks_disk(env)
    r = boot(env, **ISCSI, **LUKS)
    assert r.returncode == 0, r.stdout + r.stderr
    dev, mapper = str(env.t / "dev/sda"), str(env.t / "dev/mapper/dlcrypt")
    assert [c[1:] for c in luks_calls(env)] == [
        ["encrypt", "sss", POLICY, "-y"],            # every Tang answers before anything is written
        ["reencrypt", "--encrypt", "--type", "luks2", "--reduce-device-size", "32M", "--pbkdf", "pbkdf2",
         "--pbkdf-force-iterations", "1000", "--batch-mode", "--key-file", "-", dev],
        ["luks", "bind", "-y", "-d", dev, "-k", "-", "sss", POLICY],
        ["luksRemoveKey", "--batch-mode", "--key-file", "-", dev],
        ["luks", "unlock", "-d", dev, "-n", "dlcrypt"],
    ]
    # the one-time key: on the stdin of the three commands that need it, and nowhere else
    for what in ("reencrypt", "bind", "luksRemoveKey"):
        assert (env.t / ("stdin." + what)).read_text() == KEY
    assert KEY not in (env.t / "calls").read_text()                # never in an argv
    assert KEY not in r.stdout + r.stderr
    for tree in ("run", "tmp", "root"):                             # never in a file under /run or /tmp
        assert files_holding(env.t / tree, KEY.encode()) == [] and files_holding(env.t / tree, RANDOM_BYTES) == []
    # the mount and everything after it use the dm-crypt device
    assert ["mount", "-t", "ext4", "-o", "ro", mapper, str(env.t / "root")] in env.calls("mount")
    assert not [c for c in env.calls("mount") if dev in c]
    renv = env.root_env()
    assert renv["DL_ROOT_DEVICE"] == mapper and renv["DL_LUKS_DEVICE"] == dev and renv["DL_LUKS"] == "1"
    assert renv["DL_TANG_URLS"] == TANG and renv["DL_TANG_THRESHOLD"] == "1"
    assert (env.t / "run/diskless/luks").read_text() == dev + "\n"
    assert re.search(r"^diskless: luks: %s encrypted and bound to Tang in \d+ s \(40 MiB\)$" % re.escape(dev), r.stdout, re.M)
    assert "diskless: node001 root iscsi: sda (10.0.0.11), luks dlcrypt (encrypted at this boot)" in r.stdout
    # Clevis' curl gives up on a silent Tang within seconds
    assert "connect-timeout = 5" in (env.t / "run/initramfs/tang/.curlrc").read_text()


def test_luks_bound_volume_is_unlocked_and_nothing_else(env):
    luks_disk(env, "bound")
    r = boot(env, **ISCSI, **LUKS)
    assert r.returncode == 0, r.stdout + r.stderr
    dev = str(env.t / "dev/sda")
    assert [c[1:] for c in luks_calls(env)] == [["luks", "unlock", "-d", dev, "-n", "dlcrypt"]]
    assert ["mount", "-t", "ext4", "-o", "ro", str(env.t / "dev/mapper/dlcrypt"), str(env.t / "root")] in env.calls("mount")
    assert "diskless: node001 root iscsi: sda (10.0.0.11), luks dlcrypt\n" in r.stdout
    assert "cannot unlock" not in r.stdout


@pytest.mark.parametrize("code, says", [
    (None, "no answer (down, or unreachable from this node)"),
    ("403", "refuses this node's address (HTTP 403"),
])
def test_luks_unlock_retries_saying_so_then_panics_naming_what_tang_answered(env, code, says):
    luks_disk(env, "bound")
    (env.t / "tang.down").write_text("")
    if code:
        (env.t / "http/adv.code").write_text(code)
    r = boot(env, **ISCSI, **LUKS, DL_LUKS_WAIT="60")
    assert r.returncode == 42, r.stdout + r.stderr
    dev = str(env.t / "dev/sda")
    waits = [x for x in r.stdout.splitlines()
             if x.startswith("diskless: luks: cannot unlock %s: no answer from Tang at %s (retrying, " % (dev, TANG))]
    assert 6 <= len(waits) <= 8, r.stdout                         # the first failure, then every ~10 s for 60 s
    line = panic_line(r)
    assert "luks: cannot unlock %s after 60 s" % dev in line and says in line
    assert "Error communicating with server" in line or "could not be opened" in line
    assert not [c for c in env.calls("mount") if str(env.t / "root") in c]   # nothing mounted
    assert env.calls("cryptsetup")[0][1] == "isLuks" and not [c for c in luks_calls(env) if c[1] != "luks"]


@pytest.mark.parametrize("opens", [True, False])
def test_luks_without_tang_the_console_opens_the_root_with_the_recovery_passphrase(env, opens):
    """After the wait, the emergency shell names the command; a root opened there is mounted when the shell is left,
    and leaving it without opening the root mounts nothing."""
    luks_disk(env, "bound")
    (env.t / "tang.down").write_text("")
    (env.t / "console").write_text('mkdir -p "$DL_DEV/mapper"; : > "$DL_DEV/mapper/dlcrypt"\n' if opens else ":\n")
    r = boot(env, **ISCSI, **LUKS, DL_LUKS_WAIT="20")
    dev = str(env.t / "dev/sda")
    assert "With the node's recovery passphrase: cryptsetup open %s dlcrypt, then exit" % dev in panic_line(r)
    mounted = ["mount", "-t", "ext4", "-o", "ro", str(env.t / "dev/mapper/dlcrypt"), str(env.t / "root")] in env.calls("mount")
    if opens:
        assert r.returncode == 0 and mounted, r.stdout + r.stderr
        assert "diskless: luks: %s was opened at the console (recovery passphrase)\n" % dev in r.stdout
    else:
        assert r.returncode == 1 and not mounted, r.stdout + r.stderr


@pytest.mark.parametrize("state, says", [
    ("reencrypting", "holds a LUKS2 header with an unfinished in-place encryption"),
    ("unbound", "is LUKS but has no Clevis binding"),
])
def test_luks_cut_off_first_boot_panics_with_the_reclone_hint(env, state, says):
    luks_disk(env, state)
    r = boot(env, **ISCSI, **LUKS)
    assert r.returncode == 42
    line = panic_line(r)
    assert says in line and "lived only in its RAM" in line
    for hint in ("Re-clone it", "LIO backstore", "zfs destroy", "nodes/node001-root", "re-run site.yml"):
        assert hint in line, hint
    assert luks_calls(env) == [] and not [c for c in env.calls("mount") if str(env.t / "root") in c]


def test_luks_refuses_to_encrypt_a_volume_without_room_for_the_header(env):
    luks_disk(env, room_mib=16)
    r = boot(env, **ISCSI, **LUKS)
    assert r.returncode == 42
    assert "needs 32 MiB after the file system" in panic_line(r) and "24 MiB and its ext4 8 MiB" in panic_line(r)
    assert luks_calls(env) == []


def test_luks_first_boot_without_tang_leaves_the_volume_plain(env):
    luks_disk(env)
    (env.t / "tang.down").write_text("")
    r = boot(env, **ISCSI, **LUKS, DL_LUKS_WAIT="20")
    assert r.returncode == 42
    assert "luks: cannot encrypt %s yet: no answer from every Tang at %s" % (env.t / "dev/sda", TANG) in r.stdout
    line = panic_line(r)
    assert "left as it was (plain, not encrypted): the next boot tries again" in line
    assert {c[1] for c in luks_calls(env)} == {"encrypt"}          # nothing written


def test_luks_binding_that_fails_after_the_encryption_panics_with_the_reclone_hint(env):
    luks_disk(env)
    (env.t / "bind.fail").write_text("")
    r = boot(env, **ISCSI, **LUKS, DL_LUKS_WAIT="20")
    assert r.returncode == 42
    line = panic_line(r)
    assert "is encrypted but Clevis could not bind it to Tang" in line and "Re-clone it" in line
    assert "binding it to Tang at %s failed, retrying" % TANG in r.stdout
    acted = [c[1] for c in luks_calls(env)]
    assert "reencrypt" in acted and "luksRemoveKey" not in acted and ["luks", "unlock"] not in [c[1:3] for c in luks_calls(env)]


@pytest.mark.parametrize("dump, says", [
    (None, "refused to encrypt"),                     # nothing written: the next boot tries again
    ("reencrypting", "could not be encrypted in place"),
])
def test_luks_encryption_that_fails(env, dump, says):
    luks_disk(env)
    (env.t / "reencrypt_rc").write_text("1")
    if dump:
        (env.t / "reencrypt_dump").write_text(luks_dump(dump))
    else:
        (env.t / "reencrypt_dump").unlink()
    r = boot(env, **ISCSI, **LUKS)
    assert r.returncode == 42 and says in panic_line(r)
    assert "bind" not in [c[2] for c in luks_calls(env) if c[0] == "clevis"]


def test_mirror_luks_unlocks_on_top_of_md(env):
    luks_disk(env, name="sda", portal="10.0.0.11", sb=True)
    luks_disk(env, name="sdb", portal="10.0.0.12", sb=True, dev="8:16")
    (env.t / "luks.dlroot").write_text(luks_dump("bound"))
    r = boot(env, **MIRROR, **LUKS)
    assert r.returncode == 0, r.stdout + r.stderr
    md, mapper = str(env.t / "dev/md/dlroot"), str(env.t / "dev/mapper/dlcrypt")
    assert md_calls(env)[0][:2] == ["--assemble", md]
    assert [c[1:] for c in luks_calls(env)] == [["luks", "unlock", "-d", md, "-n", "dlcrypt"]]
    assert ["mount", "-t", "ext4", "-o", "ro", mapper, str(env.t / "root")] in env.calls("mount")
    assert env.root_env()["DL_ROOT_DEVICE"] == mapper and env.root_env()["DL_LUKS_DEVICE"] == md
    assert (env.t / "run/diskless/luks").read_text() == md + "\n"
    assert "root mirror: md dlroot over sda (10.0.0.11) sdb (10.0.0.12) assembled, luks dlcrypt" in r.stdout


def test_mirror_luks_first_boot_encrypts_the_md_array_not_a_leg(env):
    luks_disk(env, name="sda", portal="10.0.0.11")
    luks_disk(env, name="sdb", portal="10.0.0.12", dev="8:16")
    # the array over two untouched clones is the image's ext4 (metadata 1.0 at the end), its size the legs' less md's
    (env.t / "md.img").write_bytes(ext4_sb(blocks=FS_BLOCKS))
    (env.t / "sys/block/dlroot").mkdir()
    (env.t / "sys/block/dlroot/size").write_text("%d\n" % ((FS_BLOCKS * 4096 + 32 * MIB) // 512))
    r = boot(env, **MIRROR, **LUKS)
    assert r.returncode == 0, r.stdout + r.stderr
    md = str(env.t / "dev/md/dlroot")
    assert md_calls(env)[0][:2] == ["--create", md] and "--assume-clean" in md_calls(env)[0]
    acted = luks_calls(env)
    assert [c[-1] for c in acted if c[1] in ("reencrypt", "luksRemoveKey")] == [md, md]
    assert ["luks", "bind", "-y", "-d", md] == acted[2][1:6] and acted[-1][1:] == ["luks", "unlock", "-d", md, "-n", "dlcrypt"]
    assert "luks: %s encrypted and bound to Tang in" % md in r.stdout


@pytest.mark.parametrize("conf, says", [
    (dict(LIVE, **LUKS), "a LUKS root is for the iscsi, mirror and image modes only"),
    (dict(ISCSI, DL_LUKS="1", DL_TANG_URLS="", DL_TANG_THRESHOLD=""), "DL_TANG_URLS is empty"),
    (dict(ISCSI, DL_LUKS="1", DL_TANG_URLS=TANG, DL_TANG_THRESHOLD="2"), "must be 1 to the number of DL_TANG_URLS (1)"),
    (dict(ISCSI, DL_LUKS="1", DL_TANG_URLS="10.0.0.1/tang", DL_TANG_THRESHOLD="1"), "is not an http(s) URL"),
    (dict(ISCSI, DL_LUKS="yes"), "DL_LUKS='yes'"),
])
def test_luks_settings_that_make_no_sense_stop_the_boot(env, conf, says):
    env.disk("10.0.0.11", "sda", ext4_sb())
    r = boot(env, **conf)
    assert r.returncode == 42 and says in panic_line(r)
    assert env.calls("iscsistart") == [] and luks_calls(env) == []


def luks_image_paths(env, uuids=("7b0e8f2c", "7b0e8f2c"), state="bound"):
    """The encrypted image's LUN on two portals (one serial), each path with its LUKS UUID; the multipath map's
    LUKS state is `state` (None: no LUKS header)."""
    env.disk("10.0.0.11", "sda", wwid="naa.6001405abc", sectors=4186112, dev="8:0")
    env.disk("10.0.0.12", "sdb", wwid="naa.6001405abc", sectors=4186112, dev="8:16")
    for name, uuid in zip(("sda", "sdb"), uuids):
        (env.t / ("uuid." + name)).write_text(uuid + "\n")
    if state:
        (env.t / "luks.36001405abc").write_text(luks_dump(state))


def test_image_luks_unlocks_the_multipath_map_read_only_under_the_overlay(env):
    luks_image_paths(env)
    r = boot(env, **IMAGE, **LUKS)
    assert r.returncode == 0, r.stdout + r.stderr
    mp, mapper = str(env.t / "dev/mapper/36001405abc"), str(env.t / "dev/mapper/dlcrypt")
    acted = [c[1:] for c in luks_calls(env)]
    # the two ends of one pipe: they run at once, so their log lines come in either order
    assert acted[:2] == [["luksUUID", str(env.t / "dev/sda")], ["luksUUID", str(env.t / "dev/sdb")]], acted
    assert sorted(acted[2:]) == [["luks", "pass", "-d", mp, "-s", "1"],
                                 ["open", "--readonly", "--key-file", "-", mp, "dlcrypt"]], acted
    assert (env.t / "stdin.open").read_text() == "key-of-slot-1"     # Clevis's key, through the pipe only
    assert [c[1] for c in env.calls("dmsetup")] == ["create"]      # the multipath map first, then dm-crypt over it
    run = env.t / "run/diskless"
    assert ["mount", "-t", "ext4", "-o", "ro,noload", mapper, str(run / "lower")] in env.calls("mount")
    assert env.root_env()["DL_LUKS_DEVICE"] == mp and (run / "luks").read_text() == mp + "\n"
    assert "over sda sdb (2 of 2 paths), luks dlcrypt (read-only), overlay tmpfs" in r.stdout


@pytest.mark.parametrize("uuids, state, says", [
    (("7b0e8f2c", "0d1e2f3a"), "bound", "not the same ciphertext (LUKS UUID per path: sda=7b0e8f2c sdb=0d1e2f3a)"),
    (("7b0e8f2c", "7b0e8f2c"), None, "is unknown (not a LUKS volume bound to Tang)"),
    (("7b0e8f2c", "7b0e8f2c"), "unbound", "is unbound (not a LUKS volume bound to Tang)"),
])
def test_image_luks_never_encrypts_nor_mounts_an_image_that_is_not_one_bound_ciphertext(env, uuids, state, says):
    luks_image_paths(env, uuids, state)
    r = boot(env, **IMAGE, **LUKS)
    assert r.returncode == 42 and says in panic_line(r), r.stdout
    assert not [c for c in luks_calls(env) if c[1] in ("reencrypt", "luks")]
    assert not [c for c in env.calls("mount") if str(env.t / "run/diskless/lower") in c]


def test_luks_wait_defaults_to_five_minutes(env):
    env.node_conf(**ISCSI, **LUKS)
    r = env.run("dl_load_conf; echo ${DL_LUKS_WAIT}")
    assert r.stdout.strip() == "300"


# --- md-readd (booted node) ----------------------------------------------------------------------------

def readd_env(env, member_state=None, logged_in=True):
    """A mirror node after boot: two sessions, /dev/md/dlroot -> md127; sdb's member state as given."""
    for n, (target, portal, disk) in enumerate([(T1, "10.0.0.11", "sda"), (T2, "10.0.0.12", "sdb")], start=1):
        s = env.t / ("sys/class/iscsi_session/session%d" % n)
        (s / ("device/target%d:0:0/%d:0:0:0/block/%s" % (n, n, disk))).mkdir(parents=True)
        (s / "targetname").write_text(target + "\n")
        (s / "state").write_text(("LOGGED_IN" if logged_in or n == 1 else "FAILED") + "\n")
        c = env.t / ("sys/class/iscsi_connection/connection%d:0" % n)
        c.mkdir(parents=True)
        (c / "persistent_address").write_text(portal + "\n")
        (c / "persistent_port").write_text("3260\n")
        (env.t / "dev" / disk).write_bytes(b"")
    (env.t / "dev/md").mkdir()
    (env.t / "dev/md127").write_bytes(b"")
    os.symlink("../md127", env.t / "dev/md/dlroot")
    md = env.t / "sys/block/md127/md"
    (md / "dev-sda").mkdir(parents=True)
    (md / "dev-sda/state").write_text("in_sync,failfast\n")
    if member_state:
        (md / "dev-sdb").mkdir()
        (md / "dev-sdb/state").write_text(member_state + "\n")
    (env.t / "run/diskless/root.env").write_text(
        "DL_ROOT_MODE='mirror'\nDL_MD_NAME='dlroot'\nDL_PATHS='%s'\n" % MIRROR["DL_PATHS"])


def run_readd(env):
    e = {"PATH": "%s:/usr/bin:/bin" % (env.t / "bin"), "T": str(env.t), "DL_SYS": str(env.t / "sys"),
         "DL_DEV": str(env.t / "dev"), "DL_ROOT_ENV": str(env.t / "run/diskless/root.env"),
         "DL_STATE": str(env.t / "run/diskless")}
    return subprocess.run([SHELL, READD], env=e, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("state, logged_in, readd", [
    ("faulty,failfast", True, True),        # kicked out by md, back and readable -> re-add
    (None, True, True),                     # removed already -> re-add
    ("in_sync,failfast", True, False),      # an active member -> nothing
    ("spare", True, False),                 # recovering -> nothing
    ("faulty", False, False),               # session not logged in yet -> nothing
])
def test_md_readd_only_a_returned_readable_non_member(env, state, logged_in, readd):
    readd_env(env, state, logged_in)
    r = run_readd(env)
    assert r.returncode == 0, r.stderr
    md = str(env.t / "dev/md/dlroot")
    calls = [c[1:] for c in env.calls("mdadm")]
    if readd:
        assert calls == [[md, "--remove", "failed"], [md, "--remove", "detached"],
                         [md, "--re-add", "--failfast", str(env.t / "dev/sdb")]]
        assert ["dd", "if=%s" % (env.t / "dev/sdb"), "of=/dev/null", "bs=4096", "count=1", "iflag=direct"] in env.calls("dd")
        assert "<5>diskless-md-readd: re-added" in r.stdout
    else:
        assert calls == []


def test_md_readd_refused_is_logged_once_and_never_adds(env):
    readd_env(env, "faulty")
    (env.t / "readd_rc").write_text("1")
    r1 = run_readd(env)
    r2 = run_readd(env)
    assert "<3>diskless-md-readd: mdadm refused to re-add" in r1.stdout and "NOT adding it" in r1.stdout
    assert r2.stdout == ""                                      # said once, not every 10 s
    assert not [c for c in env.calls("mdadm") if "--add" in c]


def test_md_readd_does_nothing_on_other_modes(env):
    (env.t / "run/diskless/root.env").write_text("DL_ROOT_MODE='image'\n")
    r = run_readd(env)
    assert r.returncode == 0 and env.calls() == []


# --- iscsi-timeouts (booted node) ----------------------------------------------------------------------

def test_iscsi_timeouts_config_and_sysfs(env):
    (env.t / "iscsid.conf").write_text("node.startup = manual\nnode.session.timeo.replacement_timeout = 120\n"
                                       "node.conn[0].timeo.noop_out_interval = 5\n")
    (env.t / "run/diskless/root.env").write_text("DL_ROOT_MODE='mirror'\nDL_ISCSI_REPLACEMENT_TIMEOUT='5'\n"
                                                 "DL_ISCSI_NOOP_INTERVAL='2'\nDL_ISCSI_NOOP_TIMEOUT='3'\n")
    s = env.t / "sys/class/iscsi_session/session1"
    s.mkdir(parents=True)
    (s / "recovery_tmo").write_text("120\n")
    e = {"PATH": "/usr/bin:/bin", "DL_ROOT_ENV": str(env.t / "run/diskless/root.env"),
         "DL_ISCSID_CONF": str(env.t / "iscsid.conf"), "DL_ISCSID_RUN_CONF": str(env.t / "run/diskless/iscsid.conf"),
         "DL_SYS": str(env.t / "sys")}
    assert subprocess.run([SHELL, TIMEOUTS, "config"], env=e, check=False).returncode == 0
    conf = (env.t / "run/diskless/iscsid.conf").read_text().splitlines()
    assert "node.startup = manual" in conf
    assert [line for line in conf if "replacement_timeout" in line] == ["node.session.timeo.replacement_timeout = 5"]
    assert "node.conn[0].timeo.noop_out_interval = 2" in conf and "node.conn[0].timeo.noop_out_timeout = 3" in conf
    assert subprocess.run([SHELL, TIMEOUTS, "sysfs"], env=e, check=False).returncode == 0
    assert (s / "recovery_tmo").read_text() == "5\n"


def timeouts_env(env, value="120\n"):
    (env.t / "run/diskless/root.env").write_text("DL_ROOT_MODE='iscsi'\nDL_ISCSI_REPLACEMENT_TIMEOUT='86400'\n")
    s = env.t / "sys/class/iscsi_session/session1"
    s.mkdir(parents=True)
    (s / "targetname").write_text("iqn.x:t\n")
    (s / "state").write_text("LOGGED_IN\n")
    if value is not None:
        (s / "recovery_tmo").write_text(value)
    e = {"PATH": "/usr/bin:/bin", "DL_ROOT_ENV": str(env.t / "run/diskless/root.env"), "DL_SYS": str(env.t / "sys"),
         "DL_TIMEOUTS_TRIES": "2"}
    return s, e


def test_iscsi_timeouts_leaves_a_session_already_at_the_value_alone(env):
    s, e = timeouts_env(env, "86400\n")
    (s / "recovery_tmo").chmod(0o444)
    before = (s / "recovery_tmo").stat().st_mtime_ns
    r = subprocess.run([SHELL, TIMEOUTS, "sysfs"], env=e, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (s / "recovery_tmo").stat().st_mtime_ns == before
    assert "session1 iqn.x:t: recovery_tmo 86400 s (root mode iscsi)" in r.stdout


def test_iscsi_timeouts_tries_again_then_fails_naming_the_session(env):
    # a write that keeps failing (the kernel refuses while iscsid re-opens the connection): here a directory
    s, e = timeouts_env(env, None)
    (s / "recovery_tmo").mkdir()
    r = subprocess.run([SHELL, TIMEOUTS, "sysfs"], env=e, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "iscsi-timeouts: session1: cannot set recovery_tmo to 86400 (state LOGGED_IN) after 2 tries"


HOSTKEYS = os.path.join(NODE, "usr/lib/diskless-cluster/ssh-hostkeys")


def test_ssh_hostkeys_installs_the_boot_datas_keys_and_makes_the_public_ones(tmp_path):
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen not installed")
    run, etc = tmp_path / "run", tmp_path / "etc"
    run.mkdir()
    etc.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@node003", "-f", str(run / "ssh_host_ed25519_key")],
                   check=True)
    (run / "ssh_host_ed25519_key.pub").unlink()   # the boot data carries only the private key
    (etc / "ssh_host_ed25519_key").write_text("an old key\n")
    e = {"PATH": "/usr/bin:/bin", "DL_HOSTKEYS_RUN": str(run), "DL_HOSTKEYS_ETC": str(etc)}
    r = subprocess.run([SHELL, HOSTKEYS], env=e, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert (etc / "ssh_host_ed25519_key").read_bytes() == (run / "ssh_host_ed25519_key").read_bytes()
    assert oct((etc / "ssh_host_ed25519_key").stat().st_mode & 0o777) == "0o600"
    pub = subprocess.run(["ssh-keygen", "-y", "-f", str(run / "ssh_host_ed25519_key")], capture_output=True, text=True,
                         check=True).stdout.split()[:2]
    assert (etc / "ssh_host_ed25519_key.pub").read_text().split()[:2] == pub
    assert "ed25519 host key from the boot data" in r.stdout
    assert "no ecdsa host key in the boot data; made one" in r.stdout   # ecdsa was not given: made here
    assert (etc / "ssh_host_ecdsa_key").stat().st_size > 0
    r2 = subprocess.run([SHELL, HOSTKEYS], env=e, capture_output=True, text=True, check=False)
    assert r2.returncode == 0 and r2.stdout == ""                       # the second start changes nothing


def test_shellcheck_every_node_script():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    scripts = [SCRIPT, READD, TIMEOUTS] + [os.path.join(NODE, p) for p in (
        "usr/share/initramfs-tools/hooks/diskless", "usr/lib/diskless-cluster/initiatorname",
        "usr/lib/diskless-cluster/ssh-hostkeys")] + [os.path.join(NODE, "../../../provisioning_host/files/diskless-node-hostkeys")]
    r = subprocess.run(["shellcheck"] + scripts, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


def test_image_luks_without_tang_stops_without_a_recovery_hint(env):
    luks_image_paths(env)
    (env.t / "tang.down").write_text("")
    r = boot(env, **IMAGE, **LUKS, DL_LUKS_WAIT="20")
    assert r.returncode == 42, r.stdout + r.stderr
    line = panic_line(r)
    assert "luks: cannot unlock %s after 20 s" % (env.t / "dev/mapper/36001405abc") in line
    assert "recovery passphrase" not in line            # an image has none (the planner refuses node_luks_recovery)
    assert not [c for c in env.calls("mount") if str(env.t / "run/diskless/lower") in c]
