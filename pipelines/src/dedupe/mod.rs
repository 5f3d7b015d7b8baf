//! `crossflow dedupe`: paraphrase deduplication of a text column in two
//! stages — a bi-encoder proposes candidate pairs, the cross-encoder verifies
//! them — then clusters by centre linkage (every duplicate matches its
//! cluster's centre directly).

mod args;
pub mod candidates;
mod cluster;
pub mod clusters;
pub mod index;
pub mod index_file;
mod input;
pub mod ivf;
mod job;
pub mod normalize;
mod output;
pub(crate) mod verify;

pub use args::{DedupeArgs, DedupeSummary, Search};
pub use cluster::search_udf::search_udf;
pub use job::run;
pub use verify::Direction;
