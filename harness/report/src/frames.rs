//! Stack frames: reading them off trace lines and register dumps.

/// The function name at the start of `s` (`func+0x1/0x2 [mod]`,
/// `func.isra.0+0x1`, `func()`), without compiler suffixes such as `.isra.0`
/// or `.cold`, so titles do not change with the compiler.
pub(crate) fn func_token(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'))
        .unwrap_or(s.len());
    let name = &s[..end];
    let name = name.split('.').next().unwrap_or(name);
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    Some(name)
}

/// A frame in a stack-trace line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) func: &'a str,
    /// Printed with `? `: the unwinder is not sure it is on the stack.
    pub(crate) questionable: bool,
}

/// Parses a stack-trace line: `  func+0x1f/0x40 [mod]`, `  ? func+0x1/0x2`,
/// ` [<ffffffff81234567>] func+0x1/0x2`. The `+0xOFF/0xSIZE` part is required.
pub(crate) fn parse_frame(line: &str) -> Option<Frame<'_>> {
    let mut rest = line.trim_start();
    // Old x86 and other arches print raw addresses first: `[<ffff>]`, or
    // powerpc's `[c000000049a87710] [c0000000000286fc]`.
    while let Some(r) = rest.strip_prefix('[') {
        let r = r.strip_prefix('<').unwrap_or(r);
        let hex = r.bytes().take_while(u8::is_ascii_hexdigit).count();
        let r = r[hex..].strip_prefix('>').unwrap_or(&r[hex..]);
        rest = r.strip_prefix(']')?.trim_start();
    }
    // arm: `[<8195d3d8>] (dump_backtrace) from [<8195d4d4>] (show_stack+0x18/0x1c)`.
    if let Some(r) = rest.strip_prefix('(') {
        let (name, after) = r.split_once(')')?;
        if !after.starts_with(" from ") {
            return None;
        }
        let func = func_token(name)?;
        return (func.len() == name.len() || name[func.len()..].starts_with(['.', '+'])).then_some(
            Frame {
                func,
                questionable: false,
            },
        );
    }
    let questionable = match rest.strip_prefix("? ") {
        Some(r) => {
            rest = r.trim_start();
            true
        }
        None => false,
    };
    let func = frame_at(rest)?;
    // powerpc marks the frame it is not sure of.
    let questionable = questionable || rest.ends_with("(unreliable)");
    Some(Frame { func, questionable })
}

/// `func+0xOFF/0xSIZE` at the start of `s`: the function name.
pub(crate) fn frame_at(s: &str) -> Option<&str> {
    let end = s.find('+')?;
    let offsets = s[end + 1..].strip_prefix("0x")?;
    let hex = offsets.bytes().take_while(u8::is_ascii_hexdigit).count();
    if hex == 0 || !offsets[hex..].starts_with("/0x") {
        return None;
    }
    let func = func_token(&s[..end])?;
    // The name must span everything before the '+' (up to a compiler suffix).
    if s[..end].split('.').next() != Some(func) {
        return None;
    }
    Some(func)
}

/// The function in a kernel-mode `RIP: 0010:func+0x1/0x2` (or older
/// `RIP: 0010:[<ffffffff81234567>]  [<ffffffff81234567>] func+0x1/0x2`,
/// `IP: func+0x1/0x2`) line; user-mode `RIP: 0033:0x47fbe9` gives `None`.
pub(crate) fn rip_frame(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let rest = [
        "RIP: ",
        "IP: ",
        "NIP: ",
        "RIP:",
        "IP:",
        "pc : ",
        "PC is at ",
        "LR is at ",
    ]
    .iter()
    .find_map(|p| t.strip_prefix(p))?;
    let rest = rest.trim_start();
    let rest = match rest.find(':') {
        Some(i) if rest[..i].bytes().all(|b| b.is_ascii_digit()) => &rest[i + 1..],
        _ => rest,
    };
    parse_frame(rest).map(|f| f.func)
}

