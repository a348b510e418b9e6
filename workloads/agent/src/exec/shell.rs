//! Running a shell script for the host (`cgstorm repro --sh --run`): the
//! files written into a fresh working directory, the script run by the
//! guest's busybox sh with every applet on PATH, in its own process group,
//! killed with everything it started at the time limit.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cgstorm_agent::proto::{AgentMsg, ShellOrder};

/// Where the working directories go (a tmpfs in the guest).
const BASE: &str = "/tmp/cgstorm-shell";
/// Most bytes of stdout and of stderr returned.
const MAX_OUTPUT: usize = 1 << 20;
/// How often the script is polled for its end.
const POLL: Duration = Duration::from_millis(20);

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs the order; never fails (a script that could not run is status -1).
pub fn run(order: &ShellOrder) -> AgentMsg {
    // A script may mount any filesystem: the modules loading in the
    // background must be there first.
    crate::init::modules::wait_deferred();
    super::reset::touched_all();
    match execute(order, Path::new(BASE)) {
        Ok(msg) => msg,
        Err(e) => AgentMsg::ShellDone {
            status: -1,
            stdout: String::new(),
            stderr: e,
        },
    }
}

/// The guest's busybox (the initramfs's, or a virtme-ng guest's).
pub fn busybox() -> Result<&'static str, String> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| "no busybox in the guest: put /bin/busybox into the initramfs".into())
}

/// A directory with a symlink to busybox for each of its applets.
fn applets(busybox: &str, base: &Path) -> Result<PathBuf, String> {
    let dir = base.join("bin");
    if dir.join("sh").exists() {
        return Ok(dir);
    }
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let st = Command::new(busybox)
        .args(["--install", "-s"])
        .arg(&dir)
        .status()
        .map_err(|e| format!("run {busybox} --install: {e}"))?;
    if !st.success() {
        return Err(format!(
            "{busybox} --install -s {} failed: {st}",
            dir.display()
        ));
    }
    Ok(dir)
}

fn execute(order: &ShellOrder, base: &Path) -> Result<AgentMsg, String> {
    let busybox = busybox()?;
    let bin = applets(busybox, base)?;
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("run{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    for (name, bytes) in &order.files {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(format!("bad file name `{name}`: a plain name is expected"));
        }
        let p = dir.join(name);
        fs::write(&p, bytes).map_err(|e| format!("write {}: {e}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", p.display()))?;
    }
    let (out_path, err_path) = (dir.join(".stdout"), dir.join(".stderr"));
    let out = File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
    let err = File::create(&err_path).map_err(|e| format!("create {}: {e}", err_path.display()))?;
    // Real tools (mkfs.*) first, busybox's applets for the rest.
    let path = format!("/usr/sbin:/usr/bin:/sbin:/bin:{}", bin.display());
    let mut child = Command::new(busybox)
        .args(["sh", "-c", &order.script])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("run {busybox} sh: {e}"))?;
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_millis(order.timeout_ms);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
            Ok(None) if Instant::now() >= deadline => {
                crate::init::kmsg::log(&format!(
                    "shell script over its {} ms: killed",
                    order.timeout_ms
                ));
                kill_group(pgid);
                let _ = child.wait();
                break 128 + libc::SIGKILL;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("wait for the script: {e}")),
        }
    };
    // What the script left running (tasks, lanes after a timeout) goes too.
    kill_group(pgid);
    Ok(AgentMsg::ShellDone {
        status,
        stdout: read_capped(&out_path),
        stderr: read_capped(&err_path),
    })
}

/// SIGKILLs the process group and reaps what of it is ours (as PID 1,
/// orphans are).
fn kill_group(pgid: i32) {
    // SAFETY: kill(2) on a process group we created; no memory is touched.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let mut st = 0;
        // SAFETY: waitpid on our own process group into a local status word.
        let r = unsafe { libc::waitpid(-pgid, &mut st, libc::WNOHANG) };
        if r <= 0 {
            if r == 0 {
                std::thread::sleep(POLL);
                continue;
            }
            break;
        }
    }
}

fn read_capped(p: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = File::open(p) {
        let _ = f.take(MAX_OUTPUT as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(script: &str, timeout_ms: u64) -> ShellOrder {
        ShellOrder {
            script: script.into(),
            files: vec![("hello.sh".into(), b"echo \"from $0\"\n".to_vec())],
            timeout_ms,
        }
    }

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir()
                .join(format!("cgstorm-shell-test-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn done(m: AgentMsg) -> (i32, String, String) {
        match m {
            AgentMsg::ShellDone {
                status,
                stdout,
                stderr,
            } => (status, stdout, stderr),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scripts_run_with_their_files_and_busybox_applets() {
        if busybox().is_err() {
            eprintln!("no busybox here: skipped");
            return;
        }
        let base = Scratch::new("files");
        let o = order(
            "./hello.sh; command -v rmdir; echo oops >&2; exit 3",
            10_000,
        );
        let (status, out, err) = done(execute(&o, base.path()).unwrap());
        assert_eq!(status, 3);
        assert!(out.starts_with("from ./hello.sh\n"), "{out}");
        assert!(out.contains("rmdir"), "{out}");
        assert_eq!(err, "oops\n");
        let bad = ShellOrder {
            files: vec![("../x".into(), vec![])],
            ..o
        };
        assert!(execute(&bad, base.path())
            .unwrap_err()
            .contains("plain name"));
    }

    #[test]
    fn the_time_limit_kills_the_script_and_what_it_started() {
        if busybox().is_err() {
            eprintln!("no busybox here: skipped");
            return;
        }
        let base = Scratch::new("limit");
        let t0 = Instant::now();
        let o = order("sleep 30 & echo $! > bg.pid; echo started; sleep 30", 300);
        let (status, out, _) = done(execute(&o, base.path()).unwrap());
        assert_eq!(status, 128 + libc::SIGKILL);
        assert_eq!(out, "started\n");
        assert!(t0.elapsed() < Duration::from_secs(10));
        let run = fs::read_dir(base.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("run"))
            .unwrap()
            .path();
        let pid = fs::read_to_string(run.join("bg.pid")).unwrap();
        // SIGKILL is sent to the whole group when the limit comes, but the
        // background sleep dies when it is next scheduled: on a busy host
        // that may be a moment after the script's own end was seen.
        let alive = || {
            let stat = fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            (!stat.is_empty() && !stat.contains(") Z ")).then_some(stat)
        };
        let waited = Instant::now();
        while alive().is_some() && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(alive(), None, "the background sleep survived");
    }
}
