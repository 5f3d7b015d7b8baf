//! `crossflow enrich` against a real Kafka-protocol broker (tansu).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crossflow_tests::broker::BrokerKind;
use crossflow_tests::enrich_io::*;
use crossflow_tests::{load, snli_pairs, sts_model_dir};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_are_enriched_with_the_batch_scores_keys_and_headers() {
    let broker = started_broker().await;
    let pairs = snli_pairs(10_000);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let (stop, task) = start_in_process(enrich_args(&broker, "g-10k", &[]));
    let outputs = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(300), |m| {
            m.len() >= pairs.len()
        })
    });
    stop.send(true).unwrap();
    let summary = task.await.unwrap();
    assert_eq!(summary.messages_out, pairs.len() as u64);

    let ids: HashSet<String> = ids_of(&outputs).into_iter().collect();
    assert_eq!(ids.len(), pairs.len(), "every id appears in the output");
    let model = load(&sts_model_dir());
    let sample: Vec<&OwnedMessage> = outputs.iter().step_by(10).collect();
    let sample_pairs: Vec<(&str, &str)> = sample
        .iter()
        .map(|m| {
            let id: usize = m
                .key_view::<str>()
                .unwrap()
                .unwrap()
                .trim_start_matches("id-")
                .parse()
                .unwrap();
            (pairs[id].0.as_str(), pairs[id].1.as_str())
        })
        .collect();
    let expected = model.scores_of(&model.predict_pairs(&sample_pairs).unwrap());
    for (i, message) in sample.iter().enumerate() {
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        let key = message.key_view::<str>().unwrap().unwrap();
        assert_eq!(value["id"], key, "key kept");
        let trace = message
            .headers()
            .unwrap()
            .iter()
            .find(|h| h.key == "trace")
            .unwrap();
        assert_eq!(trace.value, Some(key.as_bytes()), "headers kept");
        let score = value["cross_score"].as_f64().unwrap() as f32;
        assert!(
            (score - expected.value(i)).abs() < 1e-6,
            "{key}: {score} vs {}",
            expected.value(i)
        );
    }
    assert_eq!(
        committed(&broker, "g-10k", "pairs"),
        pairs.len() as i64,
        "every input offset committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_go_to_the_dead_letter_topic_with_their_reason() {
    let broker = started_broker().await;
    let producer: FutureProducer = broker.config().create().unwrap();
    let huge = "word ".repeat(20_000);
    let good = |id: &str, a: &str| {
        serde_json::to_vec(&json!({"id": id, "a": a, "b": "A short text."})).unwrap()
    };
    let inputs: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("g1", good("g1", "A man plays a guitar."), None),
        ("b1", b"{not json".to_vec(), Some("invalid_json")),
        (
            "b2",
            br#"{"id": "b2", "b": "only b"}"#.to_vec(),
            Some("missing_field"),
        ),
        (
            "b3",
            br#"{"id": "b3", "a": 42, "b": "x"}"#.to_vec(),
            Some("not_a_string"),
        ),
        ("b4", b"\xff\xfe\xfd".to_vec(), Some("not_utf8")),
        ("b5", Vec::new(), Some("empty_payload")),
        ("b6", b"[1, 2, 3]".to_vec(), Some("not_an_object")),
        ("g2", good("g2", &huge), None),
        ("g3", good("g3", "Two dogs run in a field."), None),
    ];
    for (key, payload, _) in &inputs {
        let record = FutureRecord::<str, _>::to("pairs").payload(payload);
        // g3 comes without a key: its output is keyed by its id field.
        let record = if *key == "g3" {
            record
        } else {
            record.key(*key)
        };
        producer.send(record, Timeout::Never).await.unwrap();
    }
    let (stop, task) = start_in_process(enrich_args(&broker, "g-dlq", &[]));
    let dead = tokio::task::block_in_place(|| {
        read_topic(&broker, "dead", Duration::from_secs(120), |m| m.len() >= 6)
    });
    let out = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(60), |m| {
            m.len() >= 3
        })
    });
    stop.send(true).unwrap();
    let summary = task.await.unwrap();
    assert_eq!((summary.messages_out, summary.dead_lettered), (3, 6));

    let header = |m: &OwnedMessage, key: &str| {
        let h = m.headers()?.iter().find(|h| h.key == key)?;
        Some(String::from_utf8_lossy(h.value?).into_owned())
    };
    let reasons: HashMap<String, String> = dead
        .iter()
        .map(|m| {
            (
                m.key_view::<str>().unwrap().unwrap().to_string(),
                header(m, "crossflow.error.code").unwrap(),
            )
        })
        .collect();
    for (key, payload, reason) in &inputs {
        if let Some(reason) = reason {
            assert_eq!(
                reasons.get(*key).map(String::as_str),
                Some(*reason),
                "{key}"
            );
            let letter = dead
                .iter()
                .find(|m| m.key() == Some(key.as_bytes()))
                .unwrap();
            assert_eq!(
                letter.payload().unwrap_or_default(),
                payload.as_slice(),
                "original payload kept"
            );
            assert_eq!(
                header(letter, "crossflow.source.topic").as_deref(),
                Some("pairs")
            );
            assert!(
                header(letter, "crossflow.source.offset")
                    .unwrap()
                    .parse::<i64>()
                    .is_ok()
            );
            assert!(!header(letter, "crossflow.error").unwrap().is_empty());
        }
    }
    let mut enriched = ids_of(&out);
    enriched.sort();
    assert_eq!(
        enriched,
        ["g1", "g2", "g3"],
        "the good ones around the bad ones are all enriched"
    );
    let keys: HashSet<&[u8]> = out.iter().filter_map(|m| m.key()).collect();
    assert!(
        keys.contains(&b"g3"[..]),
        "a keyless message's output is keyed by its id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_pairs_come_from_the_cache_with_the_same_scores_and_a_hit_rate() {
    let broker = started_broker().await;
    let mut seen = HashSet::new();
    let pairs: Vec<(String, String)> = snli_pairs(400)
        .into_iter()
        .filter(|p| seen.insert(p.clone()))
        .take(300)
        .collect();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (stop, task) =
        start_in_process(enrich_args(&broker, "g-cache", &["--metrics-addr", &addr]));
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    read_all_ids(&broker, pairs.len(), Duration::from_secs(120));
    // The same pairs again under new ids: every one is a cache hit.
    produce_pairs(&broker, "pairs", &pairs, pairs.len()).await;
    let outputs = read_all_ids(&broker, 2 * pairs.len(), Duration::from_secs(120));
    let hits = metric(port, "crossflow_cache_hits_total");
    let misses = metric(port, "crossflow_cache_misses_total");
    let ratio = metric(port, "crossflow_cache_hit_ratio");
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!((hits, misses), (pairs.len() as f64, pairs.len() as f64));
    assert!((ratio - 0.5).abs() < 1e-9, "hit ratio {ratio}");
    let score_of: HashMap<String, f64> = outputs
        .iter()
        .map(|m| {
            let value: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let id = value["id"].as_str().unwrap().to_string();
            (id, value["cross_score"].as_f64().unwrap())
        })
        .collect();
    for i in 0..pairs.len() {
        let first = score_of[&format!("id-{i}")];
        let again = score_of[&format!("id-{}", i + pairs.len())];
        assert_eq!(
            first, again,
            "pair {i}: a cached score equals the computed one"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_commits_outputs_and_offsets_together() {
    outputs_and_offsets_committed_together(BrokerKind::Tansu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_commits_outputs_and_offsets_together_on_noida() {
    outputs_and_offsets_committed_together(BrokerKind::Noida).await;
}

async fn outputs_and_offsets_committed_together(kind: BrokerKind) {
    let broker = started_broker_kind(kind).await;
    let pairs = snli_pairs(2000);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let extra = [
        "--guarantee",
        "exactly-once",
        "--transactional-id",
        "crossflow-test-eos",
    ];
    let (stop, task) = start_in_process(enrich_args(&broker, "g-eos", &extra));
    let outputs = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(240), |m| {
            m.len() >= pairs.len()
        })
    });
    stop.send(true).unwrap();
    task.await.unwrap();
    let ids = ids_of(&outputs);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (pairs.len(), pairs.len()),
        "each id exactly once under read_committed"
    );
    assert_eq!(
        committed(&broker, "g-eos", "pairs"),
        pairs.len() as i64,
        "offsets committed in the transactions"
    );
}

/// An output larger than `message.max.bytes` goes to the dead-letter topic
/// (itself cut to fit, with a header saying so), and the stream goes on:
/// before, the send error stopped the job, and a restart failed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_too_large_to_send_is_dead_lettered_and_the_stream_goes_on() {
    let broker = started_broker().await;
    let producer: FutureProducer = broker.config().create().unwrap();
    let message = |id: &str, pad: usize| {
        let pair = json!({"id": id, "a": "A man plays a guitar.", "b": "Someone plays.", "pad": "x".repeat(pad)});
        serde_json::to_vec(&pair).unwrap()
    };
    // Just under the 40,000-byte limit set below in, just over it out.
    let inputs = [
        ("s1", message("s1", 10)),
        ("big", message("big", 39_900)),
        ("s2", message("s2", 10)),
    ];
    for (key, payload) in &inputs {
        let record = FutureRecord::to("pairs").key(*key).payload(payload);
        producer.send(record, Timeout::Never).await.unwrap();
    }
    let args = enrich_args(&broker, "g-too-large", &["-X", "message.max.bytes=40000"]);
    let (stop, task) = start_in_process(args);
    let dead = tokio::task::block_in_place(|| {
        read_topic(&broker, "dead", Duration::from_secs(120), |m| !m.is_empty())
    });
    let out = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(60), |m| {
            m.len() >= 2
        })
    });
    stop.send(true).unwrap();
    let summary = task.await.unwrap();
    assert_eq!((summary.messages_out, summary.dead_lettered), (2, 1));
    let mut enriched = ids_of(&out);
    enriched.sort();
    assert_eq!(enriched, ["s1", "s2"]);
    let header = |key: &str| {
        let h = dead[0].headers()?.iter().find(|h| h.key == key)?;
        Some(String::from_utf8_lossy(h.value?).into_owned())
    };
    assert_eq!(dead[0].key(), Some(&b"big"[..]));
    assert_eq!(header("crossflow.error.code").as_deref(), Some("too_large"));
    let original = &inputs[1].1;
    let size: usize = header("crossflow.truncated").unwrap().parse().unwrap();
    assert_eq!(size, original.len(), "the header gives the original size");
    // Cut to half (under the limit less 16 KiB of headroom): a prefix of the input.
    let payload = dead[0].payload().unwrap_or_default();
    assert_eq!(payload, &original[..original.len() / 2]);
    assert_eq!(
        committed(&broker, "g-too-large", "pairs"),
        3,
        "all three committed"
    );
}

/// is_paraphrase is a threshold on one score: with a classifier as --model
/// (whose score is the winning class's probability) it is refused, as in `score`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_with_a_classifier_model_is_refused() {
    let nli = crossflow_tests::nli_model_dir();
    let args: Vec<String> = [
        "enrich",
        "--brokers",
        "127.0.0.1:1",
        "--input-topic",
        "pairs",
        "--output-topic",
        "enriched",
        "--group-id",
        "g",
        "--model",
        nli.to_str().unwrap(),
        "--threshold",
        "0.5",
    ]
    .map(str::to_owned)
    .to_vec();
    let err = run_in_process(args).await.unwrap_err();
    assert!(
        err.contains("--threshold needs a one-label score model"),
        "{err}"
    );
}
