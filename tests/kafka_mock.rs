//! `crossflow enrich` under faults injected through librdkafka's own mock
//! broker (`rdkafka::mocking::MockCluster`): errors and outages a real
//! broker cannot be made to produce on demand.

use std::collections::HashSet;
use std::time::Duration;

use crossflow_tests::enrich_io::*;
use crossflow_tests::snli_pairs;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type Mock = MockCluster<'static, DefaultProducerContext>;

/// A mock cluster of three brokers with one-partition topics led by the given brokers.
fn mock_cluster(topics: &[(&str, i32)]) -> Mock {
    let mock = MockCluster::new(3).unwrap();
    for &(topic, leader) in topics {
        mock.create_topic(topic, 1, 1).unwrap();
        mock.partition_leader(topic, 0, Some(leader)).unwrap();
    }
    mock
}

/// The standard topics (`pairs`, `enriched`, `dead`) led by brokers 1, 2, 3,
/// with 20 pair messages in `pairs`.
async fn mock_with_pairs() -> (Mock, usize) {
    let mock = mock_cluster(&[("pairs", 1), ("enriched", 2), ("dead", 3)]);
    let pairs = snli_pairs(20);
    produce_pairs_at(&mock.bootstrap_servers(), "pairs", &pairs, 0).await;
    (mock, pairs.len())
}

/// The dead-letter topic does not exist: the job stops with a clear error
/// before it subscribes, so nothing is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dead_letter_topic_stops_the_job_before_it_consumes() {
    let mock = mock_cluster(&[("pairs", 1), ("enriched", 1)]);
    mock.topic_error(
        "pairs.dlq",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .unwrap();
    // The default dead-letter topic, <input-topic>.dlq.
    let err = start_up_error(&mock, "pairs", "g-missing-dlq").await;
    assert!(
        err.contains("pairs.dlq") && err.contains("--dlq-topic"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_topic_stops_the_job_at_start_up() {
    let mock = mock_cluster(&[("enriched", 1), ("absent.dlq", 1)]);
    mock.topic_error(
        "absent",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .unwrap();
    let err = start_up_error(&mock, "absent", "g-missing-input").await;
    assert!(
        err.contains("--input-topic absent") && err.contains("cannot be used"),
        "{err}"
    );
}

/// The error of an enrich job from `input` to `enriched` that must stop at start-up.
async fn start_up_error(mock: &Mock, input: &str, group: &str) -> String {
    let args: Vec<String> = [
        "enrich",
        "--brokers",
        &mock.bootstrap_servers(),
        "--input-topic",
        input,
        "--output-topic",
        "enriched",
        "--group-id",
        group,
    ]
    .map(str::to_owned)
    .to_vec();
    let run = tokio::time::timeout(Duration::from_secs(60), run_in_process(args));
    run.await.expect("stops at start-up").unwrap_err()
}

/// Exactly-once with the first transaction's commit failing (EndTxn answered
/// INVALID_MSG_SIZE: abortable): the job aborts, rewinds, sends the batch
/// again in a new transaction and goes on; the counters count each message
/// once, not the records of the aborted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_is_rewound_and_counted_once() {
    let (mock, count) = mock_with_pairs().await;
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE],
    );
    // Counted only once committed.
    let extra = ["--guarantee", "exactly-once"];
    let summary = enrich_until_all_out(&mock, "g-abort", &extra, count).await;
    let records = every_id_produced(&mock, count);
    assert!(
        records.len() > count,
        "the aborted transaction's records were sent again ({} records)",
        records.len()
    );
    assert_eq!(
        (summary.messages_in, summary.messages_out),
        (count as u64, count as u64),
        "counted once, after the commit"
    );
}

/// The output topic's leader goes down: sends time out and are retried with
/// backoff, nothing is counted as sent and no offset is committed meanwhile
/// (at-least-once stores a batch's offsets only once its outputs are
/// delivered, and librdkafka commits them in the background, here every
/// 100 ms); when the broker is back every output is delivered and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_retried_while_the_output_leader_is_down_and_nothing_is_lost() {
    let (mock, count) = mock_with_pairs().await;
    mock.coordinator(MockCoordinator::Group("g-down".into()), 1)
        .unwrap();
    mock.broker_down(2).unwrap();
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let extra = [
        "--metrics-addr",
        &metrics,
        "-X",
        "message.timeout.ms=2000",
        "-X",
        "auto.commit.interval.ms=100",
    ];
    let (stop, task) =
        start_in_process(enrich_args_at(&mock.bootstrap_servers(), "g-down", &extra));
    let bootstrap = mock.bootstrap_servers();
    tokio::task::block_in_place(|| {
        wait_for_metric(port, "crossflow_produce_retries_total", 2.0);
        assert_eq!(
            metric(port, "crossflow_messages_out_total"),
            0.0,
            "nothing counted as sent while the leader is down"
        );
        assert_eq!(
            committed_at(&bootstrap, "g-down", "pairs", 1),
            0,
            "no offset committed before its outputs are delivered"
        );
        mock.broker_up(2).unwrap();
        wait_for_metric(port, "crossflow_messages_out_total", count as f64);
        wait_until("the delivered batch's offsets committed", || {
            committed_at(&bootstrap, "g-down", "pairs", 1) == count as i64
        });
    });
    stop.send(true).unwrap();
    let summary = task.await.unwrap();
    assert_eq!(
        (summary.messages_in, summary.messages_out),
        (count as u64, count as u64)
    );
}

