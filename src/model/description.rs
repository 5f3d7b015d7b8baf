//! [`ModelDescription`]: what a cross-encoder is and how it will score, read
//! from its directory without starting ONNX Runtime.
//!
//! Planning needs only this (a SQL function's return type, a cluster node's
//! fingerprint check, a job's threshold range); the sessions and worker
//! threads start when pairs are first scored (see [`crate::CrossEncoder`]).

use std::path::Path;

use super::graph::{self, Invariance};
use super::{Fingerprint, ModelConfig, ModelFiles};
use crate::Result;
use crate::head::Head;
use crate::options::{EngineOptions, ModelOrigin, invariance};

/// A model directory's files, configuration and head, with the settings that
/// decide its results. Cheap to read: the files are hashed and the graph's
/// nodes scanned, nothing is run.
#[derive(Debug, Clone)]
pub struct ModelDescription {
    /// The model's name: its directory's, or its Hub repo id.
    pub name: String,
    /// Where its files are.
    pub files: ModelFiles,
    /// What its configuration says.
    pub config: ModelConfig,
    /// What its logits mean, with the activation the options ask for.
    pub head: Head,
    /// Maximum pair length in tokens, special tokens included.
    pub max_length: usize,
    /// Whether a pair's result is the same whatever else is in its batch.
    pub batch_invariant: bool,
    /// Whether the graph quantizes activations dynamically (see
    /// [`graph::uses_dynamic_quantization`]).
    pub dynamic_quantization: bool,
    /// Hash of the files and of the result-changing settings above.
    pub fingerprint: Fingerprint,
    /// The Hub repo and commit of a model named by repo id.
    pub origin: Option<ModelOrigin>,
}

impl ModelDescription {
    /// Reads the model directory `dir` as `options` would run it. Missing or
    /// corrupt files give an error naming the file.
    pub fn read(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let files = ModelFiles::resolve(dir, options.onnx_file.as_deref())?;
        let config = ModelConfig::load(&files)?;
        let max_length = options.max_length.unwrap_or(config.max_length);
        let head = config.head(options.activation);
        let dynamic_quantization = graph::uses_dynamic_quantization(&files.onnx)?;
        let batch_invariant = !dynamic_quantization || invariance(options) != Invariance::Off;
        let mut settings = format!(
            "max_length={max_length};head={};batch_invariant={batch_invariant}",
            head.describe()
        );
        if let Some(origin) = &options.origin {
            settings.push_str(&format!(";commit={}", origin.commit));
        }
        let fingerprint = Fingerprint::of(&files, &settings)?;
        let name = match &options.origin {
            Some(origin) => origin.repo.clone(),
            None => model_name(&files.dir),
        };
        Ok(Self {
            name,
            files,
            config,
            head,
            max_length,
            batch_invariant,
            dynamic_quantization,
            fingerprint,
            origin: options.origin.clone(),
        })
    }
}

fn model_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| canonical.display().to_string())
}
