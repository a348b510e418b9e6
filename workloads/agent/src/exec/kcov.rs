//! Kernel coverage of the lanes' ops (KCOV), turned into edge signal.
//!
//! Each lane thread opens its own `/sys/kernel/debug/kcov` and enables it
//! for itself (KCOV follows the task, and a thread is a task): the buffer
//! holds the PCs of the basic blocks the kernel ran for that thread's
//! syscalls. The buffer is emptied before each op and read after it. An
//! edge is a pair of successive PCs, hashed to 32 bits. The kernel already
//! takes KASLR's offset off each PC it records (`canonicalize_ip` in
//! kernel/kcov.c), so a PC is its link-time address whatever the boot, and
//! its low 32 bits name it (the kernel's text lies in one 2 GiB window); a
//! PC made relative to this boot's `_stext` would move with every boot and
//! make every edge look new after one. A bitmap shared by the lanes remembers the edges this agent
//! has sent since it was told to start afresh, so only new ones cross the
//! channel ([`take_new`]).
//!
//! The distinct PCs themselves also go to the host, each once until told to
//! start afresh ([`take_new_pcs`]), with the kernel's text symbols at link-time
//! addresses ([`symbols`]) to name them: `cgstorm cover` reads both.
//!
//! A spawned task (a separate process) gets its own buffer ([`TaskKcov`]):
//! mapped by the agent before the fork, enabled by the task after its exec,
//! read by the agent once the task is reaped, so a killed task's coverage
//! counts too. Its edges join the lanes' for the program.
//!
//! Not covered: work the kernel does in other threads (workqueues, RCU
//! callbacks, writeback), which KCOV does not attribute to the task that
//! queued it (tracepoints count that, [`super::trace`]).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// `KCOV_INIT_TRACE`: `_IOR('c', 1, unsigned long)`.
const KCOV_INIT_TRACE: libc::c_ulong = 0x8008_6301;
/// `KCOV_ENABLE`: `_IO('c', 100)`.
const KCOV_ENABLE: libc::c_ulong = 0x6364;
/// `KCOV_DISABLE`: `_IO('c', 101)`.
const KCOV_DISABLE: libc::c_ulong = 0x6365;
/// `KCOV_TRACE_PC`: collect PCs (not comparison operands).
const KCOV_TRACE_PC: libc::c_ulong = 0;
/// Words in each lane's buffer (the first is the count): 2 MiB. An op that
/// runs more blocks than that (a long write loop) keeps its first ones.
const WORDS: usize = 256 << 10;
/// Bits in the bitmap of edges sent: 2 MiB, shared by the lanes.
const BITS: usize = 1 << 24;

use cgstorm_agent::contract::KCOV_DEVICE as DEVICE;

/// The edges sent so far, one bit each (hashes folded to [`BITS`]).
fn sent() -> &'static [AtomicU64] {
    static SENT: OnceLock<Vec<AtomicU64>> = OnceLock::new();
    SENT.get_or_init(|| (0..BITS / 64).map(|_| AtomicU64::new(0)).collect())
}

/// The edges found new since [`take_new`] last ran.
static NEW: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The PCs sent since boot (or the last [`forget`]), and those found new
/// since [`take_new_pcs`] last ran: exact (a set, not a bitmap), for
/// `cgstorm cover` and for a guided campaign's focus.
static PCS: Mutex<(Option<HashSet<u32>>, Vec<u32>)> = Mutex::new((None, Vec::new()));

/// Forgets every edge and PC sent: the next program's all go out (the
/// host asks for this when it re-runs a program to see whether its new
/// signal shows again).
pub fn forget() {
    for w in sent() {
        w.store(0, Ordering::Relaxed);
    }
    let mut g = PCS.lock().unwrap_or_else(|e| e.into_inner());
    g.0 = None;
    g.1.clear();
}

/// The new edges the lanes found since the last call, sorted.
pub fn take_new() -> Vec<u32> {
    let mut v = std::mem::take(&mut *NEW.lock().unwrap_or_else(|e| e.into_inner()));
    v.sort_unstable();
    v.dedup();
    v
}

/// Keeps those of `pcs` not sent before for [`take_new_pcs`].
fn note_pcs(pcs: &[u32]) {
    let mut g = PCS.lock().unwrap_or_else(|e| e.into_inner());
    let (sent, new) = &mut *g;
    let sent = sent.get_or_insert_with(HashSet::new);
    new.extend(pcs.iter().copied().filter(|&pc| sent.insert(pc)));
}

