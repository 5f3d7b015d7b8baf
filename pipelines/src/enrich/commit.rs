//! Committing a delivered batch: its offsets stored for librdkafka's
//! background commit (at-least-once), or its records and offsets in one
//! transaction, aborted and rewound when it fails (exactly-once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::backoff::Backoff;
use super::kafka::{self, Consumer};
use super::outgoing::Outgoing;
use super::produce::{Deliverer, Tally};
use super::settings::{EnrichSettings, Guarantee};
use crate::{JobError, Result};

/// How long a blocking Kafka call may take.
pub(crate) const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an aborted transaction before the batch is consumed again.
const ABORT_BACKOFF: Duration = Duration::from_secs(1);

/// What became of a delivered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its offsets are committed (exactly-once: with its records).
    Committed,
    /// At-least-once: delivered, offsets stored for the background commit.
    Stored,
    /// Exactly-once: its transaction was aborted and the consumer rewound
    /// to the batch's start: it is consumed again.
    Rewound,
}

/// The commit side of the job: offsets and transactions.
pub(crate) struct Committer {
    consumer: Arc<Consumer>,
    producer: FutureProducer,
    guarantee: Guarantee,
    transactional_id: String,
    /// The test hook `--pause-before-commit-ms`.
    pause: Option<Duration>,
    /// At-least-once: commit each batch's offsets at once (blocking) rather
    /// than in the background.
    commit_each_batch: bool,
    shutdown: watch::Receiver<bool>,
}

