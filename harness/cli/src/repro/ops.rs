//! One op as shell: the tool that does it (or the helper) and how its
//! result becomes `R`. The functions it calls are in `prelude.sh`.

use std::fmt::Write as _;

use cgstorm_workloads::op::{MountArgs, OpSpec, PinArgs, Spawn, TaskKind, Times, WriteArgs};
use cgstorm_workloads::program::count_ops;
use cgstorm_workloads::words::{IoMode, ReadFile};
use cgstorm_workloads::{Cg, Dev, DevKind, FilePath, Hier, Limit, Op};

/// Largest block size cgstorm's agent accepts for writes and readers.
const MAX_BS: u64 = 64 << 20;

/// A cgroup's directory, as a shell word.
pub fn cg_dir(c: &Cg) -> String {
    let base = match c.hier {
        Hier::V2 => "$CG2",
        Hier::V1 => "$CG1",
    };
    if c.is_root() {
        format!("\"{base}\"")
    } else {
        format!("\"{base}/{}\"", c.rel_path())
    }
}

fn cg_file(c: &Cg, file: &str) -> String {
    let d = cg_dir(c);
    format!("{}/{file}\"", &d[..d.len() - 1])
}

/// A file's path, as a shell word.
pub fn file(f: &FilePath) -> String {
    format!("\"$PLACES/{}/{}\"", f.place, f.name)
}

fn place(p: &impl std::fmt::Display) -> String {
    format!("\"$PLACES/{p}\"")
}

fn dev_kind(d: &Dev) -> &'static str {
    match d.kind {
        DevKind::Scratch => "scratch",
        DevKind::Pmem => "pmem",
        DevKind::Loop => "loop",
    }
}

/// `devpath KIND N`: sets D to the device's node.
fn devpath(d: &Dev) -> String {
    format!("devpath {} {}", dev_kind(d), d.index)
}