/// The PCs the lanes ran that no earlier call returned, sorted.
pub fn take_new_pcs() -> Vec<u32> {
    let mut v = std::mem::take(&mut PCS.lock().unwrap_or_else(|e| e.into_inner()).1);
    v.sort_unstable();
    v
}

/// Where the kernel's text was linked to start: x86-64's `_text` without
/// KASLR (`__START_KERNEL_map` plus the default `CONFIG_PHYSICAL_START`).
const LINK_TEXT: u64 = 0xffff_ffff_8100_0000;

/// KASLR moves the kernel by a multiple of this (`CONFIG_PHYSICAL_ALIGN`).
const KASLR_ALIGN: u64 = 2 << 20;

/// The kernel's text symbols as `ADDR NAME` lines, ADDR the low 32 bits of
/// the link-time address (what KCOV records), sorted by address. This
/// boot's offset is `_text` in /proc/kallsyms less [`LINK_TEXT`]; an offset
/// that is not a multiple of [`KASLR_ALIGN`] means a kernel linked
/// elsewhere, which is said rather than guessed.
pub fn symbols() -> Result<String, String> {
    let all = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| format!("read /proc/kallsyms: {e}"))?;
    link_symbols(&all)
}

/// [`symbols`] of the text of a /proc/kallsyms.
fn link_symbols(all: &str) -> Result<String, String> {
    let mut syms: Vec<(u64, &str)> = Vec::new();
    let (mut text, mut start, mut end) = (None, None, None);
    for line in all.lines() {
        let mut f = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if f.next().is_some() {
            continue; // a module's symbol: `[module]` follows
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        match name {
            "_text" => text = Some(addr),
            "_stext" => start = Some(addr),
            "_etext" => end = Some(addr),
            _ => {}
        }
        // Weak functions (`__weak`) show as W or w: without them their
        // PCs would count for the function before.
        if matches!(kind, "t" | "T" | "w" | "W") {
            syms.push((addr, name));
        }
    }
    // Weak symbols may be data: keep what lies in the kernel's text.
    if let (Some(lo), Some(hi)) = (start.or(text), end) {
        syms.retain(|&(a, n)| (lo..=hi).contains(&a) || n == "_text");
    }
    let text = text.ok_or("no _text in /proc/kallsyms")?;
    if text == 0 {
        return Err("/proc/kallsyms shows no addresses (kptr_restrict)".into());
    }
    let offset = text.wrapping_sub(LINK_TEXT);
    if offset % KASLR_ALIGN != 0 {
        return Err(format!(
            "_text is at {text:#x}: not {LINK_TEXT:#x} moved by a multiple of 2 MiB, so the link-time addresses are unknown"
        ));
    }
    syms.sort_unstable();
    let mut out = String::with_capacity(syms.len() * 32);
    for (addr, name) in syms {
        out.push_str(&format!(
            "{:08x} {name}\n",
            addr.wrapping_sub(offset) as u32
        ));
    }
    Ok(out)
}

/// Mixes a PC into the hash an edge from it gets.
fn mix(x: u32) -> u32 {
    let mut h = x.wrapping_mul(0x9e37_79b1);
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca77);
    h ^ (h >> 13)
}

/// The edge from `prev` to `pc` (the low 32 bits of link-time PCs).
pub fn edge(prev: u32, pc: u32) -> u32 {
    pc ^ mix(prev)
}

/// Marks `sig` sent; true if it was not before.
fn first_time(sig: u32) -> bool {
    let bit = sig as usize % BITS;
    let mask = 1u64 << (bit % 64);
    sent()[bit / 64].fetch_or(mask, Ordering::Relaxed) & mask == 0
}

/// A KCOV descriptor with its buffer of `words` words mapped shared (the
/// first word counts the PCs that follow).
struct Buffer {
    fd: File,
    area: *mut AtomicU64,
    words: usize,
}

// SAFETY: the mapping belongs to the descriptor, not to a thread; a task's
// buffer is made by one lane and read by whichever thread reaps the task.
unsafe impl Send for Buffer {}

