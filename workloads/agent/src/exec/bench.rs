//! Baseline loops for benchmarks: what the agent's op rate is compared with.
//! They run in the guest like the agent's ops, on cgroups of their own.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use cgstorm_agent::proto::{BenchKind, BenchOrder};

use super::paths::CG2;
use super::tasks::TASK_ENV;

/// Runs one baseline; returns the wall time in nanoseconds.
pub fn run(order: BenchOrder, token: &str) -> Result<u64, String> {
    let a = Path::new(CG2).join("bench-a");
    let b = Path::new(CG2).join("bench-b");
    for d in [&a, &b] {
        let _ = std::fs::create_dir(d);
    }
    let result = match order.kind {
        BenchKind::MigrateRaw | BenchKind::MigrateShell => migrate(order, token, &a, &b),
        BenchKind::MkdirRaw | BenchKind::MkdirShell => mkdirs(order),
    };
    for d in [&a, &b] {
        let _ = std::fs::remove_dir(d);
    }
    result
}

fn migrate(order: BenchOrder, token: &str, a: &Path, b: &Path) -> Result<u64, String> {
    let mut sleeper = Command::new("/proc/self/exe")
        .args(["task", r#"{"procs":null,"work":"Sleeper"}"#])
        .env(TASK_ENV, token)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn a sleeper: {e}"))?;
    let pid = sleeper.id().to_string();
    let t0 = Instant::now();
    let r = match order.kind {
        BenchKind::MigrateRaw => {
            let mut fa = std::fs::OpenOptions::new()
                .write(true)
                .open(a.join("cgroup.procs"));
            let mut fb = std::fs::OpenOptions::new()
                .write(true)
                .open(b.join("cgroup.procs"));
            match (&mut fa, &mut fb) {
                (Ok(fa), Ok(fb)) => (0..order.count).try_for_each(|i| {
                    let f = if i % 2 == 0 { &mut *fa } else { &mut *fb };
                    f.write(pid.as_bytes())
                        .map(|_| ())
                        .map_err(|e| format!("migrate: {e}"))
                }),
                _ => Err("open cgroup.procs".into()),
            }
        }
        _ => {
            let script = format!(
                "i=0; while [ $i -lt {n} ]; do echo {pid} > {a}/cgroup.procs; echo {pid} > {b}/cgroup.procs; i=$((i+1)); done",
                n = order.count / 2,
                a = a.display(),
                b = b.display()
            );
            shell(&script)
        }
    };
    let ns = t0.elapsed().as_nanos() as u64;
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    r.map(|_| ns)
}

fn mkdirs(order: BenchOrder) -> Result<u64, String> {
    // Memory enabled at the root, so each mkdir makes a memcg.
    let _ = std::fs::write(Path::new(CG2).join("cgroup.subtree_control"), "+memory");
    let m = Path::new(CG2).join("bench-m");
    let t0 = Instant::now();
    let r = match order.kind {
        BenchKind::MkdirRaw => (0..order.count).try_for_each(|_| {
            std::fs::create_dir(&m).map_err(|e| format!("mkdir: {e}"))?;
            std::fs::remove_dir(&m).map_err(|e| format!("rmdir: {e}"))
        }),
        _ => shell(&format!(
            "i=0; while [ $i -lt {n} ]; do mkdir {m}; rmdir {m}; i=$((i+1)); done",
            n = order.count,
            m = m.display()
        )),
    };
    let ns = t0.elapsed().as_nanos() as u64;
    let _ = std::fs::write(Path::new(CG2).join("cgroup.subtree_control"), "-memory");
    r.map(|_| ns)
}

fn shell(script: &str) -> Result<(), String> {
    let st = Command::new(super::shell::busybox()?)
        .args(["sh", "-c", script])
        .env("PATH", "/bin:/usr/bin")
        .status()
        .map_err(|e| format!("run busybox sh: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("busybox sh loop failed: {st}"))
    }
}
