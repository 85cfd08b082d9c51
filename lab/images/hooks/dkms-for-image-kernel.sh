#!/usr/bin/env bash
# mmdebstrap customize hook, $1 = image root. Makes sure every DKMS module (zfs) is built and installed
# for the kernel(s) installed IN THE IMAGE — never for the build host's running kernel — and fails the
# build if one is not. The packages' own postinst hooks normally did this already; then this is a no-op.
set -euo pipefail
root="$1"
shopt -s nullglob
kernels=()
for d in "$root"/lib/modules/*/; do
  v="$(basename "$d")"
  [ -e "$root/boot/vmlinuz-$v" ] && kernels+=("$v")
done
[ "${#kernels[@]}" -gt 0 ] || { echo "dkms hook: no kernel installed in the image" >&2; exit 1; }
for v in "${kernels[@]}"; do
  [ -d "$root/usr/src/linux-headers-$v" ] || { echo "dkms hook: no headers for image kernel $v (add linux-headers-amd64)" >&2; exit 1; }
  chroot "$root" dkms autoinstall -k "$v"
  status="$(chroot "$root" dkms status -k "$v")"
  echo "$status"
  if grep -v ': installed' <<<"$status" | grep -q .; then
    echo "dkms hook: some DKMS modules are not installed for $v:" >&2
    echo "$status" >&2
    exit 1
  fi
  chroot "$root" depmod -a "$v"
  # Drop the DKMS build trees (hundreds of MiB of objects); the installed .ko files stay.
  rm -rf "$root"/var/lib/dkms/*/*/build
done
