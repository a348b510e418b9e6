#!/bin/sh
# Fetch Debian's stock cloud kernel (the package that linux-image-cloud-amd64
# depends on), unpack it into a cache directory, build modules.dep with depmod
# and print the path of the vmlinuz. Running it again reuses what is there.
#
# usage: fetch-debian-kernel.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm/kernels
#   the kernel lands in CACHE_DIR/<release>/ (boot/vmlinuz-<release>,
#   lib/modules/<release>/) and CACHE_DIR/default points at it.
# env: CGSTORM_KERNEL_META  meta package to follow (default linux-image-cloud-amd64)
set -eu

die() { echo "fetch-debian-kernel: $*" >&2; exit 1; }
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

need apt-cache "this script needs Debian's apt (apt-get install apt)"
need apt-get "this script needs Debian's apt (apt-get install apt)"
need dpkg-deb "install dpkg (apt-get install dpkg)"
if ! command -v depmod >/dev/null 2>&1 && [ ! -x /usr/sbin/depmod ] && [ ! -x /sbin/depmod ]; then
    die "depmod not found: install kmod (apt-get install kmod)"
fi
DEPMOD=$(command -v depmod 2>/dev/null || { [ -x /usr/sbin/depmod ] && echo /usr/sbin/depmod; } || echo /sbin/depmod)

META=${CGSTORM_KERNEL_META:-linux-image-cloud-amd64}
CACHE=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm/kernels}

# The meta package depends on exactly one linux-image-<release> package.
PKG=$(apt-cache depends "$META" 2>/dev/null | sed -n 's/^ *Depends: *\(linux-image-[^ ]*\)$/\1/p' | head -n 1)
if [ -z "$PKG" ]; then
    die "apt knows no $META: run 'apt-get update' (needs Debian's main archive in sources.list)"
fi
RELEASE=${PKG#linux-image-}
DEST=$CACHE/$RELEASE
VMLINUZ=$DEST/boot/vmlinuz-$RELEASE
MODDIR=$DEST/lib/modules/$RELEASE

if [ -f "$VMLINUZ" ] && [ -f "$MODDIR/modules.dep" ]; then
    ln -sfn "$RELEASE" "$CACHE/default"
    echo "$VMLINUZ"
    exit 0
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/.fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

echo "fetch-debian-kernel: downloading $PKG" >&2
# apt-get download writes into the current directory; the _apt user must be
# able to write there, so hand the directory over when running as root.
chmod 0777 "$WORK"
(cd "$WORK" && apt-get download -q "$PKG" >&2) ||
    die "apt-get download $PKG failed: run 'apt-get update' and check the network"
DEB=$(ls "$WORK"/*.deb 2>/dev/null | head -n 1)
[ -n "$DEB" ] || die "apt-get download $PKG left no .deb in $WORK"

echo "fetch-debian-kernel: unpacking $(basename "$DEB")" >&2
mkdir -p "$WORK/root"
dpkg-deb -x "$DEB" "$WORK/root" || die "dpkg-deb could not unpack $DEB"

# Debian ships modules under /lib/modules (bookworm) or /usr/lib/modules (later).
if [ -d "$WORK/root/usr/lib/modules/$RELEASE" ] && [ ! -d "$WORK/root/lib/modules/$RELEASE" ]; then
    mkdir -p "$WORK/root/lib/modules"
    mv "$WORK/root/usr/lib/modules/$RELEASE" "$WORK/root/lib/modules/$RELEASE"
fi
[ -f "$WORK/root/boot/vmlinuz-$RELEASE" ] || die "$DEB holds no boot/vmlinuz-$RELEASE"
[ -d "$WORK/root/lib/modules/$RELEASE" ] || die "$DEB holds no lib/modules/$RELEASE"

"$DEPMOD" -b "$WORK/root" "$RELEASE" || die "depmod -b failed for $RELEASE"

rm -rf "$DEST"
mkdir -p "$DEST"
mv "$WORK/root/boot" "$WORK/root/lib" "$DEST/"
ln -sfn "$RELEASE" "$CACHE/default"
echo "$VMLINUZ"
