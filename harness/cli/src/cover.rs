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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::campaign::engine::read_edges;
use crate::kernel_code::{by_function, subsystem_functions, Subsystem, Symbols};
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
