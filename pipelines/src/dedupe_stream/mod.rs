//! `crossflow dedupe-stream`: paraphrase duplicates flagged on a Kafka
//! stream, the streaming form of the dedupe job's centre linkage.

pub mod changelog;
pub mod decide;
pub mod window;
