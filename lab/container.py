"""`lab_kind: container` hosts: podman systemd containers of hack/container-image.sh's image, joined to the
lab namespace (they share the bridge), with the lab-only preparation (chrony never sets the clock)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time

from lab.inventory import Container, Lab
from lab.network import ensure_address
from lab.paths import REPO, Paths
from lab.util import die, run

# Lab-only adjustment of a provisioning container (never part of a role): a container must not set the
# machine's clock, so chronyd runs without CAP_SYS_TIME and with -x (serve time, never adjust it).
CONTAINER_PREP = (
    "set -e; mkdir -p /etc/systemd/system/chrony.service.d; "
    "printf '[Unit]\\nConditionCapability=\\n' > /etc/systemd/system/chrony.service.d/container.conf; "
    "printf 'DAEMON_OPTS=\"-F 0 -x\"\\n' > /etc/default/chrony; systemctl daemon-reload"
)


def podman(*args: str, what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["podman", *args], what=what, capture=True, check=check)


def container_running(name: str) -> bool:
    proc = subprocess.run(["podman", "container", "inspect", "--format", "{{.State.Running}}", name],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def container_image() -> str:
    """The local systemd image of hack/container-image.sh (built once from the Debian mirror, cached)."""
    proc = run(["bash", str(REPO / "hack" / "container-image.sh")], what="building/loading the container image",
               capture=True)
    ref = proc.stdout.strip().splitlines()[-1:] or [""]
    if not ref[0]:
        die("hack/container-image.sh printed no image reference")
    return ref[0]


def start_container(p: Paths, lab: Lab, ct: Container) -> None:
    """`podman run` a systemd container inside the lab namespace, then the lab-only preparation."""
    podman("rm", "--force", "--time", "5", ct.container, what="", check=False)  # leftovers of a crash
    ensure_address(lab, f"{ct.ip}/{ct.prefixlen}")
    ref = container_image()
    argv = ["run", "--detach", "--name", ct.container, "--hostname", ct.name, "--systemd=always",
            "--network", f"ns:/run/netns/{lab.netns}", "--cap-add", "NET_ADMIN,NET_RAW",
            "--label", f"dl-lab={lab.netns}", ref, "/sbin/init"]
    podman(*argv, what=f"{ct.name}: starting container {ct.container}")
    deadline = time.monotonic() + 60
    while True:
        st = subprocess.run(["podman", "exec", ct.container, "systemctl", "is-system-running"],
                            capture_output=True, text=True, check=False).stdout.strip()
        if st in ("running", "degraded"):
            break
        if time.monotonic() > deadline:
            die(f"{ct.name}: systemd in {ct.container} not up after 60 s (state {st or 'unknown'})")
        time.sleep(0.5)
    podman("exec", ct.container, "sh", "-c", CONTAINER_PREP, what=f"{ct.name}: lab preparation (chrony)")
    d = p.run / "containers" / ct.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "ct.json").write_text(json.dumps({"ct": dataclasses.asdict(ct), "image": ref,
                                           "container": ct.container}, indent=2) + "\n")


def running_image(p: Paths, name: str) -> str | None:
    """The image reference a running lab container was started from (its ct.json), None if unknown."""
    try:
        return json.loads((p.run / "containers" / name / "ct.json").read_text()).get("image")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def stop_container(name: str) -> bool:
    if podman("container", "exists", name, what="", check=False).returncode != 0:
        return False
    podman("rm", "--force", "--time", "5", name, what=f"removing container {name}")
    return True
