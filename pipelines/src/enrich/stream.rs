//! The enrich loop: gather ([`Gatherer`]), score ([`Scorer`]), deliver
//! ([`Deliverer`]), commit ([`Committer`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::Producer as _;
use tokio::sync::watch;

use crossflow::metrics::EngineCollector;

use super::bisect::Bisection;
use super::commit::{Committer, KAFKA_TIMEOUT};
use super::gather::Gatherer;
use super::kafka::{self, Consumer};
use super::message::{self, Enrichment, FieldMapping, PairMessage};
use super::metrics::Metrics;
use super::outgoing::{Outgoing, Reason};
use super::produce::Deliverer;
use super::score::Scorer;
use super::settings::{EnrichSettings, Guarantee};
use crate::{JobError, Result};

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
    let metrics = Arc::new(Metrics::new(EngineCollector::new(scorer.models())));
    let stages = Stages::start(&settings, Arc::clone(&metrics), &[], &shutdown).await?;
    let mut job = Job {
        fields: settings.fields,
        output_topic: settings.output_topic,
        scorer,
        metrics: Arc::clone(&metrics),
    };
    let result = run_batches(&stages, &mut shutdown, &mut job).await;
    stages.stop();
    result?;
    Ok(EnrichSummary {
        messages_in: metrics.messages_in.get(),
        messages_out: metrics.messages_out.get(),
        dead_lettered: metrics.dead_lettered.get(),
        cache_hits: metrics.cache_hits(),
    })
}

/// The Kafka side of a stream job, started: the metrics server, the
/// consumer (topics checked, subscribed), the producer and the stages a
/// batch goes through.
pub(crate) struct Stages {
    pub consumer: Arc<Consumer>,
    pub gather: Gatherer,
    pub deliver: Deliverer,
    pub commit: Committer,
    status: Option<tokio::task::JoinHandle<()>>,
}

impl Stages {
    /// Starts the metrics server and the clients; checks that the input,
    /// output and dead-letter topics (and `topics`, each with its flag)
    /// exist before anything is consumed.
    pub async fn start(
        settings: &EnrichSettings,
        metrics: Arc<Metrics>,
        topics: &[(&str, &str)],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Self> {
        if let Some(addr) = settings.metrics_addr {
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                if let Err(error) = crate::metrics_http::serve(addr, metrics).await {
                    tracing::error!(%addr, %error, "metrics server stopped");
                }
            });
        }
        let consumer = Arc::new(kafka::consumer(settings, Arc::clone(&metrics))?);
        let mut checked = vec![
            ("--input-topic", settings.input_topic.as_str()),
            ("--output-topic", settings.output_topic.as_str()),
            ("--dlq-topic", settings.dlq_topic.as_str()),
        ];
        checked.extend_from_slice(topics);
        tokio::task::block_in_place(|| kafka::check_topics(&consumer, &checked, KAFKA_TIMEOUT))?;
        kafka::subscribe(&consumer, settings)?;
        let producer = kafka::producer(settings)?;
        if settings.guarantee == Guarantee::ExactlyOnce {
            tokio::task::block_in_place(|| producer.init_transactions(KAFKA_TIMEOUT))
                .map_err(|e| kafka::kafka("initialising transactions", e))?;
        }
        let status = settings.status_interval.map(|every| {
            let label = settings.job_name;
            tokio::spawn(status_lines(Arc::clone(&metrics), every, label))
        });
        Ok(Self {
            gather: Gatherer::new(Arc::clone(&consumer), settings, Arc::clone(&metrics)),
            deliver: Deliverer::new(producer.clone(), settings, metrics, shutdown.clone()),
            commit: Committer::new(Arc::clone(&consumer), producer, settings, shutdown.clone()),
            consumer,
            status,
        })
    }

    /// Stops the status lines and leaves the consumer group.
    pub fn stop(self) {
        if let Some(status) = self.status {
            status.abort();
        }
        self.consumer.unsubscribe();
    }
}

