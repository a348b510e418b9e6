//! Spawned tasks: sleepers, writers, readers and memory hogs; kill and wait.
//!
//! Contract with the agent: `spawn` returns once the task has joined its
//! cgroup and opened its file, with the errno of that setup; tasks are reaped
//! only by `kill` and `wait`, so a task that died on its own stays a zombie
//! (its pid still resolves) until then.

use crate::errno::Errno::*;
use crate::names::{Cg, Hier, Name};
use crate::op::{Spawn, TaskKind};
use crate::outcome::Outcome;

use super::apply::{fail, ok, Ctx, Next};
use super::cgroup::{attach, LOW_LIMIT};
use super::files::{after_failed_open, may_fill, open_file, Access, Opened};
use super::state::{FileSt, Life, SizeRange, State, Task, TaskClass};

pub fn spawn(s: &State, a: &Spawn, ctx: Ctx<'_>) -> Next {
    if s.tasks.get(&a.task).is_some_and(|t| t.named()) {
        return fail(s, EEXIST);
    }
    let class = match &a.kind {
        TaskKind::Sleeper => TaskClass::Sleeper,
        TaskKind::Writer(w) => TaskClass::Writer {
            file: w.file.clone(),
            bytes: w.bytes.0,
            looped: w.looped,
        },
        TaskKind::Reader(r) => TaskClass::Reader { looped: r.looped },
        TaskKind::Hog(h) => TaskClass::Hog { bytes: h.bytes.0 },
    };
    let life = if class.ends_alone() {
        Life::Maybe
    } else {
        Life::Alive
    };
    let mut born = s.clone();
    born.tasks.insert(
        a.task.clone(),
        Task {
            class,
            life: Life::Alive,
            v2: Vec::new(),
            v1: s.v1.as_ref().map(|_| Vec::new()),
            maybe_killed: false,
            zombie: false,
            holds: None,
            writes: None,
        },
    );
    let joined = match &a.cg {
        Some(cg) => attach(&born, &a.task, cg, true, ctx),
        None => ok(born),
    };
    // Another lane's cgroup.kill of its cgroup (or one above) may kill the
    // task once it joined and before it said its setup was done (a lockdep
    // fuzz: a sleeper spawned into `c` while another lane looped `cgroup.kill
    // c`), and so may the OOM killer under a low limit over charges already
    // there (a guided debug-kernel fuzz: a reader spawned into `c/y` with
    // `c` at 4M over its children's page cache, killed in its setup 3/3).
    // The spawn is then `killed`, and the task gone, with what its setup
    // did (a file it created) left.
    let killable = a.cg.as_ref().is_some_and(|cg| {
        (cg.hier == Hier::V2 && ctx.racing.kills.iter().any(|k| cg.is_within(k)))
            || oom_in_setup(s, cg)
    });
    let mut out = Vec::new();
    for (o, n) in joined {
        if o != Outcome::Ok {
            out.push((o, s.clone()));
            continue;
        }
        if killable {
            out.push((Outcome::Killed, without(&n, &a.task, s)));
        }
        for (o, mut n) in start(s, n, a, ctx) {
            if o == Outcome::Ok {
                if killable {
                    out.push((Outcome::Killed, without(&n, &a.task, s)));
                }
                n.tasks.get_mut(&a.task).expect("born").life = life;
                update_oom(&mut n);
            }
            out.push((o, n));
        }
    }
    out
}

/// `n` with the task `name` gone again, as it was in `s` (killed during
/// its setup and reaped by the spawn).
fn without(n: &State, name: &Name, s: &State) -> State {
    let mut n = n.clone();
    match s.tasks.get(name) {
        Some(t) => {
            n.tasks.insert(name.clone(), t.clone());
        }
        None => {
            n.tasks.remove(name);
        }
    }
    n
}

/// Opens the task's file, as the child does before `spawn` returns.
/// A failure comes with the state it leaves (the original `s`, or `s` with
/// the file created: see [`after_failed_open`]).
fn start(s: &State, n: State, a: &Spawn, ctx: Ctx<'_>) -> Next {
    let (file, access, bs) = match &a.kind {
        TaskKind::Sleeper => return ok(n),
        TaskKind::Writer(w) => (
            &w.file,
            Access::write(w.mode == crate::words::IoMode::Direct),
            w.bs.0,
        ),
        TaskKind::Reader(r) => (&r.file, Access::read(r.direct), r.bs.0),
        TaskKind::Hog(h) => match &h.file {
            Some(f) => (f, Access::write(false), 4096),
            None => return ok(n),
        },
    };
    if bs == 0 {
        return fail(s, EINVAL);
    }
    open_file(&n, file, access, ctx)
        .into_iter()
        .flat_map(|r| match r {
            Ok(opened) => vec![(Outcome::Ok, started(n.clone(), a, file, opened))],
            Err(e) => after_failed_open(s, file, access, e, ctx)
                .into_iter()
                .map(|n| (Outcome::Err(e), n))
                .collect(),
        })
        .collect()
}

