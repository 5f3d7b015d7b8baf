//! CPU and model work of an async job, on tokio's blocking threads.

use crate::{JobError, Result};

/// Runs `work` off the async threads; a panic in it is an internal error
/// naming `job`.
pub async fn run_blocking<T: Send + 'static>(
    job: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::Internal(format!("the {job} job panicked: {e}")))?
}