/// The broker (not the client) refuses a record batch of outputs as too large
/// (Produce answered MESSAGE_TOO_LARGE once): a broker refuses whole batches,
/// so each record is sent again alone, and all get through; none is
/// dead-lettered for an error that was not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_by_the_broker_is_sent_again_record_by_record() {
    let (mock, count) = mock_with_pairs().await;
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let summary = enrich_until_all_out(&mock, "g-refused", &[], count).await;
    every_id_produced(&mock, count);
    assert_eq!(
        (summary.messages_out, summary.dead_lettered),
        (count as u64, 0),
        "nothing dead-lettered for the batch's refusal"
    );
}

/// Runs enrich in process on the mock cluster until `count` outputs are
/// counted (its metrics endpoint), then stops it and returns its summary.
async fn enrich_until_all_out(
    mock: &Mock,
    group: &str,
    extra: &[&str],
    count: usize,
) -> crossflow_pipelines::enrich::EnrichSummary {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut args = enrich_args_at(&mock.bootstrap_servers(), group, extra);
    args.extend(["--metrics-addr".to_string(), metrics]);
    let (stop, task) = start_in_process(args);
    tokio::task::block_in_place(|| {
        wait_for_metric(port, "crossflow_messages_out_total", count as f64)
    });
    stop.send(true).unwrap();
    task.await.unwrap()
}

/// Every record of `enriched`, after checking that `count` distinct ids are among them.
fn every_id_produced(mock: &Mock, count: usize) -> Vec<OwnedMessage> {
    let records =
        tokio::task::block_in_place(|| every_record(&mock.bootstrap_servers(), "enriched"));
    let ids: HashSet<String> = ids_of(&records).into_iter().collect();
    assert_eq!(ids.len(), count, "every id produced");
    records
}

/// Every record of partition 0 of `topic`, read up to the end of the
/// partition (the mock broker shows the records of aborted transactions too).
fn every_record(bootstrap: &str, topic: &str) -> Vec<OwnedMessage> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&partitions).unwrap();
    let mut records: Vec<OwnedMessage> = Vec::new();
    let started = std::time::Instant::now();
    loop {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => records.push(m.detach()),
            Some(Err(KafkaError::PartitionEOF(_))) => return records,
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => assert!(
                started.elapsed() < Duration::from_secs(60),
                "{topic}: no end of partition in 60 s ({} records)",
                records.len()
            ),
        }
    }
}
