//! The enrich loop: gather, score, produce, commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::kafka::{self, Consumer};
use super::message::{self, Enrichment, PairMessage};
use super::metrics::{self, Metrics};
use super::score::Scorer;
use super::settings::{EnrichSettings, Guarantee};
use crate::{JobError, Result};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

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
}

/// One record to produce: the output or a dead letter.
struct Outgoing {
    topic: String,
    payload: Vec<u8>,
    key: Option<Vec<u8>>,
    headers: OwnedHeaders,
    timestamp_ms: Option<i64>,
    dead_letter: bool,
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
    /// first message has passed, or shutdown. Messages of partitions revoked
    /// meanwhile are dropped: their offsets were not committed, so the
    /// partition's new owner consumes them.
    async fn gather(&self, shutdown: &mut watch::Receiver<bool>) -> Vec<OwnedMessage> {
        let mut batch: Vec<OwnedMessage> = Vec::new();
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
                        batch.push(message.detach());
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.settings.linger);
                    }
                },
            }
            self.drop_revoked(&mut batch);
        }
        self.drop_revoked(&mut batch);
        batch
    }

    fn drop_revoked(&self, batch: &mut Vec<OwnedMessage>) {
        let revoked = self.consumer.context().take_revoked();
        if revoked.is_empty() {
            return;
        }
        let before = batch.len();
        batch.retain(|m| {
            !revoked
                .iter()
                .any(|(t, p)| t == m.topic() && *p == m.partition())
        });
        let dropped = (before - batch.len()) as u64;
        if dropped > 0 {
            tracing::info!(dropped, "abandoned messages of revoked partitions");
            self.metrics.abandoned.add(dropped);
        }
    }

    /// Scores a batch, produces its outputs and dead letters, commits its offsets.
    async fn process(&self, batch: Vec<OwnedMessage>) -> Result<()> {
        self.metrics.messages_in.add(batch.len() as u64);
        let parsed: Vec<_> = batch
            .iter()
            .map(|m| message::parse(m.payload(), &self.settings.fields))
            .collect();
        let good: Vec<PairMessage> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let enrichments = self.score(&good).await?;
        let mut enrichments = enrichments.into_iter();
        let outgoing: Vec<Outgoing> = batch
            .iter()
            .zip(parsed)
            .map(|(input, parsed)| match parsed {
                Ok(pair) => self.output(input, pair, &enrichments.next().unwrap_or_default()),
                Err(bad) => self.dead_letter(input, &bad),
            })
            .collect();
        let offsets = next_offsets(&batch)?;
        match self.settings.guarantee {
            Guarantee::AtLeastOnce => {
                self.produce(&outgoing).await?;
                self.consumer
                    .commit(&offsets, CommitMode::Sync)
                    .map_err(|e| kafka::kafka("committing offsets", e))
            }
            Guarantee::ExactlyOnce => self.transact(&outgoing, &offsets, &batch).await,
        }
    }

    async fn score(&self, good: &[PairMessage]) -> Result<Vec<Enrichment>> {
        if good.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let scored = tokio::task::block_in_place(|| self.scorer.score(good))?;
        self.metrics
            .inference_seconds
            .observe_duration(started.elapsed());
        self.metrics.batches.add(1);
        self.metrics.batch_pairs.observe(good.len() as f64);
        self.metrics
            .batch_tokens
            .observe(scored.stats.tokens as f64);
        self.metrics
            .truncated_pairs
            .add(scored.stats.truncated_pairs);
        self.metrics.cache_hits.add(scored.stats.cache_hits);
        self.metrics.cache_misses.add(scored.stats.cache_misses);
        Ok(scored.enrichments)
    }

    /// The enriched message: the input's key (or, for a keyless input, its
    /// id field, so outputs can be partitioned by id), headers and timestamp.
    fn output(&self, input: &OwnedMessage, pair: PairMessage, enrichment: &Enrichment) -> Outgoing {
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
        }
    }

    fn dead_letter(&self, input: &OwnedMessage, bad: &message::BadMessage) -> Outgoing {
        tracing::debug!(topic = input.topic(), partition = input.partition(), offset = input.offset(), %bad, "dead letter");
        let reason = bad.to_string();
        let (partition, offset) = (input.partition().to_string(), input.offset().to_string());
        let headers = input
            .headers()
            .cloned()
            .unwrap_or_default()
            .insert(Header {
                key: "crossflow.error",
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: "crossflow.error.code",
                value: Some(bad.code()),
            })
            .insert(Header {
                key: "crossflow.source.topic",
                value: Some(input.topic()),
            })
            .insert(Header {
                key: "crossflow.source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "crossflow.source.offset",
                value: Some(offset.as_str()),
            });
        Outgoing {
            topic: self.settings.dlq_topic.clone(),
            payload: input.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            key: input.key().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: input.timestamp().to_millis(),
            dead_letter: true,
        }
    }

    /// Sends every record and waits for all acknowledgements.
    async fn produce(&self, outgoing: &[Outgoing]) -> Result<()> {
        let sends = outgoing.iter().map(|o| {
            let mut record = FutureRecord::to(&o.topic)
                .payload(&o.payload)
                .headers(o.headers.clone());
            if let Some(key) = &o.key {
                record = record.key(key);
            }
            self.producer.send(record, Timeout::Never)
        });
        for (result, o) in join_all(sends).await.into_iter().zip(outgoing) {
            result.map_err(|(e, _)| kafka::kafka(&format!("producing to {}", o.topic), e))?;
            if o.dead_letter {
                self.metrics.dead_lettered.add(1);
            } else {
                self.metrics.messages_out.add(1);
            }
            if let Some(sent) = o.timestamp_ms {
                let latency = now_ms().saturating_sub(sent).max(0) as f64 / 1000.0;
                self.metrics.end_to_end_seconds.observe(latency);
            }
        }
        Ok(())
    }

    /// Exactly-once: outputs and offsets in one transaction; on failure the
    /// transaction is aborted and the consumer rewound to the batch's start.
    async fn transact(
        &self,
        outgoing: &[Outgoing],
        offsets: &TopicPartitionList,
        batch: &[OwnedMessage],
    ) -> Result<()> {
        let transaction = async {
            self.producer
                .begin_transaction()
                .map_err(|e| kafka::kafka("beginning a transaction", e))?;
            self.produce(outgoing).await?;
            let group = self
                .consumer
                .group_metadata()
                .ok_or_else(|| JobError::Usage("the consumer has no group metadata".into()))?;
            tokio::task::block_in_place(|| {
                self.producer
                    .send_offsets_to_transaction(offsets, &group, KAFKA_TIMEOUT)?;
                self.producer.commit_transaction(KAFKA_TIMEOUT)
            })
            .map_err(|e| kafka::kafka("committing the transaction", e))
        };
        let Err(error) = transaction.await else {
            return Ok(());
        };
        tracing::warn!(%error, "transaction failed: aborting and rewinding");
        tokio::task::block_in_place(|| self.producer.abort_transaction(KAFKA_TIMEOUT))
            .map_err(|e| kafka::kafka("aborting the transaction", e))?;
        for (topic, partition, offset) in first_offsets(batch) {
            self.consumer
                .seek(&topic, partition, Offset::Offset(offset), KAFKA_TIMEOUT)
                .map_err(|e| kafka::kafka("rewinding after an aborted transaction", e))?;
        }
        Ok(())
    }
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
