//! The kernel's code as coverage sees it: its text symbols (which
//! function a KCOV PC is in), and the functions the subsystems these races
//! live in define (read from a kernel source tree), with whether KCOV
//! instruments them. `cgstorm cover` tables a campaign's PCs by them; a
//! guided campaign given a source tree (`cgstorm fuzz --focus`) steers
//! its generator towards new PCs in them.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The subsystems whose coverage matters here: a file, or a directory (a
/// trailing `/`: every `.c` file in it).
pub const SUBSYSTEMS: [&str; 11] = [
    "mm/memcontrol.c",
    "mm/memcontrol-v1.c",
    "mm/page-writeback.c",
    "fs/fs-writeback.c",
    "mm/backing-dev.c",
    "kernel/cgroup/",
    "fs/dax.c",
    "mm/shrinker.c",
    "fs/super.c",
    "mm/vmscan.c",
    "mm/list_lru.c",
];

/// The kernel's text symbols: `(link-time address, name)`, sorted.
pub struct Symbols(Vec<(u32, String)>);

impl Symbols {
    /// Parses the agent's `ADDR NAME` lines.
    pub fn parse(text: &str) -> Symbols {
        let mut v: Vec<(u32, String)> = text
            .lines()
            .filter_map(|l| {
                let (a, n) = l.split_once(' ')?;
                Some((u32::from_str_radix(a, 16).ok()?, n.trim().to_string()))
            })
            .collect();
        v.sort();
        Symbols(v)
    }

    /// The function `pc` is in, if any: the last symbol at or before it
    /// (a PC past the last symbol is outside the text the symbols cover).
    pub fn function(&self, pc: u32) -> Option<&str> {
        let i = self.0.partition_point(|(a, _)| *a <= pc);
        (i > 0 && i < self.0.len()).then(|| self.0[i - 1].1.as_str())
    }
}

/// Covered PCs per function name, and the PCs no symbol names. A KCOV PC
/// is the return address of its `__sanitizer_cov_trace_pc` call: the byte
/// before it is in the call, so in the function (a call that ends a
/// function returns to the next one's first byte).
pub fn by_function(symbols: &Symbols, pcs: &HashSet<u32>) -> (BTreeMap<String, u64>, u64) {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut unnamed = 0;
    for &pc in pcs {
        match symbols.function(pc.wrapping_sub(1)) {
            Some(f) => *out.entry(f.to_string()).or_default() += 1,
            None => unnamed += 1,
        }
    }
    (out, unnamed)
}

