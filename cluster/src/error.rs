//! Errors of the cluster commands.

/// What can go wrong starting or running a cluster node.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A listening address could not be bound or read.
    #[error("cannot listen: {0}")]
    Bind(#[source] std::io::Error),
    /// Ballista refused a setting or failed.
    #[error("ballista: {0}")]
    Ballista(#[source] ballista_core::error::BallistaError),
    /// A bad `--scheduler` or `--bind` address.
    #[error("{0}")]
    Address(String),
}

/// Results of the cluster commands.
pub type Result<T> = std::result::Result<T, ClusterError>;
