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
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    queue_depth: AtomicU64,
    queue_wait_nanos: AtomicU64,
    merged_batches: AtomicU64,
    admission_waits: AtomicU64,
    sessions: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Rows seen (including nulls and repeats).
    pub pairs: u64,
    /// Rows with a null text (null output, no inference).
    pub null_pairs: u64,
    /// Distinct pairs actually run through the model (cache hits excluded).
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
    /// Distinct pairs answered from the cross-call cache.
    pub cache_hits: u64,
    /// Distinct pairs looked up in the cache and not found (0 without a cache).
    pub cache_misses: u64,
    /// Pairs waiting in the model's queue now (a gauge: `since` keeps the
    /// later value, `+` adds the models' depths).
    pub queue_depth: u64,
    /// Time pairs waited in the queue before a worker took them, summed over pairs.
    pub queue_wait_time: Duration,
    /// Micro-batches that held pairs of more than one call.
    pub merged_batches: u64,
    /// Times a caller waited for room in a full queue.
    pub admission_waits: u64,
    /// ONNX Runtime sessions the model runs on: 0 until it starts (a gauge,
    /// as `queue_depth`).
    pub sessions: u64,
}

impl StatsSnapshot {
    /// Share of cache lookups that hit (`None` before the first lookup).
    pub fn cache_hit_rate(&self) -> Option<f64> {
        let lookups = self.cache_hits + self.cache_misses;
        (lookups > 0).then(|| self.cache_hits as f64 / lookups as f64)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            pairs: self.pairs.saturating_sub(earlier.pairs),
            null_pairs: self.null_pairs.saturating_sub(earlier.null_pairs),
            unique_pairs: self.unique_pairs.saturating_sub(earlier.unique_pairs),
            truncated_pairs: self.truncated_pairs.saturating_sub(earlier.truncated_pairs),
            batches: self.batches.saturating_sub(earlier.batches),
            tokens: self.tokens.saturating_sub(earlier.tokens),
            padded_tokens: self.padded_tokens.saturating_sub(earlier.padded_tokens),
            inference_time: self.inference_time.saturating_sub(earlier.inference_time),
            cache_hits: self.cache_hits.saturating_sub(earlier.cache_hits),
            cache_misses: self.cache_misses.saturating_sub(earlier.cache_misses),
            queue_depth: self.queue_depth,
            queue_wait_time: self.queue_wait_time.saturating_sub(earlier.queue_wait_time),
            merged_batches: self.merged_batches.saturating_sub(earlier.merged_batches),
            admission_waits: self.admission_waits.saturating_sub(earlier.admission_waits),
            sessions: self.sessions,
        }
    }
}

impl std::ops::Add for StatsSnapshot {
    type Output = StatsSnapshot;

    fn add(self, other: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            pairs: self.pairs + other.pairs,
            null_pairs: self.null_pairs + other.null_pairs,
            unique_pairs: self.unique_pairs + other.unique_pairs,
            truncated_pairs: self.truncated_pairs + other.truncated_pairs,
            batches: self.batches + other.batches,
            tokens: self.tokens + other.tokens,
            padded_tokens: self.padded_tokens + other.padded_tokens,
            inference_time: self.inference_time + other.inference_time,
            cache_hits: self.cache_hits + other.cache_hits,
            cache_misses: self.cache_misses + other.cache_misses,
            queue_depth: self.queue_depth + other.queue_depth,
            queue_wait_time: self.queue_wait_time + other.queue_wait_time,
            merged_batches: self.merged_batches + other.merged_batches,
            admission_waits: self.admission_waits + other.admission_waits,
            sessions: self.sessions + other.sessions,
        }
    }
}

impl std::iter::Sum for StatsSnapshot {
    /// The counters of several models, added (gauges too: see `queue_depth`).
    fn sum<I: Iterator<Item = StatsSnapshot>>(snapshots: I) -> StatsSnapshot {
        snapshots.fold(StatsSnapshot::default(), |sum, s| sum + s)
    }
}

impl Stats {
    pub(crate) fn record_call(&self, pairs: usize, nulls: usize) {
        self.pairs.fetch_add(pairs as u64, Ordering::Relaxed);
        self.null_pairs.fetch_add(nulls as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_run(&self, unique: usize, truncated: usize) {
        self.unique_pairs
            .fetch_add(unique as u64, Ordering::Relaxed);
        self.truncated_pairs
            .fetch_add(truncated as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_cache(&self, hits: usize, misses: usize) {
        self.cache_hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.cache_misses
            .fetch_add(misses as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_batch(&self, tokens: usize, padded: usize, time: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.padded_tokens
            .fetch_add(padded as u64, Ordering::Relaxed);
        self.inference_nanos
            .fetch_add(time.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_queue_depth(&self, pairs: usize) {
        self.queue_depth.store(pairs as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_queued(&self, waited: Duration, merged: bool) {
        self.queue_wait_nanos
            .fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
        self.merged_batches
            .fetch_add(u64::from(merged), Ordering::Relaxed);
    }

    pub(crate) fn set_sessions(&self, sessions: usize) {
        self.sessions.store(sessions as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_admission_wait(&self) {
        self.admission_waits.fetch_add(1, Ordering::Relaxed);
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
            cache_hits: get(&self.cache_hits),
            cache_misses: get(&self.cache_misses),
            queue_depth: get(&self.queue_depth),
            queue_wait_time: Duration::from_nanos(get(&self.queue_wait_nanos)),
            merged_batches: get(&self.merged_batches),
            admission_waits: get(&self.admission_waits),
            sessions: get(&self.sessions),
        }
    }
}
