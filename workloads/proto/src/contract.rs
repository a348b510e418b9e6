//! Names and paths that the host-side initramfs builder, the QEMU command line
//! and the agent must agree on.

/// Name of the virtio-serial port the agent talks over (QEMU `virtserialport`
/// `name=`, guest `/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "org.cgstorm.agent";

/// Kernel parameter carrying the per-boot token (hex).
pub const TOKEN_PARAM: &str = "cgstorm.token";

/// Kernel parameter listing `/dev` entries the host configured and the agent
/// waits for before saying hello, comma separated (`cgstorm.devices=vda,pmem0`).
pub const DEVICES_PARAM: &str = "cgstorm.devices";

/// Kernel parameter set on a boot whose state the host saves right after
/// the hello (`cgstorm.saved=1`): the agent loads every module before it
/// says hello, none in the background, so no module load is in flight in
/// the saved state (a VM restored in the middle of xfs.ko's load oopsed in
/// `trace_event_update_all` on Debian's 6.1).
pub const SAVED_PARAM: &str = "cgstorm.saved";

/// Kernel parameter overriding `kernel.hung_task_timeout_secs` (default 30).
pub const HUNG_TASK_PARAM: &str = "cgstorm.hung_task";

/// Kernel parameter overriding the `kernel.printk` levels (default `7 4 1 7`,
/// commas stand for spaces: `cgstorm.printk=8,4,1,7`).
pub const PRINTK_PARAM: &str = "cgstorm.printk";

/// Path inside the initramfs of the module list: one absolute path per line, in
/// load order (dependencies first). Absent when the kernel needs no modules.
pub const MODULE_LIST: &str = "/cgstorm/modules.list";

/// Directory inside the initramfs that holds the modules named in [`MODULE_LIST`].
pub const MODULE_DIR: &str = "/cgstorm/modules";

/// Line the agent writes to `/dev/kmsg` (after the `cgstorm: ` prefix) once the
/// system is set up; a console watcher can wait for it.
pub const READY_LINE: &str = "cgstorm: agent ready";

/// Line the agent writes to `/dev/kmsg` when a program is over, just before
/// it says so on its port: every kernel message of the program is on the
/// console before it, so the host need not wait for the console to go
/// quiet to be sure it has read them.
pub const DONE_LINE: &str = "cgstorm: program done";

/// What the agent prints to the console once the reports of a
/// [`crate::proto::HostMsg::LeakScan`] are out: the host reads the console
/// up to it.
pub const LEAK_SCAN_LINE: &str = "cgstorm: leak scan done";

/// Prefix of every line the agent writes to `/dev/kmsg`.
pub const KMSG_PREFIX: &str = "cgstorm: ";

/// Exit code of the agent when the guard refuses to run.
pub const REFUSAL_EXIT_CODE: i32 = 3;

/// The KCOV device (debugfs): the agent's coverage of the lanes' ops.
pub const KCOV_DEVICE: &str = "/sys/kernel/debug/kcov";

/// How a reset's leftover that is a leak starts: removed cgroups the kernel
/// did not free although everything that could hold them was undone
/// (tasks killed, pins dropped, filesystems unmounted, caches dropped).
pub const LEAK_PREFIX: &str = "leak: ";

/// The leak leftover of removed v2 cgroups still dying (`nr_dying_descendants`).
pub const LEAK_DYING_V2: &str = "leak: removed cgroups are still dying";

/// The leak leftover of a v1 memory hierarchy whose removed cgroups were not freed.
pub const LEAK_DYING_V1: &str = "leak: removed v1 memory cgroups are not freed";

/// The leak leftover of DAX files whose pages are still referenced once
/// every pin of the program is released (a truncate of them waits).
pub const LEAK_DAX: &str = "leak: DAX pages still referenced with every pin released";

/// The leak leftover of dirty or writeback pages still accounted
/// (`/proc/meminfo`) once every filesystem is unmounted and every device
/// the program wrote is synced: nothing is left to write back.
pub const LEAK_DIRTY: &str = "leak: dirty or writeback pages accounted with nothing to write back";

/// The tracepoint whose events the agent counts by the workqueue function
/// they ran, not by its own name.
pub const TRACE_WORK_EVENT: &str = "workqueue_execute_start";

/// How the agent names a workqueue item's count: this, then its function
/// (`work:wb_workfn`).
pub const TRACE_WORK_PREFIX: &str = "work:";

/// The tracepoints the agent enables (`subsystem/event`, where the kernel
/// has them) and counts after each program by event name (workqueue items
/// as [`TRACE_WORK_PREFIX`] and their function): the background work KCOV
/// does not see. The host's summary names the ones a campaign never saw.
pub const TRACE_EVENTS: &[&str] = &[
    "writeback/inode_switch_wbs",
    "writeback/track_foreign_dirty",
    "writeback/writeback_start",
    "writeback/wbc_writepage",
    "writeback/balance_dirty_pages",
    "cgroup/cgroup_mkdir",
    "cgroup/cgroup_rmdir",
    "cgroup/cgroup_release",
    "cgroup/cgroup_attach_task",
    "vmscan/mm_vmscan_memcg_reclaim_begin",
    "vmscan/mm_vmscan_memcg_softlimit_reclaim_begin",
    "vmscan/mm_shrink_slab_start",
    "workqueue/workqueue_execute_start",
];
