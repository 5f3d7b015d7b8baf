//! `crossflow dedupe`: paraphrase deduplication of a text column in two
//! stages — a bi-encoder proposes candidate pairs, the cross-encoder verifies
//! them — then clusters by union-find.

pub mod candidates;
pub mod clusters;
mod job;
pub mod normalize;
mod output;

pub use job::{DedupeArgs, DedupeSummary, Search, run};
