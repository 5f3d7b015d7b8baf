//! Kafka clients of the enrich job: configuration, start-up checks, and a
//! consumer context that records revocations and consumer lag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use super::backoff::Backoff;
use super::group::{GroupView, WaitWatch};
use super::metrics::Metrics;
use super::settings::{EnrichSettings, Guarantee};
use crate::{JobError, Result};

/// A partition revoked from this consumer, and the assignment epoch the
/// revocation started: messages of the partition received in an earlier
/// epoch were fetched before it and belong to the partition's next owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub topic: String,
    pub partition: i32,
    pub epoch: u64,
}

/// Consumer callbacks: revocations since the job last looked, the assignment
/// epoch (one more per revocation), and lag from librdkafka's statistics.
///
/// rdkafka handles a whole rebalance inside one `recv()`: revoke, assign the
/// same partition back, return its first new message. Tagging each message
/// with the epoch current when `recv()` returned it tells that new message
/// (current epoch, kept) from those fetched before the revocation (dropped).
pub struct EnrichContext {
    epoch: AtomicU64,
    revocations: Mutex<Vec<Revocation>>,
    metrics: Arc<Metrics>,
    group_id: String,
    wait: WaitWatch,
}

impl EnrichContext {
    /// A context reporting lag and the state of `group_id` to `metrics`.
    pub fn new(metrics: Arc<Metrics>, group_id: &str) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            revocations: Mutex::new(Vec::new()),
            metrics,
            group_id: group_id.to_string(),
            wait: WaitWatch::default(),
        }
    }

    /// The current assignment epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Revocations since the last call.
    pub fn take_revocations(&self) -> Vec<Revocation> {
        std::mem::take(&mut *self.revocations.lock().expect("revocation list poisoned"))
    }

    fn revoke(&self, partitions: &TopicPartitionList) {
        let mut revocations = self.revocations.lock().expect("revocation list poisoned");
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for e in partitions.elements() {
            revocations.push(Revocation {
                topic: e.topic().to_string(),
                partition: e.partition(),
                epoch,
            });
            self.metrics.remove_lag(e.topic(), e.partition());
        }
    }
}

