//! On small programs (at most 3 lanes of 8 ops), every interleaving
//! (`predict`): no panic, every end state consistent, and one sequential
//! path through lane 0 (outcomes chosen by the input) stays within the
//! prediction. Larger programs are `model`'s (one path each).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cgstorm_workloads::model::{apply, predict, Ctx, ModelError, State, Target};
use cgstorm_workloads::Program;
use libfuzzer_sys::{fuzz_target, Corpus};

const MAX_LANES: usize = 3;
const MAX_OPS: usize = 8;

fuzz_target!(|data: &[u8]| -> Corpus {
    let mut u = Unstructured::new(data);
    let Ok(p) = Program::arbitrary(&mut u) else {
        return Corpus::Reject;
    };
    if p.lanes.len() > MAX_LANES || (0..p.lanes.len()).any(|l| p.lane_ops(l).len() > MAX_OPS) {
        return Corpus::Reject;
    }
    let target = Target::default();
    let pred = match predict(&p, &target) {
        Ok(pred) => pred,
        Err(ModelError::TooLarge { .. }) => return Corpus::Reject,
        Err(e) => panic!("{e}"),
    };
    for states in &pred.barriers {
        assert!(!states.is_empty(), "a step with no possible end state");
        for s in states {
            let bad = s.inconsistencies();
            assert!(bad.is_empty(), "{bad:?}\n{}", p.to_yaml());
        }
    }
    // Walk lane 0's first ops sequentially from the initial state with
    // outcomes chosen by the input; every outcome must be one predict allows.
    let alone = Default::default();
    let ctx = Ctx {
        target: &target,
        racing: &alone,
    };
    let mut s = State::initial(&target);
    for (id, spec) in p.lane_ops(0) {
        if p.lanes.len() > 1
            || matches!(
                spec.op,
                cgstorm_workloads::Op::Repeat(_) | cgstorm_workloads::Op::Barrier
            )
        {
            break;
        }
        let next = apply(&s, &spec.op, ctx);
        assert!(!next.is_empty(), "{id}: no successor");
        let k = u.choose_index(next.len()).unwrap_or(0);
        let (o, ns) = next.into_iter().nth(k).expect("index in range");
        assert!(
            pred.ops[&id].allows(o),
            "{id}: {o} not in prediction {}",
            pred.ops[&id]
        );
        assert!(
            ns.inconsistencies().is_empty(),
            "{:?}",
            ns.inconsistencies()
        );
        s = ns;
    }
    Corpus::Keep
});
