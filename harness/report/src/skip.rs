//! The frames that never name a report's culprit: the reporting machinery
//! and generic helpers, and per report class the primitives its stacks are
//! full of.

/// Frames that are the reporting machinery or generic helpers, never the
/// culprit: substrings, then names (leading underscores ignored) they start
/// with, then exact names.
struct SkipList {
    contains: &'static [&'static str],
    prefixes: &'static [&'static str],
    exact: &'static [&'static str],
}

impl SkipList {
    fn matches(&self, func: &str) -> bool {
        let bare = func.trim_start_matches('_');
        self.contains.iter().any(|p| func.contains(p))
            || self.prefixes.iter().any(|p| bare.starts_with(p))
            || self.exact.contains(&bare)
    }
}

static GENERIC: SkipList = SkipList {
    contains: &[
        "check_memory_region",
        "print_address_description",
        "print_report",
        "panic",
        "report_bug",
        "fixup_bug",
        "handle_bug",
        "do_error_trap",
        "do_trap",
        "invalid_op",
        "dump_stack",
        "show_stack",
        "warn_slowpath",
        "warn_alloc",
        "__warn",
        "debug_object",
        "lockdep",
        "lock_acquire",
        "lock_release",
        "lock_class",
        "reacquire_held_locks",
        "spin_lock",
        "spin_trylock",
        "spin_unlock",
        "raw_read_lock",
        "raw_write_lock",
        "mutex_lock",
        "mutex_trylock",
        "mutex_unlock",
        "osq_lock",
        "__wake_up",
        "refcount_",
        "memcpy",
        "memcmp",
        "memset",
        "memmove",
        "memchr",
        "strcmp",
        "strncmp",
        "strcpy",
        "strlcpy",
        "strncpy",
        "strscpy",
        "strlen",
        "strnlen",
        "strchr",
        "copy_to_user",
        "copy_from_user",
        "might_fault",
        "might_sleep",
        "might_resched",
        "list_add",
        "list_del",
        "list_replace",
        "list_move",
        "list_splice",
        "_indirect_thunk_",
        "return_thunk",
        "printk",
        "sysvec_",
        "apic_timer_interrupt",
        "debug_print_object",
        "debug_check_no_obj_freed",
        "usercopy",
        "check_object_size",
        "check_heap_object",
        "check_preemption_disabled",
        "smp_processor_id",
        "this_cpu_preempt_check",
        "kobject_add",
        "kobject_put",
        "kobject_release",
        "proc_register",
        "sysfs_remove",
        "sysfs_create",
        "sysfs_warn_dup",
        "devres_release",
        "device_del",
        "device_unregister",
        "kthread_stop",
        "kthread_insert_work",
        "finish_wait",
        "prepare_to_wait",
        "mutex_remove_waiter",
        "wait_for_completion",
        "flush_work",
        "drain_workqueue",
        "destroy_workqueue",
        "usb_submit_urb",
        "usb_kill_urb",
        "usb_kill_anchored_urbs",
        "vsnprintf",
        "hex_dump_to_buffer",
        "print_hex_dump",
        "rhashtable_lookup",
        "lock_timer_base",
        "stack_trace_",
        "arch_stack_walk",
        "unwind_next_frame",
        "skb_put",
        "skb_push",
        "skb_pull",
        "skb_over_panic",
        "skb_under_panic",
        "kfree_skb",
        "consume_skb",
        "folio_unlock",
        "unlock_page",
        "spin_dump",
        "spin_bug",
        "bad_page",
        "ida_free",
        "ref_tracker",
        "local_bh_enable",
        "warn_bogus_irq_restore",
        "drop_nlink",
        "mark_buffer_dirty",
        "fast_dput",
        "cleanup_srcu_struct",
        "rollback_registered",
        "unregister_netdevice_many",
        "release_sock",
        "lock_sock",
        "lock_downgrade",
        "kill_fasync",
        "assertfail",
        "dump_backtrace",
        "trace_hardirqs",
        "printf",
        "va_format",
        "del_timer",
        "try_to_del_timer",
        "timer_delete",
        "insert_work",
        "queue_work",
        "device_destroy",
        "device_release",
        "kobject_",
        "proc_create",
        "usb_start_wait_urb",
        "usb_control_msg",
        "usb_bulk_msg",
        "dput",
        "do_kernel_fault",
        "do_page_fault",
        "do_mem_abort",
        "raw_read",
        "raw_write",
        "task_rq_lock",
        "raw_spin_rq_lock",
        "rwsem_",
        "qlist_",
        "quarantine",
        "write_comp_data",
        "logic_in",
        "logic_out",
        "do_tag_check_fault",
        "do_translation_fault",
        "do_bad_area",
        "queue_delayed_work",
        "_dev_info",
        "_dev_err",
        "_dev_warn",
        "dev_printk",
        "sk_stop_timer",
        "copy_to_iter",
        "copy_page_to_iter",
        "handle_overflow",
        "i2c_del_adapter",
        "unregister_client",
        "print_usage_bug",
        "mark_lock",
        "check_irq_usage",
        "check_prev_add",
        "check_noncircular",
        "validate_chain",
        "print_circular_bug",
        "walk_stackframe",
        "put_device",
        "device_for_each_child",
    ],
    prefixes: &[
        "el1_",
        "el1h_",
        "sanitizer",
        "asan",
        "kasan",
        "msan",
        "kmsan",
        "kcsan",
        "ubsan",
        "kfence",
        "exc_",
        "asm_exc_",
        "down_read",
        "down_write",
        "up_read",
        "up_write",
        "rb_",
        "klist_",
        "crc16",
        "crc32",
        "crc_",
    ],
    exact: &[
        "down",
        "up",
        "bug",
        "string",
        "pointer",
        "hex_string",
        "complete",
        "iput",
    ],
};