impl ClientContext for EnrichContext {
    fn stats(&self, statistics: Statistics) {
        if let Some(view) = GroupView::from_statistics(&statistics) {
            let waiting = self
                .wait
                .update(view.waiting_for(), &self.group_id, Instant::now());
            self.metrics.set_group_state(view.assigned, waiting);
        }
        for (name, topic) in &statistics.topics {
            for (id, partition) in &topic.partitions {
                if *id >= 0 && partition.consumer_lag >= 0 {
                    self.metrics.set_lag(name, *id, partition.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for EnrichContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let list: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                tracing::info!(?list, "partitions revoked");
                self.revoke(partitions);
            }
            Rebalance::Assign(partitions) => {
                let list: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                tracing::info!(?list, "partitions assigned");
            }
            Rebalance::Error(error) => {
                // rdkafka unassigns everything after a rebalance error: what
                // was gathered so far belongs to whoever gets the partitions.
                tracing::warn!(%error, "rebalance error: dropping the current assignment");
                if let Ok(assigned) = rdkafka::consumer::Consumer::assignment(consumer) {
                    self.revoke(&assigned);
                }
            }
        }
    }
}

/// librdkafka's background commit interval under at-least-once, in ms
/// (librdkafka's default is 5000): see docs/enrich.md, "Guarantees".
const AUTO_COMMIT_INTERVAL_MS: &str = "1000";

/// The consumer: offsets stored by the job only, from the earliest offset of a new group.
pub type Consumer = StreamConsumer<EnrichContext>;

fn base_config(settings: &EnrichSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    config
}

/// A client of the job's brokers with the file's and `-X` settings (e.g.
/// security), then `set`, which wins (for the job's own helper clients:
/// admin, state restore).
pub(crate) fn client_config(
    settings: &EnrichSettings,
    set: impl FnOnce(&mut ClientConfig),
) -> ClientConfig {
    let mut config = base_config(settings);
    apply_overrides(&mut config, settings);
    set(&mut config);
    config
}

fn apply_overrides(config: &mut ClientConfig, settings: &EnrichSettings) {
    for (key, value) in &settings.kafka {
        config.set(key, value);
    }
}

/// Creates the consumer (not yet subscribed: see [`subscribe`]).
pub fn consumer(settings: &EnrichSettings, metrics: Arc<Metrics>) -> Result<Consumer> {
    let mut config = base_config(settings);
    config
        .set("group.id", &settings.group_id)
        // At-least-once: a batch's offsets are stored once its outputs are
        // delivered, and librdkafka commits what is stored in the background
        // (every second: what a crash repeats), on a revocation and at
        // shutdown. Exactly-once: offsets go into the transaction only.
        .set(
            "enable.auto.commit",
            (settings.guarantee == Guarantee::AtLeastOnce).to_string(),
        )
        .set("auto.commit.interval.ms", AUTO_COMMIT_INTERVAL_MS)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        .set("queued.max.messages.kbytes", "16384");
    apply_overrides(&mut config, settings);
    config
        .create_with_context(EnrichContext::new(metrics, &settings.group_id))
        .map_err(|e| kafka("creating the consumer", e))
}

/// Subscribes the consumer to the input topic.
pub fn subscribe(consumer: &Consumer, settings: &EnrichSettings) -> Result<()> {
    rdkafka::consumer::Consumer::subscribe(consumer, &[settings.input_topic.as_str()])
        .map_err(|e| kafka(&format!("subscribing to {}", settings.input_topic), e))
}

/// Creates the producer: idempotent, acks from all replicas, Java-compatible
/// key partitioning; transactional for exactly-once.
pub fn producer(settings: &EnrichSettings) -> Result<FutureProducer> {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        // A send that cannot be delivered fails within a minute (not the
        // default five) and the job retries it; a transaction outlives its sends.
        .set("message.timeout.ms", "60000")
        .set("transaction.timeout.ms", "120000");
    if settings.guarantee == Guarantee::ExactlyOnce {
        config.set("transactional.id", &settings.transactional_id);
    }
    apply_overrides(&mut config, settings);
    config
        .create()
        .map_err(|e| kafka("creating the producer", e))
}

/// Checks that each of `topics` (with the flag that names it) exists and has
/// partitions, before anything is consumed: a missing input, output or
/// dead-letter topic is a start-up error, not a subscription that idles or a
/// send that fails later (blocking). Asked through the consumer, whose
/// metadata requests never create topics (`allow.auto.create.topics` is off
/// for consumers), so a broker that auto-creates does not hide a typo. A
/// topic whose leader is being elected is asked again, for up to `timeout`.
pub fn check_topics(consumer: &Consumer, topics: &[(&str, &str)], timeout: Duration) -> Result<()> {
    let started = std::time::Instant::now();
    let mut backoff = Backoff::default();
    for &(flag, topic) in topics {
        loop {
            let metadata =
                rdkafka::consumer::Consumer::fetch_metadata(consumer, Some(topic), timeout)
                    .map_err(|e| kafka(&format!("reading the metadata of topic {topic}"), e))?;
            let found = metadata.topics().iter().find(|t| t.name() == topic);
            let problem = match found.map(|t| (t.error().map(RDKafkaErrorCode::from), t)) {
                None => "it is not in the broker's metadata".to_string(),
                Some((Some(RDKafkaErrorCode::LeaderNotAvailable), _))
                    if started.elapsed() < timeout =>
                {
                    std::thread::sleep(
                        backoff
                            .next()
                            .min(timeout.saturating_sub(started.elapsed())),
                    );
                    continue;
                }
                Some((Some(error), _)) => format!("{error:?}"),
                Some((None, t)) if t.partitions().is_empty() => "it has no partitions".to_string(),
                Some((None, _)) => break,
            };
            return Err(JobError::Usage(format!(
                "{flag} {topic}: the topic cannot be used: {problem}; create it (or name \
                 another with {flag}) before starting"
            )));
        }
    }
    Ok(())
}

/// A Kafka error with what was being done.
pub fn kafka(context: &str, error: rdkafka::error::KafkaError) -> JobError {
    JobError::Kafka {
        context: context.to_string(),
        source: error,
    }
}
