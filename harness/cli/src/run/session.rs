//! The run loop: send the program to the agent, then read its frames and the
//! console, alternating with short timeouts, until the program finishes, the
//! agent hangs, the VM dies or the user interrupts. A finished run is powered
//! off here (its shutdown may still print reports); any other VM is left
//! running for the caller, who saves the evidence before killing it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cgstorm_proto::contract::DONE_LINE;
use cgstorm_proto::proto::{self, AgentMsg, HostMsg, RunOrder, RunTiming};
use cgstorm_vm::inbox::{Heard, Inbox};
use cgstorm_vm::{boot, ConsoleEvent, Diagnosis, Vm};
use cgstorm_workloads::OpId;

use super::console::ConsoleWatch;
use super::limits::Limits;
use super::trace::TraceBuilder;

/// A lane the agent watchdog reported stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The op it is stuck in.
    pub op: OpId,
    /// The op as text.
    pub text: String,
    /// How long it had been running when reported, in milliseconds.
    pub stalled_ms: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The agent finished the program (`error`: it stopped early).
    Finished {
        /// Why the agent stopped early, if it did.
        error: Option<String>,
    },
    /// The agent stopped making progress.
    Hang {
        /// What was seen.
        reason: String,
        /// The stall report of the stuck lane, if the watchdog sent one.
        stall: Option<Stall>,
    },
    /// The VM went away before the program finished.
    VmExited {
        /// How it ended.
        status: String,
    },
    /// The agent gave up.
    AgentFatal {
        /// Its message.
        message: String,
    },
    /// The agent channel broke or carried garbage.
    Channel {
        /// What went wrong.
        message: String,
    },
    /// The user interrupted the run.
    Interrupted,
}

/// Everything a run brought back.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub end: End,
    /// The ops and barrier snapshots.
    pub trace: TraceBuilder,
    /// Every stall report, in order.
    pub stalls: Vec<Stall>,
    /// From sending the program to the end.
    pub elapsed: Duration,
    /// The agent's own part of `elapsed` (setup, barrier snapshots,
    /// teardown), as its `Finished` said; zero when it did not finish.
    pub agent: RunTiming,
    /// After the end, waiting for the console to settle (and, without
    /// `keep_alive`, for the guest to power off).
    pub settle: Duration,
    /// Whether the VM is down already (powered off or exited).
    pub vm_gone: bool,
    /// The kernel coverage the agent sent: new edges, or why it had none.
    pub cover: Option<Result<Vec<u32>, String>>,
    /// The PCs the agent ran that it had not sent before (for `cgstorm
    /// cover`).
    pub pcs: Vec<u32>,
    /// The tracepoint events the agent counted, or why it could not.
    pub events: Option<Result<BTreeMap<String, u64>, String>>,
    /// A [`HostMsg::Reset`] went to the agent after the end
    /// ([`Limits::reset_early`]): its answer is on the channel to come.
    pub reset_sent: bool,
    /// Things that went wrong without ending the run.
    pub warnings: Vec<String>,
}

/// What stops the loop.
enum Step {
    Continue,
    Stop(End),
}

struct Session<'a> {
    vm: &'a mut dyn Vm,
    console: &'a mut ConsoleWatch,
    limits: &'a Limits,
    inbox: Inbox,
    trace: TraceBuilder,
    stalls: Vec<Stall>,
    /// Unanswered stall reports per lane, with when they came.
    stuck: BTreeMap<usize, (Instant, Stall)>,
    /// The ops the agent said were working past half the stall limit.
    working: BTreeSet<OpId>,
    /// The program's lanes and steps.
    shape: (usize, usize),
    started: bool,
    warnings: Vec<String>,
    last_frame: Instant,
    /// The agent's end line ([`DONE_LINE`]) was on the console.
    done_seen: bool,
    agent: RunTiming,
    reset_sent: bool,
    cover: Option<Result<Vec<u32>, String>>,
    pcs: Vec<u32>,
    events: Option<Result<BTreeMap<String, u64>, String>>,
}

