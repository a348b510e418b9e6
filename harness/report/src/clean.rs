//! Turning one raw console line into its printk context and message: control
//! characters, `<N>` log levels, `[ 12.345678]` timestamps and `[T123]`/`[C1]`
//! caller fields are removed.

use std::borrow::Cow;

/// Longest line, in bytes, that the parser looks at; the rest of a longer line
/// is ignored. Kernel lines are at most ~1 KiB, so this only bounds garbage.
pub(crate) const MAX_LINE: usize = 4096;

/// Who printed a line, as far as the console tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// No printk prefix at all: user-space output on the serial console, or a
    /// kernel booted with `printk.time=0`.
    Raw,
    /// A printk timestamp without a caller field (kernels without
    /// CONFIG_PRINTK_CALLER, e.g. Debian's 6.1): every kernel line shares it.
    Console,
    /// `[T<pid>]`: printed by this task.
    Task(u32),
    /// `[C<cpu>]`: printed from interrupt context on this CPU.
    Cpu(u32),
}

impl Context {
    /// Whether the caller is known, so lines of other callers can be told apart.
    pub(crate) fn has_caller(self) -> bool {
        matches!(self, Context::Task(_) | Context::Cpu(_))
    }
}

/// One console line with its prefix removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) ctx: Context,
    /// The message, with the kernel's own indentation kept.
    pub(crate) msg: String,
}

/// The text of one raw line (without its `\n`): at most [`MAX_LINE`] bytes,
/// decoded lossily. The scanner and `contains_report` both go through this.
pub(crate) fn line_text(raw: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(&raw[..raw.len().min(MAX_LINE)])
}

/// Splits a line into context and message.
pub(crate) fn clean(text: &str) -> Line {
    let text = strip_controls(text);
    let mut rest: &str = &text;
    let mut ctx = Context::Raw;
    if let Some(r) = strip_dropped(rest) {
        rest = r;
    }
    if let Some(r) = strip_level(rest) {
        rest = r;
        ctx = Context::Console;
    }
    if let Some(r) = strip_timestamp(rest) {
        rest = r;
        ctx = Context::Console;
    }
    if let Some((r, caller)) = strip_caller(rest) {
        rest = r;
        ctx = caller;
    }
    if ctx != Context::Raw {
        rest = rest.strip_prefix(' ').unwrap_or(rest);
    } else if let Some(at) = embedded_timestamp(rest) {
        // User-space output without its newline, then a kernel line:
        // `syzkaller login: [   59.8][ T6792] BUG: ...`.
        return clean(&rest[at..]);
    }
    Line {
        ctx,
        msg: rest.to_owned(),
    }
}

/// Removes terminal escape sequences (QEMU/SeaBIOS print `ESC c`), carriage
/// returns and other control characters; tabs stay.
fn strip_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC and the next character; for CSI (`ESC [`) also the
            // parameters up to the final byte.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Where a printk timestamp starts inside a line that does not start with
/// one.
fn embedded_timestamp(s: &str) -> Option<usize> {
    s.match_indices('[')
        .map(|(i, _)| i)
        .find(|&i| i > 0 && strip_timestamp(&s[i..]).is_some())
}

/// `** 5 printk messages dropped ** `
fn strip_dropped(s: &str) -> Option<&str> {
    let r = s.strip_prefix("** ")?;
    let end = r.find(" printk messages dropped ** ")?;
    if end == 0 || !r[..end].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(&r[end + " printk messages dropped ** ".len()..])
}

/// `<4>`
fn strip_level(s: &str) -> Option<&str> {
    let r = s.strip_prefix('<')?;
    let end = r.find('>')?;
    if end == 0 || end > 3 || !r[..end].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(&r[end + 1..])
}

/// `[   12.345678]`
fn strip_timestamp(s: &str) -> Option<&str> {
    let r = s.strip_prefix('[')?;
    let end = r.find(']')?;
    let inner = r[..end].trim_start_matches(' ');
    let (secs, frac) = inner.split_once('.')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !digits(frac) {
        return None;
    }
    Some(&r[end + 1..])
}

/// `[  T123]` or `[    C1]`
fn strip_caller(s: &str) -> Option<(&str, Context)> {
    let r = s.strip_prefix('[')?;
    let end = r.find(']')?;
    let inner = r[..end].trim_start_matches(' ');
    let (tag, num) = inner.split_at_checked(1)?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num: u32 = num.parse().ok()?;
    let ctx = match tag {
        "T" => Context::Task(num),
        "C" => Context::Cpu(num),
        _ => return None,
    };
    Some((&r[end + 1..], ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_timestamp_and_caller() {
        let l = clean("[   20.878183][   T64] WARNING: possible circular locking");
        assert_eq!(l.ctx, Context::Task(64));
        assert_eq!(l.msg, "WARNING: possible circular locking");
        let l = clean("[   10.309070][    C0] hrtimer: interrupt took 3007532 ns");
        assert_eq!(l.ctx, Context::Cpu(0));
        assert_eq!(l.msg, "hrtimer: interrupt took 3007532 ns");
    }

    #[test]
    fn keeps_frame_indentation() {
        let l = clean("[   40.929712][   T33]  __schedule+0xf1d/0x30e0");
        assert_eq!(l.msg, " __schedule+0xf1d/0x30e0");
    }

    #[test]
    fn without_caller_field_everything_is_console() {
        let l = clean("[  772.918915] BUG: unable to handle page fault");
        assert_eq!(l.ctx, Context::Console);
        assert_eq!(l.msg, "BUG: unable to handle page fault");
        let l = clean("<4>[    1.000000] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2");
        assert_eq!(l.ctx, Context::Console);
        assert_eq!(l.msg, "WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2");
    }

    #[test]
    fn raw_lines_and_escape_sequences() {
        let l = clean("Segmentation fault\r");
        assert_eq!(l.ctx, Context::Raw);
        assert_eq!(l.msg, "Segmentation fault");
        let l = clean("\x1bc[    0.000000][    T0] Linux version 6.12.117");
        assert_eq!(l.ctx, Context::Task(0));
        assert_eq!(l.msg, "Linux version 6.12.117");
        assert_eq!(clean("\x1b[0;32mok\x1b[0m").msg, "ok");
    }

    #[test]
    fn kernel_line_after_user_output() {
        let l = clean("syzkaller login: [   59.806466][ T6792] BUG: using smp_processor_id()");
        assert_eq!(l.ctx, Context::Task(6792));
        assert_eq!(l.msg, "BUG: using smp_processor_id()");
        let l = clean("vmalloc: allocation failure: 3 bytes[   76.471107] BUG: unable");
        assert_eq!(l.ctx, Context::Console);
        assert_eq!(l.msg, "BUG: unable");
        let l = clean("echo [x] [1.5 done]");
        assert_eq!(l.ctx, Context::Raw);
    }

    #[test]
    fn dropped_messages_prefix() {
        let l = clean("** 3 printk messages dropped ** [   1.5] BUG: soft lockup");
        assert_eq!(l.ctx, Context::Console);
        assert_eq!(l.msg, "BUG: soft lockup");
    }

    #[test]
    fn long_lines_are_cut_on_bytes_then_decoded() {
        let mut raw = vec![b'a'; MAX_LINE - 1];
        raw.extend_from_slice("é".as_bytes());
        assert_eq!(line_text(&raw).chars().last(), Some('\u{fffd}'));
        assert_eq!(line_text(b"\xffok"), "\u{fffd}ok");
    }
}
