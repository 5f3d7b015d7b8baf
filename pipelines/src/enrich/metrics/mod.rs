//! Metrics of the enrich job: its counters, histograms and gauges in a
//! `prometheus-client` registry beside the engine's own
//! ([`crossflow::metrics::EngineCollector`]), served in the OpenMetrics text
//! format over HTTP (hyper) at `--metrics-addr`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crossflow::metrics::EngineCollector;

pub(crate) const SECONDS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const PAIRS: [f64; 9] = [1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
const TOKENS: [f64; 7] = [64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0];

/// The labels of a partition's lag gauge.
type PartitionLabels = Vec<(String, String)>;

/// Everything the enrich job measures. Counters are exported with the
/// `_total` suffix (`crossflow_messages_in_total`, ...).
#[derive(Debug)]
pub struct Metrics {
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub dead_lettered: Counter,
    pub batches: Counter,
    pub abandoned: Counter,
    pub produce_retries: Counter,
    pub batch_pairs: Histogram,
    pub batch_tokens: Histogram,
    pub scoring_seconds: Histogram,
    pub end_to_end_seconds: Histogram,
    /// The models' own counters (pairs, cache, queue, ONNX Runtime).
    engine: EngineCollector,
    lag: Family<PartitionLabels, Gauge>,
    lag_by_partition: Mutex<BTreeMap<(String, i32), i64>>,
    assigned_partitions: Gauge,
    /// What the consumer waits for, and for how long (`None`: consuming).
    waiting: Mutex<Option<String>>,
    registry: Registry,
}

pub(crate) fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

pub(crate) fn histogram(
    registry: &mut Registry,
    name: &str,
    help: &str,
    bounds: &[f64],
) -> Histogram {
    let histogram = Histogram::new(bounds.iter().copied());
    registry.register(name, help, histogram.clone());
    histogram
}

/// Wall time to score a Kafka batch, registered under its name and, for one
/// release, under its former name `crossflow_inference_seconds` (which the
/// cluster executors use for ONNX Runtime time, a counter).
fn scoring_seconds(registry: &mut Registry) -> Histogram {
    let histogram = histogram(
        registry,
        "crossflow_batch_scoring_seconds",
        "Wall time to score a Kafka batch: tokenization, waiting in the models' queues, \
         ONNX Runtime, narrowing down engine errors",
        &SECONDS,
    );
    registry.register(
        "crossflow_inference_seconds",
        "Deprecated name of crossflow_batch_scoring_seconds, kept for one release",
        histogram.clone(),
    );
    histogram
}

impl Default for Metrics {
    /// The enrich metrics without any model's.
    fn default() -> Self {
        Self::new(EngineCollector::new(Vec::new()))
    }
}

impl Metrics {
    /// The enrich metrics, with the engine's counters read from `engine`.
    pub fn new(engine: EngineCollector) -> Self {
        let mut r = Registry::default();
        r.register_collector(Box::new(engine.clone()));
        let lag = Family::<PartitionLabels, Gauge>::default();
        r.register(
            "crossflow_consumer_lag",
            "Messages behind the high watermark, per assigned partition",
            lag.clone(),
        );
        let assigned_partitions = Gauge::default();
        r.register(
            "crossflow_assigned_partitions",
            "Input partitions assigned to this instance by its consumer group",
            assigned_partitions.clone(),
        );
        Self {
            messages_in: counter(&mut r, "crossflow_messages_in", "Messages consumed"),
            messages_out: counter(
                &mut r,
                "crossflow_messages_out",
                "Enriched messages produced and acknowledged",
            ),
            dead_lettered: counter(
                &mut r,
                "crossflow_messages_dead_lettered",
                "Messages sent to the dead-letter topic",
            ),
            batches: counter(
                &mut r,
                "crossflow_batches",
                "Engine calls for a Kafka batch (or, while an engine error is narrowed down, \
                 part of one)",
            ),
            abandoned: counter(
                &mut r,
                "crossflow_messages_abandoned",
                "Messages dropped unprocessed on partition revocation (re-consumed by the new owner)",
            ),
            produce_retries: counter(
                &mut r,
                "crossflow_produce_retries",
                "Sends retried after a broker-side failure that was not the record's (e.g. broker down)",
            ),
            batch_pairs: histogram(
                &mut r,
                "crossflow_batch_pairs",
                "Pairs per engine call for a Kafka batch",
                &PAIRS,
            ),
            batch_tokens: histogram(
                &mut r,
                "crossflow_batch_tokens",
                "Tokens per engine call for a Kafka batch (after truncation)",
                &TOKENS,
            ),
            scoring_seconds: scoring_seconds(&mut r),
            end_to_end_seconds: histogram(
                &mut r,
                "crossflow_end_to_end_seconds",
                "From the input message's timestamp to the output's acknowledgement",
                &SECONDS,
            ),
            engine,
            lag,
            lag_by_partition: Mutex::new(BTreeMap::new()),
            assigned_partitions,
            waiting: Mutex::new(None),
            registry: r,
        }
    }

    /// The registry, for a job's own metrics beside these.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Distinct pairs answered from the score cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.engine.totals().cache_hits
    }

    /// Replaces the consumer lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag.get_or_create(&labels(topic, partition)).set(lag);
        self.lags().insert((topic.to_string(), partition), lag);
    }

    /// Forgets the lag of a partition this consumer no longer owns.
    pub fn remove_lag(&self, topic: &str, partition: i32) {
        self.lag.remove(&labels(topic, partition));
        self.lags().remove(&(topic.to_string(), partition));
    }

    /// Total lag over the partitions this consumer owns.
    pub fn total_lag(&self) -> i64 {
        self.lags().values().filter(|lag| **lag > 0).sum()
    }

    /// Records the consumer's group state: its partitions, and what it
    /// waits for (`None`: consuming).
    pub fn set_group_state(&self, assigned: i32, waiting: Option<String>) {
        self.assigned_partitions.set(i64::from(assigned));
        *self.waiting.lock().expect("waiting text poisoned") = waiting;
    }

    /// What the consumer waits for, if anything (see [`Metrics::set_group_state`]).
    pub fn waiting(&self) -> Option<String> {
        self.waiting.lock().expect("waiting text poisoned").clone()
    }

    fn lags(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, i32), i64>> {
        self.lag_by_partition.lock().expect("lag map poisoned")
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

fn labels(topic: &str, partition: i32) -> PartitionLabels {
    vec![
        ("topic".to_string(), topic.to_string()),
        ("partition".to_string(), partition.to_string()),
    ]
}

impl crate::metrics_http::Exposition for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

#[cfg(test)]
mod tests;
