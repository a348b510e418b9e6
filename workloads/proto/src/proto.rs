//! The wire protocol between host and agent over the virtio-serial port.
//!
//! Each message is one frame: a `u32` little-endian byte length, then that many
//! bytes of JSON. The guest sends [`AgentMsg`], the host sends [`HostMsg`].

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::cmdline::Token;
pub use cgstorm_workloads::model::{OpEvent, Snapshot};
pub use cgstorm_workloads::OpId;

/// Version of this protocol; the agent puts it in its hello.
pub const PROTO_VERSION: u32 = 7;

/// Largest frame body either side accepts, in bytes.
pub const MAX_FRAME: u32 = 16 << 20;

/// Messages from the agent to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    /// Sent once, when the system is set up.
    Hello(Hello),
    /// The agent hit an error it cannot recover from and is about to stop.
    Fatal {
        /// What went wrong.
        message: String,
    },
    /// A [`HostMsg::Run`] was accepted: the program parsed and its lanes start.
    Started {
        /// Number of lanes.
        lanes: usize,
        /// Number of barrier-separated steps.
        steps: usize,
    },
    /// Results of executed ops, in each lane's order (batched; several
    /// lanes may share a batch, each lane's events stay in order).
    Ops {
        /// The results.
        events: Vec<OpEvent>,
    },
    /// Every lane reached the barrier that ends `step` (or the program's end,
    /// for the last step); the snapshot was taken while they wait.
    Barrier {
        /// 0 for the first barrier.
        step: usize,
        /// The observed state.
        snapshot: Snapshot,
    },
    /// The watchdog saw a lane make no progress for `stalled_ms`; it wrote
    /// `w` and `t` to /proc/sysrq-trigger. Sent once per stalled op.
    Stall {
        /// The op the lane is stuck in.
        op: OpId,
        /// The op as text.
        text: String,
        /// How long it has been running, in milliseconds.
        stalled_ms: u64,
    },
    /// A lane's op has run for `ms` but its worker (the lane's thread, or
    /// for a `wait` the awaited task) is still reading or writing: its
    /// `/proc/.../io` counters grew within the watchdog's limit. Not a stall
    /// (a 4K `O_DSYNC` writer on a debug kernel under TCG runs for minutes);
    /// sent at most every half of that limit, so the host hears the agent.
    Working {
        /// The op that is working.
        op: OpId,
        /// The op as text.
        text: String,
        /// How long it has been running, in milliseconds.
        ms: u64,
    },
    /// The answer to [`HostMsg::Reset`].
    ResetDone {
        /// What could not be put back (empty: the guest is as after boot).
        /// Anything here means the next program would not start from the
        /// model's initial state: the host restarts the VM instead.
        leftovers: Vec<String>,
        /// Where the reset's time went: `(part, ms)` in the order it ran
        /// (`unmount`, `v1`, `v2`, `dying`, `blank`, `dirty`).
        #[serde(default)]
        laps: Vec<(String, u64)>,
    },
    /// The answer to [`HostMsg::Shell`].
    ShellDone {
        /// The script's exit status (`-1` if it did not run, `128+N` if
        /// killed by signal N or by the time limit).
        status: i32,
        /// What it wrote to stdout (lossy UTF-8, at most 1 MiB).
        stdout: String,
        /// What it wrote to stderr (lossy UTF-8, at most 1 MiB).
        stderr: String,
    },
    /// A benchmark loop's result.
    BenchResult {
        /// The order.
        order: BenchOrder,
        /// Wall time in nanoseconds, or why the loop could not run.
        result: Result<u64, String>,
    },
    /// The kernel coverage of a program's lanes ([`RunOrder::cover`]):
    /// edge hashes this agent has not sent before, sorted.
    Cover {
        /// The new edges.
        edges: Vec<u32>,
        /// The PCs this agent has not sent before, sorted: the low 32 bits
        /// of their link-time addresses (KCOV takes KASLR's offset off), for
        /// `cgstorm cover` ([`HostMsg::Symbols`] names them).
        #[serde(default)]
        pcs: Vec<u32>,
        /// Why coverage could not be collected, if it could not.
        error: Option<String>,
    },
    /// The tracepoint events of a program ([`RunOrder::trace`]): counts by
    /// event name, workqueue items by function (`work:wb_workfn`).
    Events {
        /// The counts.
        counts: std::collections::BTreeMap<String, u64>,
        /// Why they could not be counted, if they could not.
        error: Option<String>,
    },
    /// The kernel's text symbols ([`HostMsg::Symbols`]): a line
    /// `ADDR NAME` each, ADDR the low 32 bits of the link-time address in
    /// hex, as KCOV's PCs are, sorted by address.
    Symbols {
        /// The lines.
        text: String,
        /// Why they could not be read, if they could not.
        error: Option<String>,
    },
    /// The scan of [`HostMsg::LeakScan`] is over: how many leaked objects
    /// it printed, or why it could not scan (a kernel without kmemleak).
    LeakScanned {
        /// Objects printed.
        printed: usize,
        /// Why there was no scan, if there was none.
        error: Option<String>,
    },
    /// The program is over: every lane ended and its tasks were killed.
    Finished {
        /// Why the run stopped early, if it did (a lane's op could not even
        /// be attempted, e.g. the agent failed to fork).
        error: Option<String>,
        /// Where the agent's time went that was not the lanes' ops.
        #[serde(default)]
        timing: RunTiming,
    },
}