fn started(mut n: State, a: &Spawn, file: &crate::names::FilePath, opened: Opened) -> State {
    let writes = matches!(a.kind, TaskKind::Writer(_) | TaskKind::Hog(_));
    if writes {
        let hi = match &a.kind {
            TaskKind::Writer(w) => w.bytes.0,
            TaskKind::Hog(h) => h.bytes.0,
            _ => 0,
        };
        let key = (opened.fs.clone(), file.name.clone());
        let old_hi = n.files.get(&key).map(|f| f.size.hi).unwrap_or(0);
        n.files.insert(
            key,
            FileSt {
                exists: Life::Alive,
                size: SizeRange {
                    lo: 0,
                    hi: hi.max(old_hi),
                },
                image: None,
            },
        );
    }
    let t = n.tasks.get_mut(&a.task).expect("born");
    t.holds = opened.via;
    if writes {
        t.writes = Some((opened.fs, file.name.clone()));
    }
    n
}

pub fn kill(s: &State, task: &Name) -> Next {
    match s.tasks.get(task) {
        Some(t) if t.named() => {
            let mut n = s.clone();
            end(&mut n, task);
            ok(n)
        }
        _ => fail(s, ESRCH),
    }
}

pub fn wait(s: &State, task: &Name, ctx: Ctx<'_>) -> Next {
    let Some(t) = s.tasks.get(task).filter(|t| t.named()) else {
        return fail(s, ESRCH);
    };
    let mut n = s.clone();
    end(&mut n, task);
    let mut outs = Vec::new();
    if t.class.ends_alone() {
        outs.push(Outcome::Ok);
        if let TaskClass::Writer { file, bytes, .. } = &t.class {
            if may_fill(s, &s.resolve(file).0, *bytes, ctx) {
                outs.push(Outcome::Err(ENOSPC));
            }
        }
    }
    if t.maybe_killed || outs.is_empty() {
        // A task that never ends on its own can only come back killed; if
        // nothing kills it, the lane hangs and the watchdog reports it.
        outs.push(Outcome::Killed);
    }
    outs.into_iter().map(|o| (o, n.clone())).collect()
}

/// The task is gone (reaped): it holds nothing any more.
fn end(n: &mut State, task: &Name) {
    let t = n.tasks.get_mut(task).expect("exists");
    t.life = Life::Dead;
    t.zombie = false;
    t.holds = None;
    t.writes = None;
}

/// Marks tasks that the OOM killer may hit: those under a low memory limit,
/// and hogs that want more than their limit.
pub fn update_oom(n: &mut State) {
    let names: Vec<Name> = n.tasks.keys().cloned().collect();
    for name in names {
        let t = &n.tasks[&name];
        if t.life != Life::Alive {
            continue;
        }
        let limit = effective_limit(n, t);
        let Some(limit) = limit else { continue };
        let at_risk = match t.class {
            TaskClass::Hog { bytes } => bytes.saturating_add(16 << 20) > limit,
            _ => limit < LOW_LIMIT,
        };
        if at_risk {
            let t = n.tasks.get_mut(&name).expect("exists");
            t.life = Life::Maybe;
            t.maybe_killed = true;
        }
    }
}

/// Whether the OOM killer may kill a task spawned into `cg` in `s` while
/// it sets up: a limit under [`LOW_LIMIT`] on `cg` or above it, with
/// charges under that limit already (a task has been in its subtree),
/// which the setup's own allocations may push past it.
fn oom_in_setup(s: &State, cg: &Cg) -> bool {
    let nodes = match cg.hier {
        Hier::V2 => Some(&s.v2),
        Hier::V1 => s.v1.as_ref().map(|v| &v.nodes),
    };
    let Some(nodes) = nodes else {
        return false;
    };
    (1..=cg.parts.len()).any(|len| {
        let top = &cg.parts[..len];
        nodes
            .get(top)
            .and_then(|n| n.limit)
            .is_some_and(|l| l < LOW_LIMIT)
            && nodes.iter().any(|(p, n)| n.charged && p.starts_with(top))
    })
}

fn effective_limit(n: &State, t: &Task) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut consider = |hier: Hier, path: &[String]| {
        let nodes = match hier {
            Hier::V2 => Some(&n.v2),
            Hier::V1 => n.v1.as_ref().map(|v| &v.nodes),
        };
        let Some(nodes) = nodes else { return };
        for len in 1..=path.len() {
            if let Some(l) = nodes.get(&path[..len]).and_then(|x| x.limit) {
                best = Some(best.map_or(l, |b| b.min(l)));
            }
        }
    };
    consider(Hier::V2, &t.v2);
    if let Some(v1) = &t.v1 {
        consider(Hier::V1, v1);
    }
    best
}
