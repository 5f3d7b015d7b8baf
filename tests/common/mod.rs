//! Shared helpers of crossflow's end-to-end tests.

use std::path::{Path, PathBuf};

use crossflow::{CrossEncoder, EngineOptions};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// The bundled STS / paraphrase cross-encoder.
pub fn sts_model_dir() -> PathBuf {
    repo_root().join("models/crossflow-sts-minilm-l6")
}

/// The bundled NLI cross-encoder.
pub fn nli_model_dir() -> PathBuf {
    repo_root().join("models/crossflow-nli-minilm-l6")
}

/// Loads a model with default options, panicking with the error's message.
pub fn load(dir: &Path) -> CrossEncoder {
    CrossEncoder::load(dir, &EngineOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// Copies a model directory (without its ONNX files) into `target`, for tests
/// that break one file.
pub fn copy_model_config(from: &Path, target: &Path) {
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "config_sentence_transformers.json",
    ] {
        std::fs::copy(from.join(name), target.join(name)).expect("copy model file");
    }
}
