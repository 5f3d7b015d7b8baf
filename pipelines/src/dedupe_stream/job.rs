//! The dedupe-stream loop: gather ([`Stages`]), restore the windows of newly
//! assigned partitions, embed, decide each partition's messages in offset
//! order, then deliver the outputs with the changelog records and commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rdkafka::message::{Message, OwnedMessage};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::Engines;
use super::args::DedupeStreamSettings;
use super::changelog;
use super::decide::{Decision, Incoming, decide};
use super::metrics::DedupeMetrics;
use super::records;
use super::window::{Representative, Window};
use crate::enrich::commit::{Outcome, next_offsets};
use crate::enrich::message;
use crate::enrich::metrics::Metrics;
use crate::enrich::outgoing::{Outgoing, Reason};
use crate::enrich::produce::max_message_bytes;
use crate::enrich::stream::{BatchJob, Stages, run_batches};
use crate::{JobError, Result};

/// Totals of a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeStreamSummary {
    pub messages_in: u64,
    pub messages_out: u64,
    pub dead_lettered: u64,
    pub duplicates: u64,
    /// Candidate pairs the cross-encoder scored.
    pub pairs_verified: u64,
    /// Changelog records read to restore windows.
    pub restored_records: u64,
}

/// Runs until `shutdown` turns true: then finishes the batch in flight,
/// produces, commits and returns.
pub async fn run(
    settings: DedupeStreamSettings,
    engines: Engines,
    mut shutdown: watch::Receiver<bool>,
) -> Result<DedupeStreamSummary> {
    changelog::ensure_topic(&settings.kafka, &settings.changelog_topic).await?;
    let mut metrics = Metrics::new(crossflow::metrics::EngineCollector::new(vec![Arc::clone(
        engines.verifier.model(),
    )]));
    let dedupe = DedupeMetrics::register(&mut metrics);
    let metrics = Arc::new(metrics);
    let changelog_flag = [("--changelog-topic", settings.changelog_topic.as_str())];
    let mut stages = Stages::start(
        &settings.kafka,
        Arc::clone(&metrics),
        &changelog_flag,
        &shutdown,
    )
    .await?;
    stages.commit.commit_each_batch();
    let mut job = Job {
        settings,
        engines,
        windows: HashMap::new(),
        dedupe,
    };
    let result = run_batches(&stages, &mut shutdown, &mut job).await;
    stages.stop();
    result?;
    Ok(DedupeStreamSummary {
        messages_in: metrics.messages_in.get(),
        messages_out: metrics.messages_out.get(),
        dead_lettered: metrics.dead_lettered.get(),
        duplicates: job.dedupe.duplicates.get(),
        pairs_verified: job.dedupe.pairs_verified.get(),
        restored_records: job.dedupe.restored_records.get(),
    })
}

/// What deciding a batch gave: each message's decision (`None`: dead-lettered)
/// and the representatives added, with their partitions.
struct BatchDecisions {
    decisions: Vec<Option<Decision>>,
    added: Vec<(i32, Representative)>,
}

/// Bytes kept free beside a representative's record for its key and framing.
const STATE_HEADROOM: usize = 1024;

/// A message that parsed: its object, text and id.
struct Parsed {
    object: Map<String, Value>,
    text: String,
    id: Value,
}

struct Job {
    settings: DedupeStreamSettings,
    engines: Engines,
    /// The windows of the partitions held, restored when first needed.
    windows: HashMap<i32, Window>,
    dedupe: DedupeMetrics,
}

