//! `cgstorm cover WORKDIR [--source DIR] [--against OTHER]...`: which kernel functions a
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::campaign::engine::read_edges;
use crate::campaign::stats::Stats;
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
    /// Other campaigns' workdirs on the same kernel build (repeatable):
    /// say which functions (of the subsystems, with --source) this one
    /// reached that none of them did, and which they reached that it did
    /// not: what one search found that another did not.
    #[arg(long, value_name = "WORKDIR")]
    pub against: Vec<PathBuf>,
}

/// One kernel build's coverage.
#[derive(Debug)]
struct Build {
    name: String,
    pcs: usize,
    unnamed: u64,
    functions: BTreeMap<String, u64>,
}

/// `cgstorm cover`.
pub fn run(a: &CoverArgs) -> Result<u8> {
    let builds = load(&a.workdir)?;
    let others = a
        .against
        .iter()
        .map(|w| load(w))
        .collect::<Result<Vec<_>>>()?;
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
        if !others.is_empty() {
            let theirs: Vec<&Build> = others
                .iter()
                .flatten()
                .filter(|o| o.name == b.name)
                .collect();
            let within: Option<BTreeSet<&str>> = subsystems.as_ref().map(|subs| {
                subs.iter()
                    .flat_map(|s| s.functions.iter().map(String::as_str))
                    .collect()
            });
            let d = Difference::of(b, &theirs, within.as_ref());
            d.write(&a.against, theirs.len(), &mut text, &mut html);
        }
    }
    // What KCOV cannot see: the background work, by tracepoint.
    let events = Stats::of_workdir(&a.workdir).and_then(|s| s.events_line());
    if let Some(e) = events {
        let _ = writeln!(text, "background work (tracepoints), {e}");
        let _ = writeln!(
            html,
            "<h2>Background work (tracepoints)</h2><p>{}</p>",
            esc(&e)
        );
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

/// What one campaign reached against others on the same kernel build.
#[derive(Debug, PartialEq, Eq)]
struct Difference {
    /// Functions any of them reached (within the subsystems, if given).
    union: usize,
    /// Those this one reached.
    here: usize,
    /// Reached here and by none of the others.
    only_here: Vec<String>,
    /// Reached by another and not here.
    missed_here: Vec<String>,
}

impl Difference {
    fn of(b: &Build, others: &[&Build], within: Option<&BTreeSet<&str>>) -> Difference {
        let counts = |f: &str| within.is_none_or(|w| w.contains(f));
        let here: BTreeSet<&str> = b
            .functions
            .keys()
            .map(String::as_str)
            .filter(|f| counts(f))
            .collect();
        let theirs: BTreeSet<&str> = others
            .iter()
            .flat_map(|o| o.functions.keys().map(String::as_str))
            .filter(|f| counts(f))
            .collect();
        Difference {
            union: here.union(&theirs).count(),
            here: here.len(),
            only_here: here.difference(&theirs).map(|f| f.to_string()).collect(),
            missed_here: theirs.difference(&here).map(|f| f.to_string()).collect(),
        }
    }

    fn write(&self, against: &[PathBuf], builds: usize, text: &mut String, html: &mut String) {
        let names = against
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if builds == 0 {
            let _ = writeln!(
                text,
                "  against {names}: none of them ran this kernel build"
            );
            let _ = writeln!(
                html,
                "<p>Against {}: none of them ran this kernel build.</p>",
                esc(&names)
            );
            return;
        }
        let head = format!(
            "against {names}: {} of the {} functions any of them reached",
            self.here, self.union
        );
        let _ = writeln!(text, "  {head}");
        let _ = writeln!(
            text,
            "    only here ({}): {}",
            self.only_here.len(),
            self.only_here.join(" ")
        );
        let _ = writeln!(
            text,
            "    missed here ({}): {}",
            self.missed_here.len(),
            self.missed_here.join(" ")
        );
        let _ = writeln!(
            html,
            "<h3>{}</h3><p>Only here ({}): {}</p><p>Missed here ({}): {}</p>",
            esc(&head),
            self.only_here.len(),
            esc(&self.only_here.join(", ")),
            self.missed_here.len(),
            esc(&self.missed_here.join(", "))
        );
    }
}

/// Every kernel build's coverage a workdir keeps, named by its symbols.
fn load(workdir: &Path) -> Result<Vec<Build>> {
    let dir = workdir.join("cover");
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
    Ok(builds)
}

/// Per subsystem: functions defined, reached, PCs; then the reached ones.
fn subsystem_tables(b: &Build, subs: &[Subsystem], text: &mut String, html: &mut String) {
    let _ = writeln!(
        text,
        "  {:<22} {:>9} {:>9} {:>8}",
        "subsystem", "functions", "reached", "PCs"
    );
    html.push_str("<table><tr><th>subsystem<th>functions<th>reached<th>PCs covered<th>\n");
    let mut total = (0, 0, 0);
    for sub in subs {
        let reached: Vec<(&String, u64)> = sub
            .functions
            .iter()
            .filter_map(|n| b.functions.get(n).map(|c| (n, *c)))
            .collect();
        let pcs: u64 = reached.iter().map(|(_, c)| c).sum();
        total.0 += sub.functions.len();
        total.1 += reached.len();
        total.2 += pcs;
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
    let (functions, reached, pcs) = total;
    let _ = writeln!(
        text,
        "  {:<22} {functions:>9} {reached:>9} {pcs:>8}",
        "all of them"
    );
    let _ = writeln!(
        html,
        "<tr><th>all of them<th class=n>{functions}<th class=n>{reached}<th class=n>{pcs}<th>"
    );
    html.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(functions: &[&str]) -> Build {
        Build {
            name: "6.12.117-abc".into(),
            pcs: functions.len(),
            unnamed: 0,
            functions: functions.iter().map(|f| (f.to_string(), 1)).collect(),
        }
    }

    /// What one campaign reached and the others did not, and the
    /// reverse; with subsystems given, only their functions count.
    #[test]
    fn the_difference_names_what_only_one_side_reached() {
        let here = build(&["cgroup_mkdir", "inode_switch_wbs", "ext4_write_begin"]);
        let a = build(&["cgroup_mkdir", "shrink_slab"]);
        let b = build(&["cgroup_mkdir", "ext4_write_begin"]);
        let d = Difference::of(&here, &[&a, &b], None);
        assert_eq!(
            d,
            Difference {
                union: 4,
                here: 3,
                only_here: vec!["inode_switch_wbs".into()],
                missed_here: vec!["shrink_slab".into()],
            }
        );
        let within: BTreeSet<&str> = ["cgroup_mkdir", "shrink_slab"].into();
        let d = Difference::of(&here, &[&a, &b], Some(&within));
        assert_eq!((d.union, d.here), (2, 1));
        assert!(d.only_here.is_empty());
        assert_eq!(d.missed_here, ["shrink_slab"]);
    }

    /// A workdir's PCs are named by its symbols; a workdir without
    /// coverage is an error that says where coverage is kept.
    #[test]
    fn a_workdir_is_loaded_by_its_symbols() {
        let t = tempfile::tempdir().unwrap();
        let err = load(t.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("keeps its coverage there"),
            "{err:#}"
        );
        let cover = t.path().join("cover");
        std::fs::create_dir_all(&cover).unwrap();
        let pcs: Vec<u8> = [0x1001u32, 0x1011, 0x2001]
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        std::fs::write(cover.join("k.pcs"), pcs).unwrap();
        std::fs::write(
            cover.join("k.symbols"),
            "00001000 cgroup_mkdir\n00002000 shrink_slab\n00003000 _etext\n",
        )
        .unwrap();
        let builds = load(t.path()).unwrap();
        assert_eq!(builds.len(), 1);
        assert_eq!(builds[0].name, "k");
        assert_eq!(builds[0].functions.get("cgroup_mkdir"), Some(&2));
        assert_eq!(builds[0].functions.get("shrink_slab"), Some(&1));
        // The page names the background work too, and what never ran.
        let mut st = Stats {
            programs: 4,
            ..Stats::default()
        };
        st.events.insert("cgroup_mkdir".into(), (4, 9));
        st.save(&t.path().join("fuzz.json")).unwrap();
        let html = t.path().join("cover.html");
        let a = CoverArgs {
            workdir: t.path().to_path_buf(),
            source: None,
            html: Some(html.clone()),
            against: Vec::new(),
        };
        assert_eq!(run(&a).unwrap(), 0);
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(page.contains("cgroup_mkdir 4"), "{page}");
        assert!(page.contains("never: inode_switch_wbs"), "{page}");
    }
}
