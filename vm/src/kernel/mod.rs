//! Finding the kernel to boot: a bzImage file, a built kernel tree, or the
//! Debian cloud kernel that `vm/scripts/fetch-debian-kernel.sh` unpacked into
//! the cache; with its release (read from the image) and modules, if any.

pub mod bzimage;
pub mod modules;

use std::env;
use std::path::{Path, PathBuf};

use crate::error::KernelError;

/// Where the kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// A bzImage file.
    Image(PathBuf),
    /// A kernel build tree holding `arch/x86/boot/bzImage`.
    Tree(PathBuf),
    /// The Debian kernel fetched into a cache directory
    /// (`None`: [`default_cache_dir`]): the one `default` points at.
    Debian(Option<PathBuf>),
    /// One release of the Debian kernel in the default cache (`6.1.0-57` or
    /// `6.1.0-57-cloud-amd64`): `--kernel debian:6.1.0-57` or
    /// `$CGSTORM_DEBIAN_KERNEL`, the same pin the fetch script takes.
    DebianPinned(String),
}

/// The environment variable that pins the Debian kernel, for the fetch
/// script and for `--kernel debian`.
pub const DEBIAN_PIN_ENV: &str = "CGSTORM_DEBIAN_KERNEL";

impl KernelSpec {
    /// The kernel `--kernel` names: `debian` or nothing for the fetched
    /// Debian kernel (the release `$CGSTORM_DEBIAN_KERNEL`, `env_pin`, pins,
    /// else the latest fetched), `debian:RELEASE` for one release of it, else
    /// a bzImage or a kernel build tree.
    pub fn named(arg: Option<&str>, env_pin: Option<&str>) -> KernelSpec {
        match (arg, env_pin.filter(|p| !p.is_empty())) {
            (None | Some("debian"), Some(pin)) => KernelSpec::DebianPinned(pin.to_string()),
            (None | Some("debian"), None) => KernelSpec::Debian(None),
            (Some(p), _) => match p.strip_prefix("debian:") {
                Some(pin) => KernelSpec::DebianPinned(pin.to_string()),
                None => KernelSpec::from_path(Path::new(p)),
            },
        }
    }

    /// A directory is a tree, anything else an image.
    pub fn from_path(path: &Path) -> Self {
        if path.is_dir() {
            KernelSpec::Tree(path.to_path_buf())
        } else {
            KernelSpec::Image(path.to_path_buf())
        }
    }
}

/// A kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The bzImage.
    pub image: PathBuf,
    /// Its release (`uname -r`), read from the image header.
    pub release: String,
    /// `lib/modules/<release>` with a `modules.dep`, if the kernel has modules
    /// there. `None` for kernels with everything built in.
    pub modules: Option<PathBuf>,
    /// The Debian package it came from and its exact version
    /// (`linux-image-6.1.0-57-cloud-amd64 6.1.192-3`), as the fetch script
    /// recorded it; `None` for other kernels.
    pub package: Option<String>,
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm/kernels`, as the fetch script uses.
pub fn default_cache_dir() -> PathBuf {
    cache_root().join("kernels")
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/cgstorm` (`/var/cache/cgstorm` with
/// neither set): what cgstorm keeps between runs.
pub fn cache_root() -> PathBuf {
    env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("cgstorm")
}

/// Finds the kernel `spec` names.
pub fn locate(spec: &KernelSpec) -> Result<Kernel, KernelError> {
    match spec {
        KernelSpec::Image(image) => from_image(image, None),
        KernelSpec::Tree(tree) => {
            let image = tree.join("arch/x86/boot/bzImage");
            if !image.is_file() {
                return Err(KernelError::TreeNotBuilt { tree: tree.clone() });
            }
            // `make modules_install INSTALL_MOD_PATH=<tree>/.cgstorm-modules`
            // puts modules where this finds them.
            from_image(&image, Some(&tree.join(".cgstorm-modules")))
        }
        KernelSpec::Debian(cache) => {
            let cache = cache.clone().unwrap_or_else(default_cache_dir);
            let image = debian_image(&cache).ok_or(KernelError::NotFetched {
                cache,
                pin: String::new(),
            })?;
            debian_kernel(&image)
        }
        KernelSpec::DebianPinned(pin) => {
            let cache = default_cache_dir();
            let image = pinned_image(&cache, pin).ok_or_else(|| KernelError::NotFetched {
                cache,
                pin: format!("{DEBIAN_PIN_ENV}={pin} "),
            })?;
            debian_kernel(&image)
        }
    }
}

/// A fetched Debian kernel, with the package the fetch script recorded
/// beside `boot/`.
fn debian_kernel(image: &Path) -> Result<Kernel, KernelError> {
    let mut k = from_image(image, None)?;
    k.package = image
        .parent()
        .and_then(Path::parent)
        .and_then(|d| std::fs::read_to_string(d.join("package")).ok())
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    Ok(k)
}

/// The vmlinuz of the release directory `pin` names: the directory itself
/// (`6.1.0-57-cloud-amd64`) or the one release that continues it after a
/// `-` (`6.1.0-57`).
fn pinned_image(cache: &Path, pin: &str) -> Option<PathBuf> {
    let mut dirs: Vec<String> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == pin || n.strip_prefix(pin).is_some_and(|r| r.starts_with('-')))
        .collect();
    dirs.sort();
    // An exact name wins; otherwise the pin must name one release.
    let name = if dirs.iter().any(|d| d == pin) {
        pin.to_string()
    } else if dirs.len() == 1 {
        dirs.pop()?
    } else {
        return None;
    };
    let image = cache
        .join(&name)
        .join("boot")
        .join(format!("vmlinuz-{name}"));
    image.is_file().then_some(image)
}