/// The agent's own share of a run's wall time, in microseconds: what the
/// host sees as one stretch from sending the program to `Finished`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTiming {
    /// Parsing the program and making its places, before the lanes start.
    pub setup_us: u64,
    /// Taking the barrier snapshots (the lanes wait meanwhile).
    pub snapshot_us: u64,
    /// After the lanes: killing the program's tasks, dropping its pins.
    pub teardown_us: u64,
}

/// Messages from the host to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMsg {
    /// Sync filesystems and power off (or exit, under virtme-ng).
    Shutdown,
    /// Run a guest-side baseline loop for benchmarks; answered by
    /// [`AgentMsg::BenchResult`].
    Bench(BenchOrder),
    /// Run a program. The agent answers [`AgentMsg::Started`] (or
    /// [`AgentMsg::Fatal`] if the program does not parse), then streams
    /// [`AgentMsg::Ops`], one [`AgentMsg::Barrier`] per step and
    /// [`AgentMsg::Stall`]s and [`AgentMsg::Working`]s, and ends with
    /// [`AgentMsg::Finished`].
    Run(RunOrder),
    /// Put the guest back into the state right after boot (tasks killed,
    /// mappings and pins dropped, mounts and loop devices gone, cgroups
    /// removed, devices blanked); answered by [`AgentMsg::ResetDone`].
    Reset,
    /// Run a POSIX shell script with the guest's busybox; answered by
    /// [`AgentMsg::ShellDone`]. For shell reproducers.
    Shell(ShellOrder),
    /// Send the kernel's text symbols, as link-time addresses
    /// ([`AgentMsg::Symbols`]): what KCOV's PCs are named by.
    Symbols,
    /// Scan for leaked kernel memory now (kmemleak), before the VM is
    /// dropped: what two scans report is printed to the console as the
    /// kernel's own `BUG: memory leak` reports; answered by
    /// [`AgentMsg::LeakScanned`].
    LeakScan,
    /// Say the boot's [`AgentMsg::Hello`] again under this token (in the
    /// place of the boot's, which the program's tasks still check against
    /// the kernel command line), with the uptime now:
    /// how the host knows a VM restored from a snapshot has its agent back,
    /// and tells each restored VM from the others restored from the same
    /// snapshot.
    Hello {
        /// The token from now on.
        token: Token,
    },
}

/// A shell script to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellOrder {
    /// The script text.
    pub script: String,
    /// Files written into the script's working directory first (name,
    /// contents; executable), e.g. a helper binary.
    pub files: Vec<(String, Vec<u8>)>,
    /// Kill the script after this many milliseconds.
    pub timeout_ms: u64,
}

/// A baseline loop run in the guest, to compare the agent's op rate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchKind {
    /// Migrate a sleeper between two cgroups, cgroup.procs fds kept open (the floor).
    MigrateRaw,
    /// The same from a busybox shell loop: `echo $PID > a/cgroup.procs` (seed 001).
    MigrateShell,
    /// mkdir + rmdir of a memcg, raw syscalls.
    MkdirRaw,
    /// mkdir + rmdir of a memcg with busybox applets from a shell loop.
    MkdirShell,
}

/// A benchmark order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchOrder {
    /// Which loop.
    pub kind: BenchKind,
    /// How many operations (migrations, or mkdir+rmdir pairs).
    pub count: u64,
}

/// What to run (`..Default::default()`: no coverage, events or planted leak).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrder {
    /// The program, as YAML (the agent parses it with the same code as the host).
    pub program: String,
    /// How long `repeat: {for: run}` blocks run, in milliseconds.
    pub duration_ms: u64,
    /// A lane stuck in one op this long triggers the watchdog, in milliseconds.
    pub stall_ms: u64,
    /// Collect the lanes' kernel coverage and send its new edges
    /// ([`AgentMsg::Cover`], before `Finished`).
    #[serde(default)]
    pub cover: bool,
    /// Forget the edges sent before: send every edge this program shows.
    #[serde(default)]
    pub cover_afresh: bool,
    /// Count the program's tracepoint events ([`AgentMsg::Events`], before
    /// `Finished`).
    #[serde(default)]
    pub trace: bool,
    /// A planted leak, for the test that the reset reports one: the
    /// program's page pins are left held after it (never set by campaigns).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plant_leak: bool,
}

