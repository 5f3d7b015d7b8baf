//! The changelog topic: the representatives of each input partition, kept
//! in the partition of the same number, from which a partition's window is
//! restored when it is assigned (after a restart, a kill -9 or a rebalance).
//!
//! Records, keyed `<partition>:<offset>` (compacted: the last per key stays):
//! - a representative: its timestamps, id, text and vector;
//! - a checkpoint (`<partition>:checkpoint`): the committed position and the
//!   watermark there;
//! - a tombstone (no value): the representative left every later window.
//!
//! Additions are written with the batch that decides them (at-least-once:
//! acknowledged before the offsets are committed; exactly-once: in the
//! batch's transaction). Checkpoints and tombstones are written only for
//! batches already committed (with the next batch), so the changelog never
//! removes what a message consumed again still needs; additions it holds
//! beyond the committed offsets are ignored by the messages before them
//! (a window only holds earlier offsets). See [`super::window`].

use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::window::{Bounds, Checkpoint, Representative, Window};
use crate::dedupe::normalize::normalize;
use crate::enrich::commit::KAFKA_TIMEOUT;
use crate::enrich::kafka;
use crate::enrich::settings::EnrichSettings;
use crate::{JobError, Result};

/// First bytes of a representative's record (format version 1).
const MAGIC: &[u8; 4] = b"CFR1";
const CHECKPOINT: &str = "checkpoint";

/// A representative's record, less its vector (which follows it).
#[derive(Serialize, Deserialize)]
struct Header {
    offset: i64,
    timestamp_ms: i64,
    watermark_ms: i64,
    id: serde_json::Value,
    text: String,
}

/// The key of a representative's record (or tombstone).
pub fn key(partition: i32, offset: i64) -> Vec<u8> {
    format!("{partition}:{offset}").into_bytes()
}

/// The key of a partition's checkpoint.
pub fn checkpoint_key(partition: i32) -> Vec<u8> {
    format!("{partition}:{CHECKPOINT}").into_bytes()
}

/// A representative's record: magic, header length (u32 LE), header JSON,
/// then the vector as f32 LE.
pub fn encode(r: &Representative) -> Vec<u8> {
    let header = serde_json::to_vec(&Header {
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        watermark_ms: r.watermark_ms,
        id: r.id.clone(),
        text: r.text.clone(),
    })
    .expect("a header always serializes");
    let mut out = Vec::with_capacity(8 + header.len() + 4 * r.vector.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    for x in &r.vector {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// The size of the record `text` (with `id`) would have as a
/// representative, at most: its offsets and timestamps taken at their widest.
pub fn encoded_len(text: &str, id: &serde_json::Value, dimension: usize) -> usize {
    let header = Header {
        offset: i64::MIN,
        timestamp_ms: i64::MIN,
        watermark_ms: i64::MIN,
        id: id.clone(),
        text: text.to_string(),
    };
    let header = serde_json::to_vec(&header).expect("a header always serializes");
    MAGIC.len() + 4 + header.len() + 4 * dimension
}

/// A checkpoint's record.
pub fn encode_checkpoint(c: &Checkpoint) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "position": c.position,
        "watermark_ms": c.watermark_ms,
    }))
    .expect("a checkpoint always serializes")
}

/// Reads a representative's record back; `dimension` floats are expected.
fn decode(value: &[u8], dimension: usize) -> std::result::Result<Representative, String> {
    let rest = value
        .strip_prefix(MAGIC)
        .ok_or("not a crossflow representative record (format CFR1)")?;
    let (length, rest) = rest.split_at_checked(4).ok_or("truncated record")?;
    let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
    let (header, vector) = rest.split_at_checked(length).ok_or("truncated header")?;
    let header: Header = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    if vector.len() != 4 * dimension {
        return Err(format!(
            "a vector of {} floats where the bi-encoder gives {dimension}: the changelog \
             was written with another bi-encoder",
            vector.len() / 4
        ));
    }
    Ok(Representative {
        offset: header.offset,
        timestamp_ms: header.timestamp_ms,
        watermark_ms: header.watermark_ms,
        id: header.id,
        key: normalize(&header.text),
        text: header.text,
        vector: vector
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
    })
}

/// The changelog reader's callbacks: the end of the partition, which it
/// asks to be told of, is not an error to log.
struct RestoreContext;

impl ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::error!(%error, reason, "changelog reader");
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// A partition's window read back, and what reading it took.
pub struct Restored {
    pub window: Window,
    /// Records read (additions, checkpoints and tombstones).
    pub records: u64,
    pub seconds: f64,
}

/// What the changelog holds for one partition, as records are read.
#[derive(Default)]
struct Replay {
    held: std::collections::BTreeMap<i64, Representative>,
    checkpoint: Option<Checkpoint>,
    records: u64,
}

impl Replay {
    fn apply(
        &mut self,
        key: &str,
        value: Option<&[u8]>,
        dimension: usize,
    ) -> std::result::Result<(), String> {
        self.records += 1;
        let (_, what) = key.split_once(':').ok_or("a key without ':'")?;
        if what == CHECKPOINT {
            let value = value.ok_or("a checkpoint without a value")?;
            let v: serde_json::Value = serde_json::from_slice(value).map_err(|e| e.to_string())?;
            let field = |name: &str| v[name].as_i64().ok_or(format!("checkpoint without {name}"));
            let read = Checkpoint {
                position: field("position")?,
                watermark_ms: field("watermark_ms")?,
            };
            // Every checkpoint is of a committed batch: the newest wins, even
            // when an older one (from an instance that lost the partition)
            // was written after it.
            self.checkpoint = Some(match self.checkpoint {
                Some(c) if c.position > read.position => c,
                _ => read,
            });
            return Ok(());
        }
        let offset: i64 = what
            .parse()
            .map_err(|_| format!("key {key:?} is not <partition>:<offset>"))?;
        match value {
            None => {
                self.held.remove(&offset);
            }
            Some(value) => {
                self.held.insert(offset, decode(value, dimension)?);
            }
        }
        Ok(())
    }
}

