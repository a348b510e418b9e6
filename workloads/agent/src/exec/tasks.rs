//! Spawned tasks: the agent binary again, in task mode, as a real process that
//! can be migrated, OOM-killed and waited for.
//!
//! The child joins its cgroup (writes "0" to cgroup.procs), opens its file,
//! reports `ok` or `err ERRNO` on its stdout pipe and only then starts work,
//! so `spawn` returns the setup's errno and its file exists when it returns.
//! Task mode is guarded like the agent itself: it runs only with the boot
//! token of the VM in its environment.

use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cgstorm_workloads::op::{Spawn, TaskKind};
use cgstorm_workloads::words::IoMode;
use cgstorm_workloads::{Errno, Name, Outcome};
use serde::{Deserialize, Serialize};

use super::files::{fill, write_flags};
use super::kcov::{self, TaskKcov};
use super::paths;
use super::sys::{self, AlignedBuf};
use super::world::{TaskRec, World};

/// Environment variable carrying the boot token to task processes.
pub const TASK_ENV: &str = "CGSTORM_TASK";

/// What a task process does, as passed on its command line.
#[derive(Serialize, Deserialize)]
pub struct TaskSpec {
    /// The cgroup.procs file to join first.
    procs: Option<PathBuf>,
    /// The work.
    work: Work,
}

#[derive(Serialize, Deserialize)]
enum Work {
    Sleeper,
    Writer {
        path: PathBuf,
        bytes: u64,
        bs: u64,
        flags: i32,
        fsync: bool,
        looped: bool,
    },
    Reader {
        path: PathBuf,
        bs: u64,
        direct: bool,
        looped: bool,
    },
    Hog {
        bytes: u64,
        file: Option<PathBuf>,
    },
}

/// Spawns the task. The name is reserved first, under the world's lock, so
/// two lanes spawning one name at once give one ok and one EEXIST, as the
/// model says (checking, then forking, then recording let both succeed);
/// the second waits for the first to end, so it never answers EEXIST for a
/// spawn that then fails.
pub fn spawn(w: &World, a: &Spawn, token: &str, cover: bool) -> Outcome {
    if !w.reserve(&a.task) {
        return Outcome::Err(Errno::EEXIST);
    }
    let r = spawn_reserved(w, a, token, cover);
    w.unreserve(&a.task);
    r
}

fn spawn_reserved(w: &World, a: &Spawn, token: &str, cover: bool) -> Outcome {
    let work = match &a.kind {
        TaskKind::Sleeper => Work::Sleeper,
        TaskKind::Writer(x) => Work::Writer {
            path: paths::file(&x.file),
            bytes: x.bytes.0,
            bs: x.bs.0,
            flags: write_flags(x.mode),
            fsync: x.fsync,
            looped: x.looped,
        },
        TaskKind::Reader(x) => Work::Reader {
            path: paths::file(&x.file),
            bs: x.bs.0,
            direct: x.direct,
            looped: x.looped,
        },
        TaskKind::Hog(h) => Work::Hog {
            bytes: h.bytes.0,
            file: h.file.as_ref().map(paths::file),
        },
    };
    let spec = TaskSpec {
        procs: a.cg.as_ref().map(|c| paths::cg(c).join("cgroup.procs")),
        work,
    };
    let json = serde_json::to_string(&spec).expect("task specs serialise");
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("task")
        .arg(json)
        .env(TASK_ENV, token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Dropped after the child is reaped (declared before it, and a
    // recorded task's is dropped with its record, after the reap).
    let kcov = if cover { task_kcov() } else { None };
    if let Some(k) = &kcov {
        let fd = k.fd();
        cmd.env(kcov::TASK_FD_ENV, fd.to_string());
        // SAFETY: between fork and exec, the child clears close-on-exec on
        // its own copy of the descriptor (fcntl is async-signal-safe); the
        // agent's descriptor keeps it, so other lanes' children never
        // inherit it.
        unsafe {
            cmd.pre_exec(move || match libc::fcntl(fd, libc::F_SETFD, 0) {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            });
        }
    }
    let child = cmd.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return sys::io::<()>(Err(e)),
    };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.trim() {
        "ok" => {
            let pid = std::sync::Arc::from(child.id().to_string());
            w.tasks().insert(
                a.task.clone(),
                TaskRec {
                    child,
                    pid,
                    _cover: kcov,
                },
            );
            Outcome::Ok
        }
        other => match other.strip_prefix("err ").and_then(|n| n.parse().ok()) {
            Some(n) => {
                let _ = child.kill();
                let _ = child.wait();
                sys::errno(n)
            }
            // No line: the child is gone. Killed with SIGKILL before it said
            // its setup was done (another lane's cgroup.kill of the cgroup
            // it had joined), the spawn is `killed`; otherwise it died.
            None => {
                let killed = ended(&mut child).is_some_and(|st| st.signal() == Some(libc::SIGKILL));
                let how = if killed { "was killed" } else { "died" };
                crate::init::kmsg::log(&format!("task {} {how} during setup", a.task));
                if killed {
                    Outcome::Killed
                } else {
                    Outcome::Err(Errno::EIO)
                }
            }
        },
    }
}

/// A coverage buffer for a task; without one (said once on the console)
/// the task runs uncovered.
fn task_kcov() -> Option<TaskKcov> {
    static SAID: std::sync::Once = std::sync::Once::new();
    match TaskKcov::take() {
        Ok(k) => Some(k),
        Err(e) => {
            SAID.call_once(|| crate::init::kmsg::log(&format!("tasks run uncovered: {e}")));
            None
        }
    }
}

/// How a child that closed its stdout ended: waited for up to 5 s (it is
/// exiting), then killed (it said nothing and lives on) and reaped.
fn ended(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break,
        }
    }
    // Killed by us, not by the program: not a kill the model knows.
    let _ = child.kill();
    let _ = child.wait();
    None
}

