//! Assembling the model's [`Trace`] from the agent's messages: each op event
//! belongs to the step in progress when it arrives (the agent sends a
//! step's `Barrier` only after every lane reached it, so a lane's events of
//! step k all come before `Barrier{step: k}`).

use cgstorm_workloads::model::{OpEvent, Snapshot, StepTrace, Trace};

/// A trace being received.
#[derive(Debug, Clone)]
pub struct TraceBuilder {
    lanes: usize,
    trace: Trace,
    /// The step whose barrier has not come yet.
    current: usize,
    events: usize,
    /// Messages that did not fit the program.
    pub warnings: Vec<String>,
}

impl TraceBuilder {
    /// An empty trace for a program with `lanes` lanes.
    pub fn new(lanes: usize) -> TraceBuilder {
        TraceBuilder {
            lanes,
            trace: Trace::default(),
            current: 0,
            events: 0,
            warnings: Vec::new(),
        }
    }

    fn step(&mut self, i: usize) -> &mut StepTrace {
        while self.trace.steps.len() <= i {
            self.trace.steps.push(StepTrace {
                lanes: vec![Vec::new(); self.lanes],
                snapshot: None,
            });
        }
        &mut self.trace.steps[i]
    }

    /// Adds a batch of op results to the current step.
    pub fn ops(&mut self, events: Vec<OpEvent>) {
        let lanes = self.lanes;
        let cur = self.current;
        for ev in events {
            if ev.id.lane >= lanes {
                self.warnings.push(format!(
                    "the agent reported {}, but the program has {lanes} lanes",
                    ev.id
                ));
                continue;
            }
            self.events += 1;
            self.step(cur).lanes[ev.id.lane].push(ev);
        }
    }

    /// Records the barrier that ends `step`.
    pub fn barrier(&mut self, step: usize, snapshot: Snapshot) {
        if step != self.current {
            self.warnings.push(format!(
                "the agent reported barrier {step} while step {} was running",
                self.current
            ));
        }
        self.step(step).snapshot = Some(snapshot);
        self.current = self.current.max(step + 1);
    }

    /// How many steps ended with a barrier.
    pub fn completed(&self) -> usize {
        self.trace
            .steps
            .iter()
            .take_while(|s| s.snapshot.is_some())
            .count()
    }

    /// Ops reported so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// The whole trace, including a step still running.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The steps that ended with a barrier (what can be checked when the
    /// run was cut short: a step in progress may have an op that took
    /// effect but never returned).
    pub fn completed_trace(&self) -> Trace {
        Trace {
            steps: self.trace.steps[..self.completed()].to_vec(),
        }
    }

    /// Every event with its step, in arrival order per lane.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &OpEvent)> {
        self.trace
            .steps
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.lanes.iter().flatten().map(move |e| (i, e)))
    }
}

#[cfg(test)]
mod tests {
    use cgstorm_workloads::{OpId, Outcome};

    use super::*;

    fn ev(lane: usize, op: usize) -> OpEvent {
        OpEvent {
            id: OpId { lane, op },
            outcome: Outcome::Ok,
            start_ns: 1,
            end_ns: 2,
            injected: false,
        }
    }

    #[test]
    fn events_go_to_the_step_before_the_next_barrier() {
        let mut t = TraceBuilder::new(2);
        t.ops(vec![ev(0, 0), ev(1, 0)]);
        t.ops(vec![ev(0, 1)]);
        t.barrier(0, Snapshot::default());
        t.ops(vec![ev(1, 2)]);
        assert_eq!(t.completed(), 1);
        assert_eq!(t.events(), 4);
        let tr = t.trace();
        assert_eq!(tr.steps.len(), 2);
        assert_eq!(tr.steps[0].lanes[0].len(), 2);
        assert_eq!(tr.steps[1].lanes[1], [ev(1, 2)]);
        assert_eq!(t.completed_trace().steps.len(), 1);
        assert_eq!(t.iter().filter(|(s, _)| *s == 1).count(), 1);
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn strays_are_warned_about() {
        let mut t = TraceBuilder::new(1);
        t.ops(vec![ev(3, 0)]);
        t.barrier(2, Snapshot::default());
        assert_eq!(t.warnings.len(), 2);
        assert_eq!(t.events(), 0);
        assert_eq!(t.completed(), 0);
        assert_eq!(t.trace().steps.len(), 3);
    }
}
