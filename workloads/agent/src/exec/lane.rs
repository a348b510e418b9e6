//! One lane: its ops in order, repeats, barriers, and the watchdog that
//! watches every lane.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cgstorm_agent::proto::{AgentMsg, OpEvent};
use cgstorm_workloads::op::{Op, OpSpec, Times};
use cgstorm_workloads::program::count_ops;
use cgstorm_workloads::{OpId, Outcome, Program};

use super::fault::FailNth;
use super::kcov::Kcov;
use super::world::World;
use super::{cgroup, dax, files, mounts, snapshot, sys, tasks};
use crate::init::kmsg::klog;

/// A lane sends its results itself after this many; the watchdog thread
/// sends what is pending every [`FLUSH_EVERY`], so the results of the ops
/// before a hung one still reach the host.
const BATCH: usize = 512;
/// Repeated runs of an op are marked in the kernel log at most this often.
/// The ring buffer is all they reach (debug level), and a printk costs a
/// debug kernel's lanes as much as a migration: at 1 ms a KASAN kernel
/// under TCG marked every migration (0.62x the raw loop's rate).
const MARK_EVERY: Duration = Duration::from_millis(20);
/// How often the watchdog thread flushes pending results.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// What a lane is doing, for the watchdog.
#[derive(Default)]
pub struct LaneStatus {
    /// When the current op started (CLOCK_MONOTONIC ns), 0 between ops.
    started: AtomicU64,
    /// The current op's index.
    op: AtomicUsize,
    /// The watchdog already reported this op.
    reported: AtomicBool,
    /// The lane thread's id (0 before it starts).
    tid: AtomicI32,
}

/// What all lanes share.
pub struct Shared {
    /// Named resources.
    pub world: World,
    barrier: Barrier,
    tx: mpsc::Sender<AgentMsg>,
    duration: Duration,
    start: Instant,
    token: String,
    status: Vec<LaneStatus>,
    pending: Vec<Mutex<Vec<OpEvent>>>,
    /// Time spent taking barrier snapshots, in microseconds.
    pub snapshot_us: AtomicU64,
    /// Collect kernel coverage ([`kcov`]).
    pub cover: bool,
    /// Why a lane could not enable it (the first such error).
    pub cover_error: Mutex<Option<String>>,
}

impl Shared {
    /// State for `lanes` lanes.
    pub fn new(
        lanes: usize,
        world: World,
        duration_ms: u64,
        token: String,
        tx: mpsc::Sender<AgentMsg>,
    ) -> Shared {
        Shared {
            world,
            barrier: Barrier::new(lanes),
            tx,
            duration: Duration::from_millis(duration_ms),
            start: Instant::now(),
            token,
            status: (0..lanes).map(|_| LaneStatus::default()).collect(),
            pending: (0..lanes).map(|_| Mutex::new(Vec::new())).collect(),
            snapshot_us: AtomicU64::new(0),
            cover: false,
            cover_error: Mutex::new(None),
        }
    }

    /// Sends lane `li`'s pending results. The send happens under the lock,
    /// so a lane's batches go out in order, and all of a step's results
    /// before its barrier message.
    pub fn flush(&self, li: usize) {
        let mut p = self.pending[li].lock().unwrap_or_else(|e| e.into_inner());
        if !p.is_empty() {
            let events = std::mem::take(&mut *p);
            let _ = self.tx.send(AgentMsg::Ops { events });
        }
    }
}

struct Lane<'a> {
    idx: usize,
    s: &'a Shared,
    kmsg: Option<File>,
    cache: sys::FdCache,
    printed: Vec<bool>,
    texts: HashMap<usize, String>,
    last_mark: u64,
    last_end: u64,
    unmarked: u64,
    kcov: Option<Kcov>,
    /// The lane thread's `fail-nth` file, when the lane has an op with
    /// `fail_nth` (without it, such ops run without a fault, and their
    /// events say none was injected).
    fail_nth: Option<FailNth>,
}

