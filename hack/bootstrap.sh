#!/usr/bin/env bash
# One-time (idempotent) set-up of everything the tests and the lab need on a Debian 12 host:
# Debian packages (incl. shellcheck for ansible-test sanity), a pinned venv outside the repo, the collection link,
# podman's containers.conf.
set -euo pipefail
source "$(dirname "$0")/env.sh"

APT_PACKAGES=(
  podman runc uidmap mmdebstrap qemu-system-x86 qemu-utils dnsmasq-base grub-common ipxe
  zstd squashfs-tools git make curl ca-certificates iproute2 e2fsprogs tftp-hpa isc-dhcp-client openssh-client
  python3-venv shellcheck
  cryptsetup-bin clevis clevis-luks   # the controller encrypts the images of LUKS nodes of root mode image (luks_image)
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$DL_VENV/bin/ansible-playbook" ]; then
  echo "bootstrap: creating venv $DL_VENV"
  rm -rf "$DL_VENV"
  python3 -m venv "$DL_VENV"
  "$DL_VENV/bin/pip" install -q --disable-pip-version-check -r "$DL_ROOT/requirements.txt" 2> >(grep -v "is ignored: it is neither" >&2)
fi

# (hack/env.sh links this checkout as the collection diskless.cluster under $DL_COLLECTIONS)

cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
echo "bootstrap: ready (venv $DL_VENV)"
