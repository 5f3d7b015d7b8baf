//! Counters of what an engine has done, for progress lines and metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Running totals, updated by every call (lock-free).
#[derive(Debug, Default)]
pub struct Stats {
    pairs: AtomicU64,
    null_pairs: AtomicU64,
    unique_pairs: AtomicU64,
    truncated_pairs: AtomicU64,
    batches: AtomicU64,
    tokens: AtomicU64,
    padded_tokens: AtomicU64,
    inference_nanos: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Rows seen (including nulls and repeats).
    pub pairs: u64,
    /// Rows with a null text (null output, no inference).
    pub null_pairs: u64,
    /// Distinct pairs actually run through the model.
    pub unique_pairs: u64,
    /// Pairs cut to the maximum length.
    pub truncated_pairs: u64,
    /// Micro-batches run.
    pub batches: u64,
    /// Real (unpadded) tokens run.
    pub tokens: u64,
    /// Tokens including padding.
    pub padded_tokens: u64,
    /// Time spent inside ONNX Runtime.
    pub inference_time: Duration,
}

impl Stats {
    pub(crate) fn record_call(&self, pairs: usize, nulls: usize, unique: usize, truncated: usize) {
        self.pairs.fetch_add(pairs as u64, Ordering::Relaxed);
        self.null_pairs.fetch_add(nulls as u64, Ordering::Relaxed);
        self.unique_pairs
            .fetch_add(unique as u64, Ordering::Relaxed);
        self.truncated_pairs
            .fetch_add(truncated as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_batch(&self, tokens: usize, padded: usize, time: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.padded_tokens
            .fetch_add(padded as u64, Ordering::Relaxed);
        self.inference_nanos
            .fetch_add(time.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            pairs: get(&self.pairs),
            null_pairs: get(&self.null_pairs),
            unique_pairs: get(&self.unique_pairs),
            truncated_pairs: get(&self.truncated_pairs),
            batches: get(&self.batches),
            tokens: get(&self.tokens),
            padded_tokens: get(&self.padded_tokens),
            inference_time: Duration::from_nanos(get(&self.inference_nanos)),
        }
    }
}
