#!/usr/bin/env bash
# Builds the serving base image without any registry: debootstrap a minimal Debian with Python,
# then `docker import` it. Everything else the image needs comes as host-built wheels at release.
# Usage: infra/serving/make-base-image.sh [IMAGE]   (default provenflow/serving-base:bookworm)
set -euo pipefail
image=${1:-provenflow/serving-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image already exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
rootfs=$(mktemp -d /tmp/provenflow-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
# The model server runs as this user, never as root.
chroot "$rootfs" useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin provenflow
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/usr/bin/python3"]' \
  - "$image" >/dev/null
echo "built $image"
