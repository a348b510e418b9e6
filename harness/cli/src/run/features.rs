//! The model's kernel from what the agent saw the booted kernel have
//! ([`Features`], probed in the guest at boot): the probe decides; a config
//! file found beside the kernel is checked against it, and what it got wrong
//! is said.

use cgstorm_proto::proto::Features;
use cgstorm_workloads::model::Kernel;

/// Sets the fields of `k` the probe saw; returns one line per field where
/// the kernel so far (from its version and config) said otherwise, naming
/// `source` ("its config", "cgstorm's default").
pub fn apply(k: &mut Kernel, f: &Features, source: &str) -> Vec<String> {
    let has = |c: &str| f.controllers.iter().any(|x| x == c);
    let mut said = Vec::new();
    let mut set = |field: &mut bool, seen: Option<bool>, what: &str| {
        if let Some(seen) = seen {
            if *field != seen {
                said.push(format!(
                    "{source} says {what} {}, the booted kernel {}: the model follows the kernel",
                    if *field { "exists" } else { "does not exist" },
                    if seen { "has it" } else { "has not" },
                ));
            }
            *field = seen;
        }
    };
    set(&mut k.io_controller, Some(has("io")), "the io controller");
    set(
        &mut k.pids_controller,
        Some(has("pids")),
        "the pids controller",
    );
    set(
        &mut k.blk_throttling,
        f.io_max,
        "io.max (CONFIG_BLK_DEV_THROTTLING)",
    );
    set(&mut k.swap_accounting, f.memory_swap_max, "memory.swap.max");
    set(
        &mut k.memcg_v1,
        f.memcg_v1,
        "the cgroup v1 memory controller",
    );
    set(&mut k.fs_dax, f.fs_dax, "filesystem DAX (CONFIG_FS_DAX)");
    set(
        &mut k.cgroup_writeback,
        f.cgroup_writeback,
        "cgroup writeback (CONFIG_CGROUP_WRITEBACK)",
    );
    // Version-given features the model cannot override: a kernel that
    // disagrees is one whose version the model misreads.
    for (model, seen, what) in [
        (k.has_cgroup_kill(), f.cgroup_kill, "cgroup.kill"),
        (k.has_memory_reclaim(), f.memory_reclaim, "memory.reclaim"),
        (k.tmpfs_direct_io(), f.tmpfs_direct_io, "O_DIRECT on tmpfs"),
    ] {
        if seen.is_some_and(|s| s != model) {
            said.push(format!(
                "the model expects {what} {} on {} by its version, but the booted kernel {}",
                if model { "to exist" } else { "not to exist" },
                k.release,
                if model { "has not" } else { "has it" },
            ));
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probed() -> Features {
        Features {
            controllers: ["cpuset", "cpu", "io", "memory", "pids"]
                .map(String::from)
                .to_vec(),
            io_max: Some(false),
            memory_swap_max: Some(true),
            memory_reclaim: Some(true),
            cgroup_kill: Some(true),
            memcg_v1: Some(true),
            tmpfs_direct_io: Some(true),
            ..Features::default()
        }
    }

    #[test]
    fn the_probe_decides_and_a_wrong_default_is_said() {
        let mut k = Kernel::from_release("6.12.117").unwrap();
        assert!(k.blk_throttling, "the default this test is about");
        let said = apply(&mut k, &probed(), "cgstorm's default");
        assert!(!k.blk_throttling);
        assert!(k.io_controller && k.memcg_v1 && k.swap_accounting);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with(
                "cgstorm's default says io.max (CONFIG_BLK_DEV_THROTTLING) exists, \
                 the booted kernel has not"
            ),
            "{said:?}"
        );
    }

    /// A kernel without filesystem DAX or cgroup writeback (their symbols
    /// missing from kallsyms) gets a model without them.
    #[test]
    fn the_symbols_decide_dax_and_cgroup_writeback() {
        let mut k = Kernel::from_release("6.12.117").unwrap();
        let f = Features {
            fs_dax: Some(false),
            cgroup_writeback: Some(false),
            io_max: Some(true),
            ..probed()
        };
        let said = apply(&mut k, &f, "cgstorm's default");
        assert!(!k.fs_dax && !k.cgroup_writeback);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains("filesystem DAX (CONFIG_FS_DAX) exists"),
            "{said:?}"
        );
    }

    #[test]
    fn an_unknown_probe_leaves_the_field_alone() {
        let mut k = Kernel::from_release("6.12.117").unwrap();
        let f = Features {
            memcg_v1: None,
            io_max: None,
            ..probed()
        };
        assert!(apply(&mut k, &f, "its config").is_empty());
        assert!(k.memcg_v1 && k.blk_throttling);
    }

    #[test]
    fn a_version_feature_the_kernel_lacks_is_said() {
        let mut k = Kernel::from_release("5.10.0").unwrap();
        let said = apply(&mut k, &probed(), "its config");
        assert!(
            said.iter()
                .any(|s| s.contains("cgroup.kill not to exist on 5.10.0")),
            "{said:?}"
        );
    }
}
