//! crossflow's end-to-end tests, one module per feature (see `tests/Cargo.toml`).

mod cli;
mod cluster;
mod cluster_access;
mod cluster_jobs;
mod compose;
mod dedupe;
mod dedupe_cluster;
mod dedupe_linkage;
mod dedupe_stream;
mod embed;
mod hub;
mod hub_cache;
mod kafka;
mod kafka_exactly_once;
mod kafka_instances;
mod kafka_mock;
mod outputs;
mod packaging;
mod parity;
mod readme;
mod refusals;
mod rerank;
mod search;
mod sql;
