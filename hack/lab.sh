#!/usr/bin/env bash
# The embedded lab (docs/lab.md): QEMU VMs on a private bridge in the network namespace dl-lab. The one
# command line for humans; it runs the lab package (`python3 -m lab`, lab/cli.py) with the project env.
#   hack/lab.sh up                    the whole lab cluster: machines (provisioning container, storage
#                                     VM), then playbooks/site.yml (images, provisioning, storage, the
#                                     disk-less nodes boot from iSCSI), then verify.yml; ends with one
#                                     line per node, read inside the node: what / is mounted from
#   hack/lab.sh up HOST...            only start those lab machines (network + VMs, wait for SSH)
#   hack/lab.sh images                build (or reuse) the VM images and the nodes' image bundles, here
#                                     on the host: the lab namespace has no route to the Debian mirror
#   hack/lab.sh down [HOST...]        stop everything (idempotent, also after a crash), or power off VMs
#   hack/lab.sh restart HOST... [--boot kernel|disk]   power-cycle VMs keeping their disks
#   hack/lab.sh status                what runs; SSH reachable?
#   hack/lab.sh exec -- CMD...        run CMD inside the namespace with the project env
#                                     (ANSIBLE_INVENTORY=inventories/lab), e.g. exec -- ansible storage -m ping
#   hack/lab.sh ssh HOST [-- CMD...]  e.g. hack/lab.sh ssh sch1 -- zfs list -Hp
#   hack/lab.sh console HOST          the VM's serial console log
#   hack/lab.sh build-image [NAME]    build (or reuse) a cached VM image
#   hack/lab.sh -i INVENTORY CMD...   the same against another lab inventory;
#                                     --json: a JSON result on stdout (up, down, restart, status, build-image)
# Needs root (namespaces, taps, chroot builds).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/bootstrap.sh" >/dev/null
# shellcheck source=hack/env.sh
source "$here/env.sh"
# (env.sh puts $DL_ROOT on PYTHONPATH: the lab package runs from any directory)
lab() { python3 -m lab "$@"; }
images() {
  lab build-image
  (cd "$DL_ROOT" && ansible-playbook -i "${DL_LAB_INVENTORY:-inventories/lab}" playbooks/images.yml)
}
case "${1:-}" in
  ""|-h|--help|help)
    sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
  exec)
    shift; [ "${1:-}" = "--" ] && shift
    exec python3 -m lab exec -- "$@" ;;
  images)
    images ;;
  up)
    shift
    [ $# -gt 0 ] && exec python3 -m lab up "$@"
    # images first, outside the namespace (site.yml's images.yml then finds the bundles built)
    images
    lab up
    cd "$DL_ROOT"
    # The first site.yml of this lab is timed once (bench/boot_time.py reports it next to a re-run).
    first="$DL_CACHE/lab/run/site-first.json"
    start=$SECONDS
    lab exec -- ansible-playbook playbooks/site.yml
    took=$((SECONDS - start))
    echo "lab: site.yml took ${took} s"
    if [ ! -f "$first" ]; then
      printf '{"seconds": %d, "at": "%s"}\n' "$took" "$(date -u +%FT%TZ)" > "$first"
      # it powered every node on at once: each one's power-on -> sshd (bench/root_modes.py prints them)
      lab exec -- python3 -c 'from lab.client import record_concurrent_boots; record_concurrent_boots()' || true
      # and what the LUKS nodes' first boot spent encrypting their volume (bench/root_modes.py)
      lab exec -- python3 -c 'from lab.client import record_luks_first_boots; record_luks_first_boots()' || true
    fi
    lab exec -- ansible-playbook playbooks/verify.yml
    # From inside each node: what / is mounted from, and the iSCSI session under it.
    nodes=$(ansible -i "${DL_LAB_INVENTORY:-inventories/lab}" compute --list-hosts | tail -n +2)
    for node in $nodes; do
      lab ssh "$node" -- sh -s < "$DL_ROOT/lab/scripts/node-root.sh"
    done ;;
  *)
    exec python3 -m lab "$@" ;;
esac
