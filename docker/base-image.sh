#!/bin/sh
# The base image the Dockerfile starts from, made on this machine when it is missing.
#
# Where a registry is reachable, `docker build` pulls debian:bookworm-slim as usual and this
# script is never needed. Where none is (as on the development machines), it builds the same
# Debian release with debootstrap and imports it under that name. The certificate authorities
# this host added to its own store (/usr/local/share/ca-certificates) go into the image too: a
# machine whose outbound TLS passes through its own authority needs it for pip and Maven.
set -eu
name=${1:-debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$name" >/dev/null 2>&1; then
    echo "base image $name: present"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "base image $name: debootstrap bookworm from $mirror into $root"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log"; exit 1; }
rm -f "$root.log"
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$name" >/dev/null
echo "base image $name: imported ($(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
