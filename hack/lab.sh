#!/usr/bin/env bash
# The embedded lab (docs/lab.md): QEMU VMs on a private bridge in the network namespace dl-lab.
#   hack/lab.sh up [HOST...]          build/reuse images, start network + VMs, wait for SSH
#   hack/lab.sh down                  stop everything (idempotent, also after a crash)
#   hack/lab.sh status                what runs; SSH reachable?
#   hack/lab.sh exec -- CMD...        run CMD inside the namespace with the project env
#                                     (ANSIBLE_INVENTORY=inventories/lab), e.g. exec -- ansible storage -m ping
#   hack/lab.sh ssh HOST [-- CMD...]  e.g. hack/lab.sh ssh sch1 -- zfs list -Hp
#   hack/lab.sh console HOST          the VM's serial console log
#   hack/lab.sh build-image [NAME]    build (or reuse) a cached VM image
# Needs root (namespaces, taps, chroot builds).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/bootstrap.sh" >/dev/null
source "$here/env.sh"
labctl="$DL_ROOT/lab/labctl.py"
case "${1:-}" in
  ""|-h|--help|help)
    sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
  exec)
    shift; [ "${1:-}" = "--" ] && shift
    exec python3 "$labctl" exec -- "$@" ;;
  *)
    exec python3 "$labctl" "$@" ;;
esac