fn limit(l: Limit, v1: bool) -> String {
    match l {
        Limit::Max if v1 => "-1".into(),
        Limit::Max => "max".into(),
        Limit::Bytes(b) => b.0.to_string(),
    }
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// Single-quoted for sh (names in programs never hold a quote, but be safe).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether an op needs the helper.
pub fn needs_helper(op: &Op) -> bool {
    match op {
        Op::Open(_)
        | Op::Close(_)
        | Op::Mmap(_)
        | Op::Touch(_)
        | Op::Munmap(_)
        | Op::Pin(_)
        | Op::Release(_) => true,
        Op::Spawn(s) => !matches!(s.kind, TaskKind::Sleeper),
        Op::Write(w) => write_by_dd(w).is_none() && w.bs.0 != 0 && w.bs.0 <= MAX_BS,
        _ => false,
    }
}

/// Whether an op is a request to the lane's helper thread (held state).
pub fn is_hcall(op: &Op) -> bool {
    matches!(
        op,
        Op::Open(_)
            | Op::Close(_)
            | Op::Mmap(_)
            | Op::Touch(_)
            | Op::Munmap(_)
            | Op::Pin(_)
            | Op::Release(_)
    )
}

/// The dd command for a write, when dd does exactly what cgstorm does
/// (whole blocks, buffered or O_DIRECT).
fn write_by_dd(w: &WriteArgs) -> Option<String> {
    if w.bs.0 == 0
        || w.bs.0 > MAX_BS
        || !w.bytes.0.is_multiple_of(w.bs.0)
        || w.mode == IoMode::Dsync
    {
        return None;
    }
    let mut s = format!(
        "dd if=/dev/zero of={} bs={} count={} status=none",
        file(&w.file),
        w.bs.0,
        w.bytes.0 / w.bs.0
    );
    if w.mode == IoMode::Direct {
        s.push_str(" oflag=direct");
    }
    if w.fsync {
        s.push_str(" conv=fsync");
    }
    Some(s)
}

fn spawn(s: &Spawn) -> String {
    let cg = s.cg.as_ref().map_or("-".to_string(), cg_dir);
    let (args, like) = match &s.kind {
        TaskKind::Sleeper => ("sleeper".to_string(), "sleep 1h &".to_string()),
        TaskKind::Writer(w) => (
            format!(
                "writer {} {} {} {} {} {}",
                file(&w.file),
                w.bytes.0,
                w.bs.0,
                w.mode,
                flag(w.fsync),
                flag(w.looped)
            ),
            format!(
                "{}dd if=/dev/zero of={} bs={} count={}{}{}{}",
                if w.looped { "while true; do " } else { "" },
                w.file,
                w.bs,
                w.bytes.0.checked_div(w.bs.0).unwrap_or(0),
                match w.mode {
                    IoMode::Buffered => "",
                    IoMode::Direct => " oflag=direct",
                    IoMode::Dsync => " oflag=dsync",
                },
                if w.fsync { " conv=fsync" } else { "" },
                if w.looped {
                    "; done &, but every pass on the file opened first"
                } else {
                    " &"
                }
            ),
        ),
        TaskKind::Reader(r) => (
            format!(
                "reader {} {} {} {}",
                file(&r.file),
                r.bs.0,
                flag(r.direct),
                flag(r.looped)
            ),
            format!(
                "{}cat {} > /dev/null{}",
                if r.looped { "while true; do " } else { "" },
                r.file,
                if r.looped {
                    "; done &, but every pass on the file opened first"
                } else {
                    " &"
                }
            ),
        ),
        TaskKind::Hog(h) => match &h.file {
            None => (
                format!("hog {}", h.bytes.0),
                format!("a process that allocates and touches {} &", h.bytes),
            ),
            Some(f) => (
                format!("hog {} {}", h.bytes.0, file(f)),
                format!("write {} of {f}, then read it in a loop &", h.bytes),
            ),
        },
    };
    format!("spawn_task {} {cg} {args}  # like: {like}", s.task)
}

fn mount(a: &MountArgs) -> String {
    let mut s = String::new();
    let source = match (a.fs.needs_device(), &a.dev) {
        (false, _) => a.fs.as_str().to_string(),
        (true, Some(d)) => {
            s.push_str(&devpath(d));
            s.push_str("; ");
            "\"$D\"".to_string()
        }
        (true, None) => "none".to_string(),
    };
    let opts: Vec<&str> = a.opts.iter().map(|o| o.as_str()).collect();
    s.push_str(&format!("run mount -t {}", a.fs));
    if !opts.is_empty() {
        s.push_str(&format!(" -o {}", opts.join(",")));
    }
    s.push_str(&format!(" {source} {}", place(&a.at)));
    s
}

fn pin(a: &PinArgs) -> String {
    let mut s = format!("hcall pin {} {} {}", a.pin, a.map, a.via);
    if let Some(f) = &a.file {
        s.push(' ');
        s.push_str(&file(f));
    }
    s
}

/// The shell that performs one leaf op and sets R.
pub fn leaf(op: &Op) -> String {
    match op {
        Op::Mkdir(c) => format!("run mkdir {}", cg_dir(c)),
        Op::Rmdir(c) => format!("run rmdir {}", cg_dir(c)),
        Op::SubtreeControl(a) => {
            let t: Vec<String> = a
                .change
                .iter()
                .map(|c| format!("{}{}", if c.enable { '+' } else { '-' }, c.ctrl))
                .collect();
            format!(
                "wr {} {}",
                cg_file(&a.cg, "cgroup.subtree_control"),
                quote(&t.join(" "))
            )
        }
        Op::Procs(a) => format!(
            "pid_of {}; wr {} \"$P\"",
            a.task,
            cg_file(&a.cg, "cgroup.procs")
        ),
        Op::Threads(a) => {
            let f = match a.cg.hier {
                Hier::V2 => "cgroup.threads",
                Hier::V1 => "tasks",
            };
            format!("pid_of {}; wr {} \"$P\"", a.task, cg_file(&a.cg, f))
        }
        Op::MemoryMax(a) => format!(
            "wr {} {}",
            cg_file(&a.cg, "memory.max"),
            limit(a.value, false)
        ),
        Op::MemoryHigh(a) => format!(
            "wr {} {}",
            cg_file(&a.cg, "memory.high"),
            limit(a.value, false)
        ),
        Op::MemoryLow(a) => format!(
            "wr {} {}",
            cg_file(&a.cg, "memory.low"),
            limit(a.value, false)
        ),
        Op::MemorySwapMax(a) => format!(
            "wr {} {}",
            cg_file(&a.cg, "memory.swap.max"),
            limit(a.value, false)
        ),
        Op::MemoryReclaim(a) => format!("wr {} {}", cg_file(&a.cg, "memory.reclaim"), a.bytes.0),
        Op::IoMax(a) => {
            let mut t = Vec::new();
            for (k, v) in [
                ("rbps", a.rbps),
                ("wbps", a.wbps),
                ("riops", a.riops),
                ("wiops", a.wiops),
            ] {
                if let Some(v) = v {
                    t.push(format!("{k}={}", limit(v, false)));
                }
            }
            format!(
                "{}; io_max {} \"$D\" {}",
                devpath(&a.dev),
                cg_dir(&a.cg),
                quote(&t.join(" "))
            )
        }
        Op::CgroupKill(c) => format!("wr {} 1", cg_file(c, "cgroup.kill")),
        Op::Read(a) => {
            let f = match (a.file, a.cg.hier) {
                (ReadFile::MemoryCurrent, Hier::V1) => "memory.usage_in_bytes",
                (f, _) => f.as_str(),
            };
            format!("run cat {}", cg_file(&a.cg, f))
        }
        Op::V1Mount => "v1_mount".into(),
        Op::V1Umount => "v1_umount".into(),
        Op::MoveCharge(a) => format!(
            "wr {} {}",
            cg_file(&a.cg, "memory.move_charge_at_immigrate"),
            a.value
        ),
        Op::LimitInBytes(a) => format!(
            "wr {} {}",
            cg_file(&a.cg, "memory.limit_in_bytes"),
            limit(a.value, true)
        ),
        Op::ForceEmpty(c) => format!("wr {} 0", cg_file(c, "memory.force_empty")),
        Op::Spawn(s) => spawn(s),
        Op::Kill(t) => format!("kill_task {t}"),
        Op::Wait(t) => format!("wait_task {t}"),
        Op::Write(w) => match write_by_dd(w) {
            _ if w.bs.0 == 0 || w.bs.0 > MAX_BS => {
                "R=EINVAL  # cgstorm's rule: the block size is 1 byte to 64M".into()
            }
            Some(dd) => format!("run {dd}"),
            None => format!(
                "hrun write {} {} {} {} {}  # like: dd, O_CREAT|O_TRUNC, the last block short",
                file(&w.file),
                w.bytes.0,
                w.bs.0,
                w.mode,
                flag(w.fsync)
            ),
        },
        Op::Truncate(a) => format!(
            "if [ -e {f} ]; then run truncate -c -s {} {f}; else R=ENOENT; fi",
            a.size.0,
            f = file(&a.file)
        ),
        Op::Unlink(f) => format!("run rm {}", file(f)),
        Op::Fsync(f) => format!("run sync {}", file(f)),
        Op::Sync => "run sync".into(),
        Op::Syncfs(p) => format!("run sync -f {}", place(p)),
        Op::DropCaches(d) => format!("wr /proc/sys/vm/drop_caches {}", d.0),
        Op::Sysrq(k) => format!("wr /proc/sysrq-trigger {}", k.0),
        Op::Losetup(a) if a.dev.kind != DevKind::Loop => {
            "R=EINVAL  # cgstorm's rule: losetup takes a loop device".into()
        }
        Op::Losetup(a) => format!("losetup_dev {} {} {}", a.dev.index, file(&a.file), a.size.0),
        Op::LosetupDetach(d) if d.kind != DevKind::Loop => {
            "R=ENXIO  # cgstorm's rule: only loop devices detach".into()
        }
        Op::LosetupDetach(d) => format!("losetup_detach {}", d.index),
        Op::Mkfs(a) => format!("{}; mkfs_dev \"$D\" {}", devpath(&a.dev), a.fs),
        Op::Mount(a) => mount(a),
        Op::Umount(p) => format!("run umount {}", place(p)),
        Op::UmountLazy(p) => format!("run umount -l {}", place(p)),
        Op::Remount(a) => {
            let mut o = String::from("remount");
            for x in &a.opts {
                o.push(',');
                o.push_str(x.as_str());
            }
            format!("run mount -o {o} {}", place(&a.at))
        }
        Op::Open(a) => format!(
            "hcall open {} {} {} {}",
            a.fd,
            file(&a.file),
            flag(a.create),
            flag(a.direct)
        ),
        Op::Close(n) => format!("hcall close {n}"),
        Op::Mmap(a) => format!("hcall mmap {} {} {} {}", a.map, a.fd, a.len.0, flag(a.sync)),
        Op::Touch(a) => format!("hcall touch {} {}", a.map, flag(a.write)),
        Op::Munmap(n) => format!("hcall munmap {n}"),
        Op::Pin(a) => pin(a),
        Op::Release(n) => format!("hcall release {n}"),
        Op::Sleep(ms) => format!("sleep {}.{:03}; R=ok", ms.0 / 1000, ms.0 % 1000),
        Op::Barrier | Op::Repeat(_) => "R=ok".into(),
    }
}

/// Emits a block of a lane's ops. `next` is the id of the first; `step`
/// counts the barriers passed.
pub fn block(out: &mut String, ops: &[OpSpec], next: &mut usize, step: &mut usize, depth: usize) {
    let ind = "\t".repeat(depth + 1);
    for spec in ops {
        let id = *next;
        *next += 1;
        match &spec.op {
            Op::Barrier => {
                let _ = writeln!(out, "{ind}barrier {step}");
                *step += 1;
            }
            Op::Repeat(r) => {
                let v = format!("r{id}");
                let _ = writeln!(out, "{ind}# op {id}: repeat {}", times(r.times));
                match r.times {
                    Times::Count(_) => {
                        let _ = writeln!(out, "{ind}{v}=0");
                    }
                    Times::For(ms) => {
                        let _ = writeln!(out, "{ind}now; {v}=$((T + {}))", ms.0.div_ceil(10));
                    }
                    Times::Run => {}
                }
                let _ = writeln!(out, "{ind}while :; do");
                let mut body = *next;
                block(out, &r.ops, &mut body, step, depth + 1);
                let end = match r.times {
                    Times::Count(n) => format!("{v}=$(({v} + 1)); [ \"${v}\" -ge {n} ] && break"),
                    Times::For(_) => format!("past \"${v}\" && break"),
                    Times::Run => "past \"$RUN_END\" && break".into(),
                };
                let _ = writeln!(out, "{ind}\t{end}");
                let _ = writeln!(out, "{ind}done");
                *next += count_ops(&r.ops);
            }
            op => {
                let text = quote(&op.describe());
                let code = leaf(op);
                let code = match code.split_once("  # ") {
                    Some((c, note)) => {
                        let _ = writeln!(out, "{ind}# {note}");
                        c.to_string()
                    }
                    None => code,
                };
                let _ = writeln!(out, "{ind}beg {id}; {code}; res {id} {text}");
            }
        }
    }
}

fn times(t: Times) -> String {
    match t {
        Times::Count(n) => format!("{n} times"),
        Times::For(ms) => format!("for {ms}"),
        Times::Run => "until the run's duration is over".into(),
    }
}
