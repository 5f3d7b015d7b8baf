//! Kafka clients of the enrich job: configuration, and a consumer context that
//! records revoked partitions and consumer lag.

use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;

use super::metrics::Metrics;
use super::settings::{EnrichSettings, Guarantee};
use crate::{JobError, Result};

/// Consumer callbacks: partitions revoked since the job last looked, and lag
/// from librdkafka's statistics.
pub struct EnrichContext {
    revoked: Mutex<Vec<(String, i32)>>,
    metrics: Arc<Metrics>,
}

impl EnrichContext {
    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        self.revoked
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl ClientContext for EnrichContext {
    fn stats(&self, statistics: Statistics) {
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
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                let list: Vec<(String, i32)> = partitions
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(?list, "partitions revoked");
                if let Ok(mut revoked) = self.revoked.lock() {
                    revoked.extend(list);
                }
            }
            Rebalance::Assign(partitions) => {
                let list: Vec<i32> = partitions
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                tracing::info!(?list, "partitions assigned");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

/// The consumer: manual commits only, from the earliest offset of a new group.
pub type Consumer = StreamConsumer<EnrichContext>;

fn base_config(settings: &EnrichSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    config
}

fn apply_overrides(config: &mut ClientConfig, settings: &EnrichSettings) {
    for (key, value) in &settings.kafka {
        config.set(key, value);
    }
}

/// Creates the consumer and subscribes it to the input topic.
pub fn consumer(settings: &EnrichSettings, metrics: Arc<Metrics>) -> Result<Consumer> {
    let mut config = base_config(settings);
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "5000")
        .set("queued.max.messages.kbytes", "16384");
    apply_overrides(&mut config, settings);
    let context = EnrichContext {
        revoked: Mutex::new(Vec::new()),
        metrics,
    };
    let consumer: Consumer = config
        .create_with_context(context)
        .map_err(|e| kafka("creating the consumer", e))?;
    rdkafka::consumer::Consumer::subscribe(&consumer, &[settings.input_topic.as_str()])
        .map_err(|e| kafka(&format!("subscribing to {}", settings.input_topic), e))?;
    Ok(consumer)
}

/// Creates the producer: idempotent, acks from all replicas, Java-compatible
/// key partitioning; transactional for exactly-once.
pub fn producer(settings: &EnrichSettings) -> Result<FutureProducer> {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5");
    if settings.guarantee == Guarantee::ExactlyOnce {
        config.set("transactional.id", &settings.transactional_id);
    }
    apply_overrides(&mut config, settings);
    config
        .create()
        .map_err(|e| kafka("creating the producer", e))
}

/// A Kafka error with what was being done.
pub fn kafka(context: &str, error: rdkafka::error::KafkaError) -> JobError {
    JobError::Kafka {
        context: context.to_string(),
        source: error,
    }
}