/// Reads partition `partition` of the changelog `topic` to its end into a
/// window (blocking). `read_uncommitted`: records of open or aborted
/// transactions are read too, which is safe because the changelog only
/// holds additions (ignored by earlier messages) and changes of committed
/// batches; `read_committed` would stop at the first open transaction, such
/// as one left by a killed instance until it times out.
pub fn restore(
    settings: &EnrichSettings,
    topic: &str,
    partition: i32,
    bounds: Bounds,
    dimension: usize,
) -> Result<Restored> {
    let started = Instant::now();
    let consumer: BaseConsumer<RestoreContext> = kafka::client_config(settings, |c| {
        c.set("group.id", format!("{}.restore", settings.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_uncommitted");
    })
    .create_with_context(RestoreContext)
    .map_err(|e| kafka::kafka("creating the changelog reader", e))?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| kafka::kafka("assigning the changelog partition", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| kafka::kafka("assigning the changelog partition", e))?;
    let mut replay = Replay::default();
    let mut quiet_since = Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            None if quiet_since.elapsed() > KAFKA_TIMEOUT => {
                return Err(JobError::Internal(format!(
                    "restoring {topic}/{partition}: no end of the partition within {KAFKA_TIMEOUT:?}"
                )));
            }
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(kafka::kafka(&format!("restoring {topic}/{partition}"), e)),
            Some(Ok(m)) => {
                quiet_since = Instant::now();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                replay
                    .apply(&key, m.payload(), dimension)
                    .map_err(|reason| {
                        JobError::InvalidData(format!(
                            "changelog {topic}/{partition}@{} (key {key:?}): {reason}",
                            m.offset()
                        ))
                    })?;
            }
        }
    }
    Ok(Restored {
        window: Window::new(bounds, replay.held.into_values(), replay.checkpoint),
        records: replay.records,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Creates the changelog `topic` (compacted, as many partitions as the input
/// topic) unless it exists; one with fewer partitions than the input is
/// refused.
pub async fn ensure_topic(settings: &EnrichSettings, topic: &str) -> Result<()> {
    let consumer: BaseConsumer = kafka::client_config(settings, |c| {
        c.set("group.id", &settings.group_id);
    })
    .create()
    .map_err(|e| kafka::kafka("creating a metadata client", e))?;
    let partitions = |name: &str| -> Result<Option<usize>> {
        let metadata =
            tokio::task::block_in_place(|| consumer.fetch_metadata(Some(name), KAFKA_TIMEOUT))
                .map_err(|e| kafka::kafka(&format!("reading the metadata of topic {name}"), e))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|&n| n > 0))
    };
    let input = partitions(&settings.input_topic)?.ok_or_else(|| {
        JobError::Usage(format!(
            "--input-topic {}: the topic does not exist; create it before starting",
            settings.input_topic
        ))
    })?;
    match partitions(topic)? {
        Some(n) if n >= input => Ok(()),
        Some(n) => Err(JobError::Usage(format!(
            "--changelog-topic {topic}: {n} partitions for an input topic of {input}: the \
             changelog needs one partition per input partition (name a new one with \
             --changelog-topic)"
        ))),
        None => create(settings, topic, input).await,
    }
}

async fn create(settings: &EnrichSettings, topic: &str, partitions: usize) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka::client_config(settings, |_| {})
        .create()
        .map_err(|e| kafka::kafka("creating an admin client", e))?;
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics(&[new], &AdminOptions::new())
        .await
        .map_err(|e| kafka::kafka(&format!("creating the changelog topic {topic}"), e))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "changelog topic created (compacted)"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(JobError::Usage(format!(
                    "--changelog-topic {name}: it does not exist and cannot be created \
                     ({code:?}); create it compacted, with one partition per input partition"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn representative() -> Representative {
        Representative {
            offset: 42,
            timestamp_ms: 1_000,
            watermark_ms: 2_000,
            id: serde_json::json!({"n": 1}),
            text: "A text, \"quoted\" ✓".into(),
            key: normalize("A text, \"quoted\" ✓"),
            vector: vec![0.25, -1.5, f32::MIN_POSITIVE],
        }
    }

    #[test]
    fn a_representative_round_trips_bit_for_bit() {
        let r = representative();
        assert_eq!(decode(&encode(&r), 3).unwrap(), r);
        let err = decode(&encode(&r), 384).unwrap_err();
        assert!(err.contains("another bi-encoder"), "{err}");
        assert!(decode(b"{}", 3).unwrap_err().contains("CFR1"));
    }

    #[test]
    fn the_last_record_of_a_key_wins_and_tombstones_delete() {
        let mut replay = Replay::default();
        let r = representative();
        replay.apply("3:42", Some(&encode(&r)), 3).unwrap();
        replay
            .apply(
                "3:7",
                Some(&encode(&Representative {
                    offset: 7,
                    ..r.clone()
                })),
                3,
            )
            .unwrap();
        replay.apply("3:7", None, 3).unwrap();
        let checkpoint = Checkpoint {
            position: 50,
            watermark_ms: 9,
        };
        replay
            .apply("3:checkpoint", Some(&encode_checkpoint(&checkpoint)), 3)
            .unwrap();
        assert_eq!(replay.held.keys().collect::<Vec<_>>(), [&42]);
        assert_eq!(replay.checkpoint, Some(checkpoint));
        assert_eq!(replay.records, 4);
        assert!(replay.apply("3:x", None, 3).is_err());
    }
}
