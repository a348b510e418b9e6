//! Finding and opening the agent's virtio-serial port: the directory under
//! `/sys/class/virtio-ports/` whose `name` file holds the port name gives the
//! device node `/dev/<dir>` (e.g. `/dev/vport0p1`; port 0 is the console).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Finds the device node of the port named `name`, if it is there yet.
pub fn find(name: &str) -> Option<PathBuf> {
    let rd = fs::read_dir("/sys/class/virtio-ports").ok()?;
    rd.filter_map(Result::ok).find_map(|e| {
        let port_name = fs::read_to_string(e.path().join("name")).ok()?;
        (port_name.trim() == name).then(|| PathBuf::from("/dev").join(e.file_name()))
    })
}

/// Waits for the port named `name` to appear (sysfs entry and device node)
/// and opens it for reading and writing.
pub fn open(name: &str, timeout: Duration) -> io::Result<(PathBuf, File)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(path) = find(name).filter(|p| p.exists()) {
            let f = OpenOptions::new().read(true).write(true).open(&path)?;
            return Ok((path, f));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no virtio-serial port named {name} after {timeout:?} \
                     (is virtio_console loaded and the port on the qemu command line?)"
                ),
            ));
        }
        sleep(Duration::from_millis(20));
    }
}