/// What a stream job does with a gathered batch.
pub(crate) trait BatchJob {
    /// Processes, delivers and commits `batch` through `stages`.
    fn process(
        &mut self,
        stages: &Stages,
        batch: Vec<OwnedMessage>,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// Gathers batches and hands each to `job` until `shutdown` turns true;
/// then commits what is stored and returns. A failed batch stops the loop
/// with its error (the producer's fatal error in its place, if any).
pub(crate) async fn run_batches(
    stages: &Stages,
    shutdown: &mut watch::Receiver<bool>,
    job: &mut impl BatchJob,
) -> Result<()> {
    loop {
        let stopping = *shutdown.borrow();
        let batch = if stopping {
            Vec::new()
        } else {
            stages.gather.gather(shutdown).await
        };
        if !batch.is_empty() {
            job.process(stages, batch)
                .await
                .map_err(|e| stages.commit.fatal_or(e))?;
        }
        if stopping {
            stages.commit.commit_stored()?;
            tracing::info!("shutdown: last batch committed");
            return Ok(());
        }
    }
}

/// One enrich job: what it adds to a pair.
struct Job {
    scorer: Scorer,
    /// Where a message's texts and id are.
    fields: FieldMapping,
    output_topic: String,
    metrics: Arc<Metrics>,
}

impl BatchJob for Job {
    /// Scores a batch, produces its outputs and dead letters, and stores its
    /// offsets (at-least-once) or commits them in its transaction (exactly-once).
    async fn process(&mut self, stages: &Stages, batch: Vec<OwnedMessage>) -> Result<()> {
        let parsed: Vec<std::result::Result<PairMessage, Reason>> =
            batch.iter().map(|m| self.parse(stages, m)).collect();
        let good: Vec<(&str, &str)> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|pair| (pair.a.as_str(), pair.b.as_str()))
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
                    Err(reason) => stages.deliver.dead_letter(input, index, &reason),
                };
                stages.deliver.as_refused_before(record, input)
            })
            .collect();
        assert!(
            scored.next().is_none(),
            "more scoring results than parsed messages"
        );
        stages
            .commit
            .deliver_and_commit(&stages.deliver, outgoing, &batch)
            .await
            .map(drop)
    }
}

impl Job {
    /// The pair of a message, or why it is dead-lettered (a bad message, or
    /// one whose record was refused alone before its transaction was aborted).
    fn parse(&self, stages: &Stages, m: &OwnedMessage) -> std::result::Result<PairMessage, Reason> {
        if let Some(reason) = stages.deliver.refused_output(m) {
            return Err(reason);
        }
        message::parse(m.payload(), &self.fields).map_err(|bad| Reason {
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
        good: &[(&str, &str)],
    ) -> Result<Vec<std::result::Result<Enrichment, Reason>>> {
        if good.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut first_error = None;
        // The bisection runs the whole batch again first: a passing failure
        // is not blamed on the messages.
        let results = match self.scorer.score(good).await {
            Ok(scored) => scored_results(self.record_scoring(&scored, good.len())),
            Err(_) => {
                let mut bisection = Bisection::new(good.len());
                while let Some(range) = bisection.next_range() {
                    let pairs = &good[range.clone()];
                    let outcome = match self.scorer.score(pairs).await {
                        Ok(scored) => Ok(self.record_scoring(&scored, pairs.len())),
                        Err(error) => {
                            let text = error.to_string();
                            first_error.get_or_insert(error);
                            Err(text)
                        }
                    };
                    bisection.record(range, outcome);
                }
                bisection.finish()
            }
        };
        self.metrics
            .scoring_seconds
            .observe(started.elapsed().as_secs_f64());
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 1 && failed == good.len() {
            return Err(match first_error {
                Some(error) => JobError::BatchFailed {
                    failed,
                    source: Box::new(error),
                },
                None => JobError::Internal(format!("{failed} messages failed without an error")),
            });
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
        self.metrics.batches.inc();
        self.metrics.batch_pairs.observe(pairs as f64);
        self.metrics
            .batch_tokens
            .observe(scored.stats.tokens as f64);
        scored.enrichments.clone()
    }

    /// The enriched message: the input's key (or, for a keyless input, its
    /// id field, so outputs can be partitioned by id) and headers; the input's
    /// timestamp is kept only to measure end-to-end latency.
    fn output(
        &self,
        input: &OwnedMessage,
        index: usize,
        pair: PairMessage,
        enrichment: &Enrichment,
    ) -> Outgoing {
        let id = message::message_id(&pair, &self.fields);
        let payload = message::render(pair.object, enrichment);
        Outgoing::output(input, index, &self.output_topic, payload, id)
    }
}

/// A batch's scoring results when the whole batch scored.
fn scored_results(enrichments: Vec<Enrichment>) -> Vec<std::result::Result<Enrichment, String>> {
    enrichments.into_iter().map(Ok).collect()
}

/// Prints a one-line status every `every`.
async fn status_lines(metrics: Arc<Metrics>, every: Duration, label: &'static str) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    let mut last = (0, Instant::now());
    loop {
        ticker.tick().await;
        let done = metrics.messages_out.get() + metrics.dead_lettered.get();
        let rate = (done - last.0) as f64 / last.1.elapsed().as_secs_f64();
        let waiting = metrics
            .waiting()
            .map(|w| format!(" | {w}"))
            .unwrap_or_default();
        eprintln!(
            "{label}: in {} | out {} | dead-lettered {} | {:.0} msg/s | lag {}{waiting}",
            metrics.messages_in.get(),
            metrics.messages_out.get(),
            metrics.dead_lettered.get(),
            rate,
            metrics.total_lag()
        );
        last = (done, Instant::now());
    }
}
