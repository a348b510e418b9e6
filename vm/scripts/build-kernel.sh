#!/bin/sh
# Build cgstorm's debug kernel (vm/debug.config) from a kernel source tree or
# from Debian's linux-source-6.12, and print the path of the bzImage.
#
# usage: build-kernel.sh [--flavor debug|lockdep|report|kmemleak|kcsan] [--out DIR] [--config-only]
#                        [--vng] [-j N] [SOURCE_TREE]
#   SOURCE_TREE  kernel sources; default: Debian's linux-source-6.12, fetched
#                with apt-get download and unpacked under CACHE/src
#   --flavor     debug (lockdep+KASAN+KCOV, default), lockdep (no KASAN/KCOV),
#                report (lockdep + report.config: KFENCE, UBSAN, lockup
#                and workqueue watchdogs, for the test module in vm/testmod),
#                kmemleak (debug + kmemleak.config: memory leak reports) or
#                kcsan (debug + kcsan.config: data races; KASAN off)
#   --out DIR    build directory (make O=DIR); default CACHE/build/<tree>-<flavor>
#   --config-only  stop once .config is made and checked against the fragments
#   --vng        make the config with `vng --kconfig --config` (virtme-ng's
#                minimal config) instead of x86_64_defconfig + kvm_guest.config
#   -j N         parallel jobs (default: nproc)
# CACHE is ${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm. A full debug build takes
# about 15 minutes on 2 cores.
set -eu

die() { echo "build-kernel: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

HERE=$(cd "$(dirname "$0")" && pwd)
VMDIR=$(dirname "$HERE")
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm
FLAVOR=debug
OUT=
CONFIG_ONLY=0
USE_VNG=0
JOBS=$(nproc 2>/dev/null || echo 2)
SRC=
DEBIAN_SRC_PKG=${CGSTORM_KERNEL_SOURCE_PKG:-linux-source-6.12}

while [ $# -gt 0 ]; do
    case "$1" in
        --flavor) FLAVOR=${2:?--flavor needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --config-only) CONFIG_ONLY=1; shift ;;
        --vng) USE_VNG=1; shift ;;
        -j) JOBS=${2:?-j needs a value}; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) SRC=$1; shift ;;
    esac
done

case "$FLAVOR" in
    debug) FRAGMENTS="$VMDIR/debug.config" ;;
    lockdep) FRAGMENTS="$VMDIR/debug.config $VMDIR/lockdep.config" ;;
    report) FRAGMENTS="$VMDIR/debug.config $VMDIR/lockdep.config $VMDIR/report.config" ;;
    kmemleak) FRAGMENTS="$VMDIR/debug.config $VMDIR/kmemleak.config" ;;
    kcsan) FRAGMENTS="$VMDIR/debug.config $VMDIR/kcsan.config" ;;
    *) die "unknown flavor $FLAVOR: want debug, lockdep, report, kmemleak or kcsan" ;;
esac

need make "apt-get install make"
need gcc "apt-get install build-essential"
need flex "apt-get install flex"
need bison "apt-get install bison"
need bc "apt-get install bc"
[ -f /usr/include/libelf.h ] || [ -f /usr/include/elfutils/libelf.h ] ||
    die "libelf headers not found: apt-get install libelf-dev"
[ -f /usr/include/openssl/opensslv.h ] || die "openssl headers not found: apt-get install libssl-dev"

