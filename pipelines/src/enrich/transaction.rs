//! Exactly-once: a batch's records and offsets in one transaction, aborted
//! and rewound when it fails.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::backoff::Backoff;
use super::kafka;
use super::outgoing::Outgoing;
use super::produce::Tally;
use super::settings::Guarantee;
use super::stream::{Job, KAFKA_TIMEOUT};
use crate::{JobError, Result};

/// Pause after an aborted transaction before the batch is consumed again.
const ABORT_BACKOFF: Duration = Duration::from_secs(1);

impl Job {
    /// Exactly-once: outputs and offsets in one transaction; the batch's
    /// tally once it commits. On an abortable failure the transaction is
    /// aborted and the consumer rewound to the batch's start (`None`: the
    /// batch is consumed again); a fatal one stops the job.
    pub(super) async fn transact(
        &self,
        outgoing: Vec<Outgoing>,
        offsets: &TopicPartitionList,
        batch: &[OwnedMessage],
    ) -> Result<Option<Tally>> {
        let transaction = async {
            self.producer
                .begin_transaction()
                .map_err(|e| kafka::kafka("beginning a transaction", e))?;
            let tally = self.produce(outgoing, batch, false).await?;
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
        for (topic, partition, offset) in first_offsets(batch) {
            self.consumer
                .seek(&topic, partition, Offset::Offset(offset), KAFKA_TIMEOUT)
                .map_err(|e| kafka::kafka("rewinding after an aborted transaction", e))?;
        }
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
}

impl Job {
    /// The producer's fatal error in place of `error`, if the producer has
    /// one: fenced (another instance took over the transactional id), or
    /// another error after which the producer cannot be used.
    pub(super) fn fatal_or(&self, error: JobError) -> JobError {
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
        if fenced && self.settings.guarantee == Guarantee::ExactlyOnce {
            JobError::Fenced {
                transactional_id: self.settings.transactional_id.clone(),
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
/// fatal errors, e.g. fenced by a newer instance with the same transactional.id).
fn is_fatal(error: &JobError) -> bool {
    matches!(error, JobError::Kafka { source: KafkaError::Transaction(e), .. } if e.is_fatal())
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
