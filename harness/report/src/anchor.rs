//! Frames that name a report by where it was entered rather than where it
//! was caught: the dispatcher or syscall a stalled CPU's loop runs under,
//! the wait a hung task is grouped by.

/// What a frame of a stalled CPU's stack says about where the loop was
/// entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// A dispatcher (work, timers, softirqs, ioctl and socket calls, netlink
    /// messages): the frame it called names the loop.
    Dispatch,
    /// The socket layer's dispatch: a syscall further down that names
    /// itself names the loop, else the frame it called.
    Socket,
    /// The frame names the loop itself, under this name (a syscall entry in
    /// any of its wrappers is `sys_NAME`).
    Named(String),
}

/// Syscalls that dispatch on their file or socket: the callee names a stall.
const DISPATCH_SYSCALLS: [&str; 22] = [
    "ioctl",
    "compat_ioctl",
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "sendmsg",
    "sendmmsg",
    "recvmsg",
    "sendto",
    "recvfrom",
    "connect",
    "bind",
    "accept",
    "accept4",
    "setsockopt",
    "getsockopt",
    "sendfile64",
];

/// The socket layer's dispatchers.
const SOCKET_DISPATCHERS: [&str; 12] = [
    "sock_sendmsg",
    "sock_recvmsg",
    "sock_write_iter",
    "sock_read_iter",
    "sys_sendmsg",
    "sys_recvmsg",
    "sys_sendto",
    "sys_recvfrom",
    "sys_connect",
    "sys_bind",
    "sys_setsockopt",
    "sys_getsockopt",
];

/// Dispatchers: their callee names a stall.
const DISPATCHERS: [&str; 44] = [
    "vfs_ioctl",
    "do_vfs_ioctl",
    "ksys_ioctl",
    "vfs_read",
    "vfs_write",
    "vfs_readv",
    "vfs_writev",
    "new_sync_read",
    "new_sync_write",
    "ksys_read",
    "ksys_write",
    "kernfs_fop_write_iter",
    "kernfs_fop_read_iter",
    "kernfs_fop_write",
    "seq_read",
    "seq_read_iter",
    "call_timer_fn",
    "expire_timers",
    "run_timers",
    "run_timer_softirq",
    "run_hrtimer",
    "process_one_work",
    "worker_thread",
    "do_one_initcall",
    "netif_receive_skb",
    "netif_receive_skb_core",
    "netif_receive_skb_one_core",
    "process_backlog",
    "net_rx_action",
    "do_softirq",
    "handle_softirqs",
    "tasklet_action_common",
    "tasklet_action",
    "tasklet_hi_action",
    "rtnetlink_rcv_msg",
    "nfnetlink_rcv_msg",
    "nfnetlink_rcv_batch",
    "nfnetlink_rcv",
    "genl_rcv_msg",
    "genl_family_rcv_msg",
    "netlink_rcv_skb",
    "netlink_dump",
    "do_fault",
    "flush_smp_call_function_queue",
];

/// Where a stalled CPU's loop was entered, if this frame tells.
pub(crate) fn stall_anchor(func: &str) -> Option<Anchor> {
    let bare = func.trim_start_matches('_');
    if bare.starts_with("smp_call_function") {
        return Some(Anchor::Named("smp_call_function".into()));
    }
    if SOCKET_DISPATCHERS.contains(&bare) {
        return Some(Anchor::Socket);
    }
    if DISPATCHERS.contains(&bare) {
        return Some(Anchor::Dispatch);
    }
    let name = syscall_name(func)?;
    let call = name.split_once("sys_").map_or("", |(_, c)| c);
    if DISPATCH_SYSCALLS.contains(&call) {
        return Some(Anchor::Dispatch);
    }
    Some(Anchor::Named(name))
}

/// `sys_NAME` for a syscall entry in any of its wrappers (`__x64_sys_NAME`,
/// `__se_sys_NAME`, `__do_sys_NAME`, `SyS_NAME`, `do_sys_NAME`), so titles
/// do not change with the architecture or the kernel version.
pub(crate) fn syscall_name(func: &str) -> Option<String> {
    let bare = func.trim_start_matches('_');
    for p in [
        "ia32_compat_sys_",
        "x64_compat_sys_",
        "arm64_compat_sys_",
        "compat_sys_",
    ] {
        if let Some(call) = bare.strip_prefix(p).filter(|c| !c.is_empty()) {
            return Some(format!("compat_sys_{call}"));
        }
    }
    let call = [
        "x64_sys_",
        "ia32_sys_",
        "arm64_sys_",
        "riscv_sys_",
        "se_sys_",
        "do_sys_",
        "sys_",
    ]
    .iter()
    .find_map(|p| bare.strip_prefix(p))
    .or_else(|| func.strip_prefix("SyS_"))
    .filter(|c| !c.is_empty())?;
    Some(format!("sys_{call}"))
}

/// Hung tasks blocked in these are grouped under one name, whatever called
/// them: the wait is the bug's identity, not the caller.
pub(crate) fn hung_anchor(func: &str) -> Option<&'static str> {
    const RCU: [&str; 5] = [
        "synchronize_rcu",
        "synchronize_srcu",
        "synchronize_net",
        "synchronize_sched",
        "synchronize_rcu_expedited",
    ];
    if RCU.contains(&func) {
        return Some("synchronize_rcu");
    }
    (func == "rtnl_lock").then_some("rtnl_lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_entries_and_stall_anchors() {
        assert_eq!(syscall_name("__x64_sys_openat"), Some("sys_openat".into()));
        assert_eq!(
            syscall_name("__se_sys_memfd_secret"),
            Some("sys_memfd_secret".into())
        );
        assert_eq!(syscall_name("SyS_ioctl"), Some("sys_ioctl".into()));
        assert_eq!(
            syscall_name("__ia32_compat_sys_ioctl"),
            Some("compat_sys_ioctl".into())
        );
        assert_eq!(syscall_name("sysfs_kf_write"), None);
        assert_eq!(syscall_name("__x64_sys_"), None);
        assert_eq!(stall_anchor("__x64_sys_ioctl"), Some(Anchor::Dispatch));
        assert_eq!(
            stall_anchor("__do_sys_exit_group"),
            Some(Anchor::Named("sys_exit_group".into()))
        );
        assert_eq!(stall_anchor("call_timer_fn"), Some(Anchor::Dispatch));
        assert_eq!(stall_anchor("sock_recvmsg"), Some(Anchor::Socket));
        assert_eq!(
            stall_anchor("smp_call_function_single"),
            Some(Anchor::Named("smp_call_function".into()))
        );
        assert_eq!(stall_anchor("snd_pcm_oss_write"), None);
    }
}