impl Buffer {
    /// Opens, sizes and maps a descriptor; nothing is enabled yet.
    fn open(words: usize) -> Result<Buffer, String> {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(DEVICE)
            .map_err(|e| format!("open {DEVICE}: {e}"))?;
        let raw = fd.as_raw_fd();
        // SAFETY: the ioctl takes a word count by value; the mapping is of
        // the descriptor's buffer, as large as initialised, and lives until
        // `drop` unmaps it.
        unsafe {
            if libc::ioctl(raw, KCOV_INIT_TRACE, words as libc::c_ulong) != 0 {
                return Err(format!(
                    "KCOV_INIT_TRACE: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let area = libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            );
            if area == libc::MAP_FAILED {
                return Err(format!("mmap kcov: {}", std::io::Error::last_os_error()));
            }
            Ok(Buffer {
                fd,
                area: area.cast(),
                words,
            })
        }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.words);
        // SAFETY: `area` maps `words` words for as long as `self` lives; the
        // kernel writes them from the enabled task's syscalls, and words
        // are read and written atomically.
        unsafe { &*self.area.add(i) }
    }

    /// Empties the buffer: the next PCs go to its beginning.
    fn start(&self) {
        self.word(0).store(0, Ordering::Relaxed);
    }

    /// The edges of the PCs recorded since [`Buffer::start`] that no one
    /// sent before go to `found`; the distinct PCs replace `pcs`.
    fn read(&self, found: &mut Vec<u32>, pcs: &mut Vec<u32>) {
        let n = (self.word(0).load(Ordering::Relaxed) as usize).min(self.words - 1);
        let mut prev = 0u32;
        pcs.clear();
        for i in 1..=n {
            let pc = self.word(i).load(Ordering::Relaxed) as u32;
            let sig = edge(prev, pc);
            prev = pc;
            if first_time(sig) {
                found.push(sig);
            }
            pcs.push(pc);
        }
        pcs.sort_unstable();
        pcs.dedup();
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmapping the buffer mapped in `open`; nothing uses
        // `area` after this. The descriptor closes after.
        unsafe { libc::munmap(self.area.cast(), self.words * 8) };
    }
}

/// Hands found edges to [`take_new`].
fn hand_over(found: &mut Vec<u32>) {
    if !found.is_empty() {
        NEW.lock().unwrap_or_else(|e| e.into_inner()).append(found);
    }
}

/// One lane thread's coverage buffer, enabled for that thread.
pub struct Kcov {
    buf: Buffer,
    found: Vec<u32>,
    /// The distinct PCs of the last op (a buffer kept between ops).
    pcs: Vec<u32>,
}

impl Kcov {
    /// Opens, sizes, maps and enables KCOV for the calling thread.
    pub fn enable() -> Result<Kcov, String> {
        let buf = Buffer::open(WORDS)?;
        // SAFETY: the ioctl takes the mode by value.
        if unsafe { libc::ioctl(buf.fd.as_raw_fd(), KCOV_ENABLE, KCOV_TRACE_PC) } != 0 {
            return Err(format!("KCOV_ENABLE: {}", std::io::Error::last_os_error()));
        }
        Ok(Kcov {
            buf,
            found: Vec::new(),
            pcs: Vec::new(),
        })
    }

    /// Empties the buffer: the next op's blocks start at its beginning.
    pub fn start(&self) {
        self.buf.start();
    }

    /// Takes the edges of the blocks run since [`Kcov::start`]; those no
    /// lane sent before are kept for [`take_new`].
    pub fn collect(&mut self) {
        self.buf.read(&mut self.found, &mut self.pcs);
        note_pcs(&self.pcs);
        if self.found.len() >= 4096 {
            self.flush();
        }
    }

    /// Hands what this lane found to [`take_new`].
    pub fn flush(&mut self) {
        hand_over(&mut self.found);
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        self.flush();
        // SAFETY: disabling KCOV for this thread; the buffer is unmapped
        // when `buf` drops, after this.
        unsafe { libc::ioctl(self.buf.fd.as_raw_fd(), KCOV_DISABLE, 0) };
    }
}

/// Words in a spawned task's buffer: 8 MiB. A task lives for many of a
/// lane's ops (a looping writer until it is killed) and its coverage is
/// read once, when it is reaped; when the buffer is full the kernel stops
/// recording, so the task's first blocks are the ones kept.
const TASK_WORDS: usize = 1 << 20;

/// Task buffers kept for the next spawns once their task is reaped (a
/// reaped task's descriptor can be enabled again by another): a program
/// spawns often, and a fresh 8 MiB buffer costs the kernel a vmalloc.
const POOLED: usize = 8;

static POOL: Mutex<Vec<Buffer>> = Mutex::new(Vec::new());

/// The environment variable that gives a spawned task the number of the
/// descriptor to enable for itself ([`enable_inherited`]).
pub const TASK_FD_ENV: &str = "CGSTORM_KCOV_FD";

/// A spawned task's coverage: a buffer the agent maps before the fork and
/// the task enables for itself (a forked task does not inherit its
/// parent's KCOV, and the agent cannot enable one for another task). Read
/// when dropped, which must be after the task is reaped: the kernel then
/// has disabled it (`kcov_task_exit`) and the buffer holds what the task
/// ran, even when it was killed.
pub struct TaskKcov {
    buf: Option<Buffer>,
}

impl TaskKcov {
    /// A buffer for the next task, emptied.
    pub fn take() -> Result<TaskKcov, String> {
        let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let buf = match pooled {
            Some(b) => b,
            None => Buffer::open(TASK_WORDS)?,
        };
        buf.start();
        Ok(TaskKcov { buf: Some(buf) })
    }

    /// The descriptor the task must enable: pass it across exec.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.buf.as_ref().map_or(-1, |b| b.fd.as_raw_fd())
    }
}

impl Drop for TaskKcov {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        let (mut found, mut pcs) = (Vec::new(), Vec::new());
        buf.read(&mut found, &mut pcs);
        hand_over(&mut found);
        note_pcs(&pcs);
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED {
            pool.push(buf);
        }
    }
}

