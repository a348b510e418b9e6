//! The names and quantities programs use: cgroup paths, files, devices, sizes, durations.
//!
//! Each type parses from and prints to the exact text a program file holds, so a
//! program survives a YAML round trip unchanged.

use std::fmt;
use std::str::FromStr;

/// Why a name or quantity in a program is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{text}`: {why}")]
pub struct NameError {
    what: &'static str,
    text: String,
    why: &'static str,
}

impl NameError {
    /// A malformed `what` written as `text`, and why it is wrong.
    pub fn new(what: &'static str, text: &str, why: &'static str) -> NameError {
        NameError {
            what,
            text: text.to_string(),
            why,
        }
    }
}

fn bad(what: &'static str, text: &str, why: &'static str) -> NameError {
    NameError::new(what, text, why)
}

/// Implements serde for a type through its `Display` and `FromStr`.
macro_rules! serde_via_str {
    ($ty:ty, $expecting:expr) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        v.to_string().parse().map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use serde_via_str;

/// The longest name component a program may use.
pub const MAX_NAME_LEN: usize = 32;
/// The deepest cgroup path a program may use.
pub const MAX_CGROUP_DEPTH: usize = 6;

fn check_word(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(bad(what, s, "empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(bad(what, s, "longer than 32 characters"));
    }
    let first = s.as_bytes()[0];
    if !first.is_ascii_lowercase() && !first.is_ascii_digit() {
        return Err(bad(what, s, "must start with a lowercase letter or digit"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(bad(what, s, "only a-z, 0-9, '_' and '-' are allowed"));
    }
    Ok(())
}

/// A short identifier: lane, task, fd, mapping, pin and place names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        check_word("name", s)?;
        Ok(Name(s.to_string()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serde_via_str!(Name, "a name of a-z, 0-9, '_' and '-'");

/// Which cgroup hierarchy a cgroup lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hier {
    /// The unified cgroup v2 hierarchy (mounted by the agent at boot).
    V2,
    /// The cgroup v1 hierarchy with the memory controller (mounted by the `v1_mount` op).
    V1,
}

/// A cgroup: `/` or `a/b` in cgroup v2, `v1:/` or `v1:a/b` in the v1 memory hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cg {
    /// The hierarchy.
    pub hier: Hier,
    /// Path components below the hierarchy's root; empty for the root.
    pub parts: Vec<String>,
}

impl Cg {
    /// The root of a hierarchy.
    pub fn root(hier: Hier) -> Cg {
        Cg {
            hier,
            parts: Vec::new(),
        }
    }

    /// Whether this is the hierarchy's root.
    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// The parent cgroup, `None` for the root.
    pub fn parent(&self) -> Option<Cg> {
        let (_, rest) = self.parts.split_last()?;
        Some(Cg {
            hier: self.hier,
            parts: rest.to_vec(),
        })
    }

    /// A child cgroup.
    pub fn child(&self, name: &str) -> Cg {
        let mut parts = self.parts.clone();
        parts.push(name.to_string());
        Cg {
            hier: self.hier,
            parts,
        }
    }

    /// Whether `self` is `other` or below it.
    pub fn is_within(&self, other: &Cg) -> bool {
        self.hier == other.hier && self.parts.starts_with(&other.parts)
    }

    /// The path below the hierarchy root, `""` for the root.
    pub fn rel_path(&self) -> String {
        self.parts.join("/")
    }
}

impl FromStr for Cg {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (hier, path) = match s.strip_prefix("v1:") {
            Some(rest) => (Hier::V1, rest),
            None => (Hier::V2, s),
        };
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            return Ok(Cg::root(hier));
        }
        let parts: Vec<String> = path.split('/').map(str::to_string).collect();
        if parts.len() > MAX_CGROUP_DEPTH {
            return Err(bad("cgroup", s, "deeper than 6 levels"));
        }
        for p in &parts {
            check_word("cgroup", p).map_err(|_| {
                bad(
                    "cgroup",
                    s,
                    "each component is a-z, 0-9, '_' or '-' (write `v1:a/b` for the v1 hierarchy)",
                )
            })?;
        }
        Ok(Cg { hier, parts })
    }
}

impl fmt::Display for Cg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hier == Hier::V1 {
            f.write_str("v1:")?;
        }
        if self.parts.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.parts.join("/"))
        }
    }
}
serde_via_str!(Cg, "a cgroup path such as `/`, `a/b` or `v1:a`");

