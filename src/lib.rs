//! crossflow engine: transformer cross-encoders over Arrow arrays.
//!
//! A [`CrossEncoder`] loads a sentence-transformers style model directory
//! (ONNX graph, `tokenizer.json`, `config.json`), tokenizes text pairs as
//! `[CLS] a [SEP] b [SEP]`, runs them through ONNX Runtime in length-sorted,
//! token-budgeted micro-batches and applies the head the model's config
//! describes (a relevance / similarity score, or a classification such as NLI).
//! Each loaded model has one scheduler: a bounded queue in front of worker
//! threads that own its sessions, shared by every caller (see `QueueLimits`).
//!
//! The crate knows nothing about SQL or Kafka: it takes Arrow string arrays
//! (or constants) in and gives Arrow arrays out.
//!
//! ```no_run
//! use crossflow::{CrossEncoder, EngineOptions, Texts};
//! use arrow::array::StringArray;
//!
//! let model = CrossEncoder::load("models/crossflow-sts-minilm-l6", &EngineOptions::default())?;
//! let a = StringArray::from(vec!["A man is playing a guitar."]);
//! let b = StringArray::from(vec!["Someone plays an instrument."]);
//! let scores = model.score(&Texts::from_array(&a)?, &Texts::from_array(&b)?)?;
//! println!("{:?}", scores);
//! # Ok::<(), crossflow::Error>(())
//! ```

pub mod cache;
pub mod cpu_info;
pub mod embed;
mod encoder;
mod error;
pub mod head;
pub mod install;
#[cfg(feature = "prometheus")]
pub mod metrics;
pub mod model;
mod options;
mod output;
mod queue;
pub mod runtime;
mod session;
mod start_once;
pub mod stats;
mod texts;
pub mod tokenize;

pub use cpu_info::CpuInfo;
pub use embed::{BiEncoder, Embeddings};
pub use encoder::{CrossEncoder, Predictions};
pub use error::{Error, Result, SourceError};
pub use head::{Activation, Head};
pub use model::{Fingerprint, ModelConfig, ModelDescription, ModelFiles};
pub use options::{DEFAULT_CACHE_PAIRS, EngineOptions, MAX_BATCH_WAIT_MS, ModelOrigin};
pub use output::{ClassifiedArrays, OutputColumns, at_least, probability_fields};
pub use queue::{BatchLimits, QueueLimits, QueueOptions};
pub use runtime::Device;
pub use stats::StatsSnapshot;
pub use texts::{TEXT_TYPES, Texts, is_text_type};