/// Runs `order` on the agent of `vm`, feeding the console to `console`.
/// `shape` is the program's lanes and steps; `stop` says whether the user
/// interrupted.
pub fn run(
    vm: &mut dyn Vm,
    order: &RunOrder,
    shape: (usize, usize),
    limits: &Limits,
    stop: &dyn Fn() -> bool,
    console: &mut ConsoleWatch,
) -> Outcome {
    let begin = Instant::now();
    let mut s = Session {
        vm,
        console,
        limits,
        inbox: Inbox::new(),
        trace: TraceBuilder::new(shape.0),
        stalls: Vec::new(),
        stuck: BTreeMap::new(),
        working: BTreeSet::new(),
        shape,
        started: false,
        warnings: Vec::new(),
        last_frame: begin,
        done_seen: false,
        agent: RunTiming::default(),
        reset_sent: false,
        cover: None,
        pcs: Vec::new(),
        events: None,
    };
    let end = match proto::write_frame(s.vm.agent(), &HostMsg::Run(order.clone())) {
        Ok(()) => s.wait(begin, stop),
        Err(e) => End::Channel {
            message: format!("cannot send the program: {e}"),
        },
    };
    let elapsed = begin.elapsed();
    let vm_gone = s.after(&end);
    let settle = begin.elapsed() - elapsed;
    if !s.started && !matches!(end, End::Channel { .. }) {
        s.warnings
            .push("the agent never confirmed that it started the program".into());
    }
    s.warnings.append(&mut s.trace.warnings);
    Outcome {
        end,
        trace: s.trace,
        stalls: s.stalls,
        elapsed,
        agent: s.agent,
        settle,
        vm_gone,
        reset_sent: s.reset_sent,
        cover: s.cover,
        pcs: s.pcs,
        events: s.events,
        warnings: s.warnings,
    }
}

