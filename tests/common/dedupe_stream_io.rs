//! Helpers of the `dedupe-stream` tests: a stream of paraphrase groups from
//! the shared STS-B dev split, producing it, and reading the flags back.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{Value, json};

use super::broker::Broker;
use super::enrich_io::read_topic;
use super::repo_root;

/// One message of the test stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub id: String,
    /// The paraphrase group (also the Kafka key: a group stays in one partition).
    pub group: String,
    pub text: String,
    /// An exact copy (case and spacing changed) of an earlier message of its group.
    pub copy: bool,
}

/// The flags of one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    pub is_duplicate: bool,
    pub duplicate_of: Value,
    pub duplicate_score: Value,
}

/// STS-B dev pairs with a gold score of at least `min` (distinct sentences).
fn sts_dev_pairs(min: f32, max: f32) -> Vec<(String, String)> {
    let path = repo_root().join("../shared/data/stsbenchmark/sts-dev.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let score: f32 = cols.get(4)?.parse().ok()?;
            let (a, b) = (cols.get(5)?.to_string(), cols.get(6)?.to_string());
            (score >= min && score <= max).then_some((a, b))
        })
        .filter(|(a, b)| seen.insert(a.clone()) && seen.insert(b.clone()))
        .collect()
}

/// The content words of a sentence: lower case, four letters or more, a
/// plural's `s` dropped.
fn content_words(text: &str) -> std::collections::HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 4)
        .map(|w| w.to_lowercase().trim_end_matches('s').to_string())
        .collect()
}

/// Lanes (one group's sentences each) sharing no content word
/// with the sentences of the other lanes, so a match across lanes would
/// be a model error rather than a gap in the gold groups.
fn distinct_lanes(
    candidates: Vec<Vec<String>>,
    count: usize,
    chosen: &mut Vec<std::collections::HashSet<String>>,
) -> Vec<Vec<String>> {
    let mut lanes = Vec::new();
    for lane in candidates {
        let words: Vec<_> = lane.iter().map(|t| content_words(t)).collect();
        let clashes = words
            .iter()
            .any(|w| chosen.iter().any(|c| w.intersection(c).next().is_some()));
        if !clashes {
            chosen.extend(words);
            lanes.push(lane);
        }
        if lanes.len() == count {
            return lanes;
        }
    }
    panic!("only {} distinct lanes in the STS-B dev split", lanes.len())
}

/// `groups` paraphrase groups (an STS-B dev pair scored at least 4.6, and a
/// copy of its first sentence in other case and spacing) and as many
/// unrelated sentences (from pairs scored at most 0.5), no two lanes sharing a
/// content word, interleaved in a fixed order. Ids are `m0`,
/// `m1`, ... in stream order.
pub fn paraphrase_stream(groups: usize) -> Vec<StreamMessage> {
    let mut chosen = Vec::new();
    let close = sts_dev_pairs(4.6, 5.0)
        .into_iter()
        .map(|(a, b)| vec![a, b])
        .collect();
    let close = distinct_lanes(close, groups, &mut chosen);
    let far = sts_dev_pairs(0.0, 0.5)
        .into_iter()
        .map(|(a, _)| vec![a])
        .collect();
    let far = distinct_lanes(far, groups, &mut chosen);
    let mut lanes: Vec<Vec<(String, String, bool)>> = Vec::new();
    for (g, pair) in close.into_iter().enumerate() {
        let copy = format!("  {}  ", pair[0].to_uppercase().replace(' ', "   "));
        let group = format!("g{g}");
        lanes.push(vec![
            (group.clone(), pair[0].clone(), false),
            (group.clone(), pair[1].clone(), false),
            (group, copy, true),
        ]);
    }
    for (s, single) in far.into_iter().enumerate() {
        lanes.push(vec![(format!("s{s}"), single[0].clone(), false)]);
    }
    // Round robin over the lanes, each lane advanced by a fixed stride, so a
    // group's messages are spread over the stream.
    let mut out = Vec::new();
    let mut next = vec![0; lanes.len()];
    let mut lane = 0;
    while next.iter().zip(&lanes).any(|(n, l)| *n < l.len()) {
        if next[lane] < lanes[lane].len() {
            let (group, text, copy) = lanes[lane][next[lane]].clone();
            next[lane] += 1;
            out.push(StreamMessage {
                id: format!("m{}", out.len()),
                group,
                text,
                copy,
            });
        }
        lane = (lane + 7) % lanes.len();
    }
    out
}

/// Produces `{id, text}` messages keyed by group, with the given timestamps
/// (ms) when `timestamps` is not empty.
pub async fn produce_stream(
    broker: &Broker,
    topic: &str,
    messages: &[StreamMessage],
    timestamps: &[i64],
) {
    let producer: FutureProducer = broker
        .config()
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    for (i, m) in messages.iter().enumerate() {
        let payload = serde_json::to_vec(&json!({"id": m.id, "text": m.text})).unwrap();
        let mut record = FutureRecord::to(topic).key(&m.group).payload(&payload);
        if let Some(&ts) = timestamps.get(i) {
            record = record.timestamp(ts);
        }
        // One at a time: the stream's order is the offsets' order.
        producer
            .send(record, Timeout::Never)
            .await
            .expect("delivered");
    }
}

/// Every output in `topic` by id (all of an id's outputs, in topic order),
/// read until `count` ids have one (or two minutes).
pub fn flags_by_id(broker: &Broker, topic: &str, count: usize) -> BTreeMap<String, Vec<Flags>> {
    let flags = wait_for_ids(broker, topic, count, Duration::from_secs(120));
    assert_eq!(flags.len(), count, "an output for every message");
    flags
}

/// The outputs in `topic` by id once at least `count` ids have one (or
/// after `timeout`): a `read_committed` reader from the start, each call.
pub fn wait_for_ids(
    broker: &Broker,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> BTreeMap<String, Vec<Flags>> {
    let outputs = tokio::task::block_in_place(|| {
        read_topic(broker, topic, timeout, |m| by_id(m).len() >= count)
    });
    by_id(&outputs)
}

fn by_id(outputs: &[OwnedMessage]) -> BTreeMap<String, Vec<Flags>> {
    let mut flags: BTreeMap<String, Vec<Flags>> = BTreeMap::new();
    for m in outputs {
        let v: Value = serde_json::from_slice(m.payload().expect("payload")).expect("JSON output");
        let id = v["id"].as_str().expect("id").to_string();
        flags.entry(id).or_default().push(Flags {
            is_duplicate: v["is_duplicate"].as_bool().expect("is_duplicate"),
            duplicate_of: v["duplicate_of"].clone(),
            duplicate_score: v["duplicate_score"].clone(),
        });
    }
    flags
}

/// `dedupe-stream` arguments for the test topics (`texts` → `flags`, dead
/// letters to `dead`), with quick group timeouts and no status lines.
pub fn dedupe_stream_args(broker: &Broker, group: &str, extra: &[&str]) -> Vec<String> {
    dedupe_stream_args_to(broker, "flags", group, extra)
}

/// [`dedupe_stream_args`] with the outputs to `output`.
pub fn dedupe_stream_args_to(
    broker: &Broker,
    output: &str,
    group: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "dedupe-stream",
        "--brokers",
        &broker.bootstrap(),
        "--input-topic",
        "texts",
        "--output-topic",
        output,
        "--dlq-topic",
        "dead",
        "--group-id",
        group,
        "--status-secs",
        "0",
        "-X",
        "session.timeout.ms=6000",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}
