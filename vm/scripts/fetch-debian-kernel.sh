#!/bin/sh
# Fetch Debian's stock cloud kernel (the package that linux-image-cloud-amd64
# depends on), unpack it into a cache directory, build modules.dep with depmod
# and print the path of the vmlinuz. Running it again reuses what is there.
#
# usage: fetch-debian-kernel.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm/kernels
#   the kernel lands in CACHE_DIR/<release>/ (boot/vmlinuz-<release>,
#   lib/modules/<release>/, and `package`: the .deb's name and exact version)
#   and, unless pinned, CACHE_DIR/default points at it. It always says on
#   stderr which package and version it gives.
# env: CGSTORM_KERNEL_META    meta package to follow (default linux-image-cloud-amd64)
#      CGSTORM_DEBIAN_KERNEL  pin a release instead of following the meta
#                             package: `6.1.0-57` or `6.1.0-57-cloud-amd64`
#                             (the flavour of the meta package is added); a
#                             pinned release already in the cache is reused
#                             as it is, so a nightly run gets yesterday's kernel
#                             (`cgstorm --kernel debian:6.1.0-57` boots it)
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

PIN=${CGSTORM_DEBIAN_KERNEL:-}
FLAVOUR=${META#linux-image-}
if [ -n "$PIN" ]; then
    case $PIN in
        *-"$FLAVOUR") RELEASE=$PIN ;;
        *) RELEASE=$PIN-$FLAVOUR ;;
    esac
    PKG=linux-image-$RELEASE
    HOW="pinned by CGSTORM_DEBIAN_KERNEL=$PIN"
else
    # The meta package depends on exactly one linux-image-<release> package.
    PKG=$(apt-cache depends "$META" 2>/dev/null | sed -n 's/^ *Depends: *\(linux-image-[^ ]*\)$/\1/p' | head -n 1)
    if [ -z "$PKG" ]; then
        die "apt knows no $META: run 'apt-get update' (needs Debian's main archive in sources.list)"
    fi
    RELEASE=${PKG#linux-image-}
    HOW="the latest that $META depends on"
fi
DEST=$CACHE/$RELEASE
VMLINUZ=$DEST/boot/vmlinuz-$RELEASE
MODDIR=$DEST/lib/modules/$RELEASE

# Says which kernel this gives (the exact package version, recorded at fetch).
report() {
    echo "fetch-debian-kernel: $(cat "$DEST/package" 2>/dev/null || echo "$PKG (version not recorded)"), $HOW" >&2
}

if [ -f "$VMLINUZ" ] && [ -f "$MODDIR/modules.dep" ]; then
    [ -n "$PIN" ] || ln -sfn "$RELEASE" "$CACHE/default"
    report
    echo "$VMLINUZ"
    exit 0
fi
if [ -n "$PIN" ] && ! apt-cache show "$PKG" >/dev/null 2>&1; then
    die "apt knows no $PKG (pinned by CGSTORM_DEBIAN_KERNEL): Debian's archive keeps only current kernels; pin one that 'apt-cache search linux-image-' lists, or unset CGSTORM_DEBIAN_KERNEL for the latest"
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
dpkg-deb -f "$DEB" Package Version | sed 's/^[^:]*: *//' | paste -sd ' ' >"$WORK/root/package" ||
    die "dpkg-deb could not read the version of $DEB"

rm -rf "$DEST"
mkdir -p "$DEST"
mv "$WORK/root/boot" "$WORK/root/lib" "$WORK/root/package" "$DEST/"
[ -n "$PIN" ] || ln -sfn "$RELEASE" "$CACHE/default"
report
echo "$VMLINUZ"
