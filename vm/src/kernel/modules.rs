//! Kernel modules: parsing a modules directory (`modules.dep`, `modules.builtin`,
//! `modules.alias`, `modules.softdep`) and resolving wanted module names into an
//! ordered load list, dependencies first, the way modprobe would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::KernelError;

/// A module wanted in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Module name (`-` and `_` are the same) or alias.
    pub name: String,
    /// Whether a kernel without it (neither module nor built in) is fine.
    pub optional: bool,
}

impl Want {
    /// A module the boot cannot do without.
    pub fn required(name: &str) -> Self {
        Self {
            name: name.into(),
            optional: false,
        }
    }
    /// A module used when the kernel has it.
    pub fn optional(name: &str) -> Self {
        Self {
            name: name.into(),
            optional: true,
        }
    }
}

/// What the agent VM needs from a modular kernel (Debian's cloud kernel builds
/// all of these as modules): the virtio-serial agent port, virtio-blk scratch
/// disks, loop, pmem from `memmap=` (nd_e820 + nd_pmem), nvdimm (nfit), xfs.
pub fn default_wants() -> Vec<Want> {
    let mut w: Vec<Want> = ["virtio_pci", "virtio_console", "virtio_blk"]
        .into_iter()
        .map(Want::required)
        .collect();
    w.extend(
        [
            "loop", "nd_pmem", "nd_e820", "nfit", "dax_pmem", "xfs", "ext4",
        ]
        .into_iter()
        .map(Want::optional),
    );
    w
}

/// A module to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Normalised module name (`_` for `-`).
    pub name: String,
    /// The file on the host (maybe compressed).
    pub path: PathBuf,
}

impl ModuleFile {
    /// The module's bytes, decompressed on the host if the file is `.ko.xz`,
    /// `.ko.zst` or `.ko.gz`. Decompressing here works whether or not the guest
    /// kernel has CONFIG_MODULE_DECOMPRESS, and the agent needs no flags.
    pub fn uncompressed(&self) -> Result<Vec<u8>, KernelError> {
        let name = self.path.to_string_lossy();
        let tool = if name.ends_with(".ko.xz") {
            "xz"
        } else if name.ends_with(".ko.zst") {
            "zstd"
        } else if name.ends_with(".ko.gz") {
            "gzip"
        } else {
            return fs::read(&self.path).map_err(|source| KernelError::Read {
                path: self.path.clone(),
                source,
            });
        };
        let err = |reason: String| KernelError::Decompress {
            path: self.path.clone(),
            tool,
            reason,
        };
        let out = Command::new(tool)
            .arg("-dc")
            .arg(&self.path)
            .output()
            .map_err(|e| err(format!("{e} (install {tool})")))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(out.stdout)
    }
}

/// The module metadata of one kernel release.
#[derive(Debug, Clone, Default)]
pub struct ModuleDb {
    dir: PathBuf,
    /// name -> (relative path, dependency relative paths)
    modules: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
    aliases: HashMap<String, Vec<String>>,
    soft_pre: HashMap<String, Vec<String>>,
}

/// `virtio-pci` and `virtio_pci` name the same module.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path like `kernel/fs/xfs/xfs.ko.xz`.
pub fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    normalise(stem)
}

impl ModuleDb {
    /// Reads the metadata files of `dir` (`lib/modules/<release>`); only
    /// `modules.dep` is required (run `depmod -b` to make it).
    pub fn load(dir: &Path) -> Result<Self, KernelError> {
        let read = |name: &str, required: bool| -> Result<String, KernelError> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(String::new())
                }
                Err(source) => Err(KernelError::Read { path, source }),
            }
        };
        Self::parse(
            dir,
            &read("modules.dep", true)?,
            &read("modules.builtin", false)?,
            &read("modules.alias", false)?,
            &read("modules.softdep", false)?,
        )
    }

    /// Parses the metadata texts; `dir` is where module paths are relative to.
    pub fn parse(
        dir: &Path,
        dep: &str,
        builtin: &str,
        alias: &str,
        softdep: &str,
    ) -> Result<Self, KernelError> {
        let mut db = ModuleDb {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        for (i, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, deps) =
                line.split_once(':')
                    .ok_or_else(|| KernelError::BadModulesDep {
                        path: dir.join("modules.dep"),
                        line: i + 1,
                    })?;
            let deps = deps.split_whitespace().map(String::from).collect();
            db.modules
                .insert(name_of(module.trim()), (module.trim().to_string(), deps));
        }
        db.builtin = builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(name_of)
            .collect();
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (words.next(), words.next(), words.next()) {
                db.aliases
                    .entry(a.to_string())
                    .or_default()
                    .push(normalise(m));
            }
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let mut in_pre = false;
            for w in words {
                match w {
                    "pre:" => in_pre = true,
                    "post:" => in_pre = false,
                    _ if in_pre => db
                        .soft_pre
                        .entry(normalise(module))
                        .or_default()
                        .push(w.to_string()),
                    _ => {}
                }
            }
        }
        Ok(db)
    }

    /// Whether the module is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalise(name))
    }

    /// Resolves the wanted modules into a load list, dependencies first, each
    /// module once. Built-in modules are skipped; optional ones the kernel does
    /// not have are skipped; `pre:` soft dependencies are loaded when present.
    pub fn resolve(&self, wants: &[Want]) -> Result<Vec<ModuleFile>, KernelError> {
        let mut order = Vec::new();
        let mut state = HashMap::new();
        for want in wants {
            match self.lookup(&want.name) {
                Lookup::Module(name) => self.visit(&name, &mut state, &mut order)?,
                Lookup::Builtin => {}
                Lookup::Missing if want.optional => {}
                Lookup::Missing => {
                    return Err(KernelError::ModuleMissing {
                        name: want.name.clone(),
                        dir: self.dir.clone(),
                    })
                }
            }
        }
        Ok(order)
    }

    fn lookup(&self, name: &str) -> Lookup {
        let n = normalise(name);
        if self.modules.contains_key(&n) {
            return Lookup::Module(n);
        }
        if self.builtin.contains(&n) {
            return Lookup::Builtin;
        }
        match self
            .aliases
            .get(name)
            .and_then(|ms| ms.iter().find(|m| self.modules.contains_key(*m)))
        {
            Some(m) => Lookup::Module(m.clone()),
            None => Lookup::Missing,
        }
    }

    /// Depth-first, post-order: a module is pushed after all it depends on.
    fn visit(
        &self,
        name: &str,
        state: &mut HashMap<String, bool>,
        order: &mut Vec<ModuleFile>,
    ) -> Result<(), KernelError> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => return Err(KernelError::ModuleCycle(name.to_string())),
            None => {}
        }
        state.insert(name.to_string(), false);
        let (path, deps) = &self.modules[name];
        for soft in self.soft_pre.get(name).into_iter().flatten() {
            if let Lookup::Module(m) = self.lookup(soft) {
                self.visit(&m, state, order)?;
            }
        }
        // modules.dep lists the deepest dependency last; visiting in reverse
        // gives modprobe's order, and the recursion makes it right regardless.
        for dep in deps.iter().rev() {
            let dep_name = name_of(dep);
            if self.modules.contains_key(&dep_name) {
                self.visit(&dep_name, state, order)?;
            }
        }
        state.insert(name.to_string(), true);
        order.push(ModuleFile {
            name: name.to_string(),
            path: self.dir.join(path),
        });
        Ok(())
    }
}

