//! A minimal QMP (QEMU Machine Protocol) client: one JSON object per line
//! over a unix socket, a greeting, `qmp_capabilities`, then commands whose
//! answers are `{"return": …}` or `{"error": …}`, with asynchronous
//! `{"event": …}` lines in between, which are skipped. Enough to save a
//! running VM's state to a file (see [`crate::snapshot`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::HostError;

/// A connected QMP session.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's QMP socket (retrying until `timeout`: QEMU makes
    /// it as it starts), reads the greeting and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, HostError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(HostError::Io {
                        what: format!("connect to QMP at {}", path.display()),
                        source: e,
                    })
                }
                Err(_) => sleep(Duration::from_millis(20)),
            }
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(HostError::io("set a QMP read timeout"))?;
        let writer = stream
            .try_clone()
            .map_err(HostError::io("clone the QMP socket"))?;
        let mut q = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(HostError::Snapshot(format!(
                "not a QMP greeting: {greeting}"
            )));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, HostError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(HostError::io("read from QMP"))?;
        if n == 0 {
            return Err(HostError::Snapshot("QMP closed the connection".into()));
        }
        serde_json::from_str(&line)
            .map_err(|e| HostError::Snapshot(format!("QMP sent what is not JSON ({e}): {line}")))
    }

    /// Runs `command` with `arguments`; its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, HostError> {
        let mut msg = json!({ "execute": command });
        if arguments.as_object().is_some_and(|a| !a.is_empty()) {
            msg["arguments"] = arguments;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(HostError::io("write to QMP"))?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                continue;
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            let why = v
                .pointer("/error/desc")
                .and_then(Value::as_str)
                .unwrap_or("no description");
            return Err(HostError::Snapshot(format!("QMP {command}: {why}")));
        }
    }

    /// Writes the guest's whole state to `file` (QEMU runs `cat > file`),
    /// then resumes it; returns the state's RAM size in bytes. The guest is
    /// not stopped first: the saved state is then that of a running guest
    /// (QEMU migrates the run state too), and a VM started from it runs at
    /// once. An idle guest (the agent waiting for orders) converges at once.
    pub fn save_state(&mut self, file: &Path, timeout: Duration) -> Result<u64, HostError> {
        let saved = self.migrate(&sh_quoted(file)?, timeout);
        // Resume whatever happened: the VM goes on running programs.
        let resumed = self.resume(timeout);
        let size = saved?;
        resumed?;
        Ok(size)
    }

    /// `cont`, once the migration has left the run state `finish-migrate`:
    /// QEMU says the migration `completed` a moment before its thread moves
    /// the VM to `postmigrate`, and refuses `cont` in between ("Migration is
    /// not finalized yet"; CI hit that window once in 22 saves).
    fn resume(&mut self, timeout: Duration) -> Result<(), HostError> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.execute("query-status", json!({}))?;
            let finishing = s.get("status").and_then(Value::as_str) == Some("finish-migrate");
            if !finishing || Instant::now() >= deadline {
                break;
            }
            sleep(Duration::from_millis(10));
        }
        self.execute("cont", json!({})).map(drop)
    }

    fn migrate(&mut self, quoted: &str, timeout: Duration) -> Result<u64, HostError> {
        self.execute("migrate", json!({ "uri": format!("exec:cat > {quoted}") }))?;
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.execute("query-migrate", json!({}))?;
            match r.get("status").and_then(Value::as_str) {
                Some("completed") => {
                    return Ok(r.pointer("/ram/total").and_then(Value::as_u64).unwrap_or(0))
                }
                Some("failed" | "cancelled") => {
                    let why = r
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    return Err(HostError::Snapshot(format!(
                        "saving the vm state failed: {why}"
                    )));
                }
                _ if Instant::now() >= deadline => {
                    let _ = self.execute("migrate_cancel", json!({}));
                    return Err(HostError::Snapshot(format!(
                        "saving the vm state took longer than {timeout:?}"
                    )));
                }
                _ => sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// `path` in single quotes, for the `exec:` migration URIs QEMU runs with
/// sh (saving here, `-incoming` when restoring).
pub fn sh_quoted(path: &Path) -> Result<String, HostError> {
    path.to_str()
        .filter(|p| !p.contains('\''))
        .map(|p| format!("'{p}'"))
        .ok_or_else(|| {
            HostError::Snapshot(format!(
                "{} cannot be quoted for sh (not UTF-8, or a quote in it)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A QMP server that greets, then answers each command from `answers`
    /// (an event first, to be skipped), recording the commands.
    fn server(
        answers: Vec<&'static str>,
    ) -> (tempfile::TempDir, std::thread::JoinHandle<Vec<String>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut got = Vec::new();
            for a in answers {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(line.trim().to_string());
                writeln!(w, r#"{{"event": "STOP", "timestamp": {{}}}}"#).unwrap();
                writeln!(w, "{a}").unwrap();
            }
            got
        });
        (dir, h)
    }

    #[test]
    fn saving_migrates_waits_and_resumes() {
        let (dir, h) = server(vec![
            r#"{"return": {}}"#,
            r#"{"return": {}}"#,
            r#"{"return": {"status": "active"}}"#,
            r#"{"return": {"status": "completed", "ram": {"total": 4096}}}"#,
            r#"{"return": {"status": "finish-migrate", "running": false}}"#,
            r#"{"return": {"status": "postmigrate", "running": false}}"#,
            r#"{"return": {}}"#,
        ]);
        let mut q = Qmp::connect(&dir.path().join("qmp.sock"), Duration::from_secs(5)).unwrap();
        let n = q
            .save_state(Path::new("/t/state"), Duration::from_secs(5))
            .unwrap();
        assert_eq!(n, 4096);
        drop(q);
        let got = h.join().unwrap();
        assert_eq!(got[0], r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(
            got[1],
            r#"{"arguments":{"uri":"exec:cat > '/t/state'"},"execute":"migrate"}"#
        );
        assert_eq!(got[2], r#"{"execute":"query-migrate"}"#);
        // cont waits for the run state to leave finish-migrate.
        assert_eq!(got[4], r#"{"execute":"query-status"}"#);
        assert_eq!(got[5], r#"{"execute":"query-status"}"#);
        assert_eq!(got[6], r#"{"execute":"cont"}"#);
        assert_eq!(got.len(), 7);
    }

    #[test]
    fn a_failed_save_still_resumes_and_says_why() {
        let (dir, h) = server(vec![
            r#"{"return": {}}"#,
            r#"{"return": {}}"#,
            r#"{"return": {"status": "failed", "error-desc": "disk full"}}"#,
            r#"{"return": {"status": "running", "running": true}}"#,
            r#"{"return": {}}"#,
        ]);
        let mut q = Qmp::connect(&dir.path().join("qmp.sock"), Duration::from_secs(5)).unwrap();
        let e = q
            .save_state(Path::new("/t/state"), Duration::from_secs(5))
            .unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        drop(q);
        let got = h.join().unwrap();
        assert_eq!(got.last().unwrap(), r#"{"execute":"cont"}"#);
    }

    #[test]
    fn an_error_answer_names_the_command() {
        let (dir, _h) = server(vec![
            r#"{"return": {}}"#,
            r#"{"error": {"class": "GenericError", "desc": "no such thing"}}"#,
        ]);
        let mut q = Qmp::connect(&dir.path().join("qmp.sock"), Duration::from_secs(5)).unwrap();
        let e = q.execute("frob", json!({})).unwrap_err();
        assert!(e.to_string().contains("QMP frob: no such thing"), "{e}");
    }
}
