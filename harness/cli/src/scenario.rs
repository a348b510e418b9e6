//! `cgstorm scenario`: the mailing-list scenario library, one program per
//! seed thread in `corpus/scenarios/`, listed and run by name.
//!
//! A scenario is an ordinary program whose header comment cites its thread:
//!
//! ```text
//! # Seed: 001_b232d376b3b7e397.txt
//! # Thread: "writeback: safer lock nesting" (linux-kernel, stable), 2018-04-11
//! # Stresses: v1 memcg charge moving against writeback stat updates
//! # Failure: lockdep "inconsistent lock state", hung task or soft lockup
//! ```
//!
//! The directory is `$CGSTORM_SCENARIOS`, else `corpus/scenarios` under the
//! current directory, else the one in this source tree.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::run::{self, RunArgs};

/// Arguments of `cgstorm scenario`.
#[derive(clap::Args, Debug)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    cmd: ScenarioCmd,
}

#[derive(clap::Subcommand, Debug)]
enum ScenarioCmd {
    /// One line per scenario: name, seed thread, what it stresses.
    List,
    /// Run a scenario by name; takes every option of `cgstorm run`
    /// (`--duration`, `--kernel`, `--json`, …).
    #[command(mut_arg("program", |a| a
        .value_name("NAME")
        .help("The scenario's name (see `cgstorm scenario list`), or a program file")))]
    Run(Box<RunArgs>),
}

/// One scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// The file name without `.yaml`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The header's `# Seed:` (the seed file name).
    pub seed: String,
    /// The header's `# Stresses:`, else the description's first line.
    pub stresses: String,
}

/// Runs `scenario`; returns the exit code.
pub fn run(args: &ScenarioArgs) -> Result<u8> {
    match &args.cmd {
        ScenarioCmd::List => {
            let all = list(&dir()?)?;
            let width = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in &all {
                let seed = s.seed.get(..3).unwrap_or(&s.seed);
                println!("{:width$}  seed {seed}  {}", s.name, s.stresses);
            }
            Ok(0)
        }
        ScenarioCmd::Run(a) => {
            let path = resolve(&a.program)?;
            let mut a = RunArgs::clone(a);
            a.program = path;
            run::run(&a)
        }
    }
}

/// The environment variable that names the scenario directory.
const SCENARIOS_ENV: &str = "CGSTORM_SCENARIOS";

/// Where the scenarios are.
fn dir() -> Result<PathBuf> {
    dir_from(std::env::var_os(SCENARIOS_ENV).as_deref())
}

/// Where the scenarios are when `$CGSTORM_SCENARIOS` is `env`.
fn dir_from(env: Option<&OsStr>) -> Result<PathBuf> {
    if let Some(d) = env {
        return Ok(PathBuf::from(d));
    }
    let here = Path::new("corpus/scenarios");
    if here.is_dir() {
        return Ok(here.to_path_buf());
    }
    let built_in = crate::data::corpus().join("scenarios");
    if built_in.is_dir() {
        return Ok(built_in);
    }
    bail!(
        "no corpus/scenarios here, in the source tree or built in ({}); set {SCENARIOS_ENV} to the directory",
        built_in.display()
    )
}

/// A scenario name, or a path to a program file as is.
fn resolve(name: &Path) -> Result<PathBuf> {
    resolve_in(name, std::env::var_os(SCENARIOS_ENV).as_deref())
}

/// [`resolve`] when `$CGSTORM_SCENARIOS` is `env`.
fn resolve_in(name: &Path, env: Option<&OsStr>) -> Result<PathBuf> {
    if name.components().count() > 1 || name.extension().is_some_and(|e| e == "yaml") {
        return Ok(name.to_path_buf());
    }
    let all = list(&dir_from(env)?)?;
    let want = name.to_string_lossy();
    match all.iter().find(|s| s.name == want) {
        Some(s) => Ok(s.path.clone()),
        None => bail!(
            "no scenario `{want}`; there are: {}",
            all.iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Every scenario in `dir`, by name; a file that is not a valid program is an error.
pub fn list(dir: &Path) -> Result<Vec<Scenario>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read(p)).collect()
}

fn read(path: &Path) -> Result<Scenario> {
    let (program, text) = crate::programs::load_with_text(path)?;
    let header = |key: &str| {
        text.lines()
            .take_while(|l| l.starts_with('#') || l.trim().is_empty())
            .find_map(|l| l.strip_prefix('#')?.trim().strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let stresses = header("Stresses:")
        .unwrap_or_else(|| program.description.lines().next().unwrap_or("").to_string());
    Ok(Scenario {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_path_buf(),
        seed: header("Seed:").unwrap_or_else(|| "?".into()),
        stresses,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn every_scenario_parses_and_cites_a_seed_thread() {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/scenarios");
        let all = list(&d).unwrap();
        assert!(all.len() >= 6, "{all:?}");
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seeds");
        let seeds_here = seeds.is_dir();
        if !seeds_here {
            // Past the test harness's capture, so that it shows.
            let _ = writeln!(
                std::io::stderr(),
                "scenario: SKIP: not checking that each `# Seed:` names a seed thread: no {} \
                 (the shared seed threads are not here)",
                seeds.display()
            );
        }
        for s in &all {
            assert!(s.seed.len() > 3, "{}: no `# Seed:` header", s.name);
            if seeds_here {
                assert!(seeds.join(&s.seed).is_file(), "{}: {}", s.name, s.seed);
            }
            assert!(!s.stresses.is_empty(), "{}", s.name);
            let text = std::fs::read_to_string(&s.path).unwrap();
            for key in ["# Thread:", "# Failure:"] {
                assert!(text.contains(key), "{}: no `{key}` header", s.name);
            }
        }
        for n in 0..5 {
            let seed = format!("00{n}_");
            assert!(
                all.iter().any(|s| s.seed.starts_with(&seed)),
                "no scenario for seed {seed}"
            );
        }
    }

    #[test]
    fn names_resolve_and_unknown_names_list_the_known_ones() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus/scenarios");
        let env = Some(corpus.as_os_str());
        assert_eq!(dir_from(env).unwrap(), corpus);
        let all = list(&corpus).unwrap();
        let first = &all[0];
        assert_eq!(resolve_in(Path::new(&first.name), env).unwrap(), first.path);
        let e = resolve_in(Path::new("no-such-scenario"), env)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&first.name), "{e}");
        assert_eq!(
            resolve_in(Path::new("x/y.yaml"), env).unwrap(),
            PathBuf::from("x/y.yaml")
        );
    }

    #[test]
    fn the_environment_names_the_directory_names_resolve_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("only.yaml"),
            "# Seed: 000_x.txt\nlanes:\n  - {name: a, ops: [{mkdir: a}]}\n",
        )
        .unwrap();
        let env = Some(dir.path().as_os_str());
        assert_eq!(
            resolve_in(Path::new("only"), env).unwrap(),
            dir.path().join("only.yaml")
        );
        let e = resolve_in(Path::new("absent"), env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("there are: only"), "{e}");
    }
}
