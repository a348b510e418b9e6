//! Kernel command line parsing and the per-boot token.
//!
//! The host puts `cgstorm.token=<hex>` on the command line of every VM it boots;
//! the agent refuses to run without it, and echoes it in its hello so the host
//! knows the message comes from the VM it just started.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::contract::TOKEN_PARAM;

/// Shortest token accepted, in hex digits (64 bits).
pub const TOKEN_MIN_HEX: usize = 16;
/// Longest token accepted, in hex digits (256 bits).
pub const TOKEN_MAX_HEX: usize = 64;

/// Splits a kernel command line into `(key, value)` pairs the way the kernel's
/// `next_arg` does: whitespace separated, double quotes group, `key` alone has
/// no value. Parsing stops at a lone `--` (what follows is for init).
pub fn params(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = cmdline.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut arg = String::new();
        let mut in_quote = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !in_quote {
                break;
            }
            chars.next();
            if c == '"' {
                in_quote = !in_quote;
            } else {
                arg.push(c);
            }
        }
        if arg == "--" {
            break;
        }
        match arg.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((arg, None)),
        }
    }
    out
}

/// The value of the last `key=value` parameter named `key`, if any.
pub fn param(cmdline: &str, key: &str) -> Option<String> {
    params(cmdline)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v)
}

/// Whether the command line carries a parameter whose name starts with `prefix`.
pub fn has_param_prefix(cmdline: &str, prefix: &str) -> bool {
    params(cmdline).iter().any(|(k, _)| k.starts_with(prefix))
}

/// A per-boot token: lowercase hex, [`TOKEN_MIN_HEX`]..=[`TOKEN_MAX_HEX`] digits.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Token(String);

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The command line has no `cgstorm.token=` parameter.
    #[error("no {TOKEN_PARAM}=<hex> on the kernel command line")]
    Missing,
    /// The token has the wrong length.
    #[error("token has {0} hex digits, want {TOKEN_MIN_HEX} to {TOKEN_MAX_HEX}")]
    Length(usize),
    /// The token holds something other than lowercase hex digits.
    #[error("token holds {0:?}, want lowercase hex digits only")]
    NotHex(char),
}

impl Token {
    /// Parses a token from its hex text.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        if let Some(c) = text.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(TokenError::NotHex(c));
        }
        if !(TOKEN_MIN_HEX..=TOKEN_MAX_HEX).contains(&text.len()) {
            return Err(TokenError::Length(text.len()));
        }
        Ok(Self(text.to_string()))
    }

    /// Makes a token from random bytes (the host reads them from the OS).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self::parse(&hex)
    }

    /// Finds and parses the token on a kernel command line.
    pub fn from_cmdline(cmdline: &str) -> Result<Self, TokenError> {
        let value = param(cmdline, TOKEN_PARAM).ok_or(TokenError::Missing)?;
        Self::parse(&value)
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `cgstorm.token=<hex>` kernel parameter.
    pub fn kernel_param(&self) -> String {
        format!("{TOKEN_PARAM}={}", self.0)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.0)
    }
}

impl TryFrom<String> for Token {
    type Error = TokenError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Token> for String {
    fn from(t: Token) -> String {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        let p = params("  console=ttyS0 quiet  dyndbg=\"file a.c +p\" \"x=a b\" -- init args");
        assert_eq!(
            p,
            vec![
                ("console".into(), Some("ttyS0".into())),
                ("quiet".into(), None),
                ("dyndbg".into(), Some("file a.c +p".into())),
                ("x".into(), Some("a b".into())),
            ]
        );
    }

    #[test]
    fn last_value_wins() {
        assert_eq!(param("a=1 b a=2", "a").as_deref(), Some("2"));
        assert_eq!(param("a=1 b", "b"), None);
        assert_eq!(param("a=1", "c"), None);
    }

    #[test]
    fn token_from_cmdline() {
        let t =
            Token::from_cmdline("console=ttyS0 cgstorm.token=00112233445566778899aabbccddeeff x")
                .unwrap();
        assert_eq!(t.as_str(), "00112233445566778899aabbccddeeff");
        assert_eq!(
            t.kernel_param(),
            "cgstorm.token=00112233445566778899aabbccddeeff"
        );
    }

    #[test]
    fn token_rejections() {
        assert_eq!(
            Token::from_cmdline("console=ttyS0"),
            Err(TokenError::Missing)
        );
        assert_eq!(
            Token::from_cmdline("cgstorm.token"),
            Err(TokenError::Missing)
        );
        assert_eq!(
            Token::from_cmdline("cgstorm.token="),
            Err(TokenError::Length(0))
        );
        assert_eq!(Token::parse("abc"), Err(TokenError::Length(3)));
        assert_eq!(
            Token::parse("00112233445566778899AABB"),
            Err(TokenError::NotHex('A'))
        );
        assert_eq!(Token::parse(&"a".repeat(65)), Err(TokenError::Length(65)));
        assert!(Token::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn token_from_bytes_and_serde() {
        let t = Token::from_bytes(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]).unwrap();
        assert_eq!(t.as_str(), "deadbeef00010203");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"deadbeef00010203\"");
        assert_eq!(serde_json::from_str::<Token>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Token>("\"xyz\"").is_err());
    }
}
