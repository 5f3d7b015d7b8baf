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
    /// A cluster token that cannot be read or is too weak.
    #[error("cluster token: {0}")]
    Token(String),
    /// A `--data-root` that is not an existing directory.
    #[error("--data-root {0}")]
    DataRoot(String),
    /// The scheduler's server stopped.
    #[error("scheduler server: {0}")]
    Serve(#[source] std::io::Error),
    /// A bad `--scheduler` or `--bind` address.
    #[error("{0}")]
    Address(String),
}

/// Results of the cluster commands.
pub type Result<T> = std::result::Result<T, ClusterError>;
