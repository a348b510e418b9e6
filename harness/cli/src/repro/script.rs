//! A program as a standalone POSIX sh script: a header that says where it
//! comes from and how to run it, the errno tables, the shell functions of
//! `prelude.sh`, one function per lane, and the main part that checks the
//! machine, sets the places up, starts the lanes and cleans up.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use cgstorm_workloads::{Cg, Dev, DevKind, Errno, Op, Program};

use super::ops::{self, quote};

/// The shell functions every script shares.
const PRELUDE: &str = include_str!("prelude.sh");

/// How often the scripts' waits for removed cgroups look (`sleep 0.05`).
const POLL_MS: u64 = 50;

/// `text` with the model's bounds on the reset written in: `@DYING_S@`
/// and `@DYING_POLLS@` (how long removed cgroups may take to be freed, in
/// seconds and in polls), `@LOOP_SETTLE_S@`, `@LOOP_SETTLE_POLLS@` (the
/// wait after loop devices) and `@LOOP_HOLD_S@` (how long their workers
/// hold cgroups) and `@DAX_IDLE_S@` (how long a DAX file's pages may stay
/// referenced once the pins are gone), so the scripts wait as long as the
/// agent's reset does.
fn with_bounds(text: &str) -> String {
    use cgstorm_workloads::model::snapshot::{
        DAX_IDLE_WITHIN_MS, DYING_WITHIN_MS, LOOP_SETTLE_MS, LOOP_WORKERS_HOLD_MS,
    };
    text.replace("@DYING_S@", &(DYING_WITHIN_MS / 1000).to_string())
        .replace("@DYING_POLLS@", &(DYING_WITHIN_MS / POLL_MS).to_string())
        .replace("@LOOP_SETTLE_S@", &(LOOP_SETTLE_MS / 1000).to_string())
        .replace(
            "@LOOP_SETTLE_POLLS@",
            &(LOOP_SETTLE_MS / POLL_MS).to_string(),
        )
        .replace("@LOOP_HOLD_S@", &(LOOP_WORKERS_HOLD_MS / 1000).to_string())
        .replace("@DAX_IDLE_S@", &(DAX_IDLE_WITHIN_MS / 1000).to_string())
}
/// The helper's C source.
pub const HELPER_C: &str = include_str!("helper.c");

/// Scratch disks and pmem devices cgstorm's VM has (the model's default
/// machine): these get default device nodes; others only when the user
/// names them.
const DEFAULT_SCRATCH: u8 = 2;
const DEFAULT_PMEM: u8 = 1;
pub use cgstorm_workloads::program::DEFAULT_DURATION_MS;

/// Where a script comes from, for its header.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The program file or finding directory.
    pub source: String,
    /// Comment lines about the failure (kernel, config, report), if any.
    pub failure: Vec<String>,
    /// The finding's title (of its report), when it is a finding: `--run`
    /// says whether the kernel printed it again.
    pub title: Option<String>,
}

/// A generated script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The script text.
    pub text: String,
    /// Whether it needs the C helper.
    pub needs_helper: bool,
}

/// Ops of a program, flattened (repeat bodies included).
fn all_ops(p: &Program) -> Vec<&Op> {
    (0..p.lanes.len())
        .flat_map(|l| p.lane_ops(l).into_iter().map(|(_, s)| &s.op))
        .collect()
}

/// The devices the program names.
fn devices(p: &Program) -> BTreeSet<Dev> {
    let mut out = BTreeSet::new();
    for op in all_ops(p) {
        match op {
            Op::Mkfs(a) => {
                out.insert(a.dev);
            }
            Op::Mount(a) if a.fs.needs_device() => out.extend(a.dev),
            Op::IoMax(a) => {
                out.insert(a.dev);
            }
            _ => {}
        }
    }
    out.retain(|d| d.kind != DevKind::Loop);
    out
}

/// The cgroups the program makes, deepest first (removed at the end).
fn cgroups(p: &Program) -> Vec<Cg> {
    let mut set = BTreeSet::new();
    for op in all_ops(p) {
        if let Op::Mkdir(c) = op {
            let mut c = c.clone();
            while !c.is_root() {
                set.insert(c.clone());
                c = c.parent().expect("not the root");
            }
        }
    }
    let mut v: Vec<Cg> = set.into_iter().collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.parts.len()));
    v
}

