//! Waiting for the block devices the host configured (devtmpfs creates their
//! nodes asynchronously, after the drivers probe) and listing `/dev`.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Waits until every `/dev/<name>` exists or `timeout` passes; returns the
/// names still missing.
pub fn wait_for(names: &[String], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !Path::new("/dev").join(n).exists())
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        sleep(Duration::from_millis(20));
    }
}

/// The names of the entries directly under `/dev`, sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/dev")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