/// Runs lane `idx` to its end, then passes the barriers it has no ops for.
pub fn run(p: &Program, idx: usize, s: &Shared) {
    let mut lane = Lane {
        idx,
        s,
        kmsg: OpenOptions::new().write(true).open("/dev/kmsg").ok(),
        cache: sys::FdCache::default(),
        printed: Vec::new(),
        texts: HashMap::new(),
        last_mark: 0,
        last_end: 0,
        unmarked: 0,
        kcov: None,
        fail_nth: None,
    };
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    s.status[idx].tid.store(tid, Ordering::Relaxed);
    if p.faulted().iter().any(|(id, _)| id.lane == idx) {
        match FailNth::open() {
            Ok(f) => lane.fail_nth = Some(f),
            Err(e) => klog!("lane {idx}: {e}; its ops run without faults"),
        }
    }
    if s.cover {
        match Kcov::enable() {
            Ok(k) => lane.kcov = Some(k),
            Err(e) => {
                s.cover_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert(e);
            }
        }
    }
    let mut step = 0;
    let mut next = 0;
    for spec in &p.lanes[idx].ops {
        if spec.op == Op::Barrier {
            next += 1;
            lane.barrier(step);
            step += 1;
            continue;
        }
        lane.exec(spec, &mut next);
    }
    while step < p.steps() {
        lane.barrier(step);
        step += 1;
    }
}

impl Lane<'_> {
    /// All lanes meet; the leader snapshots and reports; all go on.
    fn barrier(&mut self, step: usize) {
        self.s.flush(self.idx);
        if self.s.barrier.wait().is_leader() {
            let t = Instant::now();
            let snapshot = snapshot::take(&self.s.world);
            self.s
                .snapshot_us
                .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            let _ = self.s.tx.send(AgentMsg::Barrier { step, snapshot });
        }
        self.s.barrier.wait();
        self.printed.fill(false);
    }

    fn exec(&mut self, spec: &OpSpec, next: &mut usize) {
        let id = *next;
        *next += 1;
        let Op::Repeat(r) = &spec.op else {
            self.leaf(id, &spec.op, spec.fail_nth);
            return;
        };
        let body = *next;
        let deadline = match r.times {
            Times::Count(_) => None,
            Times::For(ms) => Some(Instant::now() + Duration::from_millis(ms.0)),
            Times::Run => Some(self.s.start + self.s.duration),
        };
        let mut passes = 0u32;
        loop {
            let mut k = body;
            for b in &r.ops {
                self.exec(b, &mut k);
            }
            passes += 1;
            let done = match (r.times, deadline) {
                (Times::Count(n), _) => passes >= n,
                (_, Some(d)) => Instant::now() >= d,
                _ => true,
            };
            if done {
                break;
            }
        }
        *next = body + count_ops(&r.ops);
    }

    /// The first run of an op in a step is marked at notice level (console);
    /// repeated runs at debug level (ring buffer only), at most one per
    /// [`MARK_EVERY`], counting the runs it stands for: a marker per
    /// migration would cost more than the migration under TCG.
    fn marker(&mut self, id: usize, op: &Op, now: u64) {
        if self.printed.len() <= id {
            self.printed.resize(id + 1, false);
        }
        let first = !std::mem::replace(&mut self.printed[id], true);
        self.unmarked += 1;
        if !first && now.saturating_sub(self.last_mark) < MARK_EVERY.as_nanos() as u64 {
            return;
        }
        let runs = std::mem::take(&mut self.unmarked);
        self.last_mark = now;
        let text = self.texts.entry(id).or_insert_with(|| op.describe());
        let line = if first {
            format!("<5>cgstorm: lane {} op {id} {text}\n", self.idx)
        } else {
            format!(
                "<7>cgstorm: lane {} op {id} {text} ({runs} ops since the last marker)\n",
                self.idx
            )
        };
        if let Some(k) = &mut self.kmsg {
            let _ = k.write_all(line.as_bytes());
        }
    }

    fn leaf(&mut self, id: usize, op: &Op, fail_nth: Option<u32>) {
        // Pace markers by the previous op's end: no extra clock read.
        self.marker(id, op, self.last_end);
        let status = &self.s.status[self.idx];
        status.op.store(id, Ordering::Relaxed);
        status.reported.store(false, Ordering::Relaxed);
        let start_ns = sys::now_ns();
        status.started.store(start_ns, Ordering::Release);
        if let Some(k) = &self.kcov {
            k.start();
        }
        // Armed last and read first: nothing but the op spends fault points.
        let armed = fail_nth.and_then(|n| self.fail_nth.as_ref().map(|f| (f, n)));
        if let Some((f, n)) = armed {
            f.arm(n);
        }
        let outcome = dispatch(self.s, id, op, &mut self.cache);
        let injected = armed.is_some_and(|(f, _)| f.injected());
        let end_ns = sys::now_ns();
        if let Some(k) = &mut self.kcov {
            k.collect();
        }
        self.last_end = end_ns;
        status.started.store(0, Ordering::Release);
        let full = {
            let mut p = self.s.pending[self.idx]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            p.push(OpEvent {
                id: OpId {
                    lane: self.idx,
                    op: id,
                },
                outcome,
                start_ns,
                end_ns,
                injected,
            });
            p.len() >= BATCH
        };
        if full {
            self.s.flush(self.idx);
        }
    }
}

