//! `crossflow dedupe-stream` on a real broker (tansu) with the bundled
//! models: paraphrase groups from the STS-B dev split flagged within their
//! groups, bad messages dead-lettered, window eviction, and the same flags
//! after kill -9, SIGTERM and a second instance joining and leaving.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use crossflow_pipelines::cli::{Cli, Command as CliCommand};
use crossflow_pipelines::dedupe_stream::{self, DedupeStreamSummary};
use crossflow_tests::broker::Broker;
use crossflow_tests::dedupe_stream_io::*;
use crossflow_tests::enrich_io::read_topic;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::Value;
use tokio::sync::watch;

async fn broker_with_topics(partitions: i32) -> Broker {
    let broker = Broker::start();
    broker
        .create_topics(&["texts", "flags", "dead"], partitions)
        .await;
    broker
}

/// Runs dedupe-stream in this process until `count` ids have an output in
/// `flags`; returns the flags and the run's summary.
async fn run_until(
    broker: &Broker,
    args: Vec<String>,
    count: usize,
) -> (BTreeMap<String, Vec<Flags>>, DedupeStreamSummary) {
    let cli = Cli::try_parse_from(std::iter::once("crossflow".to_string()).chain(args)).unwrap();
    let CliCommand::DedupeStream(job) = &cli.command else {
        panic!("dedupe-stream command")
    };
    let (settings, engines) = dedupe_stream::prepare(&cli.models, job).expect("prepare");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(dedupe_stream::run(settings, engines, stopped));
    let flags = flags_by_id(broker, "flags", count);
    stop.send(true).unwrap();
    let summary = task.await.unwrap().expect("dedupe-stream run");
    (flags, summary)
}

/// Produces payloads that are not messages of the stream.
async fn produce_bad(broker: &Broker) -> usize {
    let producer: FutureProducer = broker.config().create().unwrap();
    let bad: [&[u8]; 5] = [
        b"not json",
        br#"{"id": "bad-missing"}"#,
        br#"{"id": "bad-number", "text": 5}"#,
        b"",
        b"[1, 2]",
    ];
    for payload in bad {
        let record = FutureRecord::<str, [u8]>::to("texts")
            .key("bad")
            .payload(payload);
        producer.send(record, Timeout::Never).await.unwrap();
    }
    bad.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_match_an_earlier_message_of_their_own_group_and_bad_messages_are_dead_lettered()
{
    let broker = broker_with_topics(3).await;
    let stream = paraphrase_stream(24);
    produce_stream(&broker, "texts", &stream, &[]).await;
    let bad = produce_bad(&broker).await;
    let args = dedupe_stream_args(&broker, "reference", &["--gather-messages", "16"]);
    let (flags, summary) = run_until(&broker, args, stream.len()).await;

    let position: BTreeMap<&str, usize> = stream
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    let mut paraphrases_found = 0;
    for (i, m) in stream.iter().enumerate() {
        let f = &flags[&m.id][0];
        assert!(
            flags[&m.id].iter().all(|again| again == f),
            "{}: one set of flags",
            m.id
        );
        if m.copy {
            assert!(f.is_duplicate, "exact copy {} ({:?}) flagged", m.id, m.text);
        }
        if !f.is_duplicate {
            assert_eq!(
                (&f.duplicate_of, &f.duplicate_score),
                (&Value::Null, &Value::Null)
            );
            continue;
        }
        let of = f.duplicate_of.as_str().expect("duplicate_of is an id");
        let earlier = &stream[position[of]];
        assert!(
            position[of] < i,
            "{} matches {of}, an earlier message",
            m.id
        );
        assert_eq!(
            earlier.group, m.group,
            "{} ({:?}) matches {of} ({:?}) of another group",
            m.id, m.text, earlier.text
        );
        assert!(
            !flags[of][0].is_duplicate,
            "{of}, a representative, is not flagged"
        );
        let score = f.duplicate_score.as_f64().expect("a score");
        assert!((0.75..=1.0).contains(&score), "{}: score {score}", m.id);
        paraphrases_found += usize::from(!m.copy);
    }
    // Recall of the gold paraphrases (STS-B >= 4.6), not a threshold on
    // quality: most are found by the bundled models.
    assert!(
        paraphrases_found >= 12,
        "{paraphrases_found} of 24 paraphrases flagged"
    );
    let flagged = flags.values().filter(|f| f[0].is_duplicate).count() as u64;
    assert_eq!(
        summary.duplicates, flagged,
        "crossflow_dedupe_duplicates_total"
    );
    assert_eq!(summary.dead_lettered, bad as u64);
    assert_eq!(summary.messages_in, (stream.len() + bad) as u64);

    let dead = tokio::task::block_in_place(|| {
        read_topic(&broker, "dead", Duration::from_secs(30), |m| m.len() >= bad)
    });
    let mut codes: Vec<String> = dead
        .iter()
        .map(|m| {
            let headers = m.headers().expect("dead letters have headers");
            let code = headers
                .iter()
                .find(|h| h.key == "crossflow.error.code")
                .unwrap();
            String::from_utf8(code.value.unwrap().to_vec()).unwrap()
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "empty_payload",
            "invalid_json",
            "missing_field",
            "not_a_string",
            "not_an_object"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_of_a_representative_that_left_the_window_is_a_representative() {
    let broker = broker_with_topics(1).await;
    let stream = paraphrase_stream(3);
    let groups: Vec<&StreamMessage> = stream.iter().filter(|m| m.group == "g0").collect();
    let fillers: Vec<&StreamMessage> = stream.iter().filter(|m| m.group.starts_with('s')).collect();
    // g0's first sentence, then three unrelated ones, then its paraphrase
    // and its copy: four and five offsets later, beyond --window-messages 3.
    let mut order: Vec<StreamMessage> = vec![groups[0].clone()];
    order.extend(fillers.iter().take(3).map(|m| (*m).clone()));
    order.extend([groups[1].clone(), groups[2].clone()]);
    produce_stream(&broker, "texts", &order, &[]).await;
    let args = dedupe_stream_args(&broker, "window", &["--window-messages", "3"]);
    let (flags, _) = run_until(&broker, args, order.len()).await;
    let paraphrase = &flags[&groups[1].id][0];
    assert!(
        !paraphrase.is_duplicate,
        "its representative left the window: {paraphrase:?}"
    );
    let copy = &flags[&groups[2].id][0];
    assert_eq!(
        copy.duplicate_of,
        Value::String(groups[1].id.clone()),
        "the copy matches the new representative"
    );
}
