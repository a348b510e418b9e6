//! What an op returns: success, an errno, or (for tasks) death by a signal.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::errno::Errno;
use crate::names::{serde_via_str, NameError};

/// The result of one op as the kernel (or the model) gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// The op succeeded.
    Ok,
    /// The op failed with this errno.
    Err(Errno),
    /// The task the op waited for was killed by a signal (OOM killer, `cgroup.kill`).
    Killed,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Err(e) => e.fmt(f),
            Outcome::Killed => f.write_str("killed"),
        }
    }
}

impl FromStr for Outcome {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match s {
            "ok" => Ok(Outcome::Ok),
            "killed" => Ok(Outcome::Killed),
            _ => s.parse::<Errno>().map(Outcome::Err).map_err(|_| {
                NameError::new(
                    "result",
                    s,
                    "expected ok, killed or an errno name such as EBUSY",
                )
            }),
        }
    }
}
serde_via_str!(Outcome, "ok, killed or an errno name such as EBUSY");

/// A set of outcomes: what the model allows, or what a program says to expect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Outcomes(pub BTreeSet<Outcome>);

impl Outcomes {
    /// The set holding one outcome.
    pub fn one(o: Outcome) -> Outcomes {
        Outcomes(BTreeSet::from([o]))
    }

    /// Whether `o` is in the set.
    pub fn allows(&self, o: Outcome) -> bool {
        self.0.contains(&o)
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v: Vec<String> = self.0.iter().map(Outcome::to_string).collect();
        if v.len() == 1 {
            f.write_str(&v[0])
        } else {
            write!(f, "[{}]", v.join(", "))
        }
    }
}

impl Serialize for Outcomes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.len() == 1 {
            self.0.iter().next().expect("one element").serialize(s)
        } else {
            s.collect_seq(self.0.iter())
        }
    }
}

impl<'de> Deserialize<'de> for Outcomes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Outcomes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ok, killed, an errno name such as EBUSY, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Outcomes, E> {
                v.parse().map(Outcomes::one).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Outcomes, A::Error> {
                let mut set = BTreeSet::new();
                while let Some(o) = seq.next_element::<Outcome>()? {
                    set.insert(o);
                }
                if set.is_empty() {
                    return Err(de::Error::custom("an empty list of expected results"));
                }
                Ok(Outcomes(set))
            }
        }
        d.deserialize_any(V)
    }
}