impl BatchJob for Job {
    /// Decides a batch, produces its outputs, dead letters and changelog
    /// records, and commits it.
    async fn process(&mut self, stages: &Stages, batch: Vec<OwnedMessage>) -> Result<()> {
        for partition in stages.gather.take_revoked() {
            self.windows.remove(&partition);
            self.dedupe.set_representatives(partition, None);
        }
        let parsed: Vec<std::result::Result<Parsed, Reason>> =
            batch.iter().map(|m| self.parse(stages, m)).collect();
        self.restore_missing(&batch)?;
        let clock = std::time::Instant::now();
        let vectors = self.embed(&parsed)?;
        let embedded = clock.elapsed();
        let BatchDecisions { decisions, added } = self.decide_all(&batch, &parsed, &vectors)?;
        tracing::debug!(messages = batch.len(), ?embedded, decided = ?(clock.elapsed() - embedded), "batch decided");
        let mut outgoing = self.committed_changes();
        let mut duplicates = 0;
        for (index, (input, parsed)) in batch.iter().zip(parsed).enumerate() {
            let record = match (parsed, &decisions[index], &vectors[index]) {
                (Ok(p), Some(decision), _) => {
                    duplicates += u64::from(matches!(decision, Decision::Duplicate { .. }));
                    let topic = &self.settings.kafka.output_topic;
                    records::output(input, index, p.object, &p.id, decision, topic)
                }
                (Err(reason), ..) => stages.deliver.dead_letter(input, index, &reason),
                (Ok(_), None, Err(reason)) => stages.deliver.dead_letter(input, index, reason),
                (Ok(_), None, Ok(_)) => unreachable!("a parsed, embedded message is decided"),
            };
            outgoing.push(stages.deliver.as_refused_before(record, input));
        }
        let topic = &self.settings.changelog_topic;
        outgoing.extend(
            added
                .iter()
                .map(|(partition, r)| records::representative(topic, *partition, r)),
        );
        let outcome = stages
            .commit
            .deliver_and_commit(&stages.deliver, outgoing, &batch)
            .await?;
        self.after(outcome, &batch, duplicates)
    }
}

impl Job {
    /// The message's text and id, or why it is dead-lettered.
    fn parse(&self, stages: &Stages, m: &OwnedMessage) -> std::result::Result<Parsed, Reason> {
        if let Some(reason) = stages.deliver.refused_output(m) {
            return Err(reason);
        }
        let fields = &self.settings.kafka.fields;
        let pair = message::parse(m.payload(), fields).map_err(|bad| Reason {
            text: bad.to_string(),
            code: bad.code(),
        })?;
        let object = Value::Object(pair.object);
        let id = records::message_id(m, fields.id.get(&object));
        let Value::Object(object) = object else {
            unreachable!("parsed as an object")
        };
        let dimension = self.engines.bi_encoder.dimension();
        let size = changelog::encoded_len(&pair.a, &id, dimension) + STATE_HEADROOM;
        let limit = max_message_bytes(&self.settings.kafka);
        if size > limit {
            return Err(Reason {
                text: format!(
                    "the text is too large to keep as a representative: its changelog record \
                     takes about {size} bytes, over message.max.bytes {limit}"
                ),
                code: "too_large",
            });
        }
        Ok(Parsed {
            object,
            text: pair.a,
            id,
        })
    }

    /// Restores the window of every partition in `batch` not held yet.
    fn restore_missing(&mut self, batch: &[OwnedMessage]) -> Result<()> {
        let missing: std::collections::BTreeSet<i32> = batch
            .iter()
            .map(|m| m.partition())
            .filter(|p| !self.windows.contains_key(p))
            .collect();
        for partition in missing {
            let settings = &self.settings;
            let restored = tokio::task::block_in_place(|| {
                changelog::restore(
                    &settings.kafka,
                    &settings.changelog_topic,
                    partition,
                    settings.bounds,
                    self.engines.bi_encoder.dimension(),
                )
            })?;
            tracing::info!(
                partition,
                representatives = restored.window.len(),
                records = restored.records,
                seconds = restored.seconds,
                "window restored from the changelog"
            );
            self.dedupe.restored_records.inc_by(restored.records);
            self.dedupe.restore_seconds.observe(restored.seconds);
            self.dedupe
                .set_representatives(partition, Some(restored.window.len()));
            self.windows.insert(partition, restored.window);
        }
        Ok(())
    }