/// The functions a C file defines, read from its text: a line at column 0
/// that names `name(` and is not a declaration, a macro or an initialiser,
/// with the body's `{` at column 0 before any `;` ends a line.
pub fn defined_functions(c: &str) -> Vec<String> {
    let lines: Vec<&str> = c.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(first) = l.chars().next() else {
            continue;
        };
        if !(first.is_ascii_alphabetic() || first == '_') {
            continue;
        }
        let Some(open) = l.find('(') else {
            continue;
        };
        let head = &l[..open];
        if head.contains('=') || head.starts_with("typedef") {
            continue;
        }
        let name: String = head
            .trim_end()
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            || name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            continue; // a macro (SYSCALL_DEFINE3, DEFINE_PER_CPU, ...)
        }
        // The body: `{` alone at column 0 before a line ends with `;`.
        let body = lines[i..].iter().take(12).find_map(|m| {
            if m.starts_with('{') {
                Some(true)
            } else if m.trim_end().ends_with(';') {
                Some(false)
            } else {
                None
            }
        });
        if body == Some(true) {
            out.push(name);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the kbuild Makefile `makefile` (its text) keeps KCOV out of
/// `file` (`KCOV_INSTRUMENT_<stem>.o := n`) or out of its whole directory
/// (`KCOV_INSTRUMENT := n`): its PCs never reach the coverage (mm/Makefile
/// does so for memcontrol.c and memcontrol-v1.c).
pub fn kcov_excluded(makefile: &str, file: &str) -> bool {
    let stem = file.strip_suffix(".c").unwrap_or(file);
    makefile.lines().any(|l| {
        let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        l == "KCOV_INSTRUMENT:=n" || l == format!("KCOV_INSTRUMENT_{stem}.o:=n")
    })
}

/// One subsystem: its functions (from the source tree), and whether KCOV
/// instruments its files (`false`: some file is kept out).
pub struct Subsystem {
    /// Its file, or its directory with a trailing `/`.
    pub name: String,
    /// The functions its files define.
    pub functions: Vec<String>,
    /// Whether KCOV sees all its files.
    pub instrumented: bool,
}

/// The functions each subsystem's files define, from the source tree.
pub fn subsystem_functions(source: &Path) -> Result<Vec<Subsystem>> {
    let mut out = Vec::new();
    for sub in SUBSYSTEMS {
        let path = source.join(sub);
        let files: Vec<PathBuf> = if sub.ends_with('/') {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("read {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "c"))
                .collect();
            v.sort();
            v
        } else if path.exists() {
            vec![path]
        } else {
            // Not in this version (mm/memcontrol-v1.c is 6.10's, mm/shrinker.c 6.7's).
            Vec::new()
        };
        let mut names = Vec::new();
        let mut instrumented = true;
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("read {}", f.display()))?;
            names.extend(defined_functions(&text));
            let make = std::fs::read_to_string(f.with_file_name("Makefile")).unwrap_or_default();
            let file = f
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            if kcov_excluded(&make, &file) {
                instrumented = false;
            }
        }
        names.sort();
        names.dedup();
        out.push(Subsystem {
            name: sub.to_string(),
            functions: names,
            instrumented,
        });
    }
    if out.iter().all(|s| s.functions.is_empty()) {
        bail!(
            "{} holds none of {}: give the top of a kernel source tree",
            source.display(),
            SUBSYSTEMS.join(", ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcs_belong_to_the_last_symbol_before_them() {
        let s = Symbols::parse(
            "81000000 _text\n81001000 cgroup_mkdir\n81001400 cgroup_rmdir\n81002000 _etext\n",
        );
        assert_eq!(s.function(0x8100_1000), Some("cgroup_mkdir"));
        assert_eq!(s.function(0x8100_13ff), Some("cgroup_mkdir"));
        assert_eq!(s.function(0x8100_1400), Some("cgroup_rmdir"));
        assert_eq!(s.function(0x80ff_ffff), None, "before the text");
        assert_eq!(s.function(0x8100_2004), None, "past the last symbol");
        // 0x81001400: the return address of a call that ends cgroup_mkdir.
        let pcs: HashSet<u32> = [0x8100_1004, 0x8100_1400, 0x8100_1404, 0x9000_0000].into();
        let (f, unnamed) = by_function(&s, &pcs);
        assert_eq!(f["cgroup_mkdir"], 2);
        assert_eq!(f["cgroup_rmdir"], 1);
        assert_eq!(unnamed, 1);
    }

    #[test]
    fn a_makefile_may_keep_kcov_out() {
        let mm =
            "KCOV_INSTRUMENT_slub.o := n\nKCOV_INSTRUMENT_memcontrol.o := n\nobj-y += vmscan.o\n";
        assert!(kcov_excluded(mm, "memcontrol.c"));
        assert!(!kcov_excluded(mm, "vmscan.c"));
        assert!(!kcov_excluded(mm, "memcontrol-v1.c"));
        assert!(kcov_excluded("KCOV_INSTRUMENT\t:= n\n", "anything.c"));
    }

    #[test]
    fn the_functions_a_c_file_defines() {
        let c = "\
// SPDX-License-Identifier: GPL-2.0
#include <linux/fs.h>

static int nr_switches;
static void inode_switch_wbs_work_fn(struct work_struct *work);

static bool inode_prepare_wbs_switch(struct inode *inode,
\t\t\t\t     struct bdi_writeback *new_wb)
{
\treturn true;
}

int cgroup_mkdir(struct kernfs_node *parent_kn, const char *name, umode_t mode)
{
\treturn 0;
}

SYSCALL_DEFINE1(syncfs, int, fd)
{
\treturn 0;
}

static const struct file_operations fops = {
\t.open = foo,
};
struct cftype files[] = {
\t{ .name = \"x\" },
};
void __init cgroup_init_early(void)
{
}
";
        assert_eq!(
            defined_functions(c),
            [
                "cgroup_init_early",
                "cgroup_mkdir",
                "inode_prepare_wbs_switch"
            ]
        );
    }
}
