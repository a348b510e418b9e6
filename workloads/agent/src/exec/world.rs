//! The agent's side of the program's names: task processes, open files,
//! mappings, pins and loop devices, shared by all lanes.
//!
//! Locks are held only to look names up or record them, never across a
//! syscall that may block, so lanes race in the kernel, not in the agent.

use std::collections::HashMap;
use std::collections::HashSet;
use std::fs::File;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use cgstorm_workloads::{Dev, DevKind, Name};

use super::paths;

/// A pid no process can have (above any pid_max): writing it gives ESRCH.
pub const NO_PID: &str = "2147483647";

/// A spawned task.
pub struct TaskRec {
    /// Its process.
    pub child: Child,
    /// Its pid as written to cgroup files.
    pub pid: Arc<str>,
    /// Its coverage, read when this record drops: after the reap.
    pub _cover: Option<super::kcov::TaskKcov>,
}

/// A mapping.
#[derive(Clone, Copy)]
pub struct MapRec {
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

/// Held page references.
pub enum PinRec {
    /// A pipe holding vmspliced pages: read it to release them.
    Pipe { read: File, _write: File },
    /// An AIO context with one request in flight.
    Aio { ctx: libc::c_ulong, _peer: File },
    /// An io_uring with one request in flight.
    Uring {
        ring: Box<io_uring::IoUring>,
        _peer: File,
    },
}

/// Everything named that outlives one op.
#[derive(Default)]
pub struct World {
    tasks: Mutex<HashMap<Name, TaskRec>>,
    /// Names being spawned right now (reserved, not yet in `tasks`).
    spawning: Claims<Name>,
    /// Loop slots being bound right now (reserved, not yet in `loops`).
    binding: Claims<u8>,
    fds: Mutex<HashMap<Name, Arc<File>>>,
    maps: Mutex<HashMap<Name, MapRec>>,
    pins: Mutex<HashMap<Name, PinRec>>,
    loops: Mutex<HashMap<u8, PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Names an op is setting up right now. An op that would set up the same
/// name waits until the first is done, so each such op is atomic as the
/// model sees it. Lock order: a claim set, then the world's maps.
struct Claims<K> {
    held: Mutex<HashSet<K>>,
    freed: Condvar,
}

impl<K> Default for Claims<K> {
    fn default() -> Self {
        Claims {
            held: Mutex::new(HashSet::new()),
            freed: Condvar::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> Claims<K> {
    /// Waits until nobody holds `k`, then claims it if `free()` says the
    /// name is free; false (and no claim) if it is not.
    fn claim(&self, k: &K, free: impl FnOnce() -> bool) -> bool {
        let mut held = lock(&self.held);
        while held.contains(k) {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        if !free() {
            return false;
        }
        held.insert(k.clone());
        true
    }

    /// Gives `k` back and wakes whoever waits for it.
    fn release(&self, k: &K) {
        lock(&self.held).remove(k);
        self.freed.notify_all();
    }
}

impl World {
    /// The tasks.
    pub fn tasks(&self) -> MutexGuard<'_, HashMap<Name, TaskRec>> {
        lock(&self.tasks)
    }

    /// Reserves a task name for a spawn: false if a task has it. A spawn of
    /// the same name in progress is waited for first: for the model a spawn
    /// takes its name when it returns ok, so a racing spawn must not see a
    /// name that the first one may still fail to take (it would return
    /// EEXIST beside a spawn that failed).
    pub fn reserve(&self, task: &Name) -> bool {
        self.spawning
            .claim(task, || !self.tasks().contains_key(task))
    }

    /// Gives a reserved name back (the spawn has recorded its task, or failed).
    pub fn unreserve(&self, task: &Name) {
        self.spawning.release(task);
    }

    /// Reserves a loop slot for a `losetup`: false if a device is bound to
    /// it. As with spawns, a racing `losetup` of the slot is waited for, so
    /// the second one fails with EBUSY before it creates its backing file.
    pub fn reserve_loop(&self, d: &Dev) -> bool {
        self.binding
            .claim(&d.index, || self.dev_path(d) == Path::new(paths::NO_DEVICE))
    }

    /// Gives a reserved loop slot back (bound, or failed).
    pub fn unreserve_loop(&self, d: &Dev) {
        self.binding.release(&d.index);
    }

    /// The open descriptors.
    pub fn fds(&self) -> MutexGuard<'_, HashMap<Name, Arc<File>>> {
        lock(&self.fds)
    }

    /// The mappings.
    pub fn maps(&self) -> MutexGuard<'_, HashMap<Name, MapRec>> {
        lock(&self.maps)
    }

    /// The pins.
    pub fn pins(&self) -> MutexGuard<'_, HashMap<Name, PinRec>> {
        lock(&self.pins)
    }

    /// The loop slots.
    pub fn loops(&self) -> MutexGuard<'_, HashMap<u8, PathBuf>> {
        lock(&self.loops)
    }

    /// The pid to write for a task: its own while it has not been reaped.
    pub fn pid_text(&self, task: &Name) -> Arc<str> {
        match self.tasks().get(task) {
            Some(t) => t.pid.clone(),
            None => Arc::from(NO_PID),
        }
    }

    /// A device's node; a loop slot whose device went away (autoclear after
    /// its last user) is dropped, and devices the program has not got
    /// resolve to a path that does not exist.
    pub fn dev_path(&self, d: &Dev) -> PathBuf {
        if d.kind != DevKind::Loop {
            return paths::fixed_dev(d).expect("fixed device");
        }
        let mut loops = self.loops();
        if let Some(p) = loops.get(&d.index) {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bound = std::path::Path::new("/sys/block")
                .join(&name)
                .join("loop/backing_file");
            if bound.exists() {
                return p.clone();
            }
            loops.remove(&d.index);
        }
        PathBuf::from(paths::NO_DEVICE)
    }

    /// The pids of every task still unreaped, killed and reaped: the end of a program.
    pub fn kill_all(&self) {
        let mut tasks = self.tasks();
        for (_, mut t) in tasks.drain() {
            let _ = t.child.kill();
            let _ = t.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A second op on a name being set up waits for the first to end, and
    /// takes the name if the first gave it back without recording it (it
    /// failed); other names are never held up.
    fn racer_waits<K: 'static>(
        key: fn() -> K,
        other: K,
        claim: fn(&World, &K) -> bool,
        release: fn(&World, &K),
    ) {
        let w = Arc::new(World::default());
        assert!(claim(&w, &key()));
        let (tx, rx) = mpsc::channel();
        let w2 = w.clone();
        let racer = std::thread::spawn(move || tx.send(claim(&w2, &key())));
        // Still waiting: it must not answer while the first op may fail.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(200)),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        release(&w, &key());
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(true));
        racer.join().expect("racer").expect("sent");
        assert!(claim(&w, &other));
    }

    #[test]
    fn a_racing_spawn_waits_for_the_first_to_end() {
        racer_waits(
            || "t0".parse::<Name>().expect("name"),
            "t1".parse().expect("name"),
            World::reserve,
            World::unreserve,
        );
    }

    #[test]
    fn a_racing_losetup_of_a_slot_waits_for_the_first_to_end() {
        racer_waits(
            || "loop1".parse::<Dev>().expect("dev"),
            "loop0".parse().expect("dev"),
            World::reserve_loop,
            World::unreserve_loop,
        );
    }
}
