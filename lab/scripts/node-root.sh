#!/bin/sh
# Run on a booted lab node (`hack/lab.sh up` pipes it through SSH): one line saying, from inside, what the
# root file system is and what it stands on, for every root mode. Exit 1 when the root is not what a
# diskless node's root must be.
set -u
name=$(hostname)
mode=unknown
# shellcheck source=/dev/null
[ -r /run/diskless/root.env ] && . /run/diskless/root.env && mode=${DL_ROOT_MODE:-unknown}
fstype=$(findmnt -no FSTYPE /)
src=$(findmnt -no SOURCE /)
# an encrypted root (node_luks): a LUKS dm-crypt device over the mode's own device (the LUN, the md array, the
# multipath map of an image). unwrap_luks NAME [NOTE]: NAME's block device, or when it is dm-crypt the device
# under it, in $inner; $luks says what the encryption is
luks=
unwrap_luks() {
    inner=$1
    case $(cat "/sys/block/$1/dm/uuid" 2>/dev/null) in
    CRYPT-LUKS*)
        luks=", encrypted: LUKS $(cat "/sys/block/$1/dm/name") ($1${2:+, $2})"
        for slave in "/sys/block/$1/slaves"/*; do inner=${slave##*/}; break; done ;;
    esac
}
unwrap_luks "$(basename "$(readlink -f "$src")")"
[ -z "$luks" ] || src=/dev/$inner

# "sdX (target from portal, STATE)" of one iSCSI disk, or nothing when it is not on a session
disk_path() {
    s=$(readlink -f "/sys/class/block/$1/device" | grep -o 'session[0-9]*' | head -n 1)
    [ -n "$s" ] || return 1
    printf '%s (%s from %s, %s)' "$1" "$(cat "/sys/class/iscsi_session/$s/targetname")" \
        "$(cat "/sys/class/iscsi_connection/connection${s#session}:0/persistent_address")" \
        "$(cat "/sys/class/iscsi_session/$s/state")"
}

case $mode in
iscsi)
    dev=$(basename "$(readlink -f "$src")")
    p=$(disk_path "$dev") || { echo "$name: / is $src, NOT on an iSCSI disk"; exit 1; }
    echo "$name: / is $src ($fstype) on iSCSI disk $p as $(sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi)$luks" ;;
mirror)
    md=$(basename "$(readlink -f "$src")")
    d=/sys/block/$md/md
    [ -d "$d" ] || { echo "$name: / is $src, NOT an md array"; exit 1; }
    line="$name: / is $src ($fstype), md $(cat "$d/level") $(cat "$d/array_state"), bitmap $(cat "$d/bitmap/location"), members:"
    for m in "$d"/dev-*; do
        dev=${m##*/dev-}
        line="$line $(disk_path "$dev" || echo "$dev") [$(cat "$m/state")];"
    done
    echo "$line$luks" ;;
image)
    lower=$(findmnt -no SOURCE /run/diskless/lower)
    unwrap_luks "$(basename "$(readlink -f "$lower")")" read-only    # an encrypted image: opened read-only
    dm=$inner
    if [ "$fstype" != overlay ] || [ ! -d "/sys/block/$dm/slaves" ]; then
        echo "$name: / is $src ($fstype), NOT an overlay on multipath"; exit 1
    fi
    line="$name: / is an overlay (upper $(findmnt -no FSTYPE /run/diskless/rw) in RAM) over multipath $(cat "/sys/block/$dm/dm/name"), paths:"
    for s in /sys/block/"$dm"/slaves/*; do
        line="$line $(disk_path "${s##*/}" || echo "${s##*/}");"
    done
    echo "$line$luks" ;;
live)
    lower=$(findmnt -no SOURCE /run/diskless/lower)
    [ "$fstype" = overlay ] || { echo "$name: / is $src ($fstype), NOT an overlay"; exit 1; }
    echo "$name: / is an overlay over squashfs $(cat "/sys/block/$(basename "$lower")/loop/backing_file") in RAM, fetched from ${DL_LIVE_URL:-?}" ;;
*)
    echo "$name: / is $src ($fstype); root mode unknown (no /run/diskless/root.env)"; exit 1 ;;
esac