/// What the agent reports once the system is set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTO_VERSION`] of the agent.
    pub proto: u32,
    /// The token from the kernel command line.
    pub token: Token,
    /// `uname -r`.
    pub kernel_release: String,
    /// `uname -v`.
    pub kernel_version: String,
    /// Whether the agent is init (`true`) or runs under virtme-ng (`false`).
    pub pid1: bool,
    /// Guest uptime when the hello was sent, in milliseconds.
    pub uptime_ms: u64,
    /// Modules from the initramfs list, in load order, with what happened.
    pub modules: Vec<ModuleLoad>,
    /// Names of the entries in `/dev`, sorted.
    pub devices: Vec<String>,
    /// Devices the host asked for (`cgstorm.devices=`) that never appeared.
    pub missing_devices: Vec<String>,
    /// Setup steps that failed without stopping the agent.
    pub warnings: Vec<String>,
    /// What the booted kernel was seen to have (`None` from an agent that
    /// did not probe).
    #[serde(default)]
    pub features: Option<Features>,
}

/// What the agent found the booted kernel to have, by trying it at boot.
/// Each `Option` is `None` when the probe could not tell (its note says
/// why), so the host falls back to the kernel's config, never to a guess.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// The cgroup v2 root's `cgroup.controllers`.
    pub controllers: Vec<String>,
    /// `io.max` exists in a cgroup with io enabled (`CONFIG_BLK_DEV_THROTTLING`).
    pub io_max: Option<bool>,
    /// `memory.swap.max` exists in a cgroup with memory enabled.
    pub memory_swap_max: Option<bool>,
    /// `memory.reclaim` exists in a cgroup with memory enabled.
    pub memory_reclaim: Option<bool>,
    /// `cgroup.kill` exists in a non-root cgroup.
    pub cgroup_kill: Option<bool>,
    /// A cgroup v1 hierarchy with the memory controller mounts.
    pub memcg_v1: Option<bool>,
    /// A tmpfs file opens with `O_DIRECT`.
    pub tmpfs_direct_io: Option<bool>,
    /// `/sys/kernel/debug/kcov` exists.
    pub kcov: bool,
    /// Fault injection (`/sys/kernel/debug/fail_page_alloc` or `failslab`).
    pub fault_injection: bool,
    /// `/sys/kernel/debug/kmemleak` exists.
    pub kmemleak: bool,
    /// Filesystem DAX is built in (`CONFIG_FS_DAX`): /proc/kallsyms has
    /// `dax_iomap_rw`.
    #[serde(default)]
    pub fs_dax: Option<bool>,
    /// Cgroup writeback is built in (`CONFIG_CGROUP_WRITEBACK`):
    /// /proc/kallsyms has `wbc_account_cgroup_owner`.
    #[serde(default)]
    pub cgroup_writeback: Option<bool>,
    /// The `CONFIG_` lines of `/proc/config.gz`, when the kernel has it
    /// (`CONFIG_IKCONFIG_PROC`).
    #[serde(default)]
    pub config: Option<String>,
    /// Why a probe could not tell, one line each.
    pub notes: Vec<String>,
}

/// One module load attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleLoad {
    /// Path of the module inside the initramfs.
    pub path: String,
    /// What `finit_module` said.
    pub outcome: ModuleOutcome,
}

/// Result of one `finit_module`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ModuleOutcome {
    /// The module was loaded.
    Loaded,
    /// The kernel already had it (`EEXIST`).
    AlreadyLoaded,
    /// Loading failed.
    Failed {
        /// The errno.
        errno: i32,
        /// Its description.
        message: String,
    },
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The other side closed the channel between frames.
    #[error("channel closed")]
    Closed,
    /// The other side closed the channel in the middle of a frame.
    #[error("channel closed in the middle of a frame")]
    Truncated,
    /// The length prefix is over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME} bytes")]
    TooLarge(u64),
    /// Reading or writing the channel failed (including timeouts).
    #[error("channel i/o failed")]
    Io(#[source] io::Error),
    /// The frame body is not the expected JSON message.
    #[error("frame does not hold a valid message")]
    Json(#[source] serde_json::Error),
}

impl FrameError {
    /// Whether this is a read or write timeout on the channel.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Encodes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg).map_err(FrameError::Json)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or(FrameError::TooLarge(body.len() as u64))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Writes one message as a frame, in one `write_all`, and flushes.
pub fn write_frame<W: Write + ?Sized, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let frame = encode(msg)?;
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads one frame and decodes it.
///
/// A timeout in the middle of a frame leaves the stream out of step; treat any
/// error but [`FrameError::Json`] as the end of the channel.
pub fn read_frame<R: Read + ?Sized, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    match read_full(r, &mut len)? {
        0 => return Err(FrameError::Closed),
        4 => {}
        _ => return Err(FrameError::Truncated),
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len.into()));
    }
    let mut body = vec![0u8; len as usize];
    if read_full(r, &mut body)? != body.len() {
        return Err(FrameError::Truncated);
    }
    serde_json::from_slice(&body).map_err(FrameError::Json)
}

