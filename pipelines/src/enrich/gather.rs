//! Gathering a micro-batch from the consumer, without the messages of
//! partitions revoked meanwhile.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::watch;

use super::kafka::{Consumer, Revocation};
use super::metrics::Metrics;
use super::settings::EnrichSettings;

/// A consumed message and the assignment epoch `recv()` returned it in.
struct Received {
    message: OwnedMessage,
    epoch: u64,
}

/// Drops the messages fetched before a revocation of their partition (their
/// offsets were not committed: the partition's next owner consumes them);
/// messages received after it, even from the same partition assigned back in
/// the same `recv()`, stay. Returns how many were dropped.
fn drop_revoked(batch: &mut Vec<Received>, revocations: &[Revocation]) -> usize {
    let before = batch.len();
    batch.retain(|r| {
        !revocations.iter().any(|rev| {
            rev.topic == r.message.topic()
                && rev.partition == r.message.partition()
                && r.epoch < rev.epoch
        })
    });
    before - batch.len()
}

/// The consumer side of the job: gathers micro-batches.
pub(crate) struct Gatherer {
    consumer: Arc<Consumer>,
    metrics: Arc<Metrics>,
    /// Input partitions revoked since the job last asked.
    revoked: Mutex<BTreeSet<i32>>,
    /// Messages per batch at most.
    messages: usize,
    /// How long a batch waits for more after its first message.
    linger: Duration,
}

impl Gatherer {
    pub fn new(consumer: Arc<Consumer>, settings: &EnrichSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            consumer,
            metrics,
            revoked: Mutex::new(BTreeSet::new()),
            messages: settings.gather_messages,
            linger: settings.linger,
        }
    }

    /// Collects messages until the batch is full, the linger time after its
    /// first message has passed, or shutdown, dropping those of partitions
    /// revoked meanwhile (see [`drop_revoked`]).
    pub async fn gather(&self, shutdown: &mut watch::Receiver<bool>) -> Vec<OwnedMessage> {
        let mut batch: Vec<Received> = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        while batch.len() < self.messages {
            let until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(250));
            tokio::select! {
                _ = shutdown.changed() => break,
                received = tokio::time::timeout_at(until, self.consumer.recv()) => match received {
                    Err(_) if deadline.is_some() => break,
                    Err(_) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "consumer error"),
                    Ok(Ok(message)) => {
                        let epoch = self.consumer.context().epoch();
                        batch.push(Received { message: message.detach(), epoch });
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.linger);
                    }
                },
            }
            self.drop_revoked(&mut batch);
        }
        self.drop_revoked(&mut batch);
        batch.into_iter().map(|r| r.message).collect()
    }

    /// The input partitions revoked since the last call (a job holding
    /// state per partition drops it: the next owner may change it).
    pub fn take_revoked(&self) -> BTreeSet<i32> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked set poisoned"))
    }

    fn drop_revoked(&self, batch: &mut Vec<Received>) {
        let revocations = self.consumer.context().take_revocations();
        self.revoked
            .lock()
            .expect("revoked set poisoned")
            .extend(revocations.iter().map(|r| r.partition));
        let dropped = drop_revoked(batch, &revocations) as u64;
        if dropped > 0 {
            tracing::info!(dropped, "abandoned messages of revoked partitions");
            self.metrics.abandoned.inc_by(dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
    use rdkafka::message::Timestamp;

    use std::sync::Arc;

    use rdkafka::{Offset, TopicPartitionList};

    use super::super::commit::next_offsets;
    use super::super::kafka::EnrichContext;
    use super::super::metrics::Metrics;
    use super::*;

    fn message(offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "in".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    /// A consumer whose context the test drives as rdkafka would.
    fn scripted_consumer() -> BaseConsumer<EnrichContext> {
        ClientConfig::new()
            .set("group.id", "scripted")
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(EnrichContext::new(Arc::new(Metrics::default()), "g"))
            .expect("consumer")
    }

    #[test]
    fn a_message_received_after_its_partition_came_back_in_the_same_recv_is_kept() {
        let consumer = scripted_consumer();
        let context = consumer.context();
        let received = |offset| Received {
            message: message(offset),
            epoch: context.epoch(),
        };
        // Offset 10 is gathered; then one recv() sees partition 0 revoked,
        // assigned back, and fetches offset 10 again from the committed position.
        let mut batch = vec![received(10)];
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition("in", 0);
        context.pre_rebalance(&consumer, &Rebalance::Revoke(&partitions));
        context.pre_rebalance(&consumer, &Rebalance::Assign(&partitions));
        batch.push(received(10));
        assert_eq!(drop_revoked(&mut batch, &context.take_revocations()), 1);
        batch.push(received(11));
        let offsets: Vec<i64> = batch.iter().map(|r| r.message.offset()).collect();
        assert_eq!(offsets, [10, 11], "nothing skipped before the committed 12");
        let messages: Vec<OwnedMessage> = batch.into_iter().map(|r| r.message).collect();
        let commit = next_offsets(&messages).unwrap();
        assert_eq!(
            commit.find_partition("in", 0).unwrap().offset(),
            Offset::Offset(12)
        );
    }

    #[test]
    fn revocations_of_other_partitions_keep_a_message() {
        let consumer = scripted_consumer();
        let context = consumer.context();
        let mut batch = vec![Received {
            message: message(3),
            epoch: context.epoch(),
        }];
        let mut other = TopicPartitionList::new();
        other.add_partition("in", 1);
        context.pre_rebalance(&consumer, &Rebalance::Revoke(&other));
        assert_eq!(drop_revoked(&mut batch, &context.take_revocations()), 0);
        assert!(context.take_revocations().is_empty(), "taken once");
    }
}
