//! Typed errors of the engine, each naming what failed and where.

use std::path::PathBuf;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of a library the engine calls (ONNX Runtime, tokenizers), kept
/// as the source of the engine's error.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

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
    #[error("ONNX Runtime {context}: {source}")]
    Ort {
        context: String,
        #[source]
        source: SourceError,
    },

    /// Tokenization failed.
    #[error("tokenizer{context}: {source}")]
    Tokenizer {
        /// What was being done, `""` or starting with `", "`.
        context: String,
        #[source]
        source: SourceError,
    },

    /// An Arrow input had an unsupported type or the inputs did not line up.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A setting the model cannot run with (a maximum length without room
    /// for a pair, a threshold off the model's scale), naming the flag.
    #[error("{0}")]
    InvalidSetting(String),

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
    pub(crate) fn ort(context: impl Into<String>, source: impl Into<SourceError>) -> Self {
        Error::Ort {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Wraps a `tokenizers` error; `context` is `""` or starts with `", "`.
    pub(crate) fn tokenizer(context: impl Into<String>, source: SourceError) -> Self {
        Error::Tokenizer {
            context: context.into(),
            source,
        }
    }

    /// Whether the error is in what the caller asked for (a model directory
    /// or file that is missing or ambiguous, a setting the model cannot run
    /// with, an operation the model's head cannot do) rather than in the
    /// data or the run.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::ModelDirMissing { .. }
                | Error::InvalidSetting(_)
                | Error::ModelFileMissing { .. }
                | Error::AmbiguousOnnxFile { .. }
                | Error::WrongHead { .. }
        )
    }

    /// Whether the error is in the input data (types or lengths that do not
    /// line up).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput(_))
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::CorruptFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