fn var(d: &Dev) -> String {
    match d.kind {
        DevKind::Scratch => format!("SCRATCH{}", d.index),
        DevKind::Pmem => format!("PMEM{}", d.index),
        DevKind::Loop => format!("LOOP{}", d.index),
    }
}

/// The node cgstorm's VM has for a device, if it has it.
fn default_node(d: &Dev) -> Option<String> {
    match d.kind {
        DevKind::Scratch if d.index < DEFAULT_SCRATCH => {
            Some(format!("/dev/vd{}", (b'a' + d.index) as char))
        }
        DevKind::Pmem if d.index < DEFAULT_PMEM => Some(format!("/dev/pmem{}", d.index)),
        _ => None,
    }
}

/// A program's name for people: `(unnamed)` when it has none.
fn shown_name(p: &Program) -> &str {
    if p.name.is_empty() {
        "(unnamed)"
    } else {
        &p.name
    }
}

fn comment(out: &mut String, text: &str) {
    for l in text.lines() {
        let _ = writeln!(out, "#   {}", l.trim_end());
    }
}

fn header(out: &mut String, p: &Program, prov: &Provenance, devs: &BTreeSet<Dev>, helper: bool) {
    let name = shown_name(p);
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(
        out,
        "# cgstorm reproducer for program `{name}`, made by `cgstorm repro --sh` from\n#   {}",
        prov.source
    );
    if !p.description.is_empty() {
        let _ = writeln!(out, "#\n# What it does:");
        comment(out, &p.description);
    }
    let _ = writeln!(out, "#");
    if prov.failure.is_empty() {
        let _ = writeln!(
            out,
            "# Failure: none recorded; this is a plain program. Every op prints its\n\
             # result; compare them with `cgstorm check` (what a correct kernel returns)."
        );
    } else {
        for l in &prov.failure {
            let _ = writeln!(out, "# {l}");
        }
    }
    let dev_list: Vec<String> = devs
        .iter()
        .map(|d| match default_node(d) {
            Some(n) => format!("{}={n}", var(d)),
            None => format!("{}=(unset: no such device)", var(d)),
        })
        .collect();
    let _ = writeln!(
        out,
        "#\n# How to run: as root, in a throwaway VM, with cgroup v2 mounted on\n\
         # /sys/fs/cgroup and nothing else using the cgroups below it:\n\
         #   sh {} [--duration 10s]\n\
         # Lanes run concurrently (background subshells, lined up at barriers);\n\
         # each op prints `lane L op N <op>: <result>`.",
        if p.name.is_empty() {
            "repro.sh".to_string()
        } else {
            format!("{}.sh", p.name)
        }
    );
    if !devs.is_empty() {
        let _ = writeln!(
            out,
            "# Devices (environment, cgstorm's VM defaults): {}\n\
             # THIS DESTROYS ALL DATA ON THOSE DEVICES (it blanks their first MiB, then\n\
             # makes filesystems on them as the program says).",
            dev_list.join(" ")
        );
    }
    if helper {
        let _ = writeln!(
            out,
            "# What sh cannot do (held files, mmap, page pins by O_DIRECT/AIO/io_uring/\n\
             # vmsplice, dd-like tasks that can be migrated as one process) is done by a\n\
             # small C helper embedded below, built with `cc` unless CGSTORM_HELPER=/path\n\
             # names a built one."
        );
    }
    let faulted = faulted_ops(p);
    if !faulted.is_empty() {
        let _ = writeln!(
            out,
            "# NOT REPRODUCED: the program injects faults (fail_nth), which sh cannot do\n\
             # (a command is a new process, and its exec spends the fault); these ops run\n\
             # here without theirs. `cgstorm run` of the program injects them:"
        );
        for f in &faulted {
            let _ = writeln!(out, "#   {f}");
        }
    }
    let _ = writeln!(
        out,
        "# Other settings: CGSTORM_WORK (scratch directory, default /tmp/cgstorm-repro),\n\
         # CGSTORM_TIMES=1 (times on result lines), CGSTORM_KEEP=1 (no cleanup),\n\
         # CGSTORM_STALL=S (an op running S seconds is a hang: the script says which,\n\
         # dumps blocked tasks and exits 4; default 120, empty: never)."
    );
}

