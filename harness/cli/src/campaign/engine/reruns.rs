//! The campaign's second runs of a program: a program with new kernel
//! code runs again before it is kept (races make coverage flaky) and is
//! cut while its new code still shows; a new model divergence runs again
//! in fresh VMs, to say how often it comes back.

use std::path::Path;
use std::time::Instant;

use cgstorm_workloads::Program;

use super::{
    confirmed, edge_weight, edges_bytes, op_count, Campaign, Pick, Shown, SMASH, TRIAGE_RUNS,
};
use crate::campaign::pending::{self, Candidate};
use crate::campaign::shrink;
use crate::campaign::slot::Slot;
use crate::campaign::Env;
use crate::findings::title_hash;

impl Campaign {
    /// The waiting program with the most new edges, if re-runs and
    /// minimisation have not taken their share of the campaign
    /// ([`pending::may_confirm`]).
    pub(super) fn next_to_confirm(&self) -> Option<Candidate> {
        let mut st = self.state();
        let elapsed = self.base_ms + self.began.elapsed().as_millis() as u64;
        let c = &st.stats.cover;
        if self.over() || !pending::may_confirm(c.confirm_ms + c.shrink_ms, elapsed) {
            return None;
        }
        st.pending.pop_best()
    }

    /// Runs a program that showed new kernel edges once more, asking for
    /// all its edges: races make coverage flaky, and a program joins the
    /// corpus only for edges that show again. Its weight as a parent grows
    /// with how many did.
    pub(super) fn confirm_edges(
        &self,
        slot: &mut Slot,
        env: &Env,
        cand: &Candidate,
        jobdir: &Path,
    ) {
        let pick = &Pick {
            program: cand.program.clone(),
            duration: cand.duration,
            part: cand.part.clone(),
            keep: true,
            env: cand.env,
        };
        let new_code = &cand.new_code[..];
        let yaml = pick.program.to_yaml();
        slot.afresh = true;
        let began = Instant::now();
        let ran = match slot.run(
            env,
            &pick.program,
            pick.duration,
            jobdir.join("console.log"),
        ) {
            Ok(ran) => ran,
            Err(e) => {
                eprintln!("cgstorm: coverage re-run: {}", crate::run::error::chain(&e));
                return;
            }
        };
        let rerun = Pick {
            program: pick.program.clone(),
            duration: pick.duration,
            part: pick.part.clone(),
            keep: false,
            env: pick.env,
        };
        self.account(env, &rerun, &yaml, &ran, began.elapsed(), false);
        slot.settle(&ran);
        let again = Shown::of(&ran);
        let shown = confirmed(new_code, self.code(&again));
        {
            let mut st = self.state();
            let c = &mut st.stats.cover;
            c.reruns += 1;
            c.flaky += (new_code.len() - shown) as u64;
            c.confirm_ms += began.elapsed().as_millis() as u64;
        }
        let mut kept = Pick {
            program: pick.program.clone(),
            duration: pick.duration,
            part: pick.part.clone(),
            keep: true,
            env: pick.env,
        };
        let mut yaml = yaml;
        let mut again = again;
        if shown > 0 {
            let code: Vec<u32> = new_code
                .iter()
                .copied()
                .filter(|e| self.code(&again).contains(e))
                .collect();
            if let Some((program, last)) = self.shrink_kept(slot, env, pick, &code, jobdir) {
                yaml = program.to_yaml();
                kept.program = program;
                again = last;
            }
        }
        let mut st = self.state();
        if shown > 0 && self.keep(&mut st, &kept, &yaml, edge_weight(self.worth(shown))) {
            st.stats.cover.kept += 1;
            let kept = st.corpus.len() - 1;
            st.smash.extend(std::iter::repeat_n(kept, SMASH));
            // Its edges beside it, for `cgstorm distill`.
            let edges_file = self
                .workdir
                .join("corpus")
                .join(format!("{}.edges", title_hash(&yaml)));
            let _ = crate::findings::write_new(&edges_file, &edges_bytes(&again.edges));
        }
        let _ = st.stats.save(&self.state_file);
    }