fn dispatch(s: &Shared, id: usize, op: &Op, cache: &mut sys::FdCache) -> Outcome {
    let w = &s.world;
    match op {
        Op::Mkdir(cg) => cgroup::mkdir(cg),
        Op::Rmdir(cg) => cgroup::rmdir(cg),
        Op::SubtreeControl(a) => cgroup::subtree_control(a),
        Op::Procs(a) => cgroup::attach(w, id, a, true, cache),
        Op::Threads(a) => cgroup::attach(w, id, a, false, cache),
        Op::MemoryMax(a) => cgroup::knob(a, "memory.max"),
        Op::MemoryHigh(a) => cgroup::knob(a, "memory.high"),
        Op::MemoryLow(a) => cgroup::knob(a, "memory.low"),
        Op::MemorySwapMax(a) => cgroup::knob(a, "memory.swap.max"),
        Op::MemoryReclaim(a) => cgroup::reclaim(a),
        Op::IoMax(a) => cgroup::io_max(w, a),
        Op::CgroupKill(cg) => cgroup::kill(cg),
        Op::Read(a) => cgroup::read(a),
        Op::V1Mount => cgroup::v1_mount(),
        Op::V1Umount => cgroup::v1_umount(),
        Op::MoveCharge(a) => cgroup::move_charge(a),
        Op::LimitInBytes(a) => cgroup::limit_in_bytes(a),
        Op::ForceEmpty(cg) => cgroup::force_empty(cg),
        Op::Spawn(a) => tasks::spawn(w, a, &s.token, s.cover),
        Op::Kill(t) => tasks::kill(w, t),
        Op::Wait(t) => tasks::wait(w, t),
        Op::Write(a) => files::write(a),
        Op::Truncate(a) => files::truncate(a),
        Op::Unlink(f) => files::unlink(f),
        Op::Fsync(f) => files::fsync(f),
        Op::Sync => files::sync(),
        Op::Syncfs(p) => files::syncfs(p),
        Op::DropCaches(d) => files::drop_caches(*d),
        Op::Sysrq(k) => sys::write_file(
            std::path::Path::new("/proc/sysrq-trigger"),
            &k.0.to_string(),
        ),
        Op::Losetup(a) => mounts::losetup(w, a),
        Op::LosetupDetach(d) => mounts::losetup_detach(w, d),
        Op::Mkfs(a) => mounts::mkfs(w, a),
        Op::Mount(a) => mounts::mount_fs(w, a),
        Op::Umount(p) => mounts::umount(p, false),
        Op::UmountLazy(p) => mounts::umount(p, true),
        Op::Remount(a) => mounts::remount(a),
        Op::Open(a) => dax::open(w, a),
        Op::Close(n) => dax::close(w, n),
        Op::Mmap(a) => dax::mmap(w, a),
        Op::Touch(a) => dax::touch(w, a),
        Op::Munmap(n) => dax::munmap(w, n),
        Op::Pin(a) => dax::pin(w, a),
        Op::Release(n) => dax::release(w, n),
        Op::Sleep(ms) => {
            std::thread::sleep(Duration::from_millis(ms.0));
            Outcome::Ok
        }
        Op::Barrier | Op::Repeat(_) => Outcome::Ok,
    }
}

/// Whose progress shows that the op `spec`, running in the lane of `st`,
/// is working: the awaited task's for a `wait`, the lane thread's otherwise.
fn worker(s: &Shared, st: &LaneStatus, spec: Option<&Op>) -> String {
    if let Some(Op::Wait(t)) = spec {
        if let Some(pid) = tasks::pid_of(&s.world, t) {
            return format!("/proc/{pid}/io");
        }
    }
    format!("/proc/self/task/{}/io", st.tid.load(Ordering::Relaxed))
}

