//! The enrich loop: gather, score, produce, commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::bisect::bisect;
use super::kafka::{self, Consumer, Revocation};
use super::message::{self, Enrichment, PairMessage};
use super::metrics::{self, Metrics};
use super::outgoing::{self, Failure, Outgoing, Reason};
use super::score::Scorer;
use super::settings::{EnrichSettings, Guarantee};
use crate::{JobError, Result};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait between two tries of a send the broker failed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long failed sends are retried before the job stops (below
/// librdkafka's default `max.poll.interval.ms`, 300 s, after which the
/// consumer group would drop this member).
const RETRY_LIMIT: Duration = Duration::from_secs(240);
/// Pause after an aborted transaction before the batch is consumed again.
const ABORT_BACKOFF: Duration = Duration::from_secs(1);
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Totals of a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichSummary {
    pub messages_in: u64,
    pub messages_out: u64,
    pub dead_lettered: u64,
    /// Distinct pairs answered from the score cache.
    pub cache_hits: u64,
}

/// Runs until `shutdown` turns true: then finishes the batch in flight,
/// produces, commits and returns.
pub async fn run(
    settings: EnrichSettings,
    scorer: Scorer,
    mut shutdown: watch::Receiver<bool>,
) -> Result<EnrichSummary> {
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = settings.metrics_addr {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(error) = metrics::serve(addr, metrics).await {
                tracing::error!(%addr, %error, "metrics server stopped");
            }
        });
    }
    let consumer = kafka::consumer(&settings, Arc::clone(&metrics))?;
    let topics = [settings.output_topic.as_str(), settings.dlq_topic.as_str()];
    tokio::task::block_in_place(|| kafka::check_topics(&consumer, &topics, KAFKA_TIMEOUT))?;
    kafka::subscribe(&consumer, &settings)?;
    let producer = kafka::producer(&settings)?;
    if settings.guarantee == Guarantee::ExactlyOnce {
        tokio::task::block_in_place(|| producer.init_transactions(KAFKA_TIMEOUT))
            .map_err(|e| kafka::kafka("initialising transactions", e))?;
    }
    let status = settings
        .status_interval
        .map(|every| tokio::spawn(status_lines(Arc::clone(&metrics), every)));
    let job = Job {
        settings,
        scorer,
        consumer,
        producer,
        metrics: Arc::clone(&metrics),
        refused: Mutex::new(HashMap::new()),
        shutdown: shutdown.clone(),
    };
    let result = job.run(&mut shutdown).await;
    if let Some(status) = status {
        status.abort();
    }
    job.consumer.unsubscribe();
    result?;
    Ok(EnrichSummary {
        messages_in: metrics.messages_in.get(),
        messages_out: metrics.messages_out.get(),
        dead_lettered: metrics.dead_lettered.get(),
        cache_hits: metrics.cache_hits.get(),
    })
}

struct Job {
    settings: EnrichSettings,
    scorer: Scorer,
    consumer: Consumer,
    producer: FutureProducer,
    metrics: Arc<Metrics>,
    /// Messages whose record was refused for itself, and what to do when
    /// their batch is produced again (after an aborted transaction).
    refused: Mutex<HashMap<Source, Refusal>>,
    shutdown: watch::Receiver<bool>,
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
struct Tally {
    outputs: u64,
    dead_letters: u64,
    /// Seconds from each input's timestamp to its acknowledgement.
    latencies: Vec<f64>,
}

impl Tally {
    fn add(&mut self, o: &Outgoing) {
        if o.dead_letter {
            self.dead_letters += 1;
        } else {
            self.outputs += 1;
        }
        if let Some(sent) = o.timestamp_ms {
            let latency = now_ms().saturating_sub(sent).max(0) as f64 / 1000.0;
            self.latencies.push(latency);
        }
    }
}

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

impl Job {
    async fn run(&self, shutdown: &mut watch::Receiver<bool>) -> Result<()> {
        loop {
            let stopping = *shutdown.borrow();
            let batch = if stopping {
                Vec::new()
            } else {
                self.gather(shutdown).await
            };
            if !batch.is_empty() {
                self.process(batch).await?;
            }
            if stopping {
                tracing::info!("shutdown: last batch committed");
                return Ok(());
            }
        }
    }

