//! The bounds of a model's queue and their defaults.

use std::time::Duration;

use crate::batching::BatchLimits;
use crate::runtime::Device;

/// Bounds of a model's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Pairs waiting at most.
    pub max_pairs: usize,
    /// Tokens (unpadded) waiting at most.
    pub max_tokens: usize,
    /// How long a free worker waits for a batch to fill before it runs what
    /// is there.
    pub max_wait: Duration,
}

impl QueueLimits {
    /// Defaults: eight micro-batches per worker, so that every worker finds a
    /// batch waiting when it is done with one. No wait on the CPU (a worker
    /// that waits is a core idle); 2 ms on a GPU, which gains more from
    /// full batches (not measured: no GPU was lent).
    pub fn for_workers(device: Device, batches: BatchLimits, workers: usize) -> Self {
        let depth = 8 * workers.max(1);
        Self {
            max_pairs: depth * batches.max_batch_pairs.max(1),
            max_tokens: depth * batches.max_batch_tokens.max(1),
            max_wait: match device {
                Device::Cpu => Duration::ZERO,
                Device::Cuda(_) => Duration::from_millis(2),
            },
        }
    }
}

/// Overrides of the default [`QueueLimits`] (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Pairs waiting at most.
    pub max_pairs: Option<usize>,
    /// Tokens waiting at most.
    pub max_tokens: Option<usize>,
    /// How long a free worker waits for a batch to fill.
    pub max_wait: Option<Duration>,
}

impl QueueOptions {
    /// The limits in force for `workers` sessions running `batches` on `device`.
    pub fn resolve(&self, device: Device, batches: BatchLimits, workers: usize) -> QueueLimits {
        let default = QueueLimits::for_workers(device, batches, workers);
        QueueLimits {
            max_pairs: self.max_pairs.unwrap_or(default.max_pairs).max(1),
            max_tokens: self.max_tokens.unwrap_or(default.max_tokens).max(1),
            max_wait: self.max_wait.unwrap_or(default.max_wait),
        }
    }
}
