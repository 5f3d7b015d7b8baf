//! The records a dedupe-stream batch produces: each message's output (its
//! object plus the flags) and the changelog's state records.

use rdkafka::message::{Message, OwnedMessage};
use serde_json::{Map, Value};

use super::changelog;
use super::decide::Decision;
use super::window::{Changes, Representative};
use crate::enrich::outgoing::{Outgoing, RecordKind};

/// The output of message `input` (index `index` in its batch): its object
/// plus `is_duplicate`, `duplicate_of` and `duplicate_score`, its key (or,
/// keyless, its id, so outputs can be partitioned by id) and headers.
pub fn output(
    input: &OwnedMessage,
    index: usize,
    mut object: Map<String, Value>,
    id: &Value,
    decision: &Decision,
    topic: &str,
) -> Outgoing {
    let (of, score) = match decision {
        Decision::Duplicate { id, score, .. } => (
            id.clone(),
            serde_json::Number::from_f64(f64::from(*score)).map_or(Value::Null, Value::Number),
        ),
        Decision::Representative | Decision::Empty => (Value::Null, Value::Null),
    };
    object.insert("is_duplicate".into(), Value::Bool(!of.is_null()));
    object.insert("duplicate_of".into(), of);
    object.insert("duplicate_score".into(), score);
    let id = match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let payload = serde_json::to_vec(&Value::Object(object)).expect("a JSON object serializes");
    Outgoing::output(input, index, topic, payload, Some(id))
}

/// The id `duplicate_of` gives a message: its id field, else
/// `<topic>/<partition>@<offset>`.
pub fn message_id(input: &OwnedMessage, field: Option<&Value>) -> Value {
    match field {
        Some(value) if !value.is_null() => value.clone(),
        _ => Value::String(format!(
            "{}/{}@{}",
            input.topic(),
            input.partition(),
            input.offset()
        )),
    }
}

/// A changelog record; no payload: a tombstone.
fn state(topic: &str, partition: i32, key: Vec<u8>, payload: Option<Vec<u8>>) -> Outgoing {
    Outgoing {
        topic: topic.to_string(),
        kind: match payload {
            Some(_) => RecordKind::State,
            None => RecordKind::Tombstone,
        },
        payload: payload.unwrap_or_default(),
        key: Some(key),
        headers: Default::default(),
        timestamp_ms: None,
        partition: Some(partition),
        input: 0,
        trimmed: false,
        alone: false,
    }
}

/// A representative's changelog record.
pub fn representative(topic: &str, partition: i32, r: &Representative) -> Outgoing {
    let key = changelog::key(partition, r.offset);
    state(topic, partition, key, Some(changelog::encode(r)))
}

/// The changelog records of committed changes: the checkpoint first, then
/// the removals (a removal is never recorded before the checkpoint that
/// covers it).
pub fn changes(topic: &str, partition: i32, changes: Changes) -> Vec<Outgoing> {
    let checkpoint = changes.checkpoint.map(|c| {
        let key = changelog::checkpoint_key(partition);
        state(
            topic,
            partition,
            key,
            Some(changelog::encode_checkpoint(&c)),
        )
    });
    let removals = changes
        .removed
        .into_iter()
        .map(|offset| state(topic, partition, changelog::key(partition, offset), None));
    checkpoint.into_iter().chain(removals).collect()
}
