//! `cgstorm report WORKDIR... -o report.html`: one static page for a night
//! (or a comparison of campaigns): the findings of every workdir, the
//! kernels they ran, and plots over time (kernel edges, programs) as inline
//! SVG. No script, no server, no network: it opens from disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::campaign::stats::Stats;
use crate::markup::esc;

/// Arguments of `cgstorm report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Campaign workdirs (several: one page comparing them).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The page to write.
    #[arg(short, long, default_value = "report.html")]
    pub output: PathBuf,
}

/// One finding directory, as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    title: String,
    kind: String,
    count: usize,
    kernels: Vec<String>,
    first: String,
    last: String,
    dir: PathBuf,
    workdir: String,
}

/// One workdir: its counters and findings.
struct Campaign {
    name: String,
    stats: Option<Stats>,
    rows: Vec<Row>,
}

/// Runs `report`; exit 0, or 2 when an input is no workdir.
pub fn run(a: &ReportArgs) -> Result<u8> {
    let mut campaigns = Vec::new();
    for d in &a.dirs {
        if !d.join("findings").is_dir() {
            eprintln!(
                "cgstorm report: {} is no campaign workdir (no findings/)",
                d.display()
            );
            return Ok(2);
        }
        let c = load(d);
        let merged = c.stats.is_none();
        campaigns.push(c);
        if merged {
            // A merged workdir: its shards' counters, for the plots.
            campaigns.extend(shards(d));
        }
    }
    let html = page(&campaigns);
    crate::findings::write_new(&a.output, html.as_bytes())
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    let findings: usize = campaigns.iter().map(|c| c.rows.len()).sum();
    println!(
        "cgstorm report: {} ({} workdirs, {findings} findings)",
        a.output.display(),
        campaigns.len()
    );
    Ok(0)
}

fn load(dir: &Path) -> Campaign {
    let stats = Stats::of_workdir(dir);
    let mut rows = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("findings"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    for f in dirs {
        let read = |n: &str| std::fs::read_to_string(f.join(n)).unwrap_or_default();
        let title = read("description").trim().to_string();
        if title.is_empty() {
            continue;
        }
        let seen: Vec<String> = read("seen").lines().map(str::to_string).collect();
        let mut kernels: Vec<String> = seen.iter().filter_map(|l| kernel_of(l)).collect();
        kernels.sort();
        kernels.dedup();
        rows.push(Row {
            title,
            kind: read("kind").trim().to_string(),
            count: seen.len().max(read("count").trim().parse().unwrap_or(0)),
            kernels,
            first: seen.first().map(|l| when(l)).unwrap_or_default(),
            last: seen.last().map(|l| when(l)).unwrap_or_default(),
            dir: f.clone(),
            workdir: dir.display().to_string(),
        });
    }
    Campaign {
        name: dir.display().to_string(),
        stats,
        rows,
    }
}

/// The counters `cgstorm merge` kept of each workdir merged into `dir`
/// (`shards/*.json`), as campaigns without findings of their own.
fn shards(dir: &Path) -> Vec<Campaign> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("shards"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let stats = Stats::load(&p).ok().filter(|s| s.programs > 0)?;
            Some(Campaign {
                name: format!("{} ({})", dir.display(), p.file_stem()?.to_string_lossy()),
                stats: Some(stats),
                rows: Vec::new(),
            })
        })
        .collect()
}

/// The kernel of a `seen` line: `TIME PART PROGRAM on KERNEL (BACKEND)`.
fn kernel_of(line: &str) -> Option<String> {
    let (_, rest) = line.rsplit_once(" on ")?;
    Some(rest.split(" (").next()?.trim().to_string())
}

