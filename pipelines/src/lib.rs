//! crossflow jobs and the `crossflow` command-line tool, built on the engine
//! (`crossflow`) and the SQL functions (`crossflow-udfs`).

mod blocking;
pub mod cli;
pub mod cluster;
mod columns;
pub mod dedupe;
pub mod dedupe_stream;
mod embedding;
pub mod enrich;
mod error;
pub mod format;
pub mod metrics_http;
pub mod models;
pub mod output_file;
pub mod progress;
pub mod rerank;
pub mod score;
pub mod search;
pub mod sql;
mod statements;

pub use error::{EXIT_DATA, EXIT_FENCED, EXIT_RUNTIME, EXIT_USAGE, JobError, Result};