/// Takes one complete frame off the front of `buf` and decodes it, or returns
/// `None` if `buf` does not hold a whole frame yet. For readers that collect
/// bytes with timeouts and must not lose a partly received frame.
pub fn try_decode<T: DeserializeOwned>(buf: &mut Vec<u8>) -> Result<Option<T>, FrameError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len.into()));
    }
    let end = 4 + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[4..end]).map_err(FrameError::Json);
    buf.drain(..end);
    msg.map(Some)
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            proto: PROTO_VERSION,
            token: Token::parse("0123456789abcdef").unwrap(),
            kernel_release: "6.1.0-56-cloud-amd64".into(),
            kernel_version: "#1 SMP".into(),
            pid1: true,
            uptime_ms: 1234,
            modules: vec![
                ModuleLoad {
                    path: "/cgstorm/modules/loop.ko".into(),
                    outcome: ModuleOutcome::Loaded,
                },
                ModuleLoad {
                    path: "/cgstorm/modules/xfs.ko".into(),
                    outcome: ModuleOutcome::Failed {
                        errno: 2,
                        message: "ENOENT".into(),
                    },
                },
            ],
            devices: vec!["pmem0".into(), "vda".into()],
            missing_devices: vec![],
            warnings: vec![],
            features: None,
        }
    }

    #[test]
    fn round_trip_several_frames() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &AgentMsg::Hello(hello())).unwrap();
        write_frame(
            &mut buf,
            &AgentMsg::Fatal {
                message: "x".into(),
            },
        )
        .unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame::<_, AgentMsg>(&mut r).unwrap(),
            AgentMsg::Hello(hello())
        );
        assert!(matches!(
            read_frame::<_, AgentMsg>(&mut r).unwrap(),
            AgentMsg::Fatal { .. }
        ));
        assert!(matches!(
            read_frame::<_, AgentMsg>(&mut r),
            Err(FrameError::Closed)
        ));
    }

    /// The order a restored VM's agent gets carries its new token (an
    /// internally tagged enum cannot hold a bare string: a struct variant).
    #[test]
    fn the_hello_order_carries_the_new_token() {
        let token = Token::parse("fedcba9876543210").unwrap();
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &HostMsg::Hello {
                token: token.clone(),
            },
        )
        .unwrap();
        match read_frame::<_, HostMsg>(&mut &buf[..]).unwrap() {
            HostMsg::Hello { token: got } => assert_eq!(got, token),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frame_layout_is_le_length_then_json() {
        let f = encode(&HostMsg::Shutdown).unwrap();
        let body = br#"{"type":"shutdown"}"#;
        assert_eq!(&f[..4], &(body.len() as u32).to_le_bytes());
        assert_eq!(&f[4..], body);
    }

    #[test]
    fn truncated_and_oversized_frames() {
        let f = encode(&HostMsg::Shutdown).unwrap();
        let mut short = &f[..f.len() - 1];
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut short),
            Err(FrameError::Truncated)
        ));
        let mut half_len = &f[..2];
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut half_len),
            Err(FrameError::Truncated)
        ));
        let big = (MAX_FRAME + 1).to_le_bytes();
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &big[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut junk = Vec::from(3u32.to_le_bytes());
        junk.extend_from_slice(b"{x}");
        assert!(matches!(
            read_frame::<_, HostMsg>(&mut &junk[..]),
            Err(FrameError::Json(_))
        ));
    }

    #[test]
    fn try_decode_waits_for_whole_frames() {
        let mut stream = encode(&HostMsg::Shutdown).unwrap();
        stream.extend(
            encode(&AgentMsg::Fatal {
                message: "m".into(),
            })
            .unwrap(),
        );
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in stream {
            buf.push(b);
            if let Some(m) = try_decode::<serde_json::Value>(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["type"], "shutdown");
        assert_eq!(got[1]["message"], "m");
    }

    #[test]
    fn a_bad_token_in_a_hello_is_rejected() {
        let mut v = serde_json::to_value(AgentMsg::Hello(hello())).unwrap();
        v["token"] = "NOPE".into();
        assert!(serde_json::from_value::<AgentMsg>(v).is_err());
    }
}
