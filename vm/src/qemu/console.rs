//! Capturing QEMU's output: the serial console (stdout) and QEMU's own
//! messages (stderr, prefixed `qemu: `) are split into lines, appended to a log
//! file, kept in a short tail for error reports, handed to an optional sink
//! callback (to stream them to the user) and queued for [`Console::line`].

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::vm::ConsoleEvent;

/// Receives every console line as it arrives (on a reader thread).
pub type ConsoleSink = Box<dyn FnMut(&str) + Send>;

/// Lines kept for error reports.
const TAIL_LINES: usize = 200;
/// Lines queued for [`Console::line`] before new ones are dropped (they are
/// still in the log file and the tail).
const BACKLOG: usize = 100_000;

/// State shared by the reader threads.
struct Shared {
    tail: VecDeque<String>,
    log: Option<File>,
    sink: Option<ConsoleSink>,
    dropped: u64,
}

/// The console of one VM.
pub struct Console {
    rx: Receiver<String>,
    shared: Arc<Mutex<Shared>>,
}

impl Console {
    /// Starts reader threads on QEMU's stdout (console) and stderr; stderr
    /// lines get `stderr_prefix` (`"qemu: "` for QEMU, `""` for vng, which
    /// sends the kernel console there).
    pub fn start(
        stdout: impl Read + Send + 'static,
        stderr: impl Read + Send + 'static,
        stderr_prefix: &'static str,
        log: Option<File>,
        sink: Option<ConsoleSink>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(BACKLOG);
        let shared = Arc::new(Mutex::new(Shared {
            tail: VecDeque::new(),
            log,
            sink,
            dropped: 0,
        }));
        spawn_reader(stdout, "", tx.clone(), shared.clone());
        spawn_reader(stderr, stderr_prefix, tx, shared.clone());
        Self { rx, shared }
    }

    /// The next line, waiting at most `timeout`.
    pub fn line(&self, timeout: Duration) -> ConsoleEvent {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => ConsoleEvent::Line(l),
            Err(RecvTimeoutError::Timeout) => ConsoleEvent::Timeout,
            Err(RecvTimeoutError::Disconnected) => ConsoleEvent::Closed,
        }
    }

    /// The last lines, newline separated.
    pub fn tail(&self) -> String {
        let s = lock(&self.shared);
        let mut out: String = s.tail.iter().flat_map(|l| [l.as_str(), "\n"]).collect();
        if s.dropped > 0 {
            out.push_str(&format!(
                "({} lines were not queued for the console stream)\n",
                s.dropped
            ));
        }
        out
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn_reader(
    mut from: impl Read + Send + 'static,
    prefix: &'static str,
    tx: SyncSender<String>,
    shared: Arc<Mutex<Shared>>,
) {
    thread::spawn(move || {
        let mut pending = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=pos).collect();
                emit(&raw, prefix, &tx, &shared);
            }
        }
        if !pending.is_empty() {
            emit(&pending, prefix, &tx, &shared);
        }
    });
}

fn emit(raw: &[u8], prefix: &str, tx: &SyncSender<String>, shared: &Mutex<Shared>) {
    let text = String::from_utf8_lossy(raw);
    let line = format!("{prefix}{}", text.trim_end_matches(['\n', '\r']));
    let mut s = lock(shared);
    if let Some(log) = s.log.as_mut() {
        let _ = writeln!(log, "{line}");
    }
    if let Some(sink) = s.sink.as_mut() {
        sink(&line);
    }
    if s.tail.len() == TAIL_LINES {
        s.tail.pop_front();
    }
    s.tail.push_back(line.clone());
    if let Err(TrySendError::Full(_)) = tx.try_send(line) {
        s.dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_from_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("console.log");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let c = Console::start(
            &b"[    0.0] Linux version\r\npartial"[..],
            &b"bad option\n"[..],
            "qemu: ",
            Some(File::create(&log_path).unwrap()),
            Some(Box::new(move |l: &str| {
                seen2.lock().unwrap().push(l.to_string())
            })),
        );
        let mut lines = Vec::new();
        loop {
            match c.line(Duration::from_secs(5)) {
                ConsoleEvent::Line(l) => lines.push(l),
                ConsoleEvent::Closed => break,
                ConsoleEvent::Timeout => panic!("console never closed"),
            }
        }
        lines.sort();
        assert_eq!(
            lines,
            ["[    0.0] Linux version", "partial", "qemu: bad option"]
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(
            std::fs::read_to_string(log_path).unwrap().lines().count(),
            3
        );
        assert!(c.tail().contains("qemu: bad option"));
    }
}