/// Allocators and freeing functions: what they were asked to do is the
/// caller's business. Not skipped for traps (int3 at a static branch in an
/// allocator is the allocator's).
static ALLOC: SkipList = SkipList {
    contains: &[
        "kmalloc",
        "kzalloc",
        "kcalloc",
        "krealloc",
        "kvmalloc",
        "kvzalloc",
        "kmem_cache_alloc",
        "kmem_cache_zalloc",
        "kmem_cache_free",
        "kmemdup",
        "kstrdup",
        "kstrndup",
        "slab_alloc",
        "slab_free",
        "slab_post_alloc_hook",
        "alloc_pages",
        "alloc_frozen_pages",
        "get_free_pages",
        "vmalloc",
        "vzalloc",
        "kfree",
        "kvfree",
        "vfree",
        "free_large_kmalloc",
        "__free_pages",
        "kmalloc_slab",
        "vunmap",
    ],
    prefixes: &["kmalloc", "kmem_cache_alloc"],
    exact: &[],
};

/// For hung tasks: the blocked task's stack is all sleeping and locking
/// primitives before the function that waits.
static HUNG: SkipList = SkipList {
    contains: &[
        "schedule",
        "wait",
        "__switch_to",
        "context_switch",
        "completion",
        "slowpath",
        "rwsem",
        "rt_mutex",
        "kthread",
        "ret_from_fork",
        "synchronize_",
        "flush_work",
        "cancel_work",
        "cancel_delayed_work",
        "folio_lock",
        "lock_page",
        "msleep",
        "nanosleep",
        "refrigerator",
        "freezer",
        "do_task_dead",
        "cond_resched",
        "percpu_down",
        "rcu_barrier",
    ],
    prefixes: &["down_", "mutex_lock_"],
    exact: &[],
};

/// For sleeping/scheduling in atomic context: the sleeping primitives.
static SLEEP: SkipList = SkipList {
    contains: &[
        "schedule",
        "msleep",
        "usleep",
        "ssleep",
        "nanosleep",
        "might_resched",
        "cond_resched",
        "wait_for",
        "wait_event",
        "wait_on",
        "__wait",
    ],
    prefixes: &[],
    exact: &[],
};

/// For stalls and lockups: the interrupt that noticed the stall.
static STALL: SkipList = SkipList {
    contains: &[
        "apic_timer_interrupt",
        "sysvec",
        "asm_",
        "irq_exit",
        "hrtimer",
        "watchdog",
        "rcu_read",
        "rcu_sched_clock_irq",
        "rcu_core",
        "rcu_do_batch",
        "rcu_pending",
        "rcu_dump",
        "cpu_stall",
        "nmi_",
        "schedule",
        "kthread",
        "ret_from_fork",
        "tick_",
        "update_process_times",
        "cpu_relax",
        "switch_to",
        "retint_",
        "ret_from_intr",
        "common_interrupt",
        "irqentry_",
        "restore_regs",
        "sched_show_task",
        "dump_cpu_task",
        "arch_timer_handler",
        "handle_percpu_devid_irq",
        "handle_domain_irq",
        "gic_handle_irq",
        "handle_irq",
        "handle_arch_irq",
        "el1_irq",
        "el1h_64_irq",
        "irq_svc",
        "call_on_irq_stack",
        "do_interrupt_handler",
    ],
    prefixes: &[],
    exact: &[],
};