    /// Cuts a program about to be kept for `code` (its confirmed new edges,
    /// or PCs in the focus) while they all still show ([`shrink`]), unless
    /// minimisation already took its share of the campaign. The cut
    /// program and the coverage of its last run, or `None` when nothing
    /// could be cut.
    fn shrink_kept(
        &self,
        slot: &mut Slot,
        env: &Env,
        pick: &Pick,
        code: &[u32],
        jobdir: &Path,
    ) -> Option<(Program, Shown)> {
        {
            let st = self.state();
            let elapsed = self.base_ms + self.began.elapsed().as_millis() as u64;
            let c = &st.stats.cover;
            if !pending::may_confirm(c.confirm_ms + c.shrink_ms, elapsed) {
                return None;
            }
        }
        let began = Instant::now();
        let run = |p: &Program| {
            if self.over() {
                return None;
            }
            slot.afresh = true;
            let t = Instant::now();
            let ran = match slot.run(env, p, pick.duration, jobdir.join("console.log")) {
                Ok(ran) => ran,
                Err(e) => {
                    eprintln!(
                        "cgstorm: minimising by edges: {}",
                        crate::run::error::chain(&e)
                    );
                    return None;
                }
            };
            let cut = Pick {
                program: p.clone(),
                duration: pick.duration,
                part: pick.part.clone(),
                keep: false,
                env: pick.env,
            };
            self.account(env, &cut, &p.to_yaml(), &ran, t.elapsed(), false);
            slot.settle(&ran);
            Some(Shown::of(&ran))
        };
        let s = shrink::shrink(&pick.program, code, shrink::RUNS, run, |s| self.code(s));
        let mut st = self.state();
        let c = &mut st.stats.cover;
        c.shrink_runs += s.runs as u64;
        c.shrink_ms += began.elapsed().as_millis() as u64;
        let last = s.last?;
        c.shrunk += 1;
        c.ops_cut += op_count(&pick.program).saturating_sub(op_count(&s.program)) as u64;
        Some((s.program, last))
    }

    /// Runs the program of a new model divergence again, alone, in
    /// [`TRIAGE_RUNS`] fresh VMs (restored from the snapshot, so cheaply),
    /// and records how often the same divergence came back: a divergence
    /// that always comes back is a model or agent error to fix at once; a
    /// one-off may be a race the model does not know, or a real kernel
    /// race. Neither is dropped. Every run is booked like any other (its
    /// own findings are stored).
    pub(super) fn triage(
        &self,
        slot: &mut Slot,
        env: &Env,
        pick: &Pick,
        title: &str,
        fdir: &Path,
        jobdir: &Path,
    ) {
        let yaml = pick.program.to_yaml();
        let (mut runs, mut shown) = (0, 0);
        for _ in 0..TRIAGE_RUNS {
            if self.over() {
                break;
            }
            slot.drop_vm();
            let began = Instant::now();
            match slot.run(
                env,
                &pick.program,
                pick.duration,
                jobdir.join("console.log"),
            ) {
                Ok(ran) => {
                    runs += 1;
                    if ran.all_findings().any(|f| f.title == title) {
                        shown += 1;
                    }
                    self.account(env, pick, &yaml, &ran, began.elapsed(), true);
                    slot.settle(&ran);
                }
                Err(e) => {
                    eprintln!("cgstorm: triage run: {}", crate::run::error::chain(&e));
                    break;
                }
            }
        }
        // What the triage runs left is not the next program's business.
        slot.drop_vm();
        let rate = format!("{shown}/{runs}");
        let _ = crate::findings::write_new(&fdir.join("triage"), format!("{rate}\n").as_bytes());
        eprintln!(
            "cgstorm: triage: `{title}` came back in {rate} runs of its program alone in fresh VMs ({})",
            if runs > 0 && shown == runs {
                "reproducible"
            } else if shown == 0 {
                "a one-off so far"
            } else {
                "flaky"
            }
        );
        let mut st = self.state();
        if let Some(t) = st.stats.findings.get_mut(title) {
            t.triage = Some(rate);
        }
        let _ = st.stats.save(&self.state_file);
    }
}