pub fn pid_of(w: &World, task: &Name) -> Option<i32> {
    w.tasks().get(task).map(|t| t.child.id() as i32)
}

/// Reaps `pid` (blocking); the wait status.
fn reap_pid(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child into a local status word.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    (r == pid).then_some(status)
}

/// `kill` and `wait` on one task may race (two lanes). Each is atomic for
/// the model: `kill` takes the task out of the world first, then signals
/// and reaps it, so a racing `wait` either took it before (and reports how
/// it ended on its own) or finds it gone (ESRCH); it never sees the kill's
/// signal, nor reaps what `kill` must reap.
pub fn kill(w: &World, task: &Name) -> Outcome {
    let Some(rec) = w.tasks().remove(task) else {
        return Outcome::Err(Errno::ESRCH);
    };
    let pid = rec.child.id() as i32;
    // SAFETY: signalling our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap_pid(pid);
    Outcome::Ok
}

/// Waits for the task to end without reaping it, then takes it out of the
/// world (unless a racing `kill` did) and reaps it.
pub fn wait(w: &World, task: &Name) -> Outcome {
    let Some(pid) = pid_of(w, task) else {
        return Outcome::Err(Errno::ESRCH);
    };
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waiting (WNOWAIT: without reaping) for our own child.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    let mine = {
        let mut tasks = w.tasks();
        match tasks.get(task) {
            Some(t) if t.child.id() as i32 == pid => tasks.remove(task),
            _ => None,
        }
    };
    if mine.is_none() || r != 0 {
        // A racing kill took it (and reaps it): it is gone for us.
        return Outcome::Err(Errno::ESRCH);
    }
    match reap_pid(pid) {
        Some(s) if libc::WIFSIGNALED(s) => Outcome::Killed,
        Some(s) if libc::WEXITSTATUS(s) == 0 => Outcome::Ok,
        Some(s) => sys::errno(libc::WEXITSTATUS(s)),
        None => Outcome::Err(Errno::ECHILD),
    }
}

/// The task side: runs in the child. Never returns.
pub fn task_main(spec_json: &str) -> ! {
    let spec: TaskSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cgstorm-agent task: bad spec: {e}");
            std::process::exit(3);
        }
    };
    let report = |r: Result<(), i32>| {
        let mut out = std::io::stdout();
        let _ = match r {
            Ok(()) => writeln!(out, "ok"),
            Err(n) => writeln!(out, "err {n}"),
        };
        let _ = out.flush();
    };
    let errno_of = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    // From here on the kernel's blocks for this task are recorded: its
    // move into its cgroup, its open, its work.
    kcov::enable_inherited();
    if let Some(procs) = &spec.procs {
        if let Err(e) = std::fs::write(procs, "0") {
            report(Err(errno_of(e)));
            std::process::exit(1);
        }
    }
    let result = run_work(spec.work, &|r| report(r.map_err(errno_of)));
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => errno_of(e).clamp(1, 255),
    })
}

