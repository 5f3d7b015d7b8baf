//! Typed errors of the engine, each naming what failed and where.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading a model or scoring pairs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model directory does not exist or is not a directory.
    #[error("model directory {path} does not exist or is not a directory")]
    ModelDirMissing { path: PathBuf },

    /// A file the model needs is missing.
    #[error("model file {path} is missing ({what})")]
    ModelFileMissing { path: PathBuf, what: &'static str },

    /// Several ONNX files were found and none is the obvious default.
    #[error(
        "model directory {dir} holds several ONNX files ({candidates}); choose one with --onnx-file"
    )]
    AmbiguousOnnxFile { dir: PathBuf, candidates: String },

    /// A file exists but could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    CorruptFile { path: PathBuf, reason: String },

    /// The model's configuration is inconsistent or unsupported.
    #[error("model {path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("ONNX Runtime library: {0}")]
    Runtime(String),

    /// ONNX Runtime failed while building a session or running a batch.
    #[error("ONNX Runtime {context}: {message}")]
    Ort { context: String, message: String },

    /// Tokenization failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An Arrow input had an unsupported type or the inputs did not line up.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// An operation that needs a given head was called on a model with another head.
    #[error("{operation} needs {needs}, but model {model} {has}")]
    WrongHead {
        operation: &'static str,
        needs: &'static str,
        model: String,
        has: String,
    },

    /// A model's scheduler could not answer (its workers stopped, or a
    /// worker failed in a way that is a bug).
    #[error("model scheduler: {0}")]
    Scheduler(String),

    /// Building an Arrow array failed.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// Wraps an `ort` error with what was being done.
    pub(crate) fn ort(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Ort {
            context: context.into(),
            message: err.to_string(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::CorruptFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