/// The function after `at: ` in a lockdep line such as
/// `ffffffffc0480228 (lock_a){+.+.}-{3:3}, at: splat_abba+0x5a/0x80 [splat]`,
/// or the frame of a `[<ffffffffc0480228>] func+0x5a/0x80` line.
pub(crate) fn lock_site(line: &str) -> Option<&str> {
    if let Some(i) = line.find("at: ") {
        let after = line[i + 4..].trim_start();
        if let Some(f) = parse_frame(after) {
            return Some(f.func);
        }
    }
    parse_frame(line)
        .filter(|f| !f.questionable)
        .map(|f| f.func)
}

/// Register-dump lines printed inside and around traces.
pub(crate) fn is_register_line(t: &str) -> bool {
    let Some((name, _)) = t.split_once(':') else {
        return false;
    };
    const NAMES: [&str; 29] = [
        "RIP", "IP", "NIP", "Code", "RSP", "EFLAGS", "FS", "GS", "CS", "CR2", "DR0", "DR3", "DR6",
        "PKRU", "RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R08", "R09", "R10", "R11", "R12",
        "R13", "R14", "R15",
    ];
    // arm's `r7:00000000 r6:826228c4` under each frame.
    let arm = name.len() <= 3
        && name.starts_with('r')
        && name.len() > 1
        && name[1..].bytes().all(|b| b.is_ascii_digit());
    NAMES.contains(&name) || arm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames() {
        let f = parse_frame("  splat_abba+0x5a/0x80 [splat]").unwrap();
        assert_eq!((f.func, f.questionable), ("splat_abba", false));
        let f = parse_frame(" ? __pfx_lock_acquire+0x10/0x10").unwrap();
        assert_eq!((f.func, f.questionable), ("__pfx_lock_acquire", true));
        let f = parse_frame(" [<ffffffff8123>] ? evict.isra.0+0x1/0x2").unwrap();
        assert_eq!((f.func, f.questionable), ("evict", true));
        assert_eq!(parse_frame(" <TASK>"), None);
        assert_eq!(parse_frame("load_module: 0x1/0x2"), None);
        assert_eq!(parse_frame("a b+0x1/0x2"), None);
        let f =
            parse_frame("[<8195d3d8>] (dump_backtrace) from [<8195d4d4>] (show_stack+0x18/0x1c)");
        assert_eq!(f.map(|f| f.func), Some("dump_backtrace"));
        let f = parse_frame("[c000000049a87a10] [c0000000005f7dc8] exit_aio+0x188/0x2a0").unwrap();
        assert_eq!(f.func, "exit_aio");
        assert_eq!(
            parse_frame("[c00000004] [c0000000] 0xc000000049a875a0 (unreliable)"),
            None
        );
    }

    #[test]
    fn rip_lines() {
        assert_eq!(
            rip_frame("RIP: 0010:splat_init+0x2f5/0xff0 [splat]"),
            Some("splat_init")
        );
        assert_eq!(rip_frame("RIP: 0033:0x47fbe9"), None);
        assert_eq!(
            rip_frame("RIP: 0010:[<ffffffff81234567>]  [<ffffffff81234567>] f+0x1/0x2"),
            Some("f")
        );
        assert_eq!(rip_frame("IP: evict+0x1/0x2"), Some("evict"));
    }

    #[test]
    fn lockdep_sites() {
        let l = "ffffffffc0480228 (lock_a){+.+.}-{3:3}, at: splat_abba+0x5a/0x80 [splat]";
        assert_eq!(lock_site(l), Some("splat_abba"));
        assert_eq!(
            lock_site("[<ffffffffc0480228>] splat_x+0x5a/0x80 [splat]"),
            Some("splat_x")
        );
        assert_eq!(lock_site("but task is already holding lock:"), None);
    }

    #[test]
    fn registers() {
        assert!(is_register_line("RAX: ffffffffffffffda RBX: 0"));
        assert!(is_register_line("R10: 000000000000f0f8 R11: 0"));
        assert!(is_register_line("Code: 08 89 e8"));
        assert!(!is_register_line("rcu: INFO"));
        assert!(!is_register_line("RCU: x"));
        assert!(is_register_line("r7:00000000 r6:826228c4"));
        assert!(!is_register_line("rcu: x"));
    }
}
