//! cgstorm's op markers: before every op the agent writes
//! `cgstorm: lane <lane> op <index> <text>` to /dev/kmsg, so each report can
//! name the op that ran just before it.

use serde::{Deserialize, Serialize};

/// The last op marker printed before a report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpMarker {
    /// The agent's lane (one sequential stream of ops).
    pub lane: u32,
    /// The op's index within its lane's program.
    pub op: u32,
    /// The rest of the marker line, e.g. `mkdir a/b`; may be empty.
    pub text: String,
}

impl OpMarker {
    /// Parses a console message (prefix already stripped) as a marker.
    pub(crate) fn parse(msg: &str) -> Option<OpMarker> {
        let rest = msg.trim_start().strip_prefix("cgstorm: lane ")?;
        let (lane, rest) = number(rest)?;
        let rest = rest.strip_prefix(" op ")?;
        let (op, rest) = number(rest)?;
        let text = match rest {
            "" => "",
            r => r.strip_prefix(' ')?,
        };
        Some(OpMarker {
            lane,
            op,
            text: text.trim_end().to_owned(),
        })
    }
}

fn number(s: &str) -> Option<(u32, &str)> {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    let n = s[..end].parse().ok()?;
    Some((n, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers() {
        let m = OpMarker::parse("cgstorm: lane 2 op 17 mkdir a/b").unwrap();
        assert_eq!(
            m,
            OpMarker {
                lane: 2,
                op: 17,
                text: "mkdir a/b".into()
            }
        );
        assert_eq!(OpMarker::parse("cgstorm: lane 0 op 3").unwrap().text, "");
    }

    #[test]
    fn rejects_look_alikes() {
        for s in [
            "cgstorm: lane x op 1 a",
            "cgstorm: lane 1 op 2x",
            "cgstorm: lane 99999999999 op 1 a",
            "cgstorm: started",
            "not cgstorm: lane 1 op 1 a",
        ] {
            assert_eq!(OpMarker::parse(s), None, "{s}");
        }
    }
}