/// A file: `place/name`, where a place is a directory the agent makes for
/// mounts (`m0`) or scratch files (`tmp`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePath {
    /// The directory (a mount point name).
    pub place: Name,
    /// The file's name in it.
    pub name: Name,
}

impl FromStr for FilePath {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (place, name) = s
            .split_once('/')
            .ok_or_else(|| bad("file", s, "expected `place/name`, e.g. `m0/big`"))?;
        Ok(FilePath {
            place: place.parse().map_err(|_| bad("file", s, "bad place"))?,
            name: name.parse().map_err(|_| bad("file", s, "bad file name"))?,
        })
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.place, self.name)
    }
}
serde_via_str!(FilePath, "a file such as `m0/big`");

/// The kind of block device a [`Dev`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DevKind {
    /// A virtio-blk disk the host attaches (`/dev/vda`, …).
    Scratch,
    /// Persistent memory (`/dev/pmem0`), DAX capable.
    Pmem,
    /// A loop device the program sets up with `losetup`.
    Loop,
}

/// A block device: `scratch0`, `pmem0`, `loop1`, …
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dev {
    /// What kind of device.
    pub kind: DevKind,
    /// Its index among devices of that kind (0..=7).
    pub index: u8,
}

impl FromStr for Dev {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let (kind, rest) = if let Some(r) = s.strip_prefix("scratch") {
            (DevKind::Scratch, r)
        } else if let Some(r) = s.strip_prefix("pmem") {
            (DevKind::Pmem, r)
        } else if let Some(r) = s.strip_prefix("loop") {
            (DevKind::Loop, r)
        } else {
            return Err(bad("device", s, "expected scratchN, pmemN or loopN"));
        };
        match rest.parse::<u8>() {
            Ok(index) if index < 8 && rest.len() == 1 => Ok(Dev { kind, index }),
            _ => Err(bad("device", s, "the index is one digit, 0 to 7")),
        }
    }
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            DevKind::Scratch => "scratch",
            DevKind::Pmem => "pmem",
            DevKind::Loop => "loop",
        };
        write!(f, "{k}{}", self.index)
    }
}
serde_via_str!(Dev, "a device such as `scratch0`, `pmem0` or `loop0`");

/// A byte count, written `4096`, `64K`, `256M` or `1G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

const UNITS: [(char, u64); 4] = [
    ('T', 1 << 40),
    ('G', 1 << 30),
    ('M', 1 << 20),
    ('K', 1 << 10),
];

impl FromStr for Size {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let t = s.trim();
        let (digits, mult) = match t.chars().last() {
            Some(c) if c.is_ascii_alphabetic() => {
                let up = c.to_ascii_uppercase();
                let m = UNITS
                    .iter()
                    .find(|(u, _)| *u == up)
                    .map(|(_, m)| *m)
                    .ok_or_else(|| bad("size", s, "unit must be K, M, G or T"))?;
                (&t[..t.len() - 1], m)
            }
            _ => (t, 1),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| bad("size", s, "expected a number with an optional K/M/G/T"))?;
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| bad("size", s, "too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (u, m) in UNITS {
                if self.0.is_multiple_of(m) {
                    return write!(f, "{}{u}", self.0 / m);
                }
            }
        }
        write!(f, "{}", self.0)
    }
}
serde_via_str!(Size, "a size such as 4096, 64K or 256M");

/// A memory limit: a size or `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// No limit.
    Max,
    /// A limit in bytes.
    Bytes(Size),
}

