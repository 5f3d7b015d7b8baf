//! The ONNX Runtime library: finding it, loading it once, and the execution device.
//!
//! `ort` is built with `load-dynamic`: the shared library is loaded at run time
//! from, in order, an explicit path, `ORT_DYLIB_PATH`, the executable's
//! directory, the `onnxruntime` Python package installed beside the executable
//! (see [`crate::install`]; `onnxruntime-gpu` uses the same folder), and in
//! development builds the repository's `.ort/` folder that `scripts/setup` fills.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::{Error, Result, install};

/// File name of the ONNX Runtime library the engine is built against.
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

/// The Python package whose `capi/` folder holds [`LIBRARY_NAME`]
/// (`pip install onnxruntime==1.31.1`, or `onnxruntime-gpu==1.31.1`).
pub const PYTHON_PACKAGE: &str = "onnxruntime";

/// The loaded library and its environment: one per process.
static ENVIRONMENT: OnceLock<(PathBuf, Environment)> = OnceLock::new();
/// Held while a load is tried, so that one thread loads and the others wait.
static LOADING: Mutex<()> = Mutex::new(());
/// Whether a call asking for another library than the loaded one was logged
/// (once per process: every session of every model asks).
static MISMATCH_WARNED: AtomicBool = AtomicBool::new(false);

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider on the given GPU.
    Cuda(i32),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.split_once(':') {
            None if s == "cpu" => Ok(Device::Cpu),
            None if s == "cuda" => Ok(Device::Cuda(0)),
            Some(("cuda", id)) => id
                .parse()
                .map(Device::Cuda)
                .map_err(|_| format!("invalid CUDA device id {id:?}")),
            _ => Err(format!(
                "unknown device {s:?} (expected cpu, cuda or cuda:N)"
            )),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(id) => write!(f, "cuda:{id}"),
        }
    }
}

/// The places searched for the ONNX Runtime library, in order.
pub fn library_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let from_env = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    candidates_for(
        explicit,
        from_env,
        install::executable_dir().as_deref(),
        install::source_tree(),
    )
}

fn candidates_for(
    explicit: Option<&Path>,
    from_env: Option<PathBuf>,
    exe_dir: Option<&Path>,
    source_tree: Option<&Path>,
) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    candidates.extend(from_env);
    if let Some(dir) = exe_dir {
        candidates.push(dir.join(LIBRARY_NAME));
        candidates.extend(
            install::python_package_dirs(dir, PYTHON_PACKAGE)
                .into_iter()
                .map(|package| package.join("capi").join(LIBRARY_NAME)),
        );
    }
    candidates.extend(source_tree.map(|root| root.join(".ort").join(LIBRARY_NAME)));
    candidates
}

/// Libraries of other ONNX Runtime versions in the folders searched, for the
/// error message: a wrong `onnxruntime` package is the likely cause.
fn other_versions(candidates: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = candidates
        .iter()
        .filter_map(|candidate| candidate.parent())
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so."))
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// Loads the ONNX Runtime library and returns the environment. One library
/// serves the whole process: once one is loaded, later calls get it, with a
/// warning when they ask for another path. A failed load is not kept, so a
/// later call (in a long-lived process) can load another path. An explicit
/// path that does not exist is an error whether or not a library is loaded.
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment> {
    if let Some(path) = explicit.filter(|path| !path.is_file()) {
        return Err(Error::Runtime(format!(
            "{} (the library asked for) does not exist or is not a file",
            path.display()
        )));
    }
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((loaded, environment)) = ENVIRONMENT.get() {
        let first_mismatch = || !MISMATCH_WARNED.swap(true, Ordering::Relaxed);
        if let Some(path) = explicit.filter(|path| !same_file(path, loaded) && first_mismatch()) {
            tracing::warn!(
                asked = %path.display(),
                loaded = %loaded.display(),
                "ONNX Runtime is already loaded in this process; the library asked for is not used"
            );
        }
        return Ok(environment);
    }
    let loaded = load(explicit).map_err(Error::Runtime)?;
    Ok(&ENVIRONMENT.get_or_init(|| loaded).1)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn load(explicit: Option<&Path>) -> std::result::Result<(PathBuf, Environment), String> {
    let candidates = library_candidates(explicit);
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(not_found(&candidates));
    };
    tracing::debug!(path = %path.display(), "loading ONNX Runtime");
    let builder = ort::init_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let environment = builder
        .with_name("crossflow")
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path.clone(), environment))
}

fn not_found(candidates: &[PathBuf]) -> String {
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    let mut message = format!(
        "{LIBRARY_NAME} not found (tried {}); install it with `pip install onnxruntime==1.31.1` \
         in the environment crossflow is installed in, set ORT_DYLIB_PATH or pass --ort-lib \
         (from a source checkout: scripts/setup)",
        tried.join(", ")
    );
    let others = other_versions(candidates);
    if !others.is_empty() {
        let others: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
        message.push_str(&format!(
            "; found other versions, which crossflow cannot use: {}",
            others.join(", ")
        ));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse() {
        assert_eq!("cpu".parse(), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(Device::Cuda(3)));
        assert!("cuda:x".parse::<Device>().is_err());
        assert!("tpu".parse::<Device>().is_err());
        assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
    }

    #[test]
    fn explicit_library_path_is_tried_first() {
        let candidates = library_candidates(Some(Path::new("/opt/ort/lib.so")));
        assert_eq!(candidates[0], Path::new("/opt/ort/lib.so"));
        assert!(candidates.last().unwrap().ends_with(LIBRARY_NAME));
    }

    #[test]
    fn a_missing_explicit_library_is_an_error_naming_it() {
        let missing = Path::new("/nonexistent/libonnxruntime.so.1.31.1");
        let Err(error) = environment(Some(missing)) else {
            panic!("a missing library was accepted");
        };
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/libonnxruntime.so.1.31.1 (the library asked for)"),
            "{message}"
        );
    }

    fn venv_with_onnxruntime(version: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        let capi = root
            .path()
            .join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&capi).unwrap();
        let library = capi.join(format!("libonnxruntime.so.{version}"));
        std::fs::write(&library, b"").unwrap();
        (root, bin, library)
    }

    #[test]
    fn the_installed_onnxruntime_package_comes_after_the_explicit_places() {
        let (_root, bin, library) = venv_with_onnxruntime("1.31.1");
        let env = PathBuf::from("/env/libonnxruntime.so");
        let tree = Path::new("/src/crossflow");
        let candidates = candidates_for(None, Some(env.clone()), Some(&bin), Some(tree));
        assert_eq!(
            candidates,
            vec![
                env,
                bin.join(LIBRARY_NAME),
                library,
                tree.join(".ort").join(LIBRARY_NAME)
            ]
        );
    }

    #[test]
    fn without_a_source_tree_nothing_outside_the_install_is_searched() {
        let (root, bin, _) = venv_with_onnxruntime("1.31.1");
        let candidates = candidates_for(None, None, Some(&bin), None);
        assert!(candidates.iter().all(|c| c.starts_with(root.path())));
    }

    #[test]
    fn a_wrong_onnxruntime_version_is_named_in_the_error() {
        let (_root, bin, library) = venv_with_onnxruntime("1.20.1");
        let message = not_found(&candidates_for(None, None, Some(&bin), None));
        assert!(message.contains("site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1"));
        assert!(
            message.contains(&format!(
                "other versions, which crossflow cannot use: {}",
                library.display()
            )),
            "{message}"
        );
    }
}