impl Committer {
    pub fn new(
        consumer: Arc<Consumer>,
        producer: FutureProducer,
        settings: &EnrichSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            consumer,
            producer,
            guarantee: settings.guarantee,
            transactional_id: settings.transactional_id.clone(),
            pause: settings.pause_before_commit,
            commit_each_batch: false,
            shutdown,
        }
    }

    /// At-least-once, commits each batch's offsets as soon as they are
    /// stored, so that [`Outcome::Committed`] tells the job its batch is
    /// committed.
    pub fn commit_each_batch(&mut self) {
        self.commit_each_batch = true;
    }

    /// Delivers a batch's records through `deliver` and commits the batch:
    /// at-least-once, its offsets are stored once every record is
    /// acknowledged; exactly-once, records and offsets go in one
    /// transaction (an aborted one rewinds the consumer to the batch).
    /// The batch is counted once done.
    pub async fn deliver_and_commit(
        &self,
        deliver: &Deliverer,
        outgoing: Vec<Outgoing>,
        batch: &[OwnedMessage],
    ) -> Result<Outcome> {
        let offsets = next_offsets(batch)?;
        match self.guarantee {
            Guarantee::AtLeastOnce => {
                let tally = deliver.produce(outgoing, batch, true).await?;
                deliver.count(batch, tally);
                self.pause_before_commit().await;
                self.store(&offsets)?;
                Ok(self.commit_now())
            }
            Guarantee::ExactlyOnce => {
                match self.transact(deliver, outgoing, &offsets, batch).await? {
                    Some(tally) => {
                        deliver.count(batch, tally);
                        Ok(Outcome::Committed)
                    }
                    None => Ok(Outcome::Rewound),
                }
            }
        }
    }

    /// With [`Committer::commit_each_batch`], commits the stored offsets
    /// (blocking); a failure (e.g. a rebalance under way) leaves them to
    /// the background commit.
    fn commit_now(&self) -> Outcome {
        if !self.commit_each_batch {
            return Outcome::Stored;
        }
        let committed =
            tokio::task::block_in_place(|| self.consumer.commit_consumer_state(CommitMode::Sync));
        match committed {
            Ok(()) => Outcome::Committed,
            Err(error) => {
                tracing::warn!(%error, "committing the batch's offsets: left to the background commit");
                Outcome::Stored
            }
        }
    }

    /// At-least-once: stores a delivered batch's offsets for librdkafka's
    /// background commit. Offsets of partitions revoked while the batch was
    /// in flight are not stored: their next owner consumes those messages
    /// again.
    fn store(&self, offsets: &TopicPartitionList) -> Result<()> {
        match self.consumer.store_offsets(offsets) {
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::info!("the batch's partitions were revoked: offsets not stored");
                Ok(())
            }
            stored => stored.map_err(|e| kafka::kafka("storing offsets", e)),
        }
    }

    /// At shutdown under at-least-once: commits the stored offsets now
    /// rather than at the next background commit.
    pub fn commit_stored(&self) -> Result<()> {
        if self.guarantee != Guarantee::AtLeastOnce {
            return Ok(());
        }
        let committed =
            tokio::task::block_in_place(|| self.consumer.commit_consumer_state(CommitMode::Sync));
        match committed {
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            committed => committed.map_err(|e| kafka::kafka("committing offsets", e)),
        }
    }

    /// The test hook `--pause-before-commit-ms`: a batch's outputs are
    /// produced (acknowledged, or in the open transaction) and its offsets
    /// not yet committed, until the pause ends or shutdown.
    async fn pause_before_commit(&self) {
        let Some(pause) = self.pause else {
            return;
        };
        tracing::warn!(
            ?pause,
            "test hook: outputs produced, pausing before the commit"
        );
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    /// Exactly-once: outputs and offsets in one transaction; the batch's
    /// tally once it commits. On an abortable failure the transaction is
    /// aborted and the consumer rewound to the batch's start (`None`: the
    /// batch is consumed again); a fatal one stops the job.
    async fn transact(
        &self,
        deliver: &Deliverer,
        outgoing: Vec<Outgoing>,
        offsets: &TopicPartitionList,
        batch: &[OwnedMessage],
    ) -> Result<Option<Tally>> {
        let transaction = async {
            self.producer
                .begin_transaction()
                .map_err(|e| kafka::kafka("beginning a transaction", e))?;
            let tally = deliver.produce(outgoing, batch, false).await?;
            self.pause_before_commit().await;
            let group = self
                .consumer
                .group_metadata()
                .ok_or_else(|| JobError::Internal("the consumer has no group metadata".into()))?;
            tokio::task::block_in_place(|| {
                self.producer
                    .send_offsets_to_transaction(offsets, &group, KAFKA_TIMEOUT)?;
                self.commit_transaction()
            })
            .map_err(|e| kafka::kafka("committing the transaction", e))?;
            Ok::<_, JobError>(tally)
        };
        let error = match transaction.await {
            Ok(tally) => return Ok(Some(tally)),
            Err(error) if is_fatal(&error) || self.producer.client().fatal_error().is_some() => {
                return Err(error);
            }
            Err(error) => error,
        };
        tracing::warn!(%error, "transaction failed: aborting and rewinding");
        tokio::task::block_in_place(|| self.producer.abort_transaction(KAFKA_TIMEOUT))
            .map_err(|e| kafka::kafka("aborting the transaction", e))?;
        tokio::task::block_in_place(|| {
            for (topic, partition, offset) in first_offsets(batch) {
                self.consumer
                    .seek(&topic, partition, Offset::Offset(offset), KAFKA_TIMEOUT)
                    .map_err(|e| kafka::kafka("rewinding after an aborted transaction", e))?;
            }
            Ok::<_, JobError>(())
        })?;
        // The batch is consumed again next; not at once if the broker is down.
        tokio::time::sleep(ABORT_BACKOFF).await;
        Ok(None)
    }

    /// Commits the open transaction, trying again while librdkafka says the
    /// error is retriable (blocking).
    fn commit_transaction(&self) -> rdkafka::error::KafkaResult<()> {
        let mut backoff = Backoff::default();
        loop {
            match self.producer.commit_transaction(KAFKA_TIMEOUT) {
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && !*self.shutdown.borrow() =>
                {
                    let wait = backoff.next();
                    tracing::warn!(%error, retry_in = ?wait, "committing the transaction: retrying");
                    std::thread::sleep(wait);
                }
                other => return other,
            }
        }
    }

    /// The producer's fatal error in place of `error`, if the producer has
    /// one: fenced (another instance took over the transactional id), or
    /// another error after which the producer cannot be used.
    pub fn fatal_or(&self, error: JobError) -> JobError {
        let Some((code, reason)) = self.producer.client().fatal_error() else {
            return error;
        };
        tracing::error!(%error, ?code, %reason, "fatal producer error: the job stops");
        let fenced = matches!(
            code,
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        );
        if fenced && self.guarantee == Guarantee::ExactlyOnce {
            JobError::Fenced {
                transactional_id: self.transactional_id.clone(),
                reason,
            }
        } else {
            JobError::ProducerFailed {
                reason: format!("{code:?}: {reason}"),
            }
        }
    }
}

/// Whether a transaction error leaves the producer unusable (librdkafka's
/// fatal errors, e.g. fenced by a newer instance with the same transactional.id),
/// or would fail the same way in every retry.
fn is_fatal(error: &JobError) -> bool {
    match error {
        JobError::Kafka {
            source: KafkaError::Transaction(e),
            ..
        } => e.is_fatal(),
        // A state record refused again on every try.
        JobError::StateRefused { .. } => true,
        _ => false,
    }
}

/// The first offset of each partition in the batch.
fn first_offsets(batch: &[OwnedMessage]) -> Vec<(String, i32, i64)> {
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = first
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(m.offset());
        *entry = (*entry).min(m.offset());
    }
    first.into_iter().map(|((t, p), o)| (t, p, o)).collect()
}

/// The offsets to commit: one past the last message of each partition.
pub(crate) fn next_offsets(batch: &[OwnedMessage]) -> Result<TopicPartitionList> {
    let mut last: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = last.entry((m.topic(), m.partition())).or_insert(m.offset());
        *entry = (*entry).max(m.offset());
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in last {
        list.add_partition_offset(topic, partition, Offset::Offset(offset + 1))
            .map_err(|e| kafka::kafka("building the offset list", e))?;
    }
    Ok(list)
}