/// In a spawned task: enables KCOV on the descriptor named by
/// [`TASK_FD_ENV`], if any. A failure leaves the task uncovered and is
/// said once on the console; the task's work goes on.
pub fn enable_inherited() {
    let Some(fd) = std::env::var(TASK_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<libc::c_int>().ok())
    else {
        return;
    };
    // SAFETY: enabling KCOV for this task on a descriptor it inherited;
    // the mode is passed by value.
    if unsafe { libc::ioctl(fd, KCOV_ENABLE, KCOV_TRACE_PC) } != 0 {
        eprintln!(
            "cgstorm-agent task: KCOV_ENABLE on fd {fd}: {}; this task runs uncovered",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_depend_on_both_ends_and_their_order() {
        assert_ne!(edge(1, 2), edge(2, 1));
        assert_ne!(edge(1, 2), edge(1, 3));
        assert_ne!(edge(1, 2), edge(3, 2));
        assert_eq!(edge(7, 9), edge(7, 9));
    }

    #[test]
    fn symbols_lose_this_boots_offset() {
        let kallsyms = "ffffffff9a000000 T _text\n\
                        ffffffff9a001000 T _stext\n\
                        ffffffff9a2c0010 t mem_cgroup_css_online\n\
                        ffffffff9a2c0400 W arch_weak_hook\n\
                        ffffffff9a1b0000 T inode_switch_wbs\n\
                        ffffffff9a400000 T _etext\n\
                        ffffffff9b000000 W weak_data_past_the_text\n\
                        ffffffff9c000000 D jiffies\n\
                        ffffffffc0001000 t splat_init\t[splat]\n";
        let text = link_symbols(kallsyms).unwrap();
        assert_eq!(
            text,
            "81000000 _text\n81001000 _stext\n811b0000 inode_switch_wbs\n812c0010 mem_cgroup_css_online\n812c0400 arch_weak_hook\n81400000 _etext\n"
        );
        let moved = kallsyms.replace("ffffffff9a000000 T _text", "ffffffff9a000400 T _text");
        assert!(link_symbols(&moved)
            .unwrap_err()
            .contains("not 0xffffffff81000000"));
        let hidden = "0000000000000000 T _text\n0000000000000000 T _stext\n";
        assert!(link_symbols(hidden).unwrap_err().contains("kptr_restrict"));
    }

    /// A PC goes to the host once, and again after [`forget`] (a re-run's
    /// PCs must all go out, for a focus to be confirmed).
    #[test]
    fn a_pc_is_sent_once_until_forgotten() {
        let _one = FORGETTING.lock().unwrap_or_else(|e| e.into_inner());
        note_pcs(&[0x10, 0x20]);
        assert_eq!(take_new_pcs(), [0x10, 0x20]);
        note_pcs(&[0x20, 0x30]);
        assert_eq!(take_new_pcs(), [0x30]);
        forget();
        note_pcs(&[0x20]);
        assert_eq!(take_new_pcs(), [0x20]);
    }

    /// The tests that [`forget`] take turns: it forgets for the whole agent.
    static FORGETTING: Mutex<()> = Mutex::new(());

    #[test]
    fn an_edge_is_new_once_until_forgotten() {
        let _one = FORGETTING.lock().unwrap_or_else(|e| e.into_inner());
        let sig = 0xdead_beef;
        assert!(first_time(sig));
        assert!(!first_time(sig));
        forget();
        assert!(first_time(sig));
    }
}
