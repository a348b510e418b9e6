//! Tests of the script generator, the helper's source and the result parser.
//! (That the scripts do the right thing in a VM is ci/vm-repro.sh's job.)

use std::path::{Path, PathBuf};
use std::process::Command;

use cgstorm_workloads::model::Target;
use cgstorm_workloads::{Op, OpId, Program};

use super::results::{judge, parse, Judgement};
use super::script::{generate, generate_sequence, Provenance, HELPER_C, SEQUENCE_MARK};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every program of the corpus directories.
fn corpus() -> Vec<(PathBuf, Program)> {
    let mut v = Vec::new();
    for d in [
        "corpus/semantics",
        "corpus/scenarios",
        "corpus/regressions",
        "corpus/faults",
    ] {
        let Ok(rd) = std::fs::read_dir(workspace().join(d)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&p).unwrap();
                v.push((p.clone(), Program::from_yaml_path(&p, &text).unwrap()));
            }
        }
    }
    assert!(v.len() >= 11, "the corpus is missing: {v:?}");
    v
}

/// `sh -n` (parse only, runs nothing) accepts the script; so does busybox's
/// sh when it is here (the guest runs that one).
fn assert_parses(name: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("repro.sh");
    std::fs::write(&f, text).unwrap();
    let mut shells = vec![vec!["sh".to_string()]];
    if Path::new("/bin/busybox").exists() {
        shells.push(vec!["/bin/busybox".into(), "sh".into()]);
    }
    for sh in shells {
        let out = Command::new(&sh[0])
            .args(&sh[1..])
            .arg("-n")
            .arg(&f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {sh:?} -n rejects the script: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every leaf op's result line is in the script, once per op id.
fn assert_every_op_reports(name: &str, p: &Program, text: &str) {
    for li in 0..p.lanes.len() {
        for (id, spec) in p.lane_ops(li) {
            if matches!(spec.op, Op::Barrier | Op::Repeat(_)) {
                continue;
            }
            let needle = format!("; res {} '{}'", id.op, spec.op.describe());
            let lane_fn = text
                .split(&format!("\nlane_{li}() {{"))
                .nth(1)
                .and_then(|t| t.split("\n}\n").next())
                .unwrap_or_default();
            assert_eq!(
                lane_fn.matches(&needle).count(),
                1,
                "{name}: lane {li} has no single `{needle}`"
            );
        }
    }
}

#[test]
fn every_corpus_program_gives_a_script_sh_accepts() {
    for (path, p) in corpus() {
        let name = path.display().to_string();
        let s = generate(&p, &Provenance::default());
        assert!(s.text.starts_with("#!/bin/sh\n"), "{name}");
        assert_parses(&name, &s.text);
        assert_every_op_reports(&name, &p, &s.text);
        assert_eq!(
            s.text.contains("helper_source()"),
            s.needs_helper,
            "{name}: the helper's source is there exactly when needed"
        );
    }
}

/// The scripts wait for removed cgroups as long as the agent's reset
/// does: the model's bounds are written in, and no placeholder is left.
#[test]
fn scripts_wait_as_long_as_the_reset() {
    use cgstorm_workloads::model::snapshot::{DAX_IDLE_WITHIN_MS, DYING_WITHIN_MS, LOOP_SETTLE_MS};
    let (_, p) = corpus().into_iter().next().expect("a corpus program");
    let one = generate(&p, &Provenance::default()).text;
    let seq = generate_sequence(std::slice::from_ref(&p), &p, &Provenance::default()).text;
    for text in [&one, &seq] {
        assert!(
            !text.contains("@DYING") && !text.contains("@LOOP") && !text.contains("@DAX"),
            "a placeholder is left"
        );
        assert!(text.contains(&format!("\"$H\" idle \"$f\" {}", DAX_IDLE_WITHIN_MS / 1000)));
        assert!(text.contains(&format!("max={}", DYING_WITHIN_MS / 50)));
        assert!(text.contains(&format!("max={}", LOOP_SETTLE_MS / 50)));
        assert!(text.contains(&format!(
            "still dying: $dying after {} s",
            DYING_WITHIN_MS / 1000
        )));
    }
    assert!(
        seq.contains(&format!("-ge {} ]", DYING_WITHIN_MS / 50)),
        "between() waits too"
    );
}

/// A script cannot inject faults: its header says which ops lose theirs.
#[test]
fn a_script_says_which_faults_it_leaves_out() {
    let text = std::fs::read_to_string(workspace().join("corpus/faults/cgroups.yaml")).unwrap();
    let p = Program::from_yaml("faults", &text).unwrap();
    let s = generate(&p, &Provenance::default());
    assert!(
        s.text
            .contains("# NOT REPRODUCED: the program injects faults"),
        "{}",
        s.text
    );
    assert!(
        s.text.contains("#   lane 0 op 1 mkdir a (fail_nth 1)"),
        "{}",
        s.text
    );
    let plain = generate(
        &cgstorm_workloads::gen::from_seed(1),
        &Provenance::default(),
    );
    assert!(!plain.text.contains("NOT REPRODUCED"));
}

#[test]
fn generated_programs_give_scripts_sh_accepts() {
    for seed in 0..40 {
        let p = cgstorm_workloads::gen::from_seed(seed);
        let s = generate(&p, &Provenance::default());
        assert_parses(&format!("seed {seed}"), &s.text);
        assert_every_op_reports(&format!("seed {seed}"), &p, &s.text);
    }
}

#[test]
fn scripts_refuse_to_run_unless_root_and_name_their_devices() {
    let text = std::fs::read_to_string(workspace().join("corpus/semantics/dax.yaml")).unwrap();
    let p = Program::from_yaml("dax.yaml", &text).unwrap();
    let s = generate(&p, &Provenance::default()).text;
    assert!(s.contains("[ \"$(id -u)\" = 0 ] || die"), "root check");
    assert!(s.contains("SCRATCH0=${SCRATCH0:-/dev/vda}"), "{s}");
    assert!(s.contains("PMEM0=${PMEM0:-/dev/pmem0}"));
    assert!(s.contains("[ -b \"$PMEM0\" ] || die"));
    assert!(s.contains("DESTROYS ALL DATA"));
    // mounts.yaml names scratch7, which cgstorm's VM lacks: no default node.
    let text = std::fs::read_to_string(workspace().join("corpus/semantics/mounts.yaml")).unwrap();
    let s = generate(
        &Program::from_yaml("m", &text).unwrap(),
        &Provenance::default(),
    )
    .text;
    assert!(s.contains("SCRATCH7=${SCRATCH7:-}\n"), "{s}");
}

#[test]
fn the_helper_compiles_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let h = build_helper(dir.path());
    // It runs and refuses what it does not know.
    let ok = Command::new(&h).arg("check").output().unwrap();
    assert!(ok.status.success());
    assert!(!Command::new(&h)
        .arg("nonsense")
        .output()
        .unwrap()
        .status
        .success());
}

const TWO_LANES: &str = "
lanes:
  - name: a
    ops:
      - mkdir: x
      - barrier
      - repeat: {count: 2, ops: [{rmdir: x}]}
  - name: b
    ops:
      - barrier
      - {mkdir: x}
";

#[test]
fn result_lines_parse_with_and_without_times() {
    let out = "cgstorm: noise\n\
               lane 0 op 0 mkdir x: ok @100-101\n\
               lane 1 op 1 cgroup.procs {task: s, cg: a}: ENOENT\n";
    let l = parse(out).unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].id, OpId { lane: 0, op: 0 });
    assert_eq!((l[0].result.as_str(), l[0].times), ("ok", Some((100, 101))));
    assert_eq!(l[1].text, "cgroup.procs {task: s, cg: a}");
    assert_eq!((l[1].result.as_str(), l[1].times), ("ENOENT", None));
    assert!(parse("lane x op 1 sync: ok\n").is_err());
    assert!(parse("lane 0 op 1 sync ok\n").is_err());
    assert!(parse("lane 0 op 1 sync: ok @1\n").is_err());
}