/// The ops that carry `fail_nth`, one line each: `lane L op N <op>
/// (fail_nth K)`.
pub fn faulted_ops(p: &Program) -> Vec<String> {
    p.faulted()
        .into_iter()
        .filter_map(|(id, s)| {
            let n = s.fail_nth?;
            Some(format!(
                "lane {} op {} {} (fail_nth {n})",
                id.lane,
                id.op,
                s.op.describe()
            ))
        })
        .collect()
}

fn tables(out: &mut String) {
    let _ = writeln!(
        out,
        "# R: the errno a tool's message names (strerror text at its end)."
    );
    let _ = writeln!(out, "msg2err() {{\n\tcase $1 in\n\t\"\") R=EIO ;;");
    for e in Errno::ALL {
        let _ = writeln!(out, "\t*{}) R={} ;;", quote(e.description()), e.name());
    }
    // musl's texts where they differ from glibc's, busybox's own words.
    for (text, name) in [
        ("Resource busy", "EBUSY"),
        ("Not supported", "EOPNOTSUPP"),
        ("Out of memory", "ENOMEM"),
        ("I/O error", "EIO"),
        ("No error information", "EIO"),
        ("nonexistent directory", "ENOENT"),
        ("no such file", "ENOENT"),
        ("is a directory", "EISDIR"),
    ] {
        let _ = writeln!(out, "\t*{}) R={name} ;;", quote(text));
    }
    let _ = writeln!(
        out,
        "\t*\"can't find \"*\" in /proc/mounts\") R=EINVAL ;;  # remount of a non-mount point\n\
         \t*) R=unknown; echo \"cgstorm: no errno for: $1\" >&2 ;;\n\tesac\n}}"
    );
    let _ = writeln!(out, "# R: the name of errno number $1.");
    let _ = writeln!(out, "errname() {{\n\tcase $1 in");
    for e in Errno::ALL {
        let _ = writeln!(out, "\t{}) R={} ;;", e.number(), e.name());
    }
    let _ = writeln!(
        out,
        "\t*) R=unknown; echo \"cgstorm: errno $1 has no name here\" >&2 ;;\n\tesac\n}}"
    );
}

const OPTIONS: &str = r#"
usage() {
	echo "usage: sh $0 [--duration D]  (D: 500ms, 10s, 5m, 1h; default $DEFAULT_DURATION)" >&2
	exit 2
}
duration_ms() {
	case $1 in
	*[0-9]ms) n=${1%ms}; k=1 ;;
	*[0-9]s) n=${1%s}; k=1000 ;;
	*[0-9]m) n=${1%m}; k=60000 ;;
	*[0-9]h) n=${1%h}; k=3600000 ;;
	*) n=$1; k=1 ;;
	esac
	case $n in ''|*[!0-9]*) echo "bad duration: $1" >&2; usage ;; esac
	DURATION_MS=$((n * k))
}
duration_ms "${CGSTORM_DURATION:-$DEFAULT_DURATION}"
while [ $# -gt 0 ]; do
	case $1 in
	--duration) [ $# -ge 2 ] || usage; duration_ms "$2"; shift 2 ;;
	--duration=*) duration_ms "${1#--duration=}"; shift ;;
	*) usage ;;
	esac
done
"#;

