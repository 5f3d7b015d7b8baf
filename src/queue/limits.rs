//! The bounds of a model's queue and of the micro-batches cut from it, and
//! their defaults.
//!
//! A worker's next micro-batch is cut from the queue (see `state`): pairs
//! sorted longest first, padded only to the batch's own longest pair, the
//! padded size (pairs × longest pair) within a token budget and the pair
//! count within a cap, so short pairs do not pay for long ones.

use std::time::Duration;

use crate::runtime::Device;

/// Limits of one micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Padded tokens per micro-batch (pairs × longest pair). A single pair
    /// longer than the budget still forms a batch of its own.
    pub max_batch_tokens: usize,
    /// Pairs per micro-batch.
    pub max_batch_pairs: usize,
}

impl Default for BatchLimits {
    /// The CPU defaults ([`BatchLimits::for_device`]).
    fn default() -> Self {
        Self::for_device(Device::Cpu)
    }
}

impl BatchLimits {
    /// Defaults per device. On the CPU small micro-batches win: measured with
    /// `crossflow-bench` on 2 cores, budgets of 256–512 padded tokens beat
    /// 1024 by 5–15 % and 8192 by 20–40 % (cache-resident activations), for
    /// the int8 and the fp32 MiniLM cross-encoders alike. A GPU needs large
    /// batches to be busy (not yet measured here: 16384 is a starting point).
    pub fn for_device(device: Device) -> Self {
        match device {
            Device::Cpu => Self {
                max_batch_tokens: 512,
                max_batch_pairs: 256,
            },
            Device::Cuda(_) => Self {
                max_batch_tokens: 16_384,
                max_batch_pairs: 512,
            },
        }
    }
}

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