impl Session<'_> {
    /// The loop proper: returns how the run ended.
    fn wait(&mut self, begin: Instant, stop: &dyn Fn() -> bool) -> End {
        loop {
            self.drain_console();
            if let Step::Stop(end) = self.take_frames() {
                return end;
            }
            if stop() {
                return End::Interrupted;
            }
            if let Some(status) = self.vm.exit_status() {
                return self.vm_exited(status);
            }
            if let Some(end) = self.overdue(begin) {
                return end;
            }
            match self.inbox.listen(self.vm, self.limits.poll) {
                Ok(Heard::Bytes | Heard::Quiet) => {}
                Ok(Heard::Closed { exit: Some(status) }) => return self.vm_exited(status),
                // QEMU is going away, slowly: the next turn looks again,
                // until the run is overdue.
                Ok(Heard::Closed { exit: None }) => {}
                Err(e) => {
                    return End::Channel {
                        message: format!("reading the agent channel failed: {e}"),
                    }
                }
            }
        }
    }

    /// Handles every complete frame in the buffer.
    fn take_frames(&mut self) -> Step {
        loop {
            let msg = match self.inbox.take() {
                Ok(Some(m)) => m,
                Ok(None) => return Step::Continue,
                Err(e) => {
                    return Step::Stop(End::Channel {
                        message: format!("bad frame from the agent: {}", chain(&e)),
                    })
                }
            };
            self.last_frame = Instant::now();
            match msg {
                AgentMsg::Started { lanes, steps } => {
                    self.started = true;
                    if (lanes, steps) != self.shape {
                        self.warnings.push(format!(
                            "the agent runs {lanes} lanes in {steps} steps, the program has {} in {}",
                            self.shape.0, self.shape.1
                        ));
                    }
                }
                AgentMsg::Ops { events } => {
                    for ev in &events {
                        self.stuck.remove(&ev.id.lane);
                    }
                    self.trace.ops(events);
                }
                AgentMsg::Barrier { step, snapshot } => {
                    self.stuck.clear();
                    self.trace.barrier(step, snapshot);
                }
                AgentMsg::Stall {
                    op,
                    text,
                    stalled_ms,
                } => {
                    let stall = Stall {
                        op,
                        text,
                        stalled_ms,
                    };
                    self.stalls.push(stall.clone());
                    self.stuck.insert(op.lane, (Instant::now(), stall));
                }
                AgentMsg::Working { op, text, ms } => {
                    // A long op that is still reading or writing: heard, so
                    // not silent; said once.
                    if self.working.insert(op) {
                        self.warnings.push(format!(
                            "{op} `{text}` ran past {ms} ms, its I/O still growing: \
                             the watchdog let it work"
                        ));
                    }
                }
                AgentMsg::Cover { edges, pcs, error } => {
                    self.pcs = pcs;
                    self.cover = Some(match error {
                        None => Ok(edges),
                        Some(e) => Err(e),
                    });
                }
                AgentMsg::Events { counts, error } => {
                    self.events = Some(match error {
                        None => Ok(counts),
                        Some(e) => Err(e),
                    });
                }
                AgentMsg::Finished { error, timing } => {
                    self.agent = timing;
                    return Step::Stop(End::Finished { error });
                }
                AgentMsg::Fatal { message } => return Step::Stop(End::AgentFatal { message }),
                AgentMsg::Hello(_)
                | AgentMsg::BenchResult { .. }
                | AgentMsg::ResetDone { .. }
                | AgentMsg::ShellDone { .. }
                | AgentMsg::Symbols { .. }
                | AgentMsg::LeakScanned { .. } => self
                    .warnings
                    .push("the agent sent a message that does not belong in a run".into()),
            }
        }
    }

    /// A hang, if a bound has passed.
    fn overdue(&self, begin: Instant) -> Option<End> {
        let l = self.limits;
        if let Some((since, stall)) = self.stuck.values().min_by_key(|(t, _)| *t) {
            if since.elapsed() > l.stall_grace {
                return Some(End::Hang {
                    reason: format!(
                        "{} `{}` was stuck for {} ms and then made no progress for {:?}",
                        stall.op, stall.text, stall.stalled_ms, l.stall_grace
                    ),
                    stall: Some(stall.clone()),
                });
            }
        }
        if self.last_frame.elapsed() > l.silence {
            return Some(End::Hang {
                reason: format!("the agent sent nothing for {:?}", l.silence),
                stall: None,
            });
        }
        if begin.elapsed() > l.deadline {
            return Some(End::Hang {
                reason: format!("the program did not finish within {:?}", l.deadline),
                stall: self.stuck.values().next().map(|(_, s)| s.clone()),
            });
        }
        None
    }

    /// The VM is gone: take what is left on the channel and the console.
    fn vm_exited(&mut self, status: String) -> End {
        self.inbox.drain(self.vm, self.limits.poll);
        self.drain_until_closed(self.limits.settle_max);
        match self.take_frames() {
            Step::Stop(end @ End::Finished { .. }) => end,
            _ => End::VmExited { status },
        }
    }

    /// Takes the console lines already there.
    fn drain_console(&mut self) {
        while let ConsoleEvent::Line(l) = self.vm.console_line(Duration::ZERO) {
            self.feed(&l);
        }
    }

    /// Takes console lines until it closes or `max` passed.
    fn drain_until_closed(&mut self, max: Duration) {
        let until = Instant::now() + max;
        while Instant::now() < until {
            match self.vm.console_line(Duration::from_millis(50)) {
                ConsoleEvent::Line(l) => self.feed(&l),
                ConsoleEvent::Closed => return,
                ConsoleEvent::Timeout => {}
            }
        }
    }

    /// Takes console lines until it has been quiet for `quiet`, or `max` passed.
    fn settle(&mut self, quiet: Duration, max: Duration) {
        let until = Instant::now() + max;
        let mut last = Instant::now();
        loop {
            let now = Instant::now();
            if now >= until || now.duration_since(last) >= quiet {
                return;
            }
            let wait = (until - now).min(quiet - now.duration_since(last));
            match self.vm.console_line(wait) {
                ConsoleEvent::Line(l) => {
                    self.feed(&l);
                    last = Instant::now();
                }
                ConsoleEvent::Closed => return,
                ConsoleEvent::Timeout => {}
            }
        }
    }

    /// Hands a console line to the watch, noting the agent's end line.
    fn feed(&mut self, line: &str) {
        if line.contains(DONE_LINE) {
            self.done_seen = true;
        }
        self.console.line(line);
    }

    /// Reads the console until the agent's end line has been seen (it may
    /// have come while the run was still being read), or `max`.
    fn settle_until_done(&mut self, max: Duration) {
        let until = Instant::now() + max;
        while !self.done_seen {
            let now = Instant::now();
            if now >= until {
                self.warnings.push(format!(
                    "the console did not show `{DONE_LINE}` within {max:?} of the program's end"
                ));
                return;
            }
            match self.vm.console_line(until - now) {
                ConsoleEvent::Line(l) => self.feed(&l),
                ConsoleEvent::Closed => return,
                ConsoleEvent::Timeout => {}
            }
        }
    }

    /// Collects the evidence after the end; powers a finished guest off.
    /// Returns whether the VM is down.
    fn after(&mut self, end: &End) -> bool {
        let l = self.limits;
        match end {
            End::Finished { .. } => {
                if self.vm.exit_status().is_some() {
                    self.drain_until_closed(l.settle_max);
                    return true;
                }
                if l.keep_alive {
                    // Everything the kernel printed during the program is
                    // on the console before the agent's end line; what
                    // comes after it is a report still printing (it keeps
                    // the console busy) or one the reset's watch catches.
                    self.settle_until_done(l.settle_max);
                    if l.reset_early
                        && matches!(end, End::Finished { error: None })
                        && self.console.clean_so_far()
                    {
                        // The guest resets while the host checks. No report
                        // is printing: one that starts from here on is read
                        // whole by the reset's console watch, so the console
                        // need not settle (a quiet wait of 100 ms took 17 %
                        // of a Debian campaign's wall time, with the reset's
                        // lines keeping it busy).
                        match proto::write_frame(self.vm.agent(), &HostMsg::Reset) {
                            Ok(()) => {
                                self.reset_sent = true;
                                return self.vm.exit_status().is_some();
                            }
                            Err(e) => self.warnings.push(format!("cannot ask for the reset: {e}")),
                        }
                    }
                    self.settle(super::limits::KEEP_ALIVE_QUIET, l.settle_max);
                    return self.vm.exit_status().is_some();
                }
                self.settle(l.settle_quiet, l.settle_max);
                if let Err(e) = boot::shutdown(self.vm, l.shutdown) {
                    self.warnings.push(chain(&e));
                }
                self.drain_until_closed(l.settle_max);
                true
            }
            End::VmExited { .. } => true,
            End::Hang { stall, .. } => {
                if stall.is_none() {
                    // The watchdog did not dump the tasks: ask the kernel.
                    for key in ['w', 't'] {
                        if let Err(e) = self.vm.diagnose(Diagnosis::Sysrq(key)) {
                            self.warnings
                                .push(format!("cannot send sysrq {key}: {}", chain(&e)));
                        }
                    }
                }
                self.settle(l.settle_quiet * 3, l.hang_settle_max);
                self.vm.exit_status().is_some()
            }
            End::AgentFatal { .. } | End::Channel { .. } | End::Interrupted => {
                self.settle(l.settle_quiet, l.settle_max);
                self.vm.exit_status().is_some()
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    super::error::chain(e)
}