    /// The bi-encoder vector of every parsed message; a message the engine
    /// fails on alone gets the reason it is dead-lettered for.
    fn embed(
        &self,
        parsed: &[std::result::Result<Parsed, Reason>],
    ) -> Result<Vec<std::result::Result<Vec<f32>, Reason>>> {
        let bi = &self.engines.bi_encoder;
        let texts: Vec<&str> = parsed.iter().flatten().map(|p| p.text.as_str()).collect();
        let dim = bi.dimension();
        let together = tokio::task::block_in_place(|| bi.embed_texts(&texts));
        let mut vectors: Box<dyn Iterator<Item = std::result::Result<Vec<f32>, Reason>>> =
            match together {
                Ok(flat) => Box::new(
                    flat.chunks(dim)
                        .map(|v| Ok(v.to_vec()))
                        .collect::<Vec<_>>()
                        .into_iter(),
                ),
                Err(error) => {
                    tracing::warn!(%error, "embedding failed: embedding the batch's messages one by one");
                    let one = |t: &str| {
                        tokio::task::block_in_place(|| bi.embed_texts(&[t])).map_err(|e| Reason {
                            text: format!("engine: {e}"),
                            code: "engine_error",
                        })
                    };
                    Box::new(texts.iter().map(|t| one(t)).collect::<Vec<_>>().into_iter())
                }
            };
        Ok(parsed
            .iter()
            .map(|p| match p {
                Ok(_) => vectors.next().expect("one vector per parsed message"),
                Err(reason) => Err(reason.clone()),
            })
            .collect())
    }

    /// The decision of every message parsed and embedded, partition by
    /// partition in offset order, and the representatives added.
    fn decide_all(
        &mut self,
        batch: &[OwnedMessage],
        parsed: &[std::result::Result<Parsed, Reason>],
        vectors: &[std::result::Result<Vec<f32>, Reason>],
    ) -> Result<BatchDecisions> {
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, m) in batch.iter().enumerate() {
            if parsed[i].is_ok() && vectors[i].is_ok() {
                by_partition.entry(m.partition()).or_default().push(i);
            }
        }
        let mut decisions = vec![None; batch.len()];
        let mut added = Vec::new();
        for (partition, mut indices) in by_partition {
            indices.sort_by_key(|&i| batch[i].offset());
            let incoming: Vec<Incoming<'_>> = indices
                .iter()
                .map(|&i| {
                    let (Ok(p), Ok(vector)) = (&parsed[i], &vectors[i]) else {
                        unreachable!("only parsed, embedded messages")
                    };
                    Incoming {
                        offset: batch[i].offset(),
                        timestamp_ms: batch[i].timestamp().to_millis(),
                        id: p.id.clone(),
                        text: &p.text,
                        vector,
                    }
                })
                .collect();
            let window = self.windows.get_mut(&partition).expect("restored");
            let verifier = &self.engines.verifier;
            let matching = self.settings.matching;
            let decided = tokio::task::block_in_place(|| {
                decide(window, &incoming, matching, |pairs| {
                    verifier.score_pairs(pairs)
                })
            })?;
            self.dedupe.pairs_verified.inc_by(decided.scored as u64);
            self.dedupe
                .set_representatives(partition, Some(window.len()));
            for (&i, decision) in indices.iter().zip(decided.decisions) {
                decisions[i] = Some(decision);
            }
            added.extend(decided.added.into_iter().map(|r| (partition, r)));
        }
        Ok(BatchDecisions { decisions, added })
    }

    /// The changelog records of what committed batches changed.
    fn committed_changes(&mut self) -> Vec<Outgoing> {
        let topic = &self.settings.changelog_topic;
        let mut out = Vec::new();
        for (&partition, window) in &mut self.windows {
            out.extend(records::changes(topic, partition, window.take_changes()));
        }
        out
    }

    /// Moves the windows on once the batch is done: committed, pruned
    /// representatives become removals to record; rewound (an aborted
    /// transaction), every window is read again from the changelog.
    fn after(&mut self, outcome: Outcome, batch: &[OwnedMessage], duplicates: u64) -> Result<()> {
        match outcome {
            Outcome::Rewound => {
                self.windows.clear();
                return Ok(());
            }
            Outcome::Stored => {}
            Outcome::Committed => {
                let offsets = next_offsets(batch)?;
                for e in offsets.elements() {
                    let rdkafka::Offset::Offset(position) = e.offset() else {
                        return Err(JobError::Internal(
                            "a batch offset that is not a number".into(),
                        ));
                    };
                    if let Some(window) = self.windows.get_mut(&e.partition()) {
                        window.committed(position);
                    }
                }
            }
        }
        self.dedupe.duplicates.inc_by(duplicates);
        Ok(())
    }
}