/// Opens what the work needs, calls `ready`, then works.
fn run_work(work: Work, ready: &dyn Fn(std::io::Result<()>)) -> std::io::Result<()> {
    let setup = |r: std::io::Result<std::fs::File>| match r {
        Ok(f) => {
            ready(Ok(()));
            Ok(f)
        }
        Err(e) => {
            let n = e.raw_os_error();
            ready(Err(e));
            Err(std::io::Error::from_raw_os_error(n.unwrap_or(libc::EIO)))
        }
    };
    match work {
        Work::Sleeper => {
            ready(Ok(()));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Work::Writer {
            path,
            bytes,
            bs,
            flags,
            fsync,
            looped,
        } => {
            if bs == 0 || bs > (64 << 20) {
                ready(Err(std::io::Error::from_raw_os_error(libc::EINVAL)));
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            let mut f = setup(sys::open(&path, flags))?;
            let mut buf = AlignedBuf::new(bs as usize);
            loop {
                fill(&mut f, bytes, bs, &mut buf)?;
                if fsync {
                    f.sync_all()?;
                }
                if !looped {
                    return Ok(());
                }
                // Again from the start, as O_TRUNC did, on the file it
                // holds: reopening the path would find whatever another
                // lane has since mounted over it or unlinked, which the
                // model does not follow (it knows the task by the mount
                // its first open went through).
                f.set_len(0)?;
                f.rewind()?;
            }
        }
        Work::Reader {
            path,
            bs,
            direct,
            looped,
        } => {
            if bs == 0 || bs > (64 << 20) {
                ready(Err(std::io::Error::from_raw_os_error(libc::EINVAL)));
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            let flags = libc::O_RDONLY | if direct { libc::O_DIRECT } else { 0 };
            let mut f = setup(sys::open(&path, flags))?;
            let mut buf = AlignedBuf::new(bs as usize);
            loop {
                while f.read(buf.slice_mut(bs as usize))? > 0 {}
                if !looped {
                    return Ok(());
                }
                f.rewind()?;
            }
        }
        Work::Hog { bytes, file: None } => {
            ready(Ok(()));
            // Filled, not zeroed: every page is touched and charged.
            let mem = vec![0xa5u8; bytes as usize];
            loop {
                std::thread::sleep(Duration::from_secs(3600));
                std::hint::black_box(&mem);
            }
        }
        Work::Hog {
            bytes,
            file: Some(path),
        } => {
            // Read and write: it reads its own file back through the same
            // descriptor (see the writer on reopening paths).
            let flags = write_flags(IoMode::Buffered) & !libc::O_WRONLY | libc::O_RDWR;
            let mut f = setup(sys::open(&path, flags))?;
            let mut buf = AlignedBuf::new(1 << 20);
            fill(&mut f, bytes, 1 << 20, &mut buf)?;
            loop {
                f.rewind()?;
                while f.read(buf.slice_mut(1 << 20))? > 0 {}
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Where a task sits, from /proc/PID/cgroup: the v2 path and the v1 memory path.
pub fn cgroups_of(pid: u32) -> Option<(String, Option<String>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else if ctrls.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    Some((v2?, v1))
}

/// Whether the process runs (is neither a zombie nor exiting).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .is_some_and(|s| running_in(&s))
}

/// `PF_EXITING` (include/linux/sched.h) in `/proc/PID/stat`'s flags.
const PF_EXITING: u64 = 0x4;

/// Whether a `/proc/PID/stat` line is a task that runs: not a zombie, and
/// not exiting either. An exiting task is on its way out (closing its
/// files, dropping its memory), and the kernel already shows it in the root
/// of every v1 hierarchy (`proc_cgroup_show`: a `PF_EXITING` task on a
/// traditional hierarchy is "/"); the snapshot reads its cgroups before
/// this, so a task that began to exit in between is taken for gone too (a
/// lockdep fuzz: a dsync writer that had just written its last block read
/// as in `v1:/`, alive, while the model had it in `v1:a`).
fn running_in(stat: &str) -> bool {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first().is_some_and(|st| st.starts_with('Z'));
    let flags: u64 = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    !zombie && flags & PF_EXITING == 0
}

#[cfg(test)]
mod tests {
    use super::running_in;

    #[test]
    fn an_exiting_task_or_a_zombie_does_not_run() {
        // pid (comm) state ppid pgrp session tty tpgid flags ...
        let line = |state: &str, flags: u64| {
            format!("231 (cgstorm-agent (x)) {state} 1 231 231 0 -1 {flags} 0 0 0 0")
        };
        assert!(running_in(&line("R", 0x0040_0000)));
        assert!(running_in(&line("D", 0x0040_0100)));
        assert!(!running_in(&line("R", 0x0040_0104)), "PF_EXITING");
        assert!(!running_in(&line("D", 0x4)), "PF_EXITING");
        assert!(!running_in(&line("Z", 0x0040_010c)));
        assert!(!running_in("garbage"));
    }
}
