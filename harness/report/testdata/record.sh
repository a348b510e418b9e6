#!/bin/sh
# Records a real kernel console log for the golden tests of cgstorm-report.
#
#   record.sh SCENARIO OUT.log
#
# Boots KERNEL under QEMU TCG with a busybox initramfs whose /init runs
# SCENARIO, captures the serial console and writes OUT.log as a golden file:
# a "# recorded: ..." line, a placeholder "KIND: none" header, a blank line and
# the raw console. Fill in the real headers afterwards with
#   CGSTORM_UPDATE_GOLDEN=1 cargo test -p cgstorm-report --test golden
# and check them by eye.
#
# Before every step /init writes a cgstorm op marker to /dev/kmsg, as the
# cgstorm agent does, so the logs also exercise marker tracking.
#
# Scenarios:
#   splat:KIND  insmod $SPLAT kind=KIND (6.12 debug kernel only), wait $WAIT s
#   mod:KIND    insmod $MOD kind=KIND (cgstorm's own vm/testmod, built for
#               KERNEL), wait $WAIT s; adds the boot parameters KIND needs
#               (hard-lockup and wq-lockup: see vm/report.config)
#   busy-inodes a filesystem (ext2 on /dev/ram0 when the kernel has brd built
#               in, else tmpfs) with a file whose inode $MOD pins, then umount
#   oom         cgroup v2 memcg with memory.max=16M, a `tail /dev/zero` hog in it
#   sysrq-c     echo c > /proc/sysrq-trigger (kernel panic)
#   sysrq-lw    sysrq l and w: all-CPU backtraces and blocked tasks (no bug)
#   vmalloc     zram disksize far beyond RAM: a warn_alloc "vmalloc error" (no bug)
#   boot        boot and power off
#
# Environment: KERNEL (default the 6.12 debug bzImage), SPLAT, MOD (the
# cgstorm_splat.ko built for KERNEL, for mod: and busy-inodes), MODDIR (a
# /lib/modules/<version> tree to take zram/zsmalloc from, for stock kernels),
# BUSYBOX (static), WAIT (seconds after the step, default 10), TIMEOUT (hard
# limit for QEMU, default 300), APPEND (extra kernel command line).
# Needs qemu-system-x86, busybox-static and cpio. QEMU is always killed.
set -eu

SCENARIO=${1:?usage: record.sh SCENARIO OUT.log}
OUT=${2:?usage: record.sh SCENARIO OUT.log}
SHARED=/work/shared/kernels
KERNEL=${KERNEL:-$SHARED/bzImage-6.12-debug}
SPLAT=${SPLAT:-$SHARED/splat-6.12-debug.ko}
BUSYBOX=${BUSYBOX:-/bin/busybox}
WAIT=${WAIT:-10}
TIMEOUT=${TIMEOUT:-300}
APPEND=${APPEND:-}
# What the report kernel's detectors need to fire within a short run.
case $SCENARIO in
mod:hard-lockup) APPEND="nmi_watchdog=1 watchdog_thresh=3 $APPEND" ;;
mod:wq-lockup) APPEND="workqueue.watchdog_thresh=5 workqueue.cpu_intensive_thresh_us=100000000 $APPEND" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/root
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
case $SCENARIO in
splat:*) cp "$SPLAT" "$root/splat.ko" ;;
mod:* | busy-inodes)
    [ -n "${MOD:-}" ] || { echo "record: $SCENARIO needs MOD=cgstorm_splat.ko" >&2; exit 2; }
    cp "$MOD" "$root/cgstorm_splat.ko"
    ;;
vmalloc)
    if [ -n "${MODDIR:-}" ]; then
        find "$MODDIR" \( -name zsmalloc.ko -o -name zram.ko \) -exec cp {} "$root/" \;
    fi
    ;;
