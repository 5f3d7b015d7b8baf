//! crossflow's SQL functions on an Apache DataFusion Ballista cluster.
//!
//! Ballista ships a plan's scalar functions by name, so every node (client,
//! scheduler, executors) is a crossflow process that loads the same models
//! with the same options and registers the same functions. The plan codecs
//! ([`FingerprintCodec`]) carry each function's model fingerprint, and a node
//! whose model differs refuses the plan with both fingerprints in the error.

mod access;
mod codec;
mod data_roots;
mod error;
mod executor;
mod functions;
mod metrics;
mod scheduler;
mod session;
mod tasks;

pub use access::{Access, MIN_TOKEN_LENGTH, RequireToken, Token};
pub use codec::FingerprintCodec;
pub use data_roots::{DataRoots, DataRootsRule};
pub use error::{ClusterError, Result};
pub use executor::{ExecutorSettings, run_executor, split_host_port};
pub use functions::{ClusterFunction, ClusterFunctions, Node};
pub use metrics::{ExecutorMetrics, SchedulerMetrics};
pub use scheduler::run_scheduler;
pub use session::{
    CLUSTER_BATCH_SIZE, DEFAULT_PARTITIONS, REPARTITION_FILE_MIN_SIZE, codecs, is_remote,
    remote_context, scheduler_url,
};
