#!/usr/bin/env bash
# Install Go and Debian's govmomi sources, then build provenflow's vCenter simulator (infra/vcsim) into
# build/vcsim/provenflow-vcsim (gitignored). Idempotent: installs only what is missing and rebuilds only
# when infra/vcsim/main.go is newer than the binary. Prints the binary's path on stdout.
#   .ci/vcsim.sh            install (as root) if needed, then build
#   VCSIM_NO_INSTALL=1 .ci/vcsim.sh   build only; exit 3 if Go or the govmomi sources are missing
set -euo pipefail
cd "$(dirname "$0")/.."

GOVMOMI=/usr/share/gocode/src/github.com/vmware/govmomi/simulator
OUT="${PROVENFLOW_VCSIM_BIN:-$PWD/build/vcsim/provenflow-vcsim}"

if ! command -v go >/dev/null 2>&1 || [ ! -d "$GOVMOMI" ]; then
  if [ -n "${VCSIM_NO_INSTALL:-}" ] || [ "$(id -u)" != 0 ]; then
    echo "vcsim: needs golang-go and golang-github-vmware-govmomi-dev (apt-get install, as root)" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends golang-go golang-github-vmware-govmomi-dev >/dev/null
fi

if [ ! -x "$OUT" ] || [ infra/vcsim/main.go -nt "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  export GO111MODULE=off GOPATH=/usr/share/gocode
  export GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/go-build}"
  go build -o "$OUT.tmp" ./infra/vcsim
  mv -f "$OUT.tmp" "$OUT"
fi
echo "$OUT"
