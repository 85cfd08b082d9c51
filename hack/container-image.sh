#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build (or load from cache) the local podman image the molecule scenarios run in.
#
#   hack/container-image.sh            # prints the image reference, e.g. localhost/diskless-molecule:3f2a…
#
# No registry is reachable from our CI machines, so the image is made with mmdebstrap from the Debian
# mirror and `podman import`ed. Containers on the test networks cannot reach the mirror either, so every
# package a role or a test client needs is baked in here. The tag is a hash of this recipe; the image is
# saved to $DL_CACHE/images/ so a fresh podman store loads it in seconds instead of rebuilding.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/env.sh
source "$here/env.sh"

NAME=diskless-molecule
SUITE=bookworm
MIRROR="${DL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=(
  # every container: systemd as PID 1, Ansible's Python
  systemd systemd-sysv dbus python3 python3-apt ca-certificates iproute2 procps
  # provisioning host (roles/provisioning_host)
  dnsmasq nginx chrony rsyslog ipxe openssh-client tang
  # test clients: real DHCP, TFTP, HTTP, NTP and syslog clients; Clevis (a LUKS node's Tang client)
  isc-dhcp-client tftp-hpa curl bsdutils clevis
)

recipe_hash="$( { printf '%s\n' "$SUITE" "$MIRROR" "${PACKAGES[@]}"; sed -n '/^build()/,$p' "${BASH_SOURCE[0]}"; } \
  | sha256sum | cut -c1-12)"
ref="localhost/$NAME:$recipe_hash"
archive="$DL_CACHE/images/$NAME-$recipe_hash.tar"

build() {
  local work
  work="$(mktemp -d "$DL_CACHE/image-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  local include
  include="$(IFS=,; echo "${PACKAGES[*]}")"
  # minbase + our list; no recommends (keeps nginx/chrony lean); services are enabled by the packages,
  # except tangd.socket: Debian's listens on :80 (nginx's port, every client container too); the provisioning
  # role moves it to 127.0.0.1 and enables it.
  # The hooks are run by mmdebstrap, which passes the root directory as $1: single quotes on purpose.
  # shellcheck disable=SC2016
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; touch "$1"/etc/machine-id' \
    --customize-hook='chroot "$1" systemctl mask getty@tty1.service console-getty.service systemd-logind.service' \
    --customize-hook='chroot "$1" systemctl disable tangd.socket' \
    "$SUITE" "$work/rootfs.tar" "$MIRROR" >&2
  podman import --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
    "$work/rootfs.tar" "$ref" >/dev/null
}

if ! podman image exists "$ref"; then
  if [ -f "$archive" ]; then
    echo "container-image: loading $archive" >&2
    podman load --quiet --input "$archive" >/dev/null
  else
    echo "container-image: building $ref (mmdebstrap, ~1 min)" >&2
    mkdir -p "$DL_CACHE/images"
    build
    podman save --quiet --output "$archive.tmp" "$ref" && mv "$archive.tmp" "$archive"
  fi
fi
echo "$ref"