/// The time of a `seen` line, as UTC.
fn when(line: &str) -> String {
    line.split_whitespace()
        .next()
        .and_then(|t| t.parse::<u64>().ok())
        .map(utc)
        .unwrap_or_default()
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC (civil from days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// A link to a file of a finding, if it has it.
fn link(dir: &Path, file: &str) -> String {
    let p = dir.join(file);
    if p.exists() {
        let abs = std::fs::canonicalize(&p).unwrap_or(p);
        format!(
            "<a href=\"file://{}\">{}</a>",
            esc(&abs.display().to_string()),
            esc(file)
        )
    } else {
        String::new()
    }
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// An SVG line plot of `series` (name, points of (x seconds, y)).
fn plot(title: &str, y_label: &str, series: &[(String, Vec<(u64, u64)>)]) -> String {
    let (w, h, pad) = (640.0, 260.0, 48.0);
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_y = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{}\" stroke=\"#444\"/>",
        h - pad,
        w - 8.0,
        h - pad,
        h - pad
    );
    let _ = write!(
        s,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">0</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.0} min</text><text x=\"4\" y=\"{}\" font-size=\"11\">{}</text><text x=\"4\" y=\"14\" font-size=\"11\">{} {}</text>",
        h - pad + 14.0,
        w - 8.0,
        h - pad + 14.0,
        max_x / 60.0,
        h - pad,
        0,
        max_y as u64,
        esc(y_label)
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let coords: Vec<String> = pts
            .iter()
            .map(|(x, y)| {
                let px = pad + (*x as f64 / max_x) * (w - pad - 8.0);
                let py = (h - pad) - (*y as f64 / max_y) * (h - 2.0 * pad);
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{c}\">{}</text>",
            coords.join(" "),
            pad + 8.0,
            pad + 14.0 * (i as f64 + 1.0),
            esc(name)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

/// A plot's points from a campaign's counters.
type Points = fn(&Stats) -> Vec<(u64, u64)>;

fn page(campaigns: &[Campaign]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cgstorm report</title>\
         <style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:left}\
         th{background:#eee}figure{display:inline-block;margin:0 1em 1em 0}</style></head><body>\n\
         <h1>cgstorm report</h1>\n",
    );
    s.push_str("<h2>Campaigns</h2>\n<table id=\"campaigns\"><tr><th>workdir</th><th>programs</th><th>programs/s</th><th>kernel edges</th><th>findings</th><th>kernels (wall time)</th><th>wall time</th></tr>\n");
    for c in campaigns {
        let (programs, rate, edges, kernels, split) = match &c.stats {
            Some(st) => (
                st.programs.to_string(),
                format!("{:.2}", st.programs_per_s()),
                // No run gave coverage: a kernel without KCOV, not 0 edges.
                if st.cover.runs == 0 {
                    "no KCOV".to_string()
                } else {
                    st.cover.edges.to_string()
                },
                st.per_kernel_ms
                    .iter()
                    .map(|(k, ms)| format!("{k} ({} min)", ms / 60_000))
                    .collect::<Vec<_>>()
                    .join(", "),
                st.time_split().unwrap_or_default(),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{programs}</td><td>{rate}</td><td>{edges}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.name),
            c.rows.len(),
            esc(&kernels),
            esc(&split)
        );
    }
    s.push_str("</table>\n<h2>Findings</h2>\n<table id=\"findings\"><tr><th>title</th><th>kind</th><th>count</th><th>kernels</th><th>first seen</th><th>last seen</th><th>workdir</th><th>files</th><th>reproduce</th></tr>\n");
    let mut by_title: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in campaigns.iter().flat_map(|c| &c.rows) {
        by_title.entry(&r.title).or_default().push(r);
    }
    for rows in by_title.values() {
        for r in rows {
            let d = r.dir.display().to_string();
            let _ = writeln!(
                s,
                "<tr class=\"finding\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {} {}</td><td><code>cgstorm replay {}</code><br><code>cgstorm repro {} --sh</code></td></tr>",
                esc(&r.title),
                esc(&r.kind),
                r.count,
                esc(&r.kernels.join(", ")),
                esc(&r.first),
                esc(&r.last),
                esc(&r.workdir),
                link(&r.dir, "console.log"),
                link(&r.dir, "program.yaml"),
                link(&r.dir, "report"),
                esc(&d),
                esc(&d)
            );
        }
    }
    s.push_str("</table>\n<h2>Over time</h2>\n");
    let plots: [(&str, &str, Points); 5] = [
        ("Kernel edges (KCOV) over the campaign", "edges", |st| {
            st.cover.series.clone()
        }),
        (
            "Kernel PCs (KCOV basic blocks) over the campaign",
            "PCs",
            |st| st.cover.pcs_series.clone(),
        ),
        (
            "Kernel PCs in the subsystems that matter (fuzz --focus) over the campaign",
            "PCs",
            |st| st.cover.focus_series.clone(),
        ),
        ("Programs run", "programs", |st| {
            st.series.iter().map(|p| (p.0, p.1)).collect()
        }),
        ("Distinct findings", "findings", |st| {
            st.series.iter().map(|p| (p.0, p.2)).collect()
        }),
    ];
    for (title, unit, points) in plots {
        let series: Vec<(String, Vec<(u64, u64)>)> = campaigns
            .iter()
            .filter_map(|c| Some((c.name.clone(), points(c.stats.as_ref()?))))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        if !series.is_empty() {
            s.push_str(&plot(title, unit, &series));
        }
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_lines_give_kernel_and_time() {
        let l = "1796135128 fuzz mut-1fa2 on 6.1.0-57-cloud-amd64 (qemu)";
        assert_eq!(kernel_of(l).as_deref(), Some("6.1.0-57-cloud-amd64"));
        assert_eq!(when("0 x"), "1970-01-01 00:00");
        assert_eq!(when("1796135128 x"), "2026-12-01 14:25");
    }

    /// A page over a workdir with a finding lists it (escaped) and plots
    /// the campaign's edges.
    #[test]
    fn the_page_lists_findings_and_plots_the_edges() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("findings/00aa");
        std::fs::create_dir_all(&f).unwrap();
        std::fs::write(f.join("description"), "WARNING in a<b>\n").unwrap();
        std::fs::write(f.join("kind"), "warning\n").unwrap();
        std::fs::write(f.join("seen"), "1796135128 fuzz p on 6.12.117 (qemu)\n").unwrap();
        std::fs::write(f.join("console.log"), "log").unwrap();
        let mut st = Stats {
            programs: 10,
            elapsed_ms: 60_000,
            ..Stats::default()
        };
        st.cover.series = vec![(0, 100), (30, 900), (60, 1200)];
        st.save(&t.path().join("fuzz.json")).unwrap();
        let html = page(&[load(t.path())]);
        assert!(html.contains("WARNING in a&lt;b&gt;"), "{html}");
        assert!(html.contains("6.12.117"));
        assert!(html.contains("console.log</a>"));
        assert!(html.contains("<polyline"), "the edges are plotted");
        assert_eq!(html.matches("class=\"finding\"").count(), 1);
        // No run gave coverage (a kernel without KCOV): not "0" edges.
        assert!(html.contains("<td>no KCOV</td>"), "{html}");
        st.cover.runs = 5;
        st.cover.edges = 1200;
        st.save(&t.path().join("fuzz.json")).unwrap();
        let html = page(&[load(t.path())]);
        assert!(html.contains("<td>1200</td>") && !html.contains("no KCOV"));
        // The subsystems' PCs are plotted when the campaign had a focus.
        assert!(!html.contains("subsystems that matter"));
        st.cover.focus_series = vec![(0, 10), (30, 90)];
        st.save(&t.path().join("fuzz.json")).unwrap();
        let html = page(&[load(t.path())]);
        assert!(html.contains("subsystems that matter"), "{html}");
    }

    /// A merged workdir has no counters of its own: its page plots the
    /// shards' that `cgstorm merge` kept, one line each.
    #[test]
    fn a_merged_workdir_plots_its_shards() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, out) = (t.path().join("s0"), t.path().join("s1"), t.path().join("m"));
        for (d, n) in [(&a, 10), (&b, 20)] {
            std::fs::create_dir_all(d.join("findings")).unwrap();
            let mut st = Stats {
                programs: n,
                elapsed_ms: 60_000,
                ..Stats::default()
            };
            st.cover.series = vec![(0, n), (60, 10 * n)];
            st.save(&d.join("fuzz.json")).unwrap();
            crate::workdirs::merge_into(&out, d).unwrap();
        }
        let mut campaigns = vec![load(&out)];
        assert!(campaigns[0].stats.is_none());
        campaigns.extend(shards(&out));
        assert_eq!(campaigns.len(), 3);
        let html = page(&campaigns);
        assert_eq!(
            html.matches("<polyline").count(),
            2,
            "one edges line a shard"
        );
        assert!(html.contains("(s0-") && html.contains("(s1-"), "{html}");
    }
}