esac

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
op=0
mark() { op=$((op + 1)); echo "cgstorm: lane 0 op $op $*" >/dev/kmsg; }
scenario=$(sed -n 's/.*cgstorm.rec=\([^ ]*\).*/\1/p' /proc/cmdline)
wait=$(sed -n 's/.*cgstorm.wait=\([0-9]*\).*/\1/p' /proc/cmdline)
case $scenario in
splat:*)
    kind=${scenario#splat:}
    mark "insmod splat kind=$kind"
    insmod /splat.ko kind="$kind"
    ;;
mod:*)
    kind=${scenario#mod:}
    mark "insmod cgstorm_splat kind=$kind"
    insmod /cgstorm_splat.ko kind="$kind"
    echo "insmod: $?"
    ;;
busy-inodes)
    mkdir -p /mnt
    if [ -b /dev/ram0 ]; then
        mark "mkfs ext2 ram0"
        mke2fs -q /dev/ram0
        mark "mount ram0 /mnt"
        mount -t ext2 /dev/ram0 /mnt
    else
        mark "mount tmpfs /mnt"
        mount -t tmpfs tmpfs /mnt
    fi
    mark "write /mnt/pinned"
    echo data >/mnt/pinned
    mark "insmod cgstorm_splat kind=busy-inodes path=/mnt/pinned"
    insmod /cgstorm_splat.ko kind=busy-inodes path=/mnt/pinned
    mark "umount /mnt"
    umount /mnt
    echo "umount: $?"
    ;;
oom)
    mkdir -p /sys/fs/cgroup
    mount -t cgroup2 none /sys/fs/cgroup
    mark "write /sys/fs/cgroup/cgroup.subtree_control +memory"
    echo +memory >/sys/fs/cgroup/cgroup.subtree_control
    mark "mkdir hog"
    mkdir /sys/fs/cgroup/hog
    mark "write hog/memory.max 16M"
    echo 16M >/sys/fs/cgroup/hog/memory.max
    echo 0 >/sys/fs/cgroup/hog/memory.swap.max 2>/dev/null
    mark "spawn hog tail /dev/zero"
    sh -c 'echo $$ >/sys/fs/cgroup/hog/cgroup.procs; exec tail /dev/zero'
    echo "hog exited: $?"
    mark "read hog/memory.events"
    cat /sys/fs/cgroup/hog/memory.events
    ;;
sysrq-c)
    mark "sysrq c"
    echo c >/proc/sysrq-trigger
    ;;
sysrq-lw)
    mark "sysrq l"
    echo l >/proc/sysrq-trigger
    sleep 2
    mark "sysrq w"
    echo w >/proc/sysrq-trigger
    ;;
vmalloc)
    [ -e /zsmalloc.ko ] && insmod /zsmalloc.ko
    [ -e /zram.ko ] && insmod /zram.ko
    mark "write /sys/block/zram0/disksize 1T"
    echo 1T >/sys/block/zram0/disksize
    echo "disksize write: $?"
    ;;
boot) ;;
*) echo "record: unknown scenario $scenario" ;;
esac
sleep "${wait:-10}"
mark "poweroff"
# -n: no sync, which would hang on a superblock a killed umount left locked
poweroff -n -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

raw=$work/console.log
status=0
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 2G -smp 2 \
    -nographic -no-reboot -kernel "$KERNEL" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 loglevel=7 cgstorm.rec=$SCENARIO cgstorm.wait=$WAIT $APPEND" \
    </dev/null >"$raw" 2>&1 || status=$?

version=$(sed -n 's/.*Linux version \([^ ]*\).*/\1/p' "$raw" | head -n 1)
{
    echo "# recorded: ${version:-unknown kernel} ($(basename "$KERNEL")), record.sh $SCENARIO (QEMU TCG -smp 2 -m 2G, exit $status)"
    echo "KIND: none"
    echo
    cat "$raw"
} >"$OUT"
echo "record: wrote $OUT (qemu exit $status)"