/// The vmlinuz under `cache/default` (the fetch script's symlink), or under
/// the newest release directory.
fn debian_image(cache: &Path) -> Option<PathBuf> {
    let find_in = |dir: &Path| -> Option<PathBuf> {
        let mut images: Vec<PathBuf> = std::fs::read_dir(dir.join("boot"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
            .collect();
        images.sort();
        images.pop()
    };
    if let Some(image) = find_in(&cache.join("default")) {
        return Some(image);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().rev().find_map(|d| find_in(d))
}

/// Reads the release and looks for modules next to the image
/// (`<dir>/boot/vmlinuz` → `<dir>/lib/modules/<release>`) or under `root`.
fn from_image(image: &Path, root: Option<&Path>) -> Result<Kernel, KernelError> {
    let release = bzimage::read_release(image)?;
    // QEMU runs in a directory of its own: a relative path would not be
    // found there (`--kernel ../shared/kernels/bzImage-6.12-debug`).
    let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let image = &absolute(image);
    let root = root.map(absolute);
    let root = root.as_deref();
    let mut candidates = Vec::new();
    if let Some(root) = root {
        candidates.push(root.join("lib/modules").join(&release));
    }
    if let Some(parent) = image.parent().and_then(Path::parent) {
        candidates.push(parent.join("lib/modules").join(&release));
    }
    let modules = candidates
        .into_iter()
        .find(|d| d.join("modules.dep").is_file());
    Ok(Kernel {
        image: image.to_path_buf(),
        release,
        modules,
        package: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_kernel_pins_come_from_the_argument_or_the_environment() {
        let named = KernelSpec::named;
        let pinned = |r: &str| KernelSpec::DebianPinned(r.into());
        assert_eq!(named(None, None), KernelSpec::Debian(None));
        assert_eq!(named(Some("debian"), None), KernelSpec::Debian(None));
        assert_eq!(named(Some("debian"), Some("")), KernelSpec::Debian(None));
        assert_eq!(named(None, Some("6.1.0-57")), pinned("6.1.0-57"));
        assert_eq!(
            named(Some("debian:6.1.0-56"), Some("6.1.0-57")),
            pinned("6.1.0-56")
        );
        // A path is a path whatever the environment pins.
        assert_eq!(
            named(Some("/k/bzImage"), Some("6.1.0-57")),
            KernelSpec::Image("/k/bzImage".into())
        );
    }

    #[test]
    fn a_relative_image_path_is_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("bzImage");
        std::fs::write(&image, bzimage::fake_image("6.12.0-test #1 SMP")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(&image, &cwd);
        let k = from_image(&rel, None).unwrap();
        assert!(k.image.is_absolute(), "{}", k.image.display());
        assert_eq!(k.image, std::fs::canonicalize(&image).unwrap());
    }

    /// `path` relative to `base` (both absolute), with `..` steps.
    fn pathdiff(path: &Path, base: &Path) -> PathBuf {
        let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
        let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &p[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn missing_debian_kernel_says_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(&KernelSpec::Debian(Some(dir.path().to_path_buf()))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`bash ci/setup.sh`"), "{err}");
        assert!(
            text.contains("`vm/scripts/fetch-debian-kernel.sh`"),
            "{err}"
        );
        assert!(!text.contains("cgstorm setup"), "{err}");
    }

    #[test]
    fn a_pin_names_one_fetched_release() {
        let dir = tempfile::tempdir().unwrap();
        for r in ["6.1.0-56-cloud-amd64", "6.1.0-57-cloud-amd64"] {
            let boot = dir.path().join(r).join("boot");
            std::fs::create_dir_all(&boot).unwrap();
            std::fs::write(boot.join(format!("vmlinuz-{r}")), b"").unwrap();
        }
        let img = |pin: &str| pinned_image(dir.path(), pin);
        let want = dir
            .path()
            .join("6.1.0-57-cloud-amd64/boot/vmlinuz-6.1.0-57-cloud-amd64");
        assert_eq!(img("6.1.0-57"), Some(want.clone()));
        assert_eq!(img("6.1.0-57-cloud-amd64"), Some(want));
        // Ambiguous, absent, or not at a boundary: nothing.
        assert_eq!(img("6.1.0"), None);
        assert_eq!(img("6.1.0-5"), None);
        assert_eq!(img("6.1.0-58"), None);
    }

    #[test]
    fn a_missing_pinned_kernel_says_how_to_fetch_it() {
        let err = KernelError::NotFetched {
            cache: "/c".into(),
            pin: format!("{DEBIAN_PIN_ENV}=6.1.0-58 "),
        };
        assert!(
            err.to_string()
                .contains("`CGSTORM_DEBIAN_KERNEL=6.1.0-58 bash ci/setup.sh`")
                && err
                    .to_string()
                    .contains("`CGSTORM_DEBIAN_KERNEL=6.1.0-58 vm/scripts/fetch-debian-kernel.sh`"),
            "{err}"
        );
    }

    #[test]
    fn unbuilt_tree_says_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(&KernelSpec::from_path(dir.path())).unwrap_err();
        assert!(err.to_string().contains("build-kernel.sh"), "{err}");
    }

    #[test]
    fn missing_image_is_a_read_error() {
        let err = locate(&KernelSpec::Image("/nonexistent/bzImage".into())).unwrap_err();
        assert!(matches!(err, KernelError::Read { .. }));
    }
}
