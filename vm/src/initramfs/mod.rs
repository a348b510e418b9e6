//! Building the initramfs the VM boots: the agent as `/init`, the kernel
//! modules it loads (decompressed, with a list file in load order) and
//! optionally host binaries with their shared libraries. Plain (uncompressed)
//! cpio: the kernel unpacks it fastest, and size does not matter for `-initrd`.

pub mod cpio;
pub mod libs;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use cgstorm_proto::contract::{MODULE_DIR, MODULE_LIST};

use crate::error::InitramfsError;
use crate::kernel::modules::ModuleFile;
use cpio::CpioWriter;

/// An initramfs being written.
pub struct Initramfs {
    path: PathBuf,
    w: CpioWriter<BufWriter<File>>,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
}

impl Initramfs {
    /// Starts an archive at `path` with the skeleton every init needs:
    /// `/dev/console` (the kernel opens it for init's stdio before devtmpfs is
    /// mounted), `/dev/null` and empty mount points.
    pub fn create(path: &Path) -> Result<Self, InitramfsError> {
        let file = File::create(path).map_err(|source| InitramfsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut me = Self {
            path: path.to_path_buf(),
            w: CpioWriter::new(BufWriter::new(file)),
            dirs: BTreeSet::new(),
            files: BTreeSet::new(),
        };
        for d in ["/dev", "/proc", "/sys", "/tmp", "/run", "/mnt"] {
            me.add_dir_all(d)?;
        }
        me.io(|w| w.char_dev("dev/console", 0o600, 5, 1))?;
        me.io(|w| w.char_dev("dev/null", 0o666, 1, 3))?;
        Ok(me)
    }

    /// Adds a directory and its missing parents.
    pub fn add_dir_all(&mut self, guest: &str) -> Result<(), InitramfsError> {
        let rel = check_path(guest)?;
        let mut so_far = String::new();
        for part in rel.split('/') {
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(part);
            if self.dirs.insert(so_far.clone()) {
                let d = so_far.clone();
                self.io(|w| w.dir(&d, 0o755))?;
            }
        }
        Ok(())
    }

    /// Adds a file with contents `data` (parents are created).
    pub fn add_file(&mut self, guest: &str, perm: u32, data: &[u8]) -> Result<(), InitramfsError> {
        let rel = self.prepare(guest)?;
        if self.files.insert(rel.clone()) {
            self.io(|w| w.file(&rel, perm, data))?;
        }
        Ok(())
    }

    /// Adds a symlink (parents are created).
    pub fn add_symlink(&mut self, guest: &str, target: &str) -> Result<(), InitramfsError> {
        let rel = self.prepare(guest)?;
        if self.files.insert(rel.clone()) {
            self.io(|w| w.symlink(&rel, target))?;
        }
        Ok(())
    }

    /// Copies a host file (following symlinks), keeping its permission bits.
    pub fn add_host_file(&mut self, guest: &str, host: &Path) -> Result<(), InitramfsError> {
        let err = |source| InitramfsError::Io {
            path: host.to_path_buf(),
            source,
        };
        let perm = fs::metadata(host).map_err(err)?.permissions().mode() & 0o7777;
        let data = fs::read(host).map_err(err)?;
        self.add_file(guest, perm, &data)
    }

    /// Adds the agent (a static binary) as `/init`.
    pub fn add_init(&mut self, agent: &Path) -> Result<(), InitramfsError> {
        let err = |source| InitramfsError::Io {
            path: agent.to_path_buf(),
            source,
        };
        let data = fs::read(agent).map_err(err)?;
        self.add_file("/init", 0o755, &data)
    }

    /// Adds the modules, decompressed, under [`MODULE_DIR`] and the list file
    /// [`MODULE_LIST`] naming them in load order.
    pub fn add_modules(&mut self, modules: &[ModuleFile]) -> Result<(), InitramfsError> {
        if modules.is_empty() {
            return Ok(());
        }
        let mut list = String::new();
        for m in modules {
            let guest = format!("{MODULE_DIR}/{}.ko", m.name);
            self.add_file(&guest, 0o644, &m.uncompressed()?)?;
            list.push_str(&guest);
            list.push('\n');
        }
        self.add_file(MODULE_LIST, 0o644, list.as_bytes())
    }

    /// Copies a host binary to the same path, with the shared libraries and
    /// loader `ldd` lists (also at their host paths).
    pub fn add_binary(&mut self, host: &Path) -> Result<(), InitramfsError> {
        let guest = host
            .to_str()
            .ok_or_else(|| InitramfsError::BadPath(host.display().to_string()))?;
        self.add_host_file(guest, host)?;
        for lib in libs::needed(host)? {
            let guest = lib
                .to_str()
                .ok_or_else(|| InitramfsError::BadPath(lib.display().to_string()))?;
            self.add_host_file(guest, &lib)?;
        }
        Ok(())
    }

    /// Writes the trailer; returns the archive's path.
    pub fn finish(self) -> Result<PathBuf, InitramfsError> {
        let path = self.path;
        self.w.finish().map_err(|source| InitramfsError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Validates `guest` and creates its parent directories.
    fn prepare(&mut self, guest: &str) -> Result<String, InitramfsError> {
        let rel = check_path(guest)?;
        if let Some((parent, _)) = rel.rsplit_once('/') {
            self.add_dir_all(&format!("/{parent}"))?;
        }
        Ok(rel)
    }

    fn io(
        &mut self,
        f: impl FnOnce(&mut CpioWriter<BufWriter<File>>) -> std::io::Result<()>,
    ) -> Result<(), InitramfsError> {
        f(&mut self.w).map_err(|source| InitramfsError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// What goes into an agent initramfs.
#[derive(Debug, Clone, Default)]
pub struct AgentImage {
    /// The static agent binary.
    pub agent: PathBuf,
    /// Modules to load, in order.
    pub modules: Vec<ModuleFile>,
    /// Host binaries to copy with their libraries (e.g. /usr/sbin/mkfs.xfs).
    pub binaries: Vec<PathBuf>,
}

impl AgentImage {
    /// Writes the initramfs to `out`.
    pub fn build(&self, out: &Path) -> Result<PathBuf, InitramfsError> {
        let mut img = Initramfs::create(out)?;
        img.add_init(&self.agent)?;
        img.add_modules(&self.modules)?;
        for b in &self.binaries {
            img.add_binary(b)?;
        }
        img.finish()
    }
}

/// `guest` without its leading `/`, if it is absolute and has no `..`.
fn check_path(guest: &str) -> Result<String, InitramfsError> {
    let p = Path::new(guest);
    let ok = p.is_absolute()
        && p.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)))
        && p.components().count() > 1;
    if !ok {
        return Err(InitramfsError::BadPath(guest.to_string()));
    }
    Ok(guest
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::cpio::{parse, S_IFCHR, S_IFDIR, S_IFREG};
    use super::*;

    #[test]
    fn builds_agent_image_with_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        fs::write(&agent, b"\x7fELF agent").unwrap();
        let modules_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/modules");
        let image = AgentImage {
            agent,
            modules: vec![ModuleFile {
                name: "loop".into(),
                path: modules_dir.join("kernel/drivers/block/loop.ko"),
            }],
            binaries: vec![],
        };
        let out = image.build(&dir.path().join("initrd")).unwrap();
        let entries = parse(&fs::read(out).unwrap()).unwrap();
        let find = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(find("init").mode, S_IFREG | 0o755);
        assert_eq!(find("init").data, b"\x7fELF agent");
        assert_eq!(find("dev/console").mode, S_IFCHR | 0o600);
        assert_eq!(find("cgstorm").mode, S_IFDIR | 0o755);
        assert_eq!(find("cgstorm/modules/loop.ko").data, b"fake loop module\n");
        assert_eq!(
            find("cgstorm/modules.list").data,
            b"/cgstorm/modules/loop.ko\n"
        );
        // every entry's parent directory comes before it
        for (i, e) in entries.iter().enumerate() {
            if let Some((parent, _)) = e.name.rsplit_once('/') {
                let p = entries.iter().position(|x| x.name == parent).unwrap();
                assert!(p < i, "{} before its parent", e.name);
            }
        }
    }

    #[test]
    fn copies_dynamic_binaries_with_their_libraries() {
        let sh = Path::new("/bin/sh");
        if !sh.exists() {
            // Past the test harness's capture, so that it shows.
            let _ = writeln!(
                std::io::stderr(),
                "initramfs: SKIP: no /bin/sh on this host to copy with its libraries"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut img = Initramfs::create(&dir.path().join("initrd")).unwrap();
        img.add_binary(sh).unwrap();
        let out = img.finish().unwrap();
        let entries = parse(&fs::read(out).unwrap()).unwrap();
        assert!(entries.iter().any(|e| e.name == "bin/sh"));
        assert!(
            entries.iter().any(|e| e.name.contains("libc.so")),
            "no libc in {entries:?}"
        );
        assert!(entries.iter().any(|e| e.name.contains("ld-linux")));
    }

    #[test]
    fn rejects_relative_and_dotdot_paths() {
        assert!(check_path("init").is_err());
        assert!(check_path("/a/../b").is_err());
        assert!(check_path("/").is_err());
        assert_eq!(check_path("/a/b/").unwrap(), "a/b");
    }
}