/// For UBSAN and suspicious RCU usage: the checker's own frames. RCU's own
/// functions start with `rcu_` (or a known RCU verb): a caller whose name only
/// contains "rcu" (`splat_rcu`, `free_css_rcu_fn`) is the culprit.
static CHECKER: SkipList = SkipList {
    contains: &["kmem", "slab", "kmalloc", "kzalloc", "vmalloc"],
    prefixes: &[
        "rcu_",
        "srcu_",
        "call_rcu",
        "kvfree_call_rcu",
        "synchronize_rcu",
    ],
    exact: &[],
};

/// For memory leaks: kmemleak's own frames and allocation helpers.
static LEAK: SkipList = SkipList {
    contains: &[
        "kmemleak",
        "create_object",
        "radix_tree_node_alloc",
        "kvasprintf",
        "kasprintf",
        "alloc_inode",
        "list_lru_init",
        "idr_get_free",
        "xas_alloc",
        "mempool_alloc",
        "pcpu_alloc",
        "alloc_percpu",
        "kobject_set_name",
        "dev_set_name",
        "idr_alloc",
        "alloc_skb",
        "sk_prot_alloc",
        "sk_alloc",
    ],
    prefixes: &[],
    exact: &[],
};

/// For KASAN double-free/invalid-free: the freeing functions.
static FREE: SkipList = SkipList {
    contains: &[
        "kfree",
        "kmem_cache_free",
        "slab_free",
        "vfree",
        "free_large_kmalloc",
    ],
    prefixes: &["free_", "kvfree"],
    exact: &[],
};

/// Which extra frames to skip besides the generic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    Generic,
    /// Generic frames but allocators: the frame a trap hit.
    Trap,
    /// For memory leaks: kmemleak's hooks and the helpers that allocate for
    /// their caller.
    Leak,
    Hung,
    Sleep,
    Stall,
    Checker,
    Free,
}

impl Skip {
    pub(crate) fn skips(self, func: &str) -> bool {
        GENERIC.matches(func)
            || (self != Skip::Trap && ALLOC.matches(func))
            || match self {
                Skip::Generic | Skip::Trap => false,
                Skip::Hung => HUNG.matches(func),
                Skip::Sleep => SLEEP.matches(func),
                Skip::Stall => STALL.matches(func),
                Skip::Checker => CHECKER.matches(func),
                Skip::Free => FREE.matches(func),
                Skip::Leak => LEAK.matches(func),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lists_keep_real_functions() {
        assert!(Skip::Hung.skips("__schedule"));
        assert!(Skip::Hung.skips("rwsem_down_write_slowpath"));
        assert!(Skip::Hung.skips("down_write"));
        assert!(!Skip::Hung.skips("generic_shutdown_super"));
        assert!(!Skip::Hung.skips("inode_switch_wbs_work_fn"));
        assert!(Skip::Generic.skips("__list_del_entry_valid_or_report"));
        assert!(Skip::Generic.skips("exc_page_fault"));
        assert!(!Skip::Generic.skips("shrink_slab"));
        assert!(!Skip::Generic.skips("splat_kasan_uaf"));
        assert!(Skip::Generic.skips("__kasan_check_read"));
        assert!(Skip::Generic.skips("kasan_report"));
        assert!(Skip::Sleep.skips("msleep"));
        assert!(!Skip::Sleep.skips("splat_sleep_atomic"));
        assert!(Skip::Stall.skips("asm_sysvec_apic_timer_interrupt"));
        assert!(Skip::Stall.skips("__rcu_read_unlock"));
        assert!(!Skip::Stall.skips("rcu_fn"));
        assert!(Skip::Checker.skips("lockdep_rcu_suspicious"));
        assert!(Skip::Checker.skips("rcu_read_lock_held"));
        assert!(Skip::Checker.skips("__rcu_read_lock"));
        assert!(Skip::Checker.skips("__kmalloc_noprof"));
        assert!(!Skip::Checker.skips("splat_rcu"));
        assert!(!Skip::Checker.skips("free_css_rcu_fn"));
    }

    #[test]
    fn generic_frames_name_no_culprit() {
        for f in [
            "debug_print_object",
            "usercopy_warn",
            "__check_object_size",
            "kmalloc_slab",
            "__alloc_pages_nodemask",
            "proc_register",
            "refcount_warn_saturate",
            "rb_erase",
            "check_preemption_disabled",
            "dump_backtrace",
        ] {
            assert!(Skip::Generic.skips(f), "{f}");
        }
        // A trap in an allocator is the allocator's.
        assert!(!Skip::Trap.skips("__alloc_pages_noprof"));
        assert!(Skip::Leak.skips("kmemleak_alloc"));
        for f in [
            "xt_free_table_info",
            "skb_release_data",
            "__kernfs_remove",
            "timerqueue_del",
        ] {
            assert!(!Skip::Generic.skips(f), "{f}");
        }
    }
}
