//! Reading the kernel release from an x86 bzImage without booting it: the
//! setup header's `kernel_version` field points (relative to 0x200) at a
//! NUL-terminated string that starts with the release (`uname -r`).
//! See Documentation/arch/x86/boot.rst.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::KernelError;

/// Offset of `setup_sects` in the image.
const SETUP_SECTS: usize = 0x1f1;
/// Offset of the `HdrS` magic.
const HEADER_MAGIC: usize = 0x202;
/// Offset of the boot protocol version.
const PROTOCOL_VERSION: usize = 0x206;
/// Offset of `kernel_version`.
const KERNEL_VERSION: usize = 0x20e;

/// Parses the version string out of the first bytes of a bzImage (the real
/// mode setup code; 64 KiB is always enough).
pub fn version_string(image: &[u8]) -> Result<String, String> {
    let u16_at = |off: usize| -> Result<u16, String> {
        image
            .get(off..off + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| {
                format!(
                    "file too short for the setup header ({} bytes)",
                    image.len()
                )
            })
    };
    if image.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        return Err("no HdrS setup header magic at 0x202".into());
    }
    let protocol = u16_at(PROTOCOL_VERSION)?;
    if protocol < 0x0200 {
        return Err(format!(
            "boot protocol {protocol:#x} predates kernel_version"
        ));
    }
    let ptr = u16_at(KERNEL_VERSION)?;
    if ptr == 0 {
        return Err("kernel_version field is 0".into());
    }
    let setup_sects = match image.get(SETUP_SECTS) {
        Some(0) => 4,
        Some(&n) => usize::from(n),
        None => return Err("file too short".into()),
    };
    let start = usize::from(ptr) + 0x200;
    if start >= (setup_sects + 1) * 512 {
        return Err(format!(
            "kernel_version {ptr:#x} points past the setup code"
        ));
    }
    let rest = image
        .get(start..)
        .ok_or("kernel_version points past the end")?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or("version string not terminated")?;
    let s = std::str::from_utf8(&rest[..end]).map_err(|_| "version string is not utf-8")?;
    if s.trim().is_empty() {
        return Err("version string is empty".into());
    }
    Ok(s.to_string())
}

/// The release (`uname -r`): the first word of the version string.
pub fn release_of(version: &str) -> &str {
    version.split_whitespace().next().unwrap_or(version)
}

/// Reads the release of the bzImage at `path`.
pub fn read_release(path: &Path) -> Result<String, KernelError> {
    let read_err = |source| KernelError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(path)
        .map_err(read_err)?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    let version = version_string(&head).map_err(|reason| KernelError::NotBzImage {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(release_of(&version).to_string())
}

/// A fake setup area with the header fields the parser reads (for tests).
#[cfg(test)]
pub(crate) fn fake_image(version: &str) -> Vec<u8> {
    let mut img = vec![0u8; 5 * 512];
    img[SETUP_SECTS] = 4;
    img[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
    img[PROTOCOL_VERSION..PROTOCOL_VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
    let at = 0x400usize;
    img[KERNEL_VERSION..KERNEL_VERSION + 2].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
    img[at..at + version.len()].copy_from_slice(version.as_bytes());
    img
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::fake_image as image;
    use super::*;

    #[test]
    fn parses_release() {
        let v = "6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP";
        assert_eq!(version_string(&image(v)).unwrap(), v);
        assert_eq!(release_of(v), "6.1.0-56-cloud-amd64");
    }

    #[test]
    fn rejects_non_bzimage() {
        assert!(version_string(b"\x7fELF").unwrap_err().contains("HdrS"));
        let mut img = image("6.12.0");
        img[KERNEL_VERSION..KERNEL_VERSION + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(version_string(&img).is_err());
        let mut img = image("6.12.0");
        img[KERNEL_VERSION..KERNEL_VERSION + 2].copy_from_slice(&0x1000u16.to_le_bytes());
        assert!(version_string(&img).unwrap_err().contains("past the setup"));
    }

    #[test]
    fn reads_the_release_of_an_image_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bzImage");
        std::fs::write(&path, image("6.12.0-lockdep #1 SMP PREEMPT_DYNAMIC")).unwrap();
        assert_eq!(read_release(&path).unwrap(), "6.12.0-lockdep");
        std::fs::write(&path, b"\x7fELF not a bzImage").unwrap();
        assert!(matches!(
            read_release(&path),
            Err(KernelError::NotBzImage { .. })
        ));
        assert!(matches!(
            read_release(&dir.path().join("absent")),
            Err(KernelError::Read { .. })
        ));
    }

    #[test]
    fn reads_real_images_when_present() {
        let shared =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/kernels/bzImage-6.12-lockdep");
        if !shared.exists() {
            // Past the test harness's capture, so that it shows.
            let _ = writeln!(
                std::io::stderr(),
                "bzimage: SKIP: no kernel at {} (the shared 6.12 kernels are not here)",
                shared.display()
            );
            return;
        }
        assert!(read_release(&shared).unwrap().starts_with("6.12"));
    }
}
