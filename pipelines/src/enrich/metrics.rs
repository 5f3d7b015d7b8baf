//! Metrics of the enrich job in Prometheus text format, served over HTTP.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if value <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const PAIRS: &[f64] = &[1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
const TOKENS: &[f64] = &[64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0];

/// Everything the enrich job measures.
#[derive(Debug)]
pub struct Metrics {
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub dead_lettered: Counter,
    pub truncated_pairs: Counter,
    pub batches: Counter,
    pub abandoned: Counter,
    pub produce_retries: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub batch_pairs: Histogram,
    pub batch_tokens: Histogram,
    pub inference_seconds: Histogram,
    pub end_to_end_seconds: Histogram,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            dead_lettered: Counter::default(),
            truncated_pairs: Counter::default(),
            batches: Counter::default(),
            abandoned: Counter::default(),
            produce_retries: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            batch_pairs: Histogram::new(PAIRS),
            batch_tokens: Histogram::new(TOKENS),
            inference_seconds: Histogram::new(SECONDS),
            end_to_end_seconds: Histogram::new(SECONDS),
            lag: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Replaces the consumer lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Ok(mut map) = self.lag.lock() {
            map.insert((topic.to_string(), partition), lag);
        }
    }

    /// Forgets the lag of a partition this consumer no longer owns.
    pub fn remove_lag(&self, topic: &str, partition: i32) {
        if let Ok(mut map) = self.lag.lock() {
            map.remove(&(topic.to_string(), partition));
        }
    }

    /// Total lag over all partitions (unknown lags count 0).
    pub fn total_lag(&self) -> i64 {
        self.lag
            .lock()
            .map(|m| m.values().filter(|l| **l > 0).sum())
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "crossflow_messages_in_total",
                "Messages consumed",
                &self.messages_in,
            ),
            (
                "crossflow_messages_out_total",
                "Enriched messages produced and acknowledged",
                &self.messages_out,
            ),
            (
                "crossflow_messages_dead_lettered_total",
                "Messages sent to the dead-letter topic",
                &self.dead_lettered,
            ),
            (
                "crossflow_truncated_pairs_total",
                "Pairs truncated to the model's max length",
                &self.truncated_pairs,
            ),
            (
                "crossflow_batches_total",
                "Micro-batches processed",
                &self.batches,
            ),
            (
                "crossflow_messages_abandoned_total",
                "Messages dropped unprocessed on partition revocation (re-consumed by the new owner)",
                &self.abandoned,
            ),
            (
                "crossflow_produce_retries_total",
                "Sends retried after a broker-side failure that was not the record's (e.g. broker down)",
                &self.produce_retries,
            ),
            (
                "crossflow_cache_hits_total",
                "Distinct pairs answered from the score cache (both models)",
                &self.cache_hits,
            ),
            (
                "crossflow_cache_misses_total",
                "Distinct pairs looked up in the score cache and run through a model",
                &self.cache_misses,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let (hits, misses) = (self.cache_hits.get(), self.cache_misses.get());
        let _ = writeln!(
            out,
            "# HELP crossflow_cache_hit_ratio Share of score-cache lookups that hit\n# TYPE crossflow_cache_hit_ratio gauge\ncrossflow_cache_hit_ratio {}",
            if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            }
        );
        self.batch_pairs
            .render("crossflow_batch_pairs", "Pairs per micro-batch", &mut out);
        self.batch_tokens
            .render("crossflow_batch_tokens", "Tokens per micro-batch", &mut out);
        self.inference_seconds.render(
            "crossflow_inference_seconds",
            "Scoring time per micro-batch",
            &mut out,
        );
        self.end_to_end_seconds.render(
            "crossflow_end_to_end_seconds",
            "From the input message's timestamp to the output's acknowledgement",
            &mut out,
        );
        let _ = writeln!(
            out,
            "# HELP crossflow_consumer_lag Messages behind the high watermark\n# TYPE crossflow_consumer_lag gauge"
        );
        if let Ok(map) = self.lag.lock() {
            for ((topic, partition), lag) in map.iter() {
                let _ = writeln!(
                    out,
                    "crossflow_consumer_lag{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}"
                );
            }
        }
        out
    }
}

/// Serves `GET /metrics` (any path) at `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    loop {
        let (mut socket, _) = listener.accept().await?;
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_lag() {
        let metrics = Metrics::default();
        metrics.messages_in.add(3);
        metrics.inference_seconds.observe(0.02);
        metrics.inference_seconds.observe(2.0);
        metrics.set_lag("in", 1, 42);
        let text = metrics.render();
        assert!(text.contains("crossflow_messages_in_total 3"));
        assert!(text.contains("crossflow_inference_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("crossflow_inference_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("crossflow_consumer_lag{topic=\"in\",partition=\"1\"} 42"));
        assert_eq!(metrics.total_lag(), 42);
    }
}