#[test]
fn judging_agrees_diverges_and_catches_missing_results() {
    let p = Program::from_yaml("p", TWO_LANES).unwrap();
    let t = Target::default();
    let run = |s: &str, complete| judge(&p, &t, &parse(s).unwrap(), complete);
    // Lane b's mkdir ran between lane a's two rmdirs.
    let good = "lane 0 op 0 mkdir x: ok\nlane 0 op 3 rmdir x: ok\n\
                lane 1 op 1 mkdir x: ok\nlane 0 op 3 rmdir x: ok\n";
    assert!(
        matches!(run(good, true), Judgement::Agree { ops: 4, .. }),
        "{}",
        run(good, true)
    );
    // With times, that order is impossible: b's mkdir ended before a's first rmdir began.
    let timed = "lane 0 op 0 mkdir x: ok @1-1\nlane 1 op 1 mkdir x: ok @2-2\n\
                 lane 0 op 3 rmdir x: ok @3-3\nlane 0 op 3 rmdir x: ok @4-4\n";
    assert!(
        matches!(run(timed, true), Judgement::Diverge { .. }),
        "{}",
        run(timed, true)
    );
    let bad = "lane 0 op 0 mkdir x: EEXIST\n";
    match run(bad, false) {
        Judgement::Diverge { id, observed, .. } => {
            assert_eq!((id.op, observed.as_str()), (0, "EEXIST"))
        }
        j => panic!("{j}"),
    }
    assert!(matches!(
        run("lane 0 op 0 mkdir x: ok\n", true),
        Judgement::BadOutput(_)
    ));
    assert!(matches!(
        run("lane 0 op 0 mkdir x: ok\n", false),
        Judgement::Agree { .. }
    ));
    assert!(matches!(
        run("lane 0 op 1 mkdir x: ok\n", false),
        Judgement::BadOutput(_)
    ));
    assert!(matches!(
        run("lane 0 op 0 rmdir x: ok\n", false),
        Judgement::BadOutput(_)
    ));
    let unnamed = run("lane 0 op 0 mkdir x: unknown\n", false);
    assert!(unnamed.to_string().contains("no errno"), "{unnamed}");
}