    /// Collects messages until the batch is full, the linger time after its
    /// first message has passed, or shutdown, dropping those of partitions
    /// revoked meanwhile (see [`drop_revoked`]).
    async fn gather(&self, shutdown: &mut watch::Receiver<bool>) -> Vec<OwnedMessage> {
        let mut batch: Vec<Received> = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        while batch.len() < self.settings.max_batch_pairs {
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
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.settings.linger);
                    }
                },
            }
            self.drop_revoked(&mut batch);
        }
        self.drop_revoked(&mut batch);
        batch.into_iter().map(|r| r.message).collect()
    }

    fn drop_revoked(&self, batch: &mut Vec<Received>) {
        let revocations = self.consumer.context().take_revocations();
        let dropped = drop_revoked(batch, &revocations) as u64;
        if dropped > 0 {
            tracing::info!(dropped, "abandoned messages of revoked partitions");
            self.metrics.abandoned.add(dropped);
        }
    }

    /// Scores a batch, produces its outputs and dead letters, commits its offsets.
    async fn process(&self, batch: Vec<OwnedMessage>) -> Result<()> {
        let parsed: Vec<std::result::Result<PairMessage, Reason>> =
            batch.iter().map(|m| self.parse(m)).collect();
        let good: Vec<PairMessage> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let mut scored = self.score(&good).await?.into_iter();
        let outgoing: Vec<Outgoing> = batch
            .iter()
            .zip(parsed)
            .enumerate()
            .map(|(index, (input, parsed))| {
                let result = parsed.and_then(|pair| {
                    let enrichment = scored
                        .next()
                        .expect("one scoring result per parsed message");
                    enrichment.map(|e| (pair, e))
                });
                let record = match result {
                    Ok((pair, enrichment)) => self.output(input, index, pair, &enrichment),
                    Err(reason) => self.dead_letter(input, index, &reason),
                };
                self.as_refused_before(record, input)
            })
            .collect();
        assert!(
            scored.next().is_none(),
            "more scoring results than parsed messages"
        );
        let offsets = next_offsets(&batch)?;
        match self.settings.guarantee {
            Guarantee::AtLeastOnce => {
                let tally = self.produce(outgoing, &batch, true).await?;
                self.count(&batch, tally);
                self.consumer
                    .commit(&offsets, CommitMode::Sync)
                    .map_err(|e| kafka::kafka("committing offsets", e))
            }
            Guarantee::ExactlyOnce => {
                if let Some(tally) = self.transact(outgoing, &offsets, &batch).await? {
                    self.count(&batch, tally);
                }
                Ok(())
            }
        }
    }

    fn refusal(&self, m: &OwnedMessage) -> Option<Refusal> {
        self.refused
            .lock()
            .expect("refusal list")
            .get(&source(m))
            .cloned()
    }

    fn refuse(&self, m: &OwnedMessage, change: impl FnOnce(&mut Refusal)) {
        let mut refused = self.refused.lock().expect("refusal list");
        change(refused.entry(source(m)).or_default());
    }

    /// A record of a message refused before: sent alone, or its dead letter cut to fit.
    fn as_refused_before(&self, mut record: Outgoing, input: &OwnedMessage) -> Outgoing {
        let Some(refusal) = self.refusal(input) else {
            return record;
        };
        record.alone = refusal.alone;
        if record.dead_letter && refusal.trim {
            let size = record.payload.len();
            record = outgoing::trimmed(record, self.max_message_bytes())
                .unwrap_or_else(|| panic!("a dead letter of {size} bytes has something to cut"));
        }
        record
    }

    /// The pair of a message, or why it is dead-lettered (a bad message, or
    /// one whose record was refused alone before its transaction was aborted).
    fn parse(&self, m: &OwnedMessage) -> std::result::Result<PairMessage, Reason> {
        if let Some(reason) = self.refusal(m).and_then(|r| r.dead_letter) {
            return Err(reason);
        }
        message::parse(m.payload(), &self.settings.fields).map_err(|bad| Reason {
            text: bad.to_string(),
            code: bad.code(),
        })
    }

    /// Scores the parsed pairs. An engine error is narrowed down to the pairs
    /// that cause it (bisection), whose messages are dead-lettered; when every
    /// pair of a batch of several fails, the error is not the messages' and
    /// the job stops with it (nothing committed).
    async fn score(
        &self,
        good: &[PairMessage],
    ) -> Result<Vec<std::result::Result<Enrichment, Reason>>> {
        if good.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut first_error = None;
        let results = tokio::task::block_in_place(|| {
            // bisect's first call runs the whole batch again: a passing
            // failure is not blamed on the messages.
            if let Ok(scored) = self.scorer.score(good) {
                return scored_results(self.record_scoring(&scored, good.len()));
            }
            bisect(good, &mut |pairs| {
                let scored = self.scorer.score(pairs);
                if let Err(error) = &scored {
                    first_error.get_or_insert_with(|| error.to_string());
                }
                scored.map(|s| self.record_scoring(&s, pairs.len()))
            })
        });
        self.metrics
            .inference_seconds
            .observe_duration(started.elapsed());
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 1 && failed == good.len() {
            return Err(JobError::Usage(format!(
                "the engine failed on every message of a batch of {failed}: {}",
                first_error.unwrap_or_default()
            )));
        }
        if failed > 0 {
            tracing::warn!(
                failed,
                "engine errors narrowed down to single messages: dead-lettered"
            );
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.map_err(|text| Reason {
                    text: format!("engine: {text}"),
                    code: "engine_error",
                })
            })
            .collect())
    }

    /// Counts a scored chunk in the metrics; returns its enrichments.
    fn record_scoring(&self, scored: &super::score::Scored, pairs: usize) -> Vec<Enrichment> {
        self.metrics.batches.add(1);
        self.metrics.batch_pairs.observe(pairs as f64);
        self.metrics
            .batch_tokens
            .observe(scored.stats.tokens as f64);
        self.metrics
            .truncated_pairs
            .add(scored.stats.truncated_pairs);
        self.metrics.cache_hits.add(scored.stats.cache_hits);
        self.metrics.cache_misses.add(scored.stats.cache_misses);
        scored.enrichments.clone()
    }

    /// The enriched message: the input's key (or, for a keyless input, its
    /// id field, so outputs can be partitioned by id), headers and timestamp.
    fn output(
        &self,
        input: &OwnedMessage,
        index: usize,
        pair: PairMessage,
        enrichment: &Enrichment,
    ) -> Outgoing {
        let key = match input.key() {
            Some(key) => Some(key.to_vec()),
            None => message::message_id(&pair, &self.settings.fields).map(String::into_bytes),
        };
        Outgoing {
            topic: self.settings.output_topic.clone(),
            payload: message::render(pair.object, enrichment),
            key,
            headers: input.headers().cloned().unwrap_or_default(),
            timestamp_ms: input.timestamp().to_millis(),
            dead_letter: false,
            input: index,
            trimmed: false,
            alone: false,
        }
    }

    fn dead_letter(&self, input: &OwnedMessage, index: usize, reason: &Reason) -> Outgoing {
        outgoing::dead_letter(input, index, reason, &self.settings.dlq_topic)
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
    async fn produce(
        &self,
        records: Vec<Outgoing>,
        batch: &[OwnedMessage],
        retry: bool,
    ) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut pending = records;
        let mut backoff = Duration::from_millis(100);
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
                self.metrics.produce_retries.add(1);
                tracing::warn!(%error, records = again.len(), retry_in = ?backoff,
                    "sends failed; retrying, nothing committed meanwhile");
                self.pause(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
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
        let mut record = FutureRecord::to(&o.topic)
            .payload(&o.payload)
            .headers(o.headers.clone());
        if let Some(key) = &o.key {
            record = record.key(key);
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
        let input = &batch[record.input];
        tracing::warn!(topic = %record.topic, reason = %reason.text, offset = input.offset(),
            partition = input.partition(), alone = record.alone, "record refused");
        if !record.alone {
            self.refuse(input, |r| r.alone = true);
            record.alone = true;
            return Ok(record);
        }
        if !record.dead_letter {
            self.refuse(input, |r| r.dead_letter = Some(reason.clone()));
            return Ok(self.dead_letter(input, record.input, &reason));
        }
        let refusal = JobError::Usage(format!(
            "the dead-letter topic {} refuses the dead letter of {}/{}@{}: {}",
            record.topic,
            input.topic(),
            input.partition(),
            input.offset(),
            reason.text
        ));
        if reason.code != "too_large" {
            return Err(refusal);
        }
        self.refuse(input, |r| r.trim = true);
        outgoing::trimmed(record, self.max_message_bytes()).ok_or(refusal)
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
    fn count(&self, batch: &[OwnedMessage], tally: Tally) {
        let mut refused = self.refused.lock().expect("refusal list");
        for m in batch {
            refused.remove(&source(m));
        }
        self.metrics.messages_in.add(batch.len() as u64);
        self.metrics.messages_out.add(tally.outputs);
        self.metrics.dead_lettered.add(tally.dead_letters);
        for latency in tally.latencies {
            self.metrics.end_to_end_seconds.observe(latency);
        }
    }

    /// The producer's `message.max.bytes` (from `--kafka`, else librdkafka's default).
    fn max_message_bytes(&self) -> usize {
        self.settings
            .kafka
            .iter()
            .rev()
            .find(|(key, _)| key == "message.max.bytes")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// Exactly-once: outputs and offsets in one transaction; the batch's
    /// tally once it commits. On an abortable failure the transaction is
    /// aborted and the consumer rewound to the batch's start (`None`: the
    /// batch is consumed again); a fatal one stops the job.
    async fn transact(
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
            let group = self
                .consumer
                .group_metadata()
                .ok_or_else(|| JobError::Usage("the consumer has no group metadata".into()))?;
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
            Err(error) if is_fatal(&error) => {
                tracing::error!(%error, "fatal transaction error: the producer cannot go on");
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
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.producer.commit_transaction(KAFKA_TIMEOUT) {
                Err(KafkaError::Transaction(error))
                    if error.is_retriable() && !*self.shutdown.borrow() =>
                {
                    tracing::warn!(%error, retry_in = ?backoff, "committing the transaction: retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }
}

/// A batch's scoring results when the whole batch scored.
fn scored_results(enrichments: Vec<Enrichment>) -> Vec<std::result::Result<Enrichment, String>> {
    enrichments.into_iter().map(Ok).collect()
}

/// Whether a transaction error leaves the producer unusable (librdkafka's
/// fatal errors, e.g. fenced by a newer instance with the same transactional.id).
fn is_fatal(error: &JobError) -> bool {
    matches!(error, JobError::Kafka { source: KafkaError::Transaction(e), .. } if e.is_fatal())
}

/// The offsets to commit: one past the last message of each partition.
fn next_offsets(batch: &[OwnedMessage]) -> Result<TopicPartitionList> {
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Prints a one-line status every `every`.
async fn status_lines(metrics: Arc<Metrics>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = (0, Instant::now());
    loop {
        ticker.tick().await;
        let done = metrics.messages_out.get() + metrics.dead_lettered.get();
        let rate = (done - last.0) as f64 / last.1.elapsed().as_secs_f64();
        eprintln!(
            "enrich: in {} | out {} | dead-lettered {} | {:.0} msg/s | lag {}",
            metrics.messages_in.get(),
            metrics.messages_out.get(),
            metrics.dead_lettered.get(),
            rate,
            metrics.total_lag()
        );
        last = (done, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
    use rdkafka::message::Timestamp;

    use super::super::kafka::EnrichContext;
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
            .create_with_context(EnrichContext::new(Arc::new(Metrics::default())))
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
