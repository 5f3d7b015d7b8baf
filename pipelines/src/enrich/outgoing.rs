//! Records the enrich job produces (outputs and dead letters), and what a
//! failed send means: the record's own fault (dead-letter it), a passing
//! fault of the broker (retry it), or one retrying cannot mend (stop).

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;

/// Bytes kept free for headers, key and framing when a dead letter is cut to
/// fit `message.max.bytes`.
const HEADROOM: usize = 16 * 1024;

/// One record to produce, and the consumed message it answers.
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
    pub timestamp_ms: Option<i64>,
    pub kind: RecordKind,
    /// The partition it goes to (`None`: by key, or librdkafka's choice).
    pub partition: Option<i32>,
    /// Index of the consumed message in its batch.
    pub input: usize,
    /// Whether the payload was cut to fit.
    pub trimmed: bool,
    /// Whether it is sent on its own: a broker refuses a whole record batch,
    /// so a record refused with others is tried alone before it is blamed.
    pub alone: bool,
}

impl Outgoing {
    /// The output of consumed message `input` (the `index`th of its batch):
    /// `payload` to `topic`, with the input's headers and its key (for a
    /// keyless input, `id`, so outputs can be partitioned by id); the input's
    /// timestamp is kept only to measure end-to-end latency.
    pub fn output(
        input: &OwnedMessage,
        index: usize,
        topic: &str,
        payload: Vec<u8>,
        id: Option<String>,
    ) -> Self {
        let key = match input.key() {
            Some(key) => Some(key.to_vec()),
            None => id.map(String::into_bytes),
        };
        Self {
            topic: topic.to_string(),
            payload,
            key,
            headers: input.headers().cloned().unwrap_or_default(),
            timestamp_ms: input.timestamp().to_millis(),
            kind: RecordKind::Output,
            partition: None,
            input: index,
            trimmed: false,
            alone: false,
        }
    }
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The output of a consumed message.
    Output,
    /// A consumed message sent to the dead-letter topic.
    DeadLetter,
    /// A record of the job's own state (a changelog), committed with the
    /// outputs; a refusal of one stops the job.
    State,
    /// A state record's deletion: sent with no payload (null), as log
    /// compaction expects.
    Tombstone,
}

/// Why a message goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub text: String,
    /// A stable code, in the `crossflow.error.code` header.
    pub code: &'static str,
}

/// What a failed send means for its record.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The record itself cannot be written (too large, invalid): dead-letter it.
    Record(Reason),
    /// Broker down, timeout, leader change: send it again later.
    Transient,
    /// Retrying cannot help (authorization, a deleted topic, a fenced or
    /// failed producer): stop the job, committing nothing.
    Fatal,
}

/// Classifies a send error as the record's fault or a transient one.
pub fn classify(error: &KafkaError) -> Failure {
    let code = match error {
        KafkaError::MessageProduction(code) => *code,
        _ => return Failure::Transient,
    };
    let reason = |code: &'static str| {
        Failure::Record(Reason {
            text: error.to_string(),
            code,
        })
    };
    match code {
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize => {
            reason("too_large")
        }
        RDKafkaErrorCode::InvalidMessage
        | RDKafkaErrorCode::InvalidRecord
        | RDKafkaErrorCode::InvalidTimestamp => reason("invalid_record"),
        RDKafkaErrorCode::Fatal
        | RDKafkaErrorCode::Fenced
        | RDKafkaErrorCode::State
        | RDKafkaErrorCode::UnknownTopic
        | RDKafkaErrorCode::UnknownTopicOrPartition
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
        | RDKafkaErrorCode::InvalidProducerEpoch
        | RDKafkaErrorCode::ProducerFenced => Failure::Fatal,
        _ => Failure::Transient,
    }
}

/// The dead letter of consumed message `input` (index `index` in its batch):
/// its payload, key and headers, plus the reason and where it came from.
pub fn dead_letter(input: &OwnedMessage, index: usize, reason: &Reason, topic: &str) -> Outgoing {
    tracing::debug!(topic = input.topic(), partition = input.partition(), offset = input.offset(),
        reason = %reason.text, "dead letter");
    let (partition, offset) = (input.partition().to_string(), input.offset().to_string());
    let headers = [
        ("crossflow.error", reason.text.as_str()),
        ("crossflow.error.code", reason.code),
        ("crossflow.source.topic", input.topic()),
        ("crossflow.source.partition", partition.as_str()),
        ("crossflow.source.offset", offset.as_str()),
    ]
    .into_iter()
    .fold(
        input.headers().cloned().unwrap_or_default(),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(value),
            })
        },
    );
    Outgoing {
        topic: topic.to_string(),
        payload: input.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        key: input.key().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: input.timestamp().to_millis(),
        kind: RecordKind::DeadLetter,
        partition: None,
        input: index,
        trimmed: false,
        alone: false,
    }
}

/// A dead letter refused as too large, cut to at most half its payload and
/// `max_bytes` less 16 KiB for headers (then, if that was refused too, to no
/// payload at all), with a `crossflow.truncated` header giving the original
/// size. `None` once nothing is left to cut.
pub fn trimmed(mut record: Outgoing, max_bytes: usize) -> Option<Outgoing> {
    if record.trimmed && record.payload.is_empty() {
        return None;
    }
    let original = record.payload.len().to_string();
    let keep = if record.trimmed {
        0
    } else {
        max_bytes
            .saturating_sub(HEADROOM)
            .min(record.payload.len() / 2)
    };
    record.payload.truncate(keep);
    if !record.trimmed {
        record.headers = record.headers.insert(Header {
            key: "crossflow.truncated",
            value: Some(original.as_str()),
        });
    }
    record.trimmed = true;
    Some(record)
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers as _;

    use super::*;

    fn record(payload: usize) -> Outgoing {
        Outgoing {
            topic: "dead".into(),
            payload: vec![b'x'; payload],
            key: None,
            headers: OwnedHeaders::new(),
            timestamp_ms: None,
            kind: RecordKind::DeadLetter,
            partition: None,
            input: 0,
            trimmed: false,
            alone: true,
        }
    }

    #[test]
    fn size_and_validity_errors_are_the_records_others_are_transient() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(classify(&too_large), Failure::Record(r) if r.code == "too_large"));
        let invalid = KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord);
        assert!(matches!(classify(&invalid), Failure::Record(r) if r.code == "invalid_record"));
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert_eq!(
                classify(&KafkaError::MessageProduction(code)),
                Failure::Transient
            );
        }
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::Fatal,
        ] {
            assert_eq!(
                classify(&KafkaError::MessageProduction(code)),
                Failure::Fatal
            );
        }
    }

    #[test]
    fn a_dead_letter_is_cut_to_fit_then_emptied_then_given_up() {
        let cut = trimmed(record(100_000), 40_000).unwrap();
        assert_eq!(cut.payload.len(), 40_000 - HEADROOM);
        let header = cut.headers.iter().find(|h| h.key == "crossflow.truncated");
        assert_eq!(header.and_then(|h| h.value), Some(&b"100000"[..]));
        let empty = trimmed(cut, 40_000).unwrap();
        assert!(empty.payload.is_empty());
        assert_eq!(
            empty
                .headers
                .iter()
                .filter(|h| h.key == "crossflow.truncated")
                .count(),
            1
        );
        assert!(trimmed(empty, 40_000).is_none());
    }
}
