//! The ONNX Runtime library: finding it, loading it once, and the execution device.
//!
//! `ort` is built with `load-dynamic`: the shared library is loaded at run time
//! from, in order, an explicit path, `ORT_DYLIB_PATH`, the executable's
//! directory, and the repository's `.ort/` folder that `scripts/setup` fills.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::{Error, Result};

/// File name of the ONNX Runtime library the engine is built against.
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

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
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(path.into());
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(LIBRARY_NAME));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ort")
            .join(LIBRARY_NAME),
    );
    candidates
}

/// Loads the ONNX Runtime library (once per process) and returns the environment.
/// Later calls return the same environment whatever path they pass.
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment> {
    ENVIRONMENT
        .get_or_init(|| load(explicit))
        .as_ref()
        .map_err(|message| Error::Runtime(message.clone()))
}

fn load(explicit: Option<&Path>) -> std::result::Result<Environment, String> {
    let candidates = library_candidates(explicit);
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "{LIBRARY_NAME} not found (tried {}); run scripts/setup or set ORT_DYLIB_PATH",
            tried.join(", ")
        ));
    };
    tracing::debug!(path = %path.display(), "loading ONNX Runtime");
    let builder = ort::init_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    builder
        .with_name("crossflow")
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))
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
}
