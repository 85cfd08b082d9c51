"""The diskless.cluster lab (docs/lab.md): QEMU VMs and podman containers on a private bridge in a network
namespace, standing in for the machines of an ordinary cluster inventory (inventories/lab).

    paths      where things are (repository, $DL_CACHE) and the run state
    util       errors, logging, running tools, sizes and durations, locks, process probes
    inventory  the one reader of a lab inventory (ansible-inventory --list) -> Lab, VM, Container
    images     VM image recipes, their cache key, the build (mmdebstrap) and the cache
    ssh        the lab's SSH keys, ssh_config and known_hosts
    network    namespace, bridge, taps
    container  podman provisioning containers in the namespace
    vm         QEMU command lines, start/stop, waiting for SSH, state
    cli        the commands (`python3 -m lab`; humans: hack/lab.sh)
    client     what lab tests and benches use (labctl wrapper, Ansible JSON runs, consoles, timings)
"""
