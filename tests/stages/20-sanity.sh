#!/usr/bin/env bash
# ansible-test sanity over the collection. Extra arguments go to `ansible-test sanity` (e.g. --test pep8).
#
# ansible-test needs the collection at .../ansible_collections/diskless/cluster (a real path, not a symlink):
# copy what git tracks or would track into a scratch tree outside the repo and run it there.
# ansible-test runs from a venv of its own ($DL_CACHE/sanity-venv-<core>); the sanity tools (pylint,
# validate-modules, ...) are pinned by ansible-test and go into one venv per test, which ansible-test
# creates and caches under ~/.ansible/test/venv/<test>/<python>/<hash> (kept across runs: a warm run
# reuses them all).
#
# Bootstrapping pip in those venvs. ansible-test creates each one with `python -m venv --without-pip`
# (from the real interpreter behind our venv: pyenv's python3.11 here, not /usr/bin/python3.11), then
# runs a get-pip script that it downloads from ci-files.testing.ansible.com -- a host this network
# cannot reach (--venv mode and --docker do the same) -- unless ~/.ansible/test/cache/get_pip_<ver>.py
# already exists. So we put a local stand-in there. Two earlier stand-ins failed, for these reasons:
#  * `ensurepip.bootstrap()` followed by `pip install pip==<ver>` from PyPI: ensurepip, *in the calling
#    process*, deletes every PIP_* variable from os.environ and sets PIP_CONFIG_FILE=/dev/null
#    (CPython bpo-19734/bpo-20053). The pip started afterwards from the stand-in therefore ignored
#    /etc/pip.conf, the only place that names the proxy's CA (ansible-test's common_environment() also
#    drops PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, *_PROXY, ...), and fell back to pip's bundled
#    certifi -> CERTIFICATE_VERIFY_FAILED. By hand it worked because ensurepip and pip ran as separate
#    processes.
#  * The "half-created venv": ansible-test itself treats a venv without marker.txt as partial and deletes
#    it before re-creating it, so a failed bootstrap heals on the next run. What it cannot survive (and
#    what was happening here: another shell ran a copy of this script at the same time) is two sanity
#    runs sharing ~/.ansible/test concurrently: they delete / re-create each other's venvs and rewrite
#    the stand-in (non-atomically) under each other's feet. Hence the lock and the atomic writes below.
#    (That second stand-in also fell back to ensurepip's pip 23.2.1 + setuptools when the upgrade
#    failed, silently caching venvs that differ from what ansible-test asked for.)
# The stand-in now needs no network at all: like the real get-pip it runs pip from a pip wheel and
# installs pip (+ setuptools/wheel unless --no-setuptools/--no-wheel) -- but from a wheel directory that
# this script fills once with the main venv's pip (which has the full environment and so reaches PyPI).
# It also leaves a <venv>/pip.conf with the CA bundle / proxy of this environment, so that ansible-test's
# later `pip install -r requirements/sanity.<test>.txt` in that venv verifies the proxy's certificate
# even though ansible-test does not pass the corresponding environment variables through.
set -euo pipefail
[ -n "${DL_ROOT:-}" ] || source "$(cd "$(dirname "$0")/../.." && pwd)/hack/env.sh"
cd "$DL_ROOT"

# One sanity run at a time: runs share ~/.ansible/test (venvs, get-pip stand-in) and the scratch tree below.
mkdir -p "$DL_CACHE" "$HOME/.ansible/test/cache"
exec 8>"$HOME/.ansible/diskless-sanity.lock" 9>"$DL_CACHE/sanity.lock"
for fd in 8 9; do
  if ! flock -n "$fd"; then
    echo "20-sanity: waiting for another sanity run to finish"
    flock "$fd"
  fi
done

core="$(python -c 'import ansible; print(ansible.__version__)')"
venv="$DL_CACHE/sanity-venv-$core"
if [ ! -e "$venv/.complete" ]; then   # (re)build it when missing or left half-built by an interrupted run
  rm -rf "$venv"; python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core==$core" 2> >(grep -v "is ignored: it is neither" >&2)
  touch "$venv/.complete"
fi
pyver="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# The packages ansible-test bootstraps into each venv (today just pip==24.2), as ansible-test computes them.
mapfile -t boot_pkgs < <("$venv/bin/python" - "$pyver" <<'PY'
import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
for name, version in get_venv_packages(types.SimpleNamespace(version=sys.argv[1])).items():
    print(f"{name}=={version}")
PY
)
pip_version="$(printf '%s\n' "${boot_pkgs[@]}" | sed -n 's/^pip==//p')"
[ -n "$pip_version" ] || { echo "20-sanity: cannot tell which pip ansible-test bootstraps" >&2; exit 1; }

