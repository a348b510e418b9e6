//! A writer for the cpio "newc" format the kernel unpacks as initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst), and a reader
//! used by the tests.

use std::io::{self, Write};

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;

/// Writes a newc archive entry by entry. Names are written without the
/// leading `/`; parents must be written before their children.
pub struct CpioWriter<W: Write> {
    out: W,
    offset: usize,
    next_ino: u32,
}

/// One entry's metadata.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    rdev: (u32, u32),
    data: &'a [u8],
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Self {
            out,
            offset: 0,
            next_ino: 1,
        }
    }

    /// A directory with permission bits `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(Entry {
            name,
            mode: S_IFDIR | perm,
            rdev: (0, 0),
            data: &[],
        })
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(Entry {
            name,
            mode: S_IFREG | perm,
            rdev: (0, 0),
            data,
        })
    }

    /// A symlink to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(Entry {
            name,
            mode: S_IFLNK | 0o777,
            rdev: (0, 0),
            data: target.as_bytes(),
        })
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(Entry {
            name,
            mode: S_IFCHR | perm,
            rdev: (major, minor),
            data: &[],
        })
    }

    /// A block device node.
    pub fn block_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(Entry {
            name,
            mode: S_IFBLK | perm,
            rdev: (major, minor),
            data: &[],
        })
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(TRAILER, 0, 0, (0, 0), 0, 1)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, e: Entry<'_>) -> io::Result<()> {
        let name = e.name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio name {:?}", e.name),
            ));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if e.mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        self.header(name, ino, e.mode, e.rdev, e.data.len(), nlink)?;
        self.write(e.data)?;
        self.pad()
    }

    fn header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        rdev: (u32, u32),
        size: usize,
        nlink: u32,
    ) -> io::Result<()> {
        let size = u32::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpio newc files must be under 4 GiB",
            )
        })?;
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut h = Vec::with_capacity(HEADER_LEN + name.len() + 4);
        h.extend_from_slice(MAGIC);
        for f in fields {
            h.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        self.write(&h)?;
        self.pad()
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len();
        Ok(())
    }

    /// Pads to a multiple of 4 bytes.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.offset % 4) % 4;
        self.write(&[0u8; 3][..n])
    }
}

/// An entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// Name without leading `/`.
    pub name: String,
    /// Full `st_mode`.
    pub mode: u32,
    /// Device numbers for nodes.
    pub rdev: (u32, u32),
    /// File contents or symlink target.
    pub data: Vec<u8>,
}

/// Parses a newc archive (up to the trailer).
pub fn parse(mut b: &[u8]) -> Result<Vec<ReadEntry>, String> {
    let total = b.len();
    let mut out = Vec::new();
    let align = |b: &[u8], total: usize| -> usize { (4 - (total - b.len()) % 4) % 4 };
    loop {
        if b.len() < HEADER_LEN || &b[..6] != MAGIC {
            return Err(format!("no newc header at offset {}", total - b.len()));
        }
        let field = |i: usize| -> Result<u32, String> {
            let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).map_err(|e| e.to_string())?;
            u32::from_str_radix(s, 16).map_err(|e| e.to_string())
        };
        let (mode, size, rdev, namesize) = (
            field(1)?,
            field(6)? as usize,
            (field(9)?, field(10)?),
            field(11)? as usize,
        );
        b = &b[HEADER_LEN..];
        let name = std::str::from_utf8(b.get(..namesize - 1).ok_or("name past end")?)
            .map_err(|e| e.to_string())?
            .to_string();
        b = &b[namesize..];
        b = &b[align(b, total)..];
        if name == TRAILER {
            return Ok(out);
        }
        let data = b.get(..size).ok_or("data past end")?.to_vec();
        b = &b[size..];
        b = b.get(align(b, total)..).unwrap_or(&[]);
        out.push(ReadEntry {
            name,
            mode,
            rdev,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/dev", 0o755).unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.dir("bin", 0o755).unwrap();
        w.file("/bin/a", 0o755, b"hello").unwrap();
        w.file("/bin/empty", 0o644, b"").unwrap();
        w.symlink("/bin/sh", "a").unwrap();
        w.block_dev("/dev/vda", 0o660, 254, 0).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "bin",
                "bin/a",
                "bin/empty",
                "bin/sh",
                "dev/vda"
            ]
        );
        assert_eq!(entries[1].mode, S_IFCHR | 0o600);
        assert_eq!(entries[1].rdev, (5, 1));
        assert_eq!(entries[3].data, b"hello");
        assert_eq!(entries[3].mode, S_IFREG | 0o755);
        assert_eq!(entries[5].data, b"a");
        assert_eq!(entries[5].mode & S_IFLNK, S_IFLNK);
        assert_eq!(entries[6].rdev, (254, 0));
    }

    #[test]
    fn gnu_cpio_lists_it() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio not installed, skipping");
            return;
        };
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 7, "{listing}");
        assert!(
            lines[1].starts_with("crw-------") && lines[1].ends_with("dev/console"),
            "{listing}"
        );
        assert!(
            lines[3].starts_with("-rwxr-xr-x") && lines[3].ends_with("bin/a"),
            "{listing}"
        );
        assert!(
            lines[5].starts_with("lrwxrwxrwx") && lines[5].ends_with("bin/sh -> a"),
            "{listing}"
        );
        assert!(lines[6].starts_with("brw-rw----"), "{listing}");
    }

    #[test]
    fn rejects_empty_names() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/", 0o644, b"").is_err());
    }
}