enum Lookup {
    Module(String),
    Builtin,
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "testdata/modules";

    fn fixture() -> ModuleDb {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR);
        ModuleDb::load(&dir).unwrap()
    }

    fn names(list: &[ModuleFile]) -> Vec<&str> {
        list.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn resolves_dependencies_first_once() {
        let db = fixture();
        let list = db.resolve(&default_wants()).unwrap();
        assert_eq!(
            names(&list),
            [
                "virtio_ring",
                "virtio",
                "virtio_pci_modern_dev",
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "virtio_console",
                "virtio_blk",
                "loop",
                "libnvdimm",
                "nd_btt",
                "nd_pmem",
                "nd_e820",
                "crc32c_intel",
                "libcrc32c",
                "xfs",
            ]
        );
        assert!(list[0]
            .path
            .ends_with("kernel/drivers/virtio/virtio_ring.ko"));
        // ext4 is built in, nfit and dax_pmem are absent and optional
        assert!(db.is_builtin("ext4"));
    }

    #[test]
    fn every_module_comes_after_its_dependencies() {
        let db = fixture();
        let list = db.resolve(&default_wants()).unwrap();
        for (i, m) in list.iter().enumerate() {
            for dep in &db.modules[&m.name].1 {
                let pos = list.iter().position(|x| x.name == name_of(dep)).unwrap();
                assert!(pos < i, "{} loads before its dependency {}", m.name, dep);
            }
        }
    }

    #[test]
    fn required_missing_module_is_an_error() {
        let err = fixture()
            .resolve(&[Want::required("no-such-mod")])
            .unwrap_err();
        assert!(err.to_string().contains("no-such-mod"), "{err}");
        assert!(fixture()
            .resolve(&[Want::optional("no-such-mod")])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn aliases_dashes_and_compressed_names() {
        let db = fixture();
        assert_eq!(
            names(&db.resolve(&[Want::required("e820_pmem_alias")]).unwrap()),
            ["libnvdimm", "nd_e820"]
        );
        assert_eq!(
            name_of("kernel/drivers/dax/device-dax.ko.zst"),
            "device_dax"
        );
        assert_eq!(name_of("xfs.ko.xz"), "xfs");
    }

    #[test]
    fn cycles_and_bad_lines_are_errors() {
        let dep = "a.ko: b.ko\nb.ko: a.ko\n";
        let db = ModuleDb::parse(Path::new("/m"), dep, "", "", "").unwrap();
        assert!(matches!(
            db.resolve(&[Want::required("a")]),
            Err(KernelError::ModuleCycle(_))
        ));
        let err = ModuleDb::parse(Path::new("/m"), "a.ko: \nbroken\n", "", "", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/m/modules.dep:2: expected `module.ko: dep.ko ...`"
        );
    }

    #[test]
    fn reads_plain_and_compressed_modules() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR);
        let plain = dir.join("kernel/drivers/block/loop.ko");
        let m = |path: PathBuf| ModuleFile {
            name: "loop".into(),
            path,
        };
        assert_eq!(
            m(plain.clone()).uncompressed().unwrap(),
            b"fake loop module\n"
        );
        let tmp = tempfile::tempdir().unwrap();
        for (tool, ext) in [("xz", "xz"), ("zstd", "zst"), ("gzip", "gz")] {
            let out = tmp.path().join(format!("loop.ko.{ext}"));
            let Ok(o) = Command::new(tool).arg("-c").arg(&plain).output() else {
                eprintln!("{tool} not installed, skipping");
                continue;
            };
            fs::write(&out, o.stdout).unwrap();
            assert_eq!(
                m(out).uncompressed().unwrap(),
                b"fake loop module\n",
                "{tool}"
            );
        }
        let broken = tmp.path().join("broken.ko.xz");
        fs::write(&broken, b"not xz").unwrap();
        if Command::new("xz").arg("--version").output().is_ok() {
            let err = m(broken).uncompressed().unwrap_err();
            assert!(err.to_string().starts_with("cannot decompress"), "{err}");
        }
    }
}
