//! `cgstorm cover WORKDIR [--source DIR]`: which kernel functions a
//! campaign ran, by the subsystems these races live in.
//!
//! A campaign on a kernel with KCOV keeps every PC its lanes ran
//! (`cover/<build>.pcs`) and the kernel's text symbols at link-time
//! addresses (`cover/<build>.symbols`, from the guest's /proc/kallsyms).
//! Each PC belongs to the function whose symbol is the last at or before
//! it. Kallsyms names functions, not files: with `--source`, a kernel
//! source tree of the same version, the functions each subsystem's files
//! define (read from the C source) group the table; without it the table
//! lists every function reached. Static functions the compiler inlined
//! have no symbol: their PCs count for the function they were inlined in.
//! A file its kbuild Makefile keeps out of KCOV (`KCOV_INSTRUMENT_x.o :=
//! n`: mm/memcontrol.c and mm/memcontrol-v1.c in 6.12) is said to be: KCOV
//! cannot see it, whatever ran there. Instrumented PCs per function (how
//! much of it is left) need the vmlinux's code, which this does not read
//! yet.
//!
//! The table goes to stdout, the page to `WORKDIR/cover.html`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::campaign::engine::read_edges;
use crate::markup::esc;

/// Arguments of `cgstorm cover`.
#[derive(clap::Args, Debug)]
pub struct CoverArgs {
    /// The campaign workdir (`cgstorm fuzz` or `soak` on a kernel with KCOV,
    /// or a merged one).
    pub workdir: PathBuf,
    /// A kernel source tree of the campaign's kernel version (e.g. Debian's
    /// linux-source-6.12, unpacked): groups the functions by the files of
    /// the subsystems that matter.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Where to write the HTML page (default: WORKDIR/cover.html).
    #[arg(long)]
    pub html: Option<PathBuf>,
}

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
struct Subsystem {
    name: String,
    functions: Vec<String>,
    instrumented: bool,
}

/// The functions each subsystem's files define, from the source tree.
fn subsystem_functions(source: &Path) -> Result<Vec<Subsystem>> {
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

/// One kernel build's coverage.
struct Build {
    name: String,
    pcs: usize,
    unnamed: u64,
    functions: BTreeMap<String, u64>,
}

/// `cgstorm cover`.
pub fn run(a: &CoverArgs) -> Result<u8> {
    let dir = a.workdir.join("cover");
    let mut builds = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "read {} (a campaign on a kernel with KCOV keeps its coverage there)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcs"))
        .collect();
    names.sort();
    for p in names {
        let name = p
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let pcs = read_edges(&p);
        let syms = p.with_extension("symbols");
        let Ok(text) = std::fs::read_to_string(&syms) else {
            eprintln!(
                "cgstorm cover: {name}: {} PCs but no {} (the agent could not read /proc/kallsyms): not named",
                pcs.len(),
                syms.display()
            );
            continue;
        };
        let (functions, unnamed) = by_function(&Symbols::parse(&text), &pcs);
        builds.push(Build {
            name,
            pcs: pcs.len(),
            unnamed,
            functions,
        });
    }
    if builds.is_empty() {
        bail!(
            "{} has no kernel PCs with symbols: run a campaign on a kernel with KCOV (the shared 6.12 debug kernel has it; Debian's has not)",
            dir.display()
        );
    }
    let subsystems = a.source.as_deref().map(subsystem_functions).transpose()?;
    let mut text = String::new();
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><title>cgstorm cover</title>\
         <style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}\
         td.n{text-align:right}h3{margin-top:1.5em}details{margin:4px 0}</style>\n",
    );
    let _ = writeln!(
        html,
        "<h1>Kernel coverage of {}</h1>",
        esc(&a.workdir.display().to_string())
    );
    for b in &builds {
        let _ = writeln!(
            text,
            "{}: {} PCs in {} functions ({} PCs outside the named text)",
            b.name,
            b.pcs,
            b.functions.len(),
            b.unnamed
        );
        let _ = writeln!(
            html,
            "<h2>{}</h2><p>{} PCs in {} functions ({} outside the named text)</p>",
            esc(&b.name),
            b.pcs,
            b.functions.len(),
            b.unnamed
        );
        match &subsystems {
            Some(subs) => subsystem_tables(b, subs, &mut text, &mut html),
            None => {
                let _ = writeln!(
                    text,
                    "  (no --source: every function reached, most PCs first; give a kernel source tree to group them by subsystem)"
                );
                let mut all: Vec<(&String, &u64)> = b.functions.iter().collect();
                all.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
                for (f, n) in all.iter().take(40) {
                    let _ = writeln!(text, "  {n:>6}  {f}");
                }
                html.push_str("<table><tr><th>function<th>PCs covered\n");
                for (f, n) in all {
                    let _ = writeln!(html, "<tr><td>{}<td class=n>{n}", esc(f));
                }
                html.push_str("</table>\n");
            }
        }
    }
    print!("{text}");
    let out = a
        .html
        .clone()
        .unwrap_or_else(|| a.workdir.join("cover.html"));
    crate::findings::write_new(&out, html.as_bytes())
        .with_context(|| format!("write {}", out.display()))?;
    println!("cgstorm cover: the page is {}", out.display());
    Ok(0)
}

/// Per subsystem: functions defined, reached, PCs; then the reached ones.
fn subsystem_tables(b: &Build, subs: &[Subsystem], text: &mut String, html: &mut String) {
    let _ = writeln!(
        text,
        "  {:<22} {:>9} {:>9} {:>8}",
        "subsystem", "functions", "reached", "PCs"
    );
    html.push_str("<table><tr><th>subsystem<th>functions<th>reached<th>PCs covered<th>\n");
    for sub in subs {
        let reached: Vec<(&String, u64)> = sub
            .functions
            .iter()
            .filter_map(|n| b.functions.get(n).map(|c| (n, *c)))
            .collect();
        let pcs: u64 = reached.iter().map(|(_, c)| c).sum();
        let note = if sub.instrumented {
            ""
        } else {
            "not instrumented: its Makefile keeps KCOV out"
        };
        let _ = writeln!(
            text,
            "  {:<22} {:>9} {:>9} {:>8}  {note}",
            sub.name,
            sub.functions.len(),
            reached.len(),
            pcs
        );
        let _ = writeln!(
            html,
            "<tr><td><details><summary>{}</summary>{}</details><td class=n>{}<td class=n>{}<td class=n>{pcs}<td>{note}",
            esc(&sub.name),
            reached
                .iter()
                .map(|(n, c)| format!("{} ({c})", esc(n)))
                .collect::<Vec<_>>()
                .join(", "),
            sub.functions.len(),
            reached.len()
        );
    }
    html.push_str("</table>\n");
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