#[test]
fn a_finding_dir_gives_the_header_its_kernel_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("program.yaml"), TWO_LANES).unwrap();
    std::fs::write(d.join("description"), "WARNING in dax_disassociate_entry\n").unwrap();
    std::fs::write(
        d.join("report"),
        "WARNING: CPU: 1 PID: 9 at fs/dax.c:381\nCall Trace:\n",
    )
    .unwrap();
    std::fs::write(
        d.join("console.log"),
        "[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)\n",
    )
    .unwrap();
    let (p, prov) = super::load(d).unwrap();
    let s = generate(&p, &prov).text;
    assert!(
        s.contains("# Failure: WARNING in dax_disassociate_entry"),
        "{s}"
    );
    assert!(s.contains("Found on kernel 6.1.0-56-cloud-amd64"), "{s}");
    assert!(
        s.contains("#   WARNING: CPU: 1 PID: 9 at fs/dax.c:381"),
        "{s}"
    );
    let e = super::load(dir.path().join("nothere").as_path()).unwrap_err();
    assert!(e.to_string().contains("cannot read program"), "{e}");
}

#[test]
fn a_hang_limits_the_judgement_to_the_steps_before_it() {
    use super::results::{before_step_of, stuck_op};
    let p = Program::from_yaml(
        "h.yaml",
        "lanes:\n  - {name: a, ops: [{mkdir: x}, barrier, {truncate: {file: tmp/f, size: 0}}]}\n  - {name: b, ops: [{mkdir: y}, barrier, {mkdir: z}]}\n",
    )
    .unwrap();
    let stuck = stuck_op("cgstorm: lane 0 stuck in op 2 for more than 60s").unwrap();
    assert_eq!(stuck, OpId { lane: 0, op: 2 });
    assert_eq!(stuck_op("nothing stuck here"), None);
    // b's mkdir z "failed" in the hung step: not judged.
    let lines =
        parse("lane 0 op 0 mkdir x: ok\nlane 1 op 0 mkdir y: ok\nlane 1 op 2 mkdir z: EIO\n")
            .unwrap();
    let kept = before_step_of(&p, &lines, stuck);
    assert_eq!(kept.len(), 2);
    assert!(matches!(
        judge(&p, &Target::default(), &kept, false),
        Judgement::Agree { .. }
    ));
    assert!(matches!(
        judge(&p, &Target::default(), &lines, false),
        Judgement::Diverge { .. }
    ));
}

/// The corpus finding that needs a program before it.
fn page_counter_finding() -> PathBuf {
    workspace().join("corpus/findings/page-counter-uncharge-after-v1-rebind")
}

#[test]
fn a_finding_with_programs_before_it_gives_one_script_that_runs_them_in_order() {
    let dir = page_counter_finding();
    let (p, prov) = super::load(&dir).unwrap();
    let before = crate::findings::load_before(&dir).unwrap();
    assert_eq!(before.len(), 1);
    let s = generate_sequence(&before, &p, &prov);
    assert_parses("sequence", &s.text);
    // Each program's own reproducer is embedded whole, the finding's last,
    // with the finding's header.
    let first = generate(
        &before[0],
        &Provenance {
            source: format!("{}/before/000.yaml", prov.source),
            failure: vec![format!(
                "Failure: none by itself; program 1 of 2 run by the sequence script of {}",
                prov.source
            )],
            title: None,
        },
    );
    let last = generate(&p, &prov);
    let at_first = s
        .text
        .find(&first.text)
        .expect("the first program's script");
    let at_last = s.text.find(&last.text).expect("the finding's script");
    assert!(at_first < at_last);
    assert!(last
        .text
        .contains("WARNING: CPU: 1 PID: 51 at mm/page_counter.c:55"));
    // Run in order, marked, with the agent's reset between them, and
    // --duration passed to the finding's program only.
    let runs: Vec<&str> = s
        .text
        .lines()
        .filter(|l| l.starts_with("sh \"$SEQ/"))
        .collect();
    assert_eq!(runs, ["sh \"$SEQ/0.sh\"", "sh \"$SEQ/1.sh\" $LAST"]);
    let m0 = s
        .text
        .find(&format!("echo \"{SEQUENCE_MARK}0 gen-4675e95d66\""))
        .unwrap();
    let between = s.text[m0..].find("\nbetween\n").map(|i| i + m0).unwrap();
    let m1 = s
        .text
        .find(&format!(
            "echo \"{SEQUENCE_MARK}1 page-counter-uncharge-after-v1-rebind\""
        ))
        .unwrap();
    assert!(m0 < between && between < m1);
    // A hung or failed program stops the sequence.
    assert!(s.text.contains("case $status in 3|4)"));
    assert!(s
        .text
        .contains("The finding shows only after 1 other program ran"));
}

