#!/usr/bin/env bash
# mmdebstrap customize hook, $1 = image root. Turns a minbase tree into a lab VM root that boots with
# -kernel/-initrd, root=/dev/vda, and takes its identity from the kernel command line:
#   systemd.hostname=NAME  ip=ADDR::GW:NETMASK::eth0:off  net.ifnames=0
# (systemd-network-generator turns ip= into a systemd-networkd .network file in /run), so one image
# serves every VM of its kind.
set -euo pipefail
root="$1"

# Identity comes from the kernel command line; nothing host-specific is baked in.
rm -f "$root/etc/hostname" "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
: > "$root/etc/machine-id"            # empty => systemd generates a fresh one at every boot
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
printf '# root is given on the kernel command line (root=/dev/vda rw)\n' > "$root/etc/fstab"

# Networking: systemd-networkd configured from ip= by systemd-network-generator.
chroot "$root" systemctl enable systemd-networkd.service systemd-network-generator.service >/dev/null 2>&1
chroot "$root" systemctl disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# Only the lab host key (installed by labctl as a baked file) — drop the per-build generated ones.
find "$root/etc/ssh" -maxdepth 1 -name 'ssh_host_*' ! -name 'ssh_host_ed25519_key*' -delete

# Nothing periodic, no VGA console; keep the serial getty (its prompt in the console log marks "booted").
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
            getty@tty1.service; do
  ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done