wheels="$DL_CACHE/sanity-bootstrap-wheels/py$pyver-$(printf '%s\n' "${boot_pkgs[@]}" | sha256sum | cut -c1-12)"
if ! compgen -G "$wheels/pip-$pip_version-*.whl" >/dev/null; then
  tmp="$wheels.tmp"; rm -rf "$tmp"   # (we hold the lock)
  python -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version "$pyver" \
    -d "$tmp" "${boot_pkgs[@]}" setuptools wheel 2> >(grep -v "is ignored: it is neither" >&2)
  rm -rf "$wheels"; mv "$tmp" "$wheels"
fi

# CA bundle / proxy of this environment for the venvs' pip.conf (see above); empty when not configured.
ca="${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}"
[ -n "$ca" ] || ca="$(python -m pip config get global.cert 2>/dev/null || true)"
[ -f "$ca" ] || ca=""
proxy="${PIP_PROXY:-${HTTPS_PROXY:-${https_proxy:-}}}"

get_pip="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
stand_in="$(mktemp "$get_pip.XXXXXX")"
trap 'rm -f "$stand_in"' EXIT
cat > "$stand_in" <<PY
# Local stand-in for ansible-test's downloaded get-pip-$pip_version.py, written by
# tests/stages/20-sanity.sh of diskless.cluster (see the comments there for why).
WHEELS = $(python -c 'import sys; print(repr(sys.argv[1]))' "$wheels")
CA_BUNDLE = $(python -c 'import sys; print(repr(sys.argv[1]))' "$ca")
PROXY = $(python -c 'import sys; print(repr(sys.argv[1]))' "$proxy")
PY
cat >> "$stand_in" <<'PY'

import glob
import os
import subprocess
import sys


def main():
    args = sys.argv[1:]
    packages = ["pip"]  # what get-pip installs: pip, setuptools and wheel unless told otherwise
    for name in ("setuptools", "wheel"):
        if "--no-" + name in args:
            args.remove("--no-" + name)
        else:
            packages.append(name)
    pip_wheels = sorted(glob.glob(os.path.join(WHEELS, "pip-*.whl")))
    if not pip_wheels:
        sys.exit("get-pip stand-in: no pip wheel in %s (run tests/stages/20-sanity.sh)" % WHEELS)
    if CA_BUNDLE or PROXY:
        # sys.prefix/pip.conf is pip's per-venv ("site") configuration file
        with open(os.path.join(sys.prefix, "pip.conf"), "w", encoding="utf-8") as conf:
            conf.write("[global]\n")
            if CA_BUNDLE:
                conf.write("cert = %s\n" % CA_BUNDLE)
            if PROXY:
                conf.write("proxy = %s\n" % PROXY)
    # run pip from its wheel (`python pip-X.whl/pip install ...`, pip's own way to bootstrap itself), as
    # get-pip does with the copy of pip it embeds
    sys.exit(subprocess.call([sys.executable, os.path.join(pip_wheels[-1], "pip"), "install", "--isolated",
                              "--no-index", "--find-links", WHEELS, "--upgrade", "--force-reinstall"]
                             + packages + args))


if __name__ == "__main__":
    main()
PY
chmod 644 "$stand_in"
mv -f "$stand_in" "$get_pip"

tree="$DL_CACHE/sanity/ansible_collections/diskless/cluster"
rm -rf "$tree"; mkdir -p "$tree"
# $1 and $2 are for the inner sh, hence the single quotes; a tracked file deleted in the worktree (not yet
# committed) is skipped, without failing the copy
# shellcheck disable=SC2016
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'if test -e "$1"; then cp --parents -P "$1" "$2"; fi' _ {} "$tree"
cd "$tree"
git init -q . && git add -A >/dev/null   # ansible-test lists the collection's files through git
# collection dependencies (community.general, ...) come from the ansible bundle in the main venv
ANSIBLE_COLLECTIONS_PATH="$DL_CACHE/sanity:$(python -c 'import ansible_collections, os; print(os.path.dirname(list(ansible_collections.__path__)[-1]))')" \
  "$venv/bin/ansible-test" sanity --requirements --python "$pyver" --color no "$@" \
  > >(grep --line-buffered -v "is ignored: it is neither") 2> >(grep --line-buffered -v "is ignored: it is neither" >&2)
