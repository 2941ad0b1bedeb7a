#!/usr/bin/env bash
# Installs what the tests need from Debian when it is missing: PostgreSQL (the tests start their
# own throw-away cluster from its binaries), git, and Docker's engine, registry and debootstrap
# (the tests start dockerd and a registry, and build the serving base image, themselves). Needs root for apt-get; otherwise it only says
# what is missing, and the tests that need it skip (or fail under CI=true).
set -euo pipefail

missing=()
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi
command -v git >/dev/null || missing+=(git)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v prometheus >/dev/null || missing+=(prometheus)  # scrapes a model server in the metrics test
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 0
fi
echo "installing ${missing[*]} from Debian…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system cluster on install; the tests run their own, so stop it.
service postgresql stop >/dev/null 2>&1 || true
service docker-registry stop >/dev/null 2>&1 || true
service prometheus stop >/dev/null 2>&1 || true
