//! Running a program: one thread per lane, barriers that line them up and
//! snapshot the state, results streamed to the host as they come.
//!
//! Before each op a lane writes `cgstorm: lane L op N <op>` to /dev/kmsg.
//! The first run of an op in a step goes out at notice level, so it reaches
//! the console and a report there can be tied to it; later runs of the same
//! op (repeat loops) go at debug level, into the ring buffer only: a serial
//! console under TCG takes milliseconds per line and would throttle the race.
//! A watchdog thread notices a lane stuck in one op, writes `w` and `t` to
//! /proc/sysrq-trigger and tells the host.

pub mod bench;
mod cgroup;
mod dax;
mod fault;
mod files;
pub mod kcov;
pub mod kmemleak;
mod lane;
mod mounts;
pub(crate) mod paths;
pub mod reset;
pub mod shell;
mod snapshot;
mod sys;
pub mod tasks;
mod trace;
mod world;

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use cgstorm_agent::contract::{DONE_LINE, KMSG_PREFIX};
use cgstorm_agent::proto::{self, AgentMsg, RunOrder, RunTiming};
use cgstorm_workloads::Program;
use nix::mount::{mount, MsFlags};

use lane::{Shared, Watch};
use world::World;

use crate::init::kmsg::klog;

/// Runs one program; results go out on `port`. Returns when the program is
/// over (or was refused); the agent then waits for the next order.
pub fn run(order: RunOrder, port: &mut File, token: &str) -> Result<(), String> {
    let begin = Instant::now();
    let program = match Program::from_yaml("program", &order.program) {
        Ok(p) => p,
        Err(e) => {
            return proto::write_frame(
                port,
                &AgentMsg::Fatal {
                    message: format!("the program does not parse: {e}"),
                },
            )
            .map_err(|e| format!("send: {e}"))
        }
    };
    if program.has_faults() {
        if let Err(message) = fault::configure() {
            return proto::write_frame(port, &AgentMsg::Fatal { message })
                .map_err(|e| format!("send: {e}"));
        }
    }
    reset::note_base_taint();
    prepare_places(&program)?;
    let (tx, rx) = mpsc::channel::<AgentMsg>();
    let mut out = port.try_clone().map_err(|e| format!("clone port: {e}"))?;
    let sender = std::thread::spawn(move || {
        for msg in rx {
            if let Err(e) = proto::write_frame(&mut out, &msg) {
                klog!("cannot send to host: {e}");
                return;
            }
        }
    });
    let steps = program.steps();
    let _ = tx.send(AgentMsg::Started {
        lanes: program.lanes.len(),
        steps,
    });
    if order.cover_afresh {
        kcov::forget();
    }
    let traced = order.trace.then(trace::start);
    let mut shared = Shared::new(
        program.lanes.len(),
        World::default(),
        order.duration_ms,
        token.to_string(),
        tx.clone(),
    );
    shared.cover = order.cover;
    let shared = Arc::new(shared);
    let program = Arc::new(program);
    let setup = begin.elapsed();
    let watch = Watch::start(shared.clone(), program.clone(), order.stall_ms);
    let handles: Vec<_> = (0..program.lanes.len())
        .map(|li| {
            let (p, s) = (program.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("lane{li}"))
                .spawn(move || lane::run(&p, li, &s))
        })
        .collect();
    let mut error = None;
    for h in handles {
        match h {
            Ok(h) => {
                if h.join().is_err() {
                    error = Some("a lane thread panicked".to_string());
                }
            }
            Err(e) => error = Some(format!("cannot start a lane thread: {e}")),
        }
    }
    watch.stop();
    for li in 0..program.lanes.len() {
        shared.flush(li);
    }
    if let Some(started) = traced {
        let (counts, error) = match started.and_then(|()| trace::counts()) {
            Ok(c) => (c, None),
            Err(e) => (Default::default(), Some(e)),
        };
        let _ = tx.send(AgentMsg::Events { counts, error });
    }
    let ended = Instant::now();
    shared.world.kill_all();
    // After the kill: a task's coverage is read when it is reaped.
    if order.cover {
        let error = shared
            .cover_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let _ = tx.send(AgentMsg::Cover {
            edges: kcov::take_new(),
            pcs: kcov::take_new_pcs(),
            error,
        });
    }
    if order.plant_leak {
        dax::leak_pins(&shared.world);
    }
    dax::release_all(&shared.world);
    crate::init::kmsg::log(DONE_LINE.trim_start_matches(KMSG_PREFIX));
    let timing = RunTiming {
        setup_us: setup.as_micros() as u64,
        snapshot_us: shared.snapshot_us.load(Ordering::Relaxed),
        teardown_us: ended.elapsed().as_micros() as u64,
    };
    let _ = tx.send(AgentMsg::Finished { error, timing });
    drop(tx);
    drop(shared);
    let _ = sender.join();
    Ok(())
}

/// Mounts the tmpfs that holds the places and makes a directory for every
/// place the program names, and the v1 hierarchy's mount point.
fn prepare_places(p: &Program) -> Result<(), String> {
    std::fs::create_dir_all(paths::CG1).map_err(|e| format!("mkdir {}: {e}", paths::CG1))?;
    std::fs::create_dir_all(paths::PLACES).map_err(|e| format!("mkdir {}: {e}", paths::PLACES))?;
    if !crate::init::mounts::is_mounted(paths::PLACES) {
        mount(
            Some("cgstorm"),
            paths::PLACES,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )
        .map_err(|e| format!("mount tmpfs on {}: {e}", paths::PLACES))?;
    }
    for place in p.places() {
        let dir = paths::place(place);
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    Ok(())
}