#[test]
fn a_sequence_output_splits_at_its_marks() {
    let out = "noise\ncgstorm-program 0 a\nlane 0 op 0 mkdir x: ok\n\
               cgstorm-program 1 b\nlane 0 op 0 v1_mount: ok\nlane 0 op 1 mkdir v1:a: ok\n";
    let parts = super::vm::split_sequence(out);
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], (0, "lane 0 op 0 mkdir x: ok\n".to_string()));
    assert_eq!(parse(&parts[1].1).unwrap().len(), 2);
    assert_eq!(parts[1].0, 1);
    assert!(super::vm::split_sequence("lane 0 op 0 mkdir x: ok\n").is_empty());
}

#[test]
fn a_finding_title_comes_from_its_report() {
    let report = std::fs::read_to_string(page_counter_finding().join("report")).unwrap();
    assert_eq!(
        super::finding_title(&report).as_deref(),
        Some("WARNING in page_counter_uncharge")
    );
    // A model divergence or an agent hang has no report.
    assert_eq!(super::finding_title(""), None);
}

/// Builds the helper into `dir` (any warning fails); its path.
fn build_helper(dir: &Path) -> PathBuf {
    let src = dir.join("helper.c");
    std::fs::write(&src, HELPER_C).unwrap();
    let h = dir.join("h");
    let out = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-O2", "-pthread", "-o"])
        .arg(&h)
        .arg(&src)
        .output()
        .expect("a C compiler (cc) is needed: apt-get install gcc");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h
}

/// The helper serves every lane from its own thread, all at once: requests
/// of different lanes must not mix (they did, through strtok's shared
/// state: a `close` of one lane split with another lane's line answered
/// EBADF on 6.12). Only opens and closes files in a temporary directory.
#[test]
fn the_helper_serves_concurrent_lanes_without_mixing_their_requests() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let h = build_helper(dir.path());
    let lanes = ["0", "1", "2", "3", "4", "5"];
    for l in lanes {
        for end in ["in", "out"] {
            let f = dir.path().join(format!("h.{l}.{end}"));
            assert!(Command::new("mkfifo").arg(&f).status().unwrap().success());
        }
        std::fs::write(dir.path().join(format!("file{l}")), "x").unwrap();
    }
    let mut serve = Command::new(&h)
        .arg("serve")
        .arg(dir.path())
        .args(lanes)
        .spawn()
        .unwrap();
    let bad: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = lanes
            .iter()
            .map(|l| {
                let d = dir.path();
                s.spawn(move || {
                    let mut to = std::fs::OpenOptions::new()
                        .write(true)
                        .open(d.join(format!("h.{l}.in")))
                        .unwrap();
                    let mut from =
                        BufReader::new(std::fs::File::open(d.join(format!("h.{l}.out"))).unwrap());
                    let file = d.join(format!("file{l}"));
                    let mut bad = Vec::new();
                    // Batches of requests keep every lane's thread busy at
                    // once (replies come in order).
                    for b in 0..150 {
                        let reqs: Vec<String> = (b * 100..(b + 1) * 100)
                            .flat_map(|i| {
                                [
                                    format!("open fd{l}x{i} {} 0 0", file.display()),
                                    format!("close fd{l}x{i}"),
                                ]
                            })
                            .collect();
                        to.write_all(format!("{}\n", reqs.join("\n")).as_bytes())
                            .unwrap();
                        for req in &reqs {
                            let mut reply = String::new();
                            from.read_line(&mut reply).unwrap();
                            if reply != "ok\n" {
                                bad.push(format!("lane {l}: {req}: {}", reply.trim()));
                            }
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let _ = serve.wait();
    assert!(
        bad.is_empty(),
        "{} wrong answers, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}