/// The sum of the I/O counters in `path` (`/proc/.../io`: characters and
/// bytes read and written, read and write calls): it grows whenever the task
/// completes a read or write or dirties or submits a block; it does not
/// while the task sleeps on a lock or spins inside one call. None without
/// the file (a kernel without `CONFIG_TASK_IO_ACCOUNTING`, a task gone).
fn io_done(path: String) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .fold(0u64, u64::wrapping_add),
    )
}

/// The watchdog thread.
pub struct Watch {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// What the watchdog knows of one lane's running op.
#[derive(Default)]
struct Progress {
    /// The op's start (its identity: a new op has a new start).
    started: u64,
    /// Its worker's I/O counters at the last look.
    io: Option<u64>,
    /// When they last grew (the op's start before that).
    moved: u64,
    /// When the last [`AgentMsg::Working`] went out.
    told: u64,
}

/// Ops shorter than this are not looked at (no /proc reads for the
/// ordinary op).
const LOOK_AFTER_NS: u64 = 1_000_000_000;

impl Watch {
    /// Watches the lanes of `s`: an op whose worker made no I/O progress
    /// for `stall_ms` gets the blocked tasks' stacks dumped and is reported
    /// once; one still making progress past half of it is said to be
    /// working ([`AgentMsg::Working`]).
    pub fn start(s: Arc<Shared>, p: Arc<Program>, stall_ms: u64) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let stall_ns = stall_ms.saturating_mul(1_000_000);
            let mut seen: Vec<Progress> = s.status.iter().map(|_| Progress::default()).collect();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(FLUSH_EVERY);
                for li in 0..s.pending.len() {
                    s.flush(li);
                }
                let now = sys::now_ns();
                for (li, st) in s.status.iter().enumerate() {
                    let started = st.started.load(Ordering::Acquire);
                    if started == 0 || st.reported.load(Ordering::Relaxed) {
                        continue;
                    }
                    let pr = &mut seen[li];
                    if pr.started != started {
                        *pr = Progress {
                            started,
                            io: None,
                            moved: started,
                            told: started,
                        };
                    }
                    if now.saturating_sub(started) < LOOK_AFTER_NS {
                        continue;
                    }
                    let op = st.op.load(Ordering::Relaxed);
                    let spec = p.lane_ops(li).get(op).map(|(_, spec)| &spec.op);
                    let io = io_done(worker(&s, st, spec));
                    if io.is_some() && pr.io.is_some() && io != pr.io {
                        pr.moved = now;
                    }
                    pr.io = io;
                    let text = || spec.map(|o| o.describe()).unwrap_or_default();
                    let ms = now.saturating_sub(started) / 1_000_000;
                    if now.saturating_sub(pr.moved) < stall_ns {
                        if pr.moved > pr.told && now.saturating_sub(pr.told) >= stall_ns / 2 {
                            pr.told = now;
                            let _ = s.tx.send(AgentMsg::Working {
                                op: OpId { lane: li, op },
                                text: text(),
                                ms,
                            });
                        }
                        continue;
                    }
                    st.reported.store(true, Ordering::Relaxed);
                    crate::init::kmsg::log(&format!(
                        "watchdog: lane {li} op {op} stuck for {ms} ms"
                    ));
                    for c in ["w", "t"] {
                        let _ = std::fs::write("/proc/sysrq-trigger", c);
                    }
                    let _ = s.tx.send(AgentMsg::Stall {
                        op: OpId { lane: li, op },
                        text: text(),
                        stalled_ms: ms,
                    });
                }
            }
        });
        Watch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the watchdog.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::io_done;

    #[test]
    fn io_counters_are_summed_and_a_missing_file_is_none() {
        let dir = std::env::temp_dir().join(format!("cgstorm-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("io");
        std::fs::write(
            &f,
            "rchar: 10\nwchar: 4096\nsyscr: 1\nsyscw: 1\nread_bytes: 0\n\
             write_bytes: 4096\ncancelled_write_bytes: 0\n",
        )
        .unwrap();
        assert_eq!(io_done(f.display().to_string()), Some(8204));
        std::fs::write(&f, "rchar: 10\nwchar: 8192\nsyscr: 1\nsyscw: 2\n").unwrap();
        assert_eq!(io_done(f.display().to_string()), Some(8205));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(io_done(f.display().to_string()), None);
        // This thread's own counters exist where the kernel accounts I/O.
        if std::path::Path::new("/proc/self/io").exists() {
            // SAFETY: gettid has no arguments and cannot fail.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) };
            assert!(io_done(format!("/proc/self/task/{tid}/io")).is_some());
        }
    }
}
