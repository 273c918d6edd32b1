#!/usr/bin/env bash
# The trial image's base for offline machines (air-gapped labs, CI here): Debian bookworm made
# with debootstrap from Debian's own packages, with what trials need from the system: Python 3.11
# (python3, python3-venv), g++ for hls4ml's C simulation, and the open RTL flow's Verilator and
# Yosys (Debian's 5.006 and 0.23). Writes a normalised root-filesystem
# tarball (sorted, owners numeric, every mtime 0, run-to-run files removed) that
# `capsule image build` loads as the base image.
#
# usage: bash build.sh OUT.tar [MIRROR]   (`capsule image build` runs it when the base is absent)
set -euo pipefail
out=$1
mirror=${2:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/capsule-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase \
    --include=python3,python3-venv,g++,make,verilator,berkeley-abc,libtcl8.6,libreadline8,libffi8 \
    bookworm "$work/rootfs" "$mirror"
# Yosys without its graph viewer: Debian's package depends on xdot (GTK, hundreds of MB, and it
# does not configure inside debootstrap). Trials never draw, so yosys is unpacked with that one
# dependency unmet; every library its binary and ABC link is installed above.
cp /etc/resolv.conf "$work/rootfs/etc/resolv.conf"
chroot "$work/rootfs" sh -c 'cd /tmp && apt-get update -qq && apt-get download -qq yosys \
    && dpkg --force-depends -i yosys_*.deb >/dev/null && rm yosys_*.deb'
chroot "$work/rootfs" yosys -V >/dev/null
# Debian compiles the standard library to timestamp .pyc, which the normalised mtimes (0) turn
# stale: with a read-only root every container would compile it again at each start. Unchecked-
# hash .pyc need no timestamps and no checking; these sources never change inside an image.
chroot "$work/rootfs" python3 -m compileall -q -f --invalidation-mode unchecked-hash \
    -x "/(lib2to3/tests|test)/" /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null
# What differs from run to run and no trial needs: logs, caches, package lists and archives.
rm -rf "$work"/rootfs/var/log/* "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/var/cache/ldconfig/aux-cache "$work"/rootfs/var/cache/debconf/*-old \
    "$work"/rootfs/var/lib/dpkg/*-old "$work"/rootfs/etc/machine-id "$work"/rootfs/tmp/* \
    "$work"/rootfs/root/.cache "$work"/rootfs/etc/resolv.conf
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --xattrs \
    -C "$work/rootfs" -cf "$out.partial" .
mv "$out.partial" "$out"
