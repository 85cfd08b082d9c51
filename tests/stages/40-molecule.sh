#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Molecule scenarios on podman (systemd containers + real DHCP/TFTP/HTTP clients on an internal
# network). The scenario's create.yml builds or loads the container image itself
# (hack/container-image.sh: mmdebstrap + podman import, cached under $DL_CACHE/images).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=hack/env.sh
source hack/env.sh
molecule test -s provisioning
