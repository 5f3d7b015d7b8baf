//! What `dedupe-stream` measures beside the enrich metrics, in the same
//! registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::enrich::metrics::{Metrics, SECONDS, counter, histogram};

/// The labels of a partition's gauge.
type PartitionLabels = Vec<(String, String)>;

/// Counters of the dedupe decisions and the state behind them.
#[derive(Debug)]
pub struct DedupeMetrics {
    pub duplicates: Counter,
    pub pairs_verified: Counter,
    pub restored_records: Counter,
    pub restore_seconds: Histogram,
    representatives: Family<PartitionLabels, Gauge>,
}

impl DedupeMetrics {
    /// Registers the dedupe metrics in `metrics`' registry.
    pub fn register(metrics: &mut Metrics) -> Self {
        let r = metrics.registry_mut();
        let representatives = Family::<PartitionLabels, Gauge>::default();
        r.register(
            "crossflow_dedupe_representatives",
            "Representatives held in the window, per input partition",
            representatives.clone(),
        );
        Self {
            duplicates: counter(
                r,
                "crossflow_dedupe_duplicates",
                "Messages flagged as duplicates (outputs produced with is_duplicate true)",
            ),
            pairs_verified: counter(
                r,
                "crossflow_dedupe_pairs_verified",
                "Candidate pairs scored by the cross-encoder",
            ),
            restored_records: counter(
                r,
                "crossflow_dedupe_restored_records",
                "Changelog records read to restore partitions' windows",
            ),
            restore_seconds: histogram(
                r,
                "crossflow_dedupe_restore_seconds",
                "Time to restore one partition's window from the changelog",
                &SECONDS,
            ),
            representatives,
        }
    }

    /// Sets the representatives held for `partition` (`None`: not held).
    pub fn set_representatives(&self, partition: i32, held: Option<usize>) {
        let labels = vec![("partition".to_string(), partition.to_string())];
        match held {
            Some(n) => {
                self.representatives.get_or_create(&labels).set(n as i64);
            }
            None => {
                self.representatives.remove(&labels);
            }
        }
    }
}