# Unpack Debian's kernel sources into the cache (once).
debian_source() {
    need apt-get "this needs Debian's apt, or pass a SOURCE_TREE"
    need dpkg-deb "apt-get install dpkg"
    need xz "apt-get install xz-utils"
    dest=$CACHE/src
    mkdir -p "$dest"
    tarball=$(ls /usr/src/"$DEBIAN_SRC_PKG".tar.xz 2>/dev/null || true)
    if [ -z "$tarball" ]; then
        tarball=$(ls "$dest"/pkg/usr/src/"$DEBIAN_SRC_PKG".tar.xz 2>/dev/null || true)
    fi
    if [ -z "$tarball" ]; then
        echo "build-kernel: downloading $DEBIAN_SRC_PKG (about 150 MB)" >&2
        work=$(mktemp -d "$dest/.dl.XXXXXX")
        chmod 0777 "$work"
        (cd "$work" && apt-get download -q "$DEBIAN_SRC_PKG" >&2) ||
            die "apt-get download $DEBIAN_SRC_PKG failed: run 'apt-get update'"
        dpkg-deb -x "$work"/*.deb "$dest/pkg" || die "dpkg-deb could not unpack $DEBIAN_SRC_PKG"
        rm -rf "$work"
        tarball=$dest/pkg/usr/src/$DEBIAN_SRC_PKG.tar.xz
    fi
    tree=$dest/$DEBIAN_SRC_PKG
    if [ ! -f "$tree/.cgstorm-unpacked" ]; then
        echo "build-kernel: unpacking $tarball" >&2
        rm -rf "$tree"
        tar -C "$dest" -xJf "$tarball" || die "cannot unpack $tarball"
        touch "$tree/.cgstorm-unpacked"
    fi
    echo "$tree"
}

if [ -z "$SRC" ]; then
    SRC=$(debian_source)
fi
[ -f "$SRC/Makefile" ] && [ -d "$SRC/arch/x86" ] || die "$SRC is not a kernel source tree"
SRC=$(cd "$SRC" && pwd)

# Checks that every option the fragments ask for ended up in the .config
# (Kconfig silently drops options whose dependencies are missing).
check_config() {
    config=$1
    shift
    cat "$@" | sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=\(.*\)$/\1 \2/p' |
        awk '{ want[$1] = $2 } END { for (k in want) print k, want[k] }' | sort |
        while read -r key val; do
            if [ "$val" = n ]; then
                if grep -q "^$key=" "$config"; then echo "  $key: want n, got $(grep "^$key=" "$config")"; fi
            else
                got=$(grep "^$key=" "$config" || echo "$key unset")
                [ "$got" = "$key=$val" ] || echo "  $key: want $val, got ${got#*=}"
            fi
        done
}

if [ "$USE_VNG" = 1 ]; then
    need vng "pip install virtme-ng"
    [ -z "$OUT" ] || die "--vng builds in the source tree; drop --out"
    OUT=$SRC
    set --
    for f in $FRAGMENTS; do set -- "$@" --config "$f"; done
    (cd "$SRC" && vng --kconfig "$@") || die "vng --kconfig failed"
else
    OUT=${OUT:-$CACHE/build/$(basename "$SRC")-$FLAVOR}
    mkdir -p "$OUT"
    OUT=$(cd "$OUT" && pwd)
    echo "build-kernel: configuring $SRC in $OUT ($FLAVOR)" >&2
    make -s -C "$SRC" O="$OUT" x86_64_defconfig >&2
    # shellcheck disable=SC2086 # FRAGMENTS is a list of paths without spaces
    "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" \
        "$SRC/kernel/configs/kvm_guest.config" $FRAGMENTS >/dev/null ||
        die "merge_config.sh failed"
    make -s -C "$SRC" O="$OUT" olddefconfig >&2
fi

# shellcheck disable=SC2086
MISMATCH=$(check_config "$OUT/.config" $FRAGMENTS)
if [ -n "$MISMATCH" ]; then
    echo "build-kernel: these options did not take (missing dependencies?):" >&2
    echo "$MISMATCH" >&2
    die "fix $VMDIR/debug.config for this kernel version"
fi
echo "build-kernel: $OUT/.config has every option of $FLAVOR" >&2

if [ "$CONFIG_ONLY" = 1 ]; then
    echo "$OUT/.config"
    exit 0
fi

echo "build-kernel: make -j$JOBS bzImage (about 15 minutes on 2 cores)" >&2
# modules_prepare: out-of-tree test modules (vm/testmod) build against $OUT
make -s -C "$SRC" O="$OUT" -j"$JOBS" bzImage modules_prepare >&2 || die "kernel build failed"
echo "$OUT/arch/x86/boot/bzImage"
