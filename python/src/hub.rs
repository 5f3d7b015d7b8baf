//! Models named by Hugging Face Hub repo id in `CrossEncoder(...)`, with
//! the keyword arguments sentence-transformers uses for them (`revision`,
//! `token`, `local_files_only`, `cache_folder`) over the environment's
//! settings (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, `HF_HUB_CACHE`).

use std::path::{Path, PathBuf};

use crossflow::EngineOptions;
use crossflow_hub::{HubError, HubSettings};
use pyo3::PyErr;
use pyo3::exceptions::{PyConnectionError, PyFileNotFoundError, PyPermissionError, PyValueError};

use crate::errors::{CrossflowError, ENOENT};

/// The Hub keyword arguments, as given (`Debug` hides the token).
#[derive(Default)]
pub struct HubArgs {
    pub revision: Option<String>,
    pub token: Option<String>,
    pub local_files_only: bool,
    pub cache_folder: Option<PathBuf>,
}

impl std::fmt::Debug for HubArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubArgs")
            .field("revision", &self.revision)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("local_files_only", &self.local_files_only)
            .field("cache_folder", &self.cache_folder)
            .finish()
    }
}

/// The directory of `model` (a directory or repo id) and `options` with its
/// graph and origin.
pub fn locate(
    model: &Path,
    args: &HubArgs,
    options: EngineOptions,
) -> Result<(PathBuf, EngineOptions), PyErr> {
    let model = match &args.revision {
        Some(revision) if model.to_string_lossy().contains('@') => {
            return Err(PyValueError::new_err(format!(
                "revision={revision:?}: the model {} already names a revision",
                model.display()
            )));
        }
        Some(revision) => PathBuf::from(format!("{}@{revision}", model.display())),
        None => model.to_path_buf(),
    };
    let settings = HubSettings::from_env().overridden(
        args.local_files_only,
        args.token.as_deref(),
        args.cache_folder.as_deref(),
    );
    crossflow_hub::locate(&model, options, &settings).map_err(to_py)
}

/// A missing directory or a file an offline cache lacks is a
/// `FileNotFoundError`, as `huggingface_hub` raises it; refused access a
/// `PermissionError`, an unreachable Hub a `ConnectionError`, a wrong id,
/// revision or graph a `ValueError`.
fn to_py(error: HubError) -> PyErr {
    let message = error.to_string();
    match &error {
        HubError::NotAModel { spec } => {
            PyFileNotFoundError::new_err((ENOENT, message, spec.clone()))
        }
        HubError::NotCached { .. } => PyFileNotFoundError::new_err(message),
        HubError::AccessRefused { .. } => PyPermissionError::new_err(message),
        HubError::Unreachable { .. } => PyConnectionError::new_err(message),
        _ if error.is_usage() => PyValueError::new_err(message),
        _ => CrossflowError::new_err(message),
    }
}