impl FromStr for Limit {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        if s == "max" {
            Ok(Limit::Max)
        } else {
            s.parse().map(Limit::Bytes)
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Max => f.write_str("max"),
            Limit::Bytes(b) => b.fmt(f),
        }
    }
}
serde_via_str!(Limit, "a limit such as `max` or `64M`");

/// A duration in milliseconds, written `250ms`, `10s`, `5m` or `1h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl FromStr for Millis {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let t = s.trim();
        let (digits, mult) = if let Some(d) = t.strip_suffix("ms") {
            (d, 1)
        } else if let Some(d) = t.strip_suffix('s') {
            (d, 1000)
        } else if let Some(d) = t.strip_suffix('m') {
            (d, 60_000)
        } else if let Some(d) = t.strip_suffix('h') {
            (d, 3_600_000)
        } else {
            (t, 1)
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| bad("duration", s, "expected e.g. 250ms, 10s, 5m or 1h"))?;
        n.checked_mul(mult)
            .map(Millis)
            .ok_or_else(|| bad("duration", s, "too large"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms != 0 && ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}
serde_via_str!(Millis, "a duration such as 250ms, 10s or 5m");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_parse_and_print() {
        let c: Cg = "a/b".parse().unwrap();
        assert_eq!(c.hier, Hier::V2);
        assert_eq!(c.parts, vec!["a", "b"]);
        assert_eq!(c.to_string(), "a/b");
        assert_eq!(c.parent().unwrap().to_string(), "a");
        assert_eq!(c.parent().unwrap().parent().unwrap().to_string(), "/");
        let v: Cg = "v1:x".parse().unwrap();
        assert_eq!(v.hier, Hier::V1);
        assert_eq!(v.to_string(), "v1:x");
        assert_eq!("v1:/".parse::<Cg>().unwrap(), Cg::root(Hier::V1));
        assert!("a/../b".parse::<Cg>().is_err());
        assert!("A".parse::<Cg>().is_err());
        assert!("a/b/c/d/e/f/g".parse::<Cg>().is_err());
        assert!(c.is_within(&"a".parse().unwrap()));
        assert!(!c.is_within(&"v1:a".parse().unwrap()));
    }

    #[test]
    fn sizes_round_trip() {
        assert_eq!("256M".parse::<Size>().unwrap(), Size(256 << 20));
        assert_eq!("4096".parse::<Size>().unwrap().to_string(), "4K");
        assert_eq!(Size(1000).to_string(), "1000");
        assert_eq!(Size(0).to_string(), "0");
        assert!("12Q".parse::<Size>().is_err());
        assert!("99999999999T".parse::<Size>().is_err());
        for n in [0u64, 1, 1023, 1024, 3 << 20, u64::MAX] {
            assert_eq!(Size(n).to_string().parse::<Size>().unwrap(), Size(n));
        }
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!("10s".parse::<Millis>().unwrap(), Millis(10_000));
        assert_eq!("2m".parse::<Millis>().unwrap().to_string(), "2m");
        assert_eq!(Millis(1500).to_string(), "1500ms");
        assert_eq!(Millis(0).to_string(), "0ms");
        for n in [0u64, 1, 999, 1000, 60_000, 3_600_000, 5_400_001] {
            assert_eq!(Millis(n).to_string().parse::<Millis>().unwrap(), Millis(n));
        }
    }

    #[test]
    fn devices_and_files() {
        assert_eq!(
            "pmem0".parse::<Dev>().unwrap(),
            Dev {
                kind: DevKind::Pmem,
                index: 0
            }
        );
        assert!("loop12".parse::<Dev>().is_err());
        assert!("sda".parse::<Dev>().is_err());
        let f: FilePath = "m0/big".parse().unwrap();
        assert_eq!(f.place.as_str(), "m0");
        assert!("big".parse::<FilePath>().is_err());
        assert!("m0/a/b".parse::<FilePath>().is_err());
    }
}