/// Generates the script for a program.
pub fn generate(p: &Program, prov: &Provenance) -> Script {
    let devs = devices(p);
    let helper = all_ops(p).into_iter().any(ops::needs_helper);
    let mut out = String::new();
    header(&mut out, p, prov, &devs, helper);
    let dur = p.duration.map_or(DEFAULT_DURATION_MS, |d| d.0);
    let _ = writeln!(out, "\nDEFAULT_DURATION={dur}ms");
    out.push_str(OPTIONS);
    let _ = writeln!(out, "\n# Devices (scratchN, pmemN of the program).");
    for d in &devs {
        match default_node(d) {
            Some(n) => {
                let _ = writeln!(out, "{v}=${{{v}:-{n}}}", v = var(d));
            }
            None => {
                let _ = writeln!(out, "{v}=${{{v}:-}}", v = var(d));
            }
        }
    }
    let lanes: Vec<String> = (0..p.lanes.len()).map(|l| l.to_string()).collect();
    let cgs: Vec<String> = cgroups(p).iter().map(ops::cg_dir).collect();
    let _ = writeln!(
        out,
        "CG2=${{CGSTORM_CG2:-/sys/fs/cgroup}}\n\
         W=${{CGSTORM_WORK:-/tmp/cgstorm-repro}}\n\
         CG1=$W/v1\nPLACES=$W/mnt\nRUN=$W/run\n\
         NODEV=/dev/cgstorm-no-such-device\nNOPID=2147483647\n\
         TIMES=${{CGSTORM_TIMES:-}}\n\
         STALL=${{CGSTORM_STALL-120}}\n\
         LANES='{}'\nNLANES={}\n\
         CGROUPS=\"{}\"",
        lanes.join(" "),
        lanes.len(),
        cgs.iter()
            .map(|c| c.trim_matches('"').to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    out.push('\n');
    tables(&mut out);
    out.push('\n');
    out.push_str(&with_bounds(PRELUDE));
    if helper {
        let _ = writeln!(
            out,
            "\n# The helper's source (cgstorm's harness/cli/src/repro/helper.c).\n\
             helper_source() {{\n\tcat <<'CGSTORM_HELPER_C'\n{HELPER_C}CGSTORM_HELPER_C\n}}"
        );
    }
    let mut uses_hcall = Vec::new();
    for (li, lane) in p.lanes.iter().enumerate() {
        let hc = p.lane_ops(li).iter().any(|(_, s)| ops::is_hcall(&s.op));
        if hc {
            uses_hcall.push(li.to_string());
        }
        let _ = writeln!(out, "\n# Lane {li}: {}\nlane_{li}() {{", lane.name);
        let _ = writeln!(out, "\tL={li} E=\"$RUN/err.{li}\"");
        if hc {
            // Read-write opens of the FIFOs never block (a blocking open in a
            // background subshell fails with EINTR when a child exits).
            let _ = writeln!(out, "\texec 3<>\"$RUN/h.{li}.in\" 4<>\"$RUN/h.{li}.out\"");
        }
        let (mut next, mut step) = (0, 0);
        ops::block(&mut out, &lane.ops, &mut next, &mut step, 0);
        for s in step..p.steps() - 1 {
            let _ = writeln!(out, "\tbarrier {s}  # this lane has ended");
        }
        let _ = writeln!(out, "\treturn 0\n}}");
    }
    main(&mut out, p, &devs, helper, &uses_hcall);
    Script {
        text: out,
        needs_helper: helper,
    }
}

fn main(out: &mut String, p: &Program, devs: &BTreeSet<Dev>, helper: bool, hlanes: &[String]) {
    let _ = writeln!(
        out,
        "\n# ---- main -----------------------------------------------------------------\n\
         die() {{ echo \"cgstorm: $*\" >&2; exit 3; }}\n\
         [ \"$(id -u)\" = 0 ] || die \"run me as root (in a throwaway VM)\"\n\
         case $W in *' '*) die \"CGSTORM_WORK must not hold spaces\" ;; esac\n\
         [ -e \"$CG2/cgroup.procs\" ] || die \"no cgroup v2 at $CG2\""
    );
    for d in devs {
        let v = var(d);
        if default_node(d).is_some() {
            let _ = writeln!(
                out,
                "[ -b \"${v}\" ] || die \"{v}=${v} is not a block device (set {v}=/dev/...)\""
            );
        } else {
            let _ = writeln!(
                out,
                "[ -z \"${v}\" ] || [ -b \"${v}\" ] || die \"{v}=${v} is not a block device\""
            );
        }
    }
    let _ = writeln!(
        out,
        "for c in $CGROUPS; do [ -e \"$c\" ] && echo \"cgstorm: warning: $c exists already\" >&2; done\n\
         H=${{CGSTORM_HELPER:-}}"
    );
    if helper {
        let _ = writeln!(
            out,
            "case $H in ''|/*) ;; *) H=$PWD/$H ;; esac\n\
             if [ -z \"$H\" ]; then\n\
             \tcommand -v cc >/dev/null || die \"the helper needs a C compiler: install cc, or set CGSTORM_HELPER\"\n\
             \tmkdir -p \"$W\" && helper_source > \"$W/helper.c\" || die \"cannot write $W/helper.c\"\n\
             \tcc -O2 -pthread -o \"$W/cgstorm-helper\" \"$W/helper.c\" || die \"cannot build the helper\"\n\
             \tH=$W/cgstorm-helper\n\
             fi\n\
             \"$H\" check >/dev/null || die \"the helper $H does not run\""
        );
    }
    let _ = writeln!(
        out,
        "cd / || die \"cd /\"\n\
         trap 'cleanup; exit 130' INT TERM\n\
         umount -l \"$PLACES\" 2>/dev/null; rm -rf \"$RUN\"\n\
         mkdir -p \"$RUN/task\" \"$RUN/loop\" \"$PLACES\" || die \"cannot make $W\"\n\
         mount -t tmpfs -o mode=0755 cgstorm \"$PLACES\" || die \"cannot mount a tmpfs on $PLACES\""
    );
    let places: Vec<String> = p
        .places()
        .into_iter()
        .map(|s| format!("\"$PLACES/{s}\""))
        .collect();
    let _ = writeln!(
        out,
        "mkdir -p {} || die \"cannot make the places\"",
        places.join(" ")
    );
    for d in devs {
        let v = var(d);
        let _ = writeln!(
            out,
            "[ -z \"${v}\" ] || dd if=/dev/zero of=\"${v}\" bs=1M count=1 conv=fsync status=none \
             || die \"cannot blank ${v}\""
        );
    }
    if !hlanes.is_empty() {
        for l in hlanes {
            let _ = writeln!(
                out,
                "mkfifo \"$RUN/h.{l}.in\" \"$RUN/h.{l}.out\" || die mkfifo"
            );
        }
        let _ = writeln!(
            out,
            "\"$H\" serve \"$RUN\" {} &\nHELPER_PID=$!",
            hlanes.join(" ")
        );
    }
    let _ = writeln!(
        out,
        "now; START=$T; RUN_END=$((START + (DURATION_MS + 9) / 10))\n\
         echo \"cgstorm: {} lanes, duration ${{DURATION_MS}}ms, on $(uname -r)\" >&2",
        p.lanes.len()
    );
    let mut pids = Vec::new();
    for l in 0..p.lanes.len() {
        let _ = writeln!(out, "lane_{l} &\nLP{l}=$!");
        pids.push(format!("\"$LP{l}\""));
    }
    let _ = writeln!(
        out,
        "wait_lanes {}\nstatus=$?\n\
         [ \"$status\" = 4 ] && exit 4  # a hung kernel: no cleanup, it would hang too\n\
         cleanup\neventual\necho \"cgstorm: done\" >&2\nexit $status",
        pids.join(" ")
    );
}

/// What cgstorm's agent does between two programs in one VM (its reset),
/// besides what each program's own cleanup does (tasks killed, places
/// unmounted, loop devices detached, cgroups removed, devices blanked at
/// the next start): controllers off at the v2 root, removed cgroups freed,
/// and the memory controller back on v2. A v1 hierarchy unmounted while a
/// removed cgroup of it was dying is not destroyed by the kernel; it is
/// mounted again and unmounted once its cgroups are freed.
const BETWEEN: &str = r#"
# R: the memory line of /proc/cgroups: "HIERARCHY NUM_CGROUPS" (0: v2).
memline() {
	R=$(awk '$1 == "memory" { print $2, $3 }' /proc/cgroups)
}
between() {
	[ -z "${CGSTORM_KEEP:-}" ] || return 0
	for c in $(cat "$CG2/cgroup.subtree_control"); do
		echo "-$c" > "$CG2/cgroup.subtree_control" 2>/dev/null
	done
	i=0
	while :; do
		dying=$(sed -n 's/^nr_dying_descendants //p' "$CG2/cgroup.stat")
		memline
		case "${dying:-0} $R" in "0 0 "*|"0 ") return 0 ;; esac
		if [ "$i" = 20 ] && [ "${R%% *}" != 0 ]; then
			echo "cgstorm: memory is still bound to v1 hierarchy ${R%% *}: mounting it again to release it" >&2
			mkdir -p "$W/v1.again" &&
				timeout -s KILL 5 mount -t cgroup -o memory cgroup "$W/v1.again" && {
				j=0
				while memline; [ "${R#* }" != 1 ] && [ "$j" -lt 200 ]; do
					echo 3 > /proc/sys/vm/drop_caches; sleep 0.05; j=$((j + 1))
				done
				umount "$W/v1.again"
			}
			rmdir "$W/v1.again" 2>/dev/null
		fi
		if [ "$i" -ge @DYING_POLLS@ ]; then
			echo "cgstorm: warning: after @DYING_S@ s, ${dying:-0} removed cgroups still dying, memory on hierarchy ${R%% *}" >&2
			return 0
		fi
		echo 3 > /proc/sys/vm/drop_caches
		sleep 0.05
		i=$((i + 1))
	done
}
"#;

/// How a program is described in a sequence's header.
fn summary(p: &Program) -> String {
    let ops = all_ops(p).len();
    format!(
        "`{}`: {} lane{}, {} op{}, {}",
        shown_name(p),
        p.lanes.len(),
        if p.lanes.len() == 1 { "" } else { "s" },
        ops,
        if ops == 1 { "" } else { "s" },
        p.duration.map_or_else(
            || format!("{}ms", DEFAULT_DURATION_MS),
            |d| format!("{}ms", d.0)
        )
    )
}

/// The stdout line a sequence prints before each program's results.
pub const SEQUENCE_MARK: &str = "cgstorm-program ";

/// A finding that shows only after other programs ran in the same boot
/// (its `before/`): one script that runs each program's own reproducer (as
/// [`generate`] makes it, embedded) in order, doing between two programs
/// what cgstorm's agent does, then the finding's program. `--duration`
/// applies to the finding's program; the others run as long as they ran in
/// the campaign. Each program's results follow a `cgstorm-program K NAME`
/// line.
pub fn generate_sequence(before: &[Program], p: &Program, prov: &Provenance) -> Script {
    let all: Vec<&Program> = before.iter().chain(std::iter::once(p)).collect();
    let scripts = member_scripts(&all, before.len(), prov);
    let helper = scripts.iter().any(|s| s.needs_helper);
    let name = if p.name.is_empty() {
        "repro".to_string()
    } else {
        p.name.clone()
    };
    let mut out = sequence_header(&name, &all, prov, helper);
    out.push_str(SEQUENCE_PRELUDE);
    out.push_str(&with_bounds(BETWEEN));
    sequence_runs(&mut out, &all, &scripts);
    Script {
        text: out,
        needs_helper: helper,
    }
}

/// The reproducer of each of `all` (the `before` programs, then the
/// finding's), each saying where it came from.
fn member_scripts(all: &[&Program], before: usize, prov: &Provenance) -> Vec<Script> {
    all.iter()
        .enumerate()
        .map(|(i, q)| {
            let source = if i < before {
                format!("{}/before/{i:03}.yaml", prov.source)
            } else {
                prov.source.clone()
            };
            let failure = if i < before {
                vec![format!(
                    "Failure: none by itself; program {} of {} run by the sequence script of {}",
                    i + 1,
                    all.len(),
                    prov.source
                )]
            } else {
                prov.failure.clone()
            };
            generate(
                q,
                &Provenance {
                    source,
                    failure,
                    title: None,
                },
            )
        })
        .collect()
}

/// The sequence script's header: what it runs, why, and how to run it.
fn sequence_header(name: &str, all: &[&Program], prov: &Provenance, helper: bool) -> String {
    let p = all[all.len() - 1];
    let before = all.len() - 1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#!/bin/sh\n# cgstorm reproducer for finding `{name}`, made by `cgstorm repro --sh` from\n#   {}",
        prov.source
    );
    if !p.description.is_empty() {
        let _ = writeln!(out, "#\n# What it does:");
        comment(&mut out, &p.description);
    }
    let _ = writeln!(out, "#");
    for l in &prov.failure {
        let _ = writeln!(out, "# {l}");
    }
    let _ = writeln!(
        out,
        "#\n# The finding shows only after {} other program{} ran in the same boot:\n\
         # what they leave in the kernel (freed cgroups, controllers that moved,\n\
         # per-cpu caches) is part of it. This script runs them in order, each as\n\
         # the reproducer `cgstorm repro --sh` makes of it (embedded below), doing\n\
         # between two of them what cgstorm's agent does (controllers off at the\n\
         # v2 root, removed cgroups freed, memory back on cgroup v2), then the\n\
         # finding's program:",
        before,
        if before == 1 { "" } else { "s" }
    );
    for (i, q) in all.iter().enumerate() {
        let _ = writeln!(
            out,
            "#   {}. {}{}",
            i + 1,
            summary(q),
            if i == before { " (the finding's)" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "#\n# How to run: as root, in a freshly booted throwaway VM, with cgroup v2 on\n\
         # /sys/fs/cgroup and nothing else using the cgroups below it:\n\
         #   sh {name}.sh [--duration D]   (D: how long the finding's program runs)\n\
         # Each program's results follow a line `{SEQUENCE_MARK}K NAME`; the settings\n\
         # (devices, CGSTORM_WORK, CGSTORM_STALL, ...) are those of the embedded scripts\n\
         # and apply to all of them: read their headers.{}",
        if helper {
            "\n# Some need the C helper: each builds it with cc unless CGSTORM_HELPER names one."
        } else {
            ""
        }
    );
    out
}

/// The sequence script's settings and its argument parsing.
const SEQUENCE_PRELUDE: &str = "\nset -u\nW=${CGSTORM_WORK:-/tmp/cgstorm-repro}\n\
     CG2=${CGSTORM_CG2:-/sys/fs/cgroup}\n\
     SEQ=$W/sequence\nLAST=\n\
     while [ $# -gt 0 ]; do\n\
     \tcase $1 in\n\
     \t--duration) [ $# -ge 2 ] || { echo \"usage: sh $0 [--duration D]\" >&2; exit 2; }; LAST=\"--duration $2\"; shift 2 ;;\n\
     \t--duration=*) LAST=\"--duration ${1#--duration=}\"; shift ;;\n\
     \t*) echo \"usage: sh $0 [--duration D]\" >&2; exit 2 ;;\n\
     \tesac\n\
     done\n\
     [ \"$(id -u)\" = 0 ] || { echo \"cgstorm: run me as root (in a throwaway VM)\" >&2; exit 3; }\n\
     case $W in *' '*) echo \"cgstorm: CGSTORM_WORK must not hold spaces\" >&2; exit 3 ;; esac\n";

/// Each program embedded as a function, then run in order, with what the
/// agent does between two of them; a program's infrastructure failure
/// (status 3 or 4) stops the sequence.
fn sequence_runs(out: &mut String, all: &[&Program], scripts: &[Script]) {
    for (i, s) in scripts.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n# Program {} of {}: {}\nprogram_{i}() {{\n\tcat <<'CGSTORM_PROGRAM_{i}'\n{}CGSTORM_PROGRAM_{i}\n}}",
            i + 1,
            all.len(),
            summary(all[i]),
            s.text
        );
    }
    let _ = writeln!(
        out,
        "\nmkdir -p \"$SEQ\" || {{ echo \"cgstorm: cannot make $SEQ\" >&2; exit 3; }}"
    );
    let last = all.len() - 1;
    for (i, q) in all.iter().enumerate() {
        let qname = shown_name(q);
        let args = if i == last { " $LAST" } else { "" };
        let _ = writeln!(
            out,
            "program_{i} > \"$SEQ/{i}.sh\" || exit 3\n\
             echo \"{SEQUENCE_MARK}{i} {qname}\"\n\
             echo \"cgstorm: program {} of {}: {qname}\" >&2\n\
             sh \"$SEQ/{i}.sh\"{args}\n\
             status=$?",
            i + 1,
            all.len()
        );
        if i < last {
            let _ = writeln!(
                out,
                "case $status in 3|4) echo \"cgstorm: program {} ended with status $status; the sequence stops\" >&2; exit $status ;; esac\n\
                 between",
                i + 1
            );
        }
    }
    let _ = writeln!(out, "exit $status");
}
