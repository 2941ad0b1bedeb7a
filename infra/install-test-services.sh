#!/usr/bin/env bash
# Installs what the tests need from Debian when it is missing: PostgreSQL (the tests start their
# own throw-away cluster from its binaries), git, and Docker's engine, registry and debootstrap
# (the tests start dockerd and a registry, and build the serving base image, themselves), Go and
# govmomi's sources (then it builds the vCenter simulator with .ci/vcsim.sh), and Chromium for the
# tests that open the Prefect UI. Needs root for apt-get; otherwise it only says what is missing,
# and the tests that need it skip (or fail under CI=true).
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
command -v git >/dev/null || missing+=(git)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# The browser tests look at the Prefect UI in headless Chromium (Debian's; never a downloaded one).
command -v chromium >/dev/null || missing+=(chromium)
command -v prometheus >/dev/null || missing+=(prometheus)  # scrapes a model server in the metrics test
command -v go >/dev/null || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ] || missing+=(golang-github-vmware-govmomi-dev)

build_vcsim() {
  if command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/vmware/govmomi/simulator ]; then
    echo "building the vCenter simulator (.ci/vcsim.sh, ~15 s the first time)…"
    VCSIM_NO_INSTALL=1 "$(dirname "$0")/../.ci/vcsim.sh" >/dev/null
  fi
}
if [ ${#missing[@]} -eq 0 ]; then build_vcsim; exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "installing ${missing[*]} from Debian (a few minutes)…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -q --no-install-recommends "${missing[@]}" | { grep -E "^(Get|Setting up)" || true; }
# Debian starts a system cluster on install; the tests run their own, so stop it.
service postgresql stop >/dev/null 2>&1 || true
service docker-registry stop >/dev/null 2>&1 || true
service prometheus stop >/dev/null 2>&1 || true
build_vcsim
