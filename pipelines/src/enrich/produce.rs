//! Delivering a batch's records: acknowledgements awaited, records refused
//! for themselves sent alone, then dead-lettered, then cut to fit; broker
//! failures retried; what a batch adds to the counters once done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::watch;

use super::backoff::Backoff;
use super::kafka;
use super::metrics::Metrics;
use super::outgoing::{self, Failure, Outgoing, Reason, RecordKind};
use super::settings::EnrichSettings;
use crate::{JobError, Result};

/// How long failed sends are retried before the job stops (below
/// librdkafka's default `max.poll.interval.ms`, 300 s, after which the
/// consumer group would drop this member).
const RETRY_LIMIT: Duration = Duration::from_secs(240);
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// The producer's `message.max.bytes`: from `-X` (or the settings file),
/// else librdkafka's default.
pub(crate) fn max_message_bytes(settings: &EnrichSettings) -> usize {
    settings
        .kafka
        .iter()
        .rev()
        .find(|(key, _)| key == "message.max.bytes")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

/// Where a consumed message came from.
type Source = (String, i32, i64);

/// What a message whose record was refused gets when its batch is produced
/// again (after an aborted transaction).
#[derive(Debug, Clone, Default)]
struct Refusal {
    /// Its record was refused together with others: send it alone.
    alone: bool,
    /// Its output was refused alone: dead-letter it, for this reason.
    dead_letter: Option<Reason>,
    /// Its dead letter was refused as too large: cut it to fit.
    trim: bool,
}

fn source(m: &OwnedMessage) -> Source {
    (m.topic().to_string(), m.partition(), m.offset())
}

/// What a batch adds to the counters once it is done: acknowledged
/// (at-least-once) or committed (exactly-once). Records of an aborted
/// transaction count nothing, and its batch counts once, when it commits.
#[derive(Default)]
pub(crate) struct Tally {
    outputs: u64,
    dead_letters: u64,
    /// Seconds from each input's timestamp to its acknowledgement.
    latencies: Vec<f64>,
}

impl Tally {
    fn add(&mut self, o: &Outgoing) {
        match o.kind {
            RecordKind::Output => self.outputs += 1,
            RecordKind::DeadLetter => self.dead_letters += 1,
            RecordKind::State | RecordKind::Tombstone => return,
        }
        if let Some(sent) = o.timestamp_ms {
            let latency = now_ms().saturating_sub(sent).max(0) as f64 / 1000.0;
            self.latencies.push(latency);
        }
    }
}

/// The producer side of the job: sends records, remembers the records
/// refused for themselves, counts what is done.
pub(crate) struct Deliverer {
    producer: FutureProducer,
    /// Messages whose record was refused for itself, and what to do when
    /// their batch is produced again (after an aborted transaction).
    refused: Mutex<HashMap<Source, Refusal>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    dlq_topic: String,
    /// The producer's `message.max.bytes` (from `-X`, else librdkafka's default).
    max_message_bytes: usize,
}

impl Deliverer {
    pub fn new(
        producer: FutureProducer,
        settings: &EnrichSettings,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let max_message_bytes = max_message_bytes(settings);
        Self {
            producer,
            refused: Mutex::new(HashMap::new()),
            metrics,
            shutdown,
            dlq_topic: settings.dlq_topic.clone(),
            max_message_bytes,
        }
    }

    /// The dead letter of message `input` (the `index`th of its batch).
    pub fn dead_letter(&self, input: &OwnedMessage, index: usize, reason: &Reason) -> Outgoing {
        outgoing::dead_letter(input, index, reason, &self.dlq_topic)
    }

    fn refusal(&self, m: &OwnedMessage) -> Option<Refusal> {
        self.refused
            .lock()
            .expect("refusal list")
            .get(&source(m))
            .cloned()
    }

    /// Why a message's output was refused alone before, if it was.
    pub fn refused_output(&self, m: &OwnedMessage) -> Option<Reason> {
        self.refusal(m).and_then(|r| r.dead_letter)
    }

    fn refuse(&self, m: &OwnedMessage, change: impl FnOnce(&mut Refusal)) {
        let mut refused = self.refused.lock().expect("refusal list");
        change(refused.entry(source(m)).or_default());
    }

    /// A record of a message refused before: sent alone, or its dead letter cut to fit.
    pub fn as_refused_before(&self, mut record: Outgoing, input: &OwnedMessage) -> Outgoing {
        let Some(refusal) = self.refusal(input) else {
            return record;
        };
        record.alone = refusal.alone;
        if record.kind == RecordKind::DeadLetter && refusal.trim {
            let size = record.payload.len();
            record = outgoing::trimmed(record, self.max_message_bytes)
                .unwrap_or_else(|| panic!("a dead letter of {size} bytes has something to cut"));
        }
        record
    }

    /// Sends every record and waits for all acknowledgements.
    ///
    /// A record refused for itself (too large, invalid) is sent again alone
    /// (a broker refuses whole record batches), and if refused alone it is
    /// replaced by its message's dead letter; a dead letter refused as too
    /// large is sent cut to fit. Broker failures (down, timeouts) are retried
    /// with backoff when `retry` is set, for up to [`RETRY_LIMIT`] and until
    /// shutdown, then returned: nothing is committed past an unacknowledged
    /// record. Without `retry` (inside a transaction) any failure is returned
    /// once every result is in, refusals remembered for the batch's next try.
    pub async fn produce(
        &self,
        records: Vec<Outgoing>,
        batch: &[OwnedMessage],
        retry: bool,
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut pending = records;
        let mut backoff = Backoff::default();
        let started = Instant::now();
        while !pending.is_empty() {
            let results = self.send_all(&pending).await;
            let mut again = Vec::new();
            let (mut refused, mut transient) = (None, None);
            for (record, result) in pending.into_iter().zip(results) {
                let Err(error) = result else {
                    tally.add(&record);
                    continue;
                };
                match outgoing::classify(&error) {
                    Failure::Fatal => {
                        return Err(kafka::kafka(
                            &format!("producing to {}", record.topic),
                            error,
                        ));
                    }
                    Failure::Record(reason) => {
                        again.push(self.refused_record(record, reason, batch)?);
                        refused = Some(error);
                    }
                    Failure::Transient => {
                        again.push(record);
                        transient = Some(error);
                    }
                }
            }
            if let Some(error) = transient {
                if !retry || *self.shutdown.borrow() || started.elapsed() > RETRY_LIMIT {
                    return Err(kafka::kafka("producing (nothing committed)", error));
                }
                self.metrics.produce_retries.inc();
                let wait = backoff.next();
                tracing::warn!(%error, records = again.len(), retry_in = ?wait,
                    "sends failed; retrying, nothing committed meanwhile");
                self.pause(wait).await;
            } else if let Some(error) = refused.filter(|_| !retry) {
                return Err(kafka::kafka(
                    "producing (a record refused in a transaction)",
                    error,
                ));
            }
            pending = again;
        }
        Ok(tally)
    }

    /// Sends the records, those marked `alone` one after the other.
    async fn send_all(&self, records: &[Outgoing]) -> Vec<std::result::Result<(), KafkaError>> {
        let together = join_all(records.iter().filter(|r| !r.alone).map(|r| self.send(r))).await;
        let mut together = together.into_iter();
        let mut results = Vec::with_capacity(records.len());
        for record in records {
            results.push(match record.alone {
                true => self.send(record).await,
                false => together
                    .next()
                    .expect("one result per record sent together"),
            });
        }
        results
    }

    async fn send(&self, o: &Outgoing) -> std::result::Result<(), KafkaError> {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&o.topic).headers(o.headers.clone());
        if o.kind != RecordKind::Tombstone {
            record = record.payload(o.payload.as_slice());
        }
        if let Some(key) = &o.key {
            record = record.key(key.as_slice());
        }
        if let Some(partition) = o.partition {
            record = record.partition(partition);
        }
        self.producer
            .send(record, Timeout::Never)
            .await
            .map(drop)
            .map_err(|(error, _)| error)
    }

    /// What replaces a record refused for itself: the same record alone, then
    /// its message's dead letter, then (too large only) the dead letter cut to
    /// fit. The refusal is remembered for the batch's next try.
    fn refused_record(
        &self,
        mut record: Outgoing,
        reason: Reason,
        batch: &[OwnedMessage],
    ) -> Result<Outgoing> {
        if matches!(record.kind, RecordKind::State | RecordKind::Tombstone) {
            return Err(JobError::StateRefused {
                topic: record.topic.clone(),
                reason: reason.text,
            });
        }
        let input = &batch[record.input];
        tracing::warn!(topic = %record.topic, reason = %reason.text, offset = input.offset(),
            partition = input.partition(), alone = record.alone, "record refused");
        if !record.alone {
            self.refuse(input, |r| r.alone = true);
            record.alone = true;
            return Ok(record);
        }
        if record.kind == RecordKind::Output {
            self.refuse(input, |r| r.dead_letter = Some(reason.clone()));
            return Ok(self.dead_letter(input, record.input, &reason));
        }
        let refusal = JobError::DeadLetterRefused {
            topic: record.topic.clone(),
            input: format!("{}/{}@{}", input.topic(), input.partition(), input.offset()),
            reason: reason.text.clone(),
        };
        if reason.code != "too_large" {
            return Err(refusal);
        }
        self.refuse(input, |r| r.trim = true);
        outgoing::trimmed(record, self.max_message_bytes).ok_or(refusal)
    }

    /// Waits `delay`, or less if shutdown is asked for meanwhile.
    async fn pause(&self, delay: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
    }

    /// Adds a done batch to the counters; its refusals are done with.
    pub fn count(&self, batch: &[OwnedMessage], tally: Tally) {
        let mut refused = self.refused.lock().expect("refusal list");
        for m in batch {
            refused.remove(&source(m));
        }
        self.metrics.messages_in.inc_by(batch.len() as u64);
        self.metrics.messages_out.inc_by(tally.outputs);
        self.metrics.dead_lettered.inc_by(tally.dead_letters);
        for latency in tally.latencies {
            self.metrics.end_to_end_seconds.observe(latency);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
