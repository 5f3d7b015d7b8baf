//! `crossflow enrich --guarantee exactly-once` where it can fail, with the
//! real binary: aborted transactions (a record refused inside one, a kill -9
//! while one is open), a zombie instance fenced by a newer one with the same
//! transactional id, and instances joining and leaving under a steady
//! stream; beside them, a broker restart under a running at-least-once job.
//!
//! Aborted output is checked on noida-db, which hides aborted transactions
//! from `read_committed` readers as Kafka does (tansu shows them); fencing on
//! both brokers. A `read_uncommitted` reader proves each abort happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossflow_pipelines::EXIT_FENCED;
use crossflow_tests::broker::{Broker, BrokerKind};
use crossflow_tests::enrich_io::*;
use crossflow_tests::snli_pairs;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::json;

const EXACTLY_ONCE: [&str; 2] = ["--guarantee", "exactly-once"];

/// Everything in `topic` at `isolation`, read until no new message for a while.
fn everything(broker: &Broker, topic: &str, isolation: &str) -> Vec<OwnedMessage> {
    tokio::task::block_in_place(|| {
        read_topic_as(broker, topic, isolation, Duration::from_secs(8), |_| false)
    })
}

/// Enrich arguments for an exactly-once instance: a fixed transactional id,
/// and on noida a static group member id (`group.instance.id`), so that an
/// instance started again after kill -9 takes over its dead member.
fn eos_args(broker: &Broker, group: &str, transactional_id: &str, member: &str) -> Vec<String> {
    let mut extra: Vec<&str> = EXACTLY_ONCE.to_vec();
    extra.extend(["--transactional-id", transactional_id]);
    let static_member = format!("group.instance.id={member}");
    if broker.kind() == BrokerKind::Noida {
        extra.extend(["-X", &static_member]);
    }
    enrich_args(broker, group, &extra)
}

/// The committed outputs once `count` distinct ids are among them (or after
/// four minutes), each round read by a new `read_committed` reader: noida-db
/// hides from a reader that was polling while a transaction aborted every
/// later transaction of the same producer, which a reader started afterwards
/// sees (a difference from Kafka, shown in docs/enrich.md with the Python client).
fn committed_outputs(broker: &Broker, count: usize) -> Vec<OwnedMessage> {
    let started = Instant::now();
    loop {
        let outputs = everything(broker, "enriched", "read_committed");
        let (distinct, _) = distinct_and_duplicates(&outputs);
        if distinct >= count || started.elapsed() > Duration::from_secs(240) {
            return outputs;
        }
    }
}

/// Asserts every one of `count` ids is in `enriched` exactly once
/// (`read_committed`); returns how many records a `read_uncommitted` reader
/// sees beyond them (those of aborted transactions).
fn assert_exactly_once(broker: &Broker, count: usize) -> usize {
    let committed = committed_outputs(broker, count);
    let (distinct, duplicates) = distinct_and_duplicates(&committed);
    assert_eq!(
        (distinct, duplicates),
        (count, 0),
        "every id exactly once for a read_committed reader"
    );
    everything(broker, "enriched", "read_uncommitted").len() - committed.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_refused_inside_a_transaction_aborts_it_unseen_by_read_committed_readers() {
    let broker = started_broker_kind(BrokerKind::Noida).await;
    let pairs = snli_pairs(300);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    // One input whose output is over the producer's 40,000-byte limit set below.
    let big =
        json!({"id": "big", "a": "A man plays.", "b": "Someone plays.", "pad": "x".repeat(39_900)});
    let producer: FutureProducer = broker.config().create().unwrap();
    let payload = serde_json::to_vec(&big).unwrap();
    let record = FutureRecord::to("pairs").key("big").payload(&payload);
    producer.send(record, Timeout::Never).await.unwrap();
    let mut args = eos_args(&broker, "g-refused", "t-refused", "m-refused");
    args.extend(["-X", "message.max.bytes=40000"].map(str::to_owned));
    let mut job = spawn_binary(&args);
    let aborted = assert_exactly_once(&broker, pairs.len());
    let dead = tokio::task::block_in_place(|| {
        read_topic(&broker, "dead", Duration::from_secs(60), |m| !m.is_empty())
    });
    signal(&job, "-TERM");
    assert!(
        tokio::task::block_in_place(|| job.wait())
            .unwrap()
            .success()
    );
    let keys: Vec<_> = dead.iter().map(|m| m.key()).collect();
    assert_eq!(
        keys,
        [Some(&b"big"[..])],
        "the refused input dead-lettered once"
    );
    assert!(
        aborted > 0,
        "the refused record's batch went out in a transaction that was aborted \
         (read_uncommitted shows its records)"
    );
    println!(
        "record refused in a transaction: {} ids exactly once for read_committed, {aborted} \
         records of aborted transactions seen only by read_uncommitted",
        pairs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_inside_an_open_transaction_leaves_nothing_visible_and_a_restart_finishes() {
    let broker = started_broker_kind(BrokerKind::Noida).await;
    let pairs = snli_pairs(600);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let args = eos_args(&broker, "g-open", "t-open", "m-open");
    let hook = ["--pause-before-commit-ms", "600000"].map(str::to_owned);
    let mut first = spawn_binary(&[args.clone(), hook.to_vec()].concat());
    // The first batch's outputs are in the open transaction, held by the hook.
    let open = tokio::task::block_in_place(|| {
        read_topic_as(
            &broker,
            "enriched",
            "read_uncommitted",
            Duration::from_secs(120),
            |m| !m.is_empty(),
        )
    });
    assert!(
        !open.is_empty(),
        "the paused transaction's outputs were sent"
    );
    assert!(
        everything(&broker, "enriched", "read_committed").is_empty(),
        "an open transaction is invisible to read_committed"
    );
    signal(&first, "-KILL");
    let _ = first.wait();
    let mut second = spawn_binary(&args);
    let aborted = assert_exactly_once(&broker, pairs.len());
    signal(&second, "-TERM");
    let _ = tokio::task::block_in_place(|| second.wait());
    assert!(
        aborted > 0,
        "the killed instance's transaction was aborted, its records left behind"
    );
    println!(
        "kill -9 inside a transaction: {} ids exactly once for read_committed after a \
         restart, {aborted} records of the aborted transaction seen only by read_uncommitted",
        pairs.len()
    );
}

/// Two instances with one `--transactional-id`: the older one is fenced when
/// the newer one starts, exits with [`EXIT_FENCED`] and says so; the newer one
/// carries on and finishes the stream.
async fn the_older_instance_is_fenced(kind: BrokerKind) {
    let broker = started_broker_kind(kind).await;
    let pairs = snli_pairs(6000);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let mut extra: Vec<&str> = EXACTLY_ONCE.to_vec();
    extra.extend(["--transactional-id", "t-zombie"]);
    let args = enrich_args(&broker, "g-zombie", &extra);
    let logs = tempfile::tempdir().unwrap();
    let (port, older_log) = (free_port(), logs.path().join("older.log"));
    let metrics = ["--metrics-addr".to_string(), format!("127.0.0.1:{port}")];
    let mut older = spawn_binary_logged(&[args.clone(), metrics.to_vec()].concat(), &older_log);
    tokio::task::block_in_place(|| wait_for_metric(port, "crossflow_messages_out_total", 1.0));
    // tansu wedges a group when a member leaves in the middle of a rebalance
    // (the fenced one does, as the newer one joins): there the newer instance
    // reads in a group of its own, from the start, so ids may repeat.
    let newer_group = match kind {
        BrokerKind::Noida => "g-zombie",
        BrokerKind::Tansu => "g-zombie-newer",
    };
    let mut newer = spawn_binary(&enrich_args(&broker, newer_group, &extra));
    let status = tokio::task::block_in_place(|| wait_for_exit(&mut older, 120));
    let log = std::fs::read_to_string(&older_log).unwrap();
    assert_eq!(
        status,
        Some(i32::from(EXIT_FENCED)),
        "exit code; log:\n{log}"
    );
    assert!(
        log.contains("error: fenced: another instance took over transactional id \"t-zombie\""),
        "the older instance says why it stopped:\n{log}"
    );
    let outputs = committed_outputs(&broker, pairs.len());
    signal(&newer, "-TERM");
    assert!(
        tokio::task::block_in_place(|| newer.wait())
            .unwrap()
            .success()
    );
    let (distinct, duplicates) = distinct_and_duplicates(&outputs);
    assert_eq!(
        distinct,
        pairs.len(),
        "the newer instance finished the stream"
    );
    if kind.hides_aborted() {
        assert_eq!(duplicates, 0, "each id exactly once for read_committed");
    }
    println!(
        "{kind:?}: zombie fenced (exit {EXIT_FENCED}), {distinct} ids, {duplicates} repeated \
         for read_committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_with_the_same_transactional_id_is_fenced_on_noida() {
    the_older_instance_is_fenced(BrokerKind::Noida).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_with_the_same_transactional_id_is_fenced_on_tansu() {
    the_older_instance_is_fenced(BrokerKind::Tansu).await;
}

/// The exit code of `child` once it exits, or `None` after `secs` seconds.
fn wait_for_exit(child: &mut std::process::Child, secs: u64) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// The broker (noida-db, which keeps its data) stopped while enrich runs
/// at-least-once and started again on its port and data 3 s later. The job
/// either rides it out or exits non-zero and is started again, as a
/// supervisor would; either way every id ends up in the output.
///
/// The broker is stopped with SIGINT: after kill -9, noida-db 0.2.3 can lose
/// records it acknowledged just before, which no client can make up for. For
/// the same reason exactly-once is not checked across a broker restart:
/// noida-db also accepts the commit of a transaction opened before its
/// restart without making its records visible to `read_committed` readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_under_at_least_once_loses_nothing() {
    let mut broker = started_broker_kind(BrokerKind::Noida).await;
    let pairs = snli_pairs(3000);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let extra = [
        "--guarantee",
        "at-least-once",
        "-X",
        "group.instance.id=m-restart",
        "--status-secs",
        "5",
    ];
    let args = enrich_args(&broker, "g-restart", &extra);
    let logs = tempfile::tempdir().unwrap();
    let log = |run: usize| logs.path().join(format!("run-{run}.log"));
    let mut job = spawn_binary_logged(&args, &log(0));
    tokio::task::block_in_place(|| {
        read_topic_as(
            &broker,
            "enriched",
            "read_uncommitted",
            Duration::from_secs(120),
            |m| m.len() >= 300,
        )
    });
    broker.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.restart();
    let mut restarts = 0;
    let mut broker_exits = Vec::new();
    let started = Instant::now();
    let outputs = loop {
        broker_exits.extend(broker.restart_if_exited());
        let outputs = everything(&broker, "enriched", "read_committed");
        let (distinct, _) = distinct_and_duplicates(&outputs);
        if distinct == pairs.len() || started.elapsed() > Duration::from_secs(300) {
            break outputs;
        }
        if let Some(status) = job.try_wait().unwrap() {
            assert!(!status.success(), "the job stopped on its own: {status}");
            restarts += 1;
            job = spawn_binary_logged(&args, &log(restarts));
        }
    };
    signal(&job, "-TERM");
    let _ = tokio::task::block_in_place(|| job.wait());
    let (distinct, duplicates) = distinct_and_duplicates(&outputs);
    let runs: Vec<String> = (0..=restarts)
        .map(|run| last_lines(&std::fs::read_to_string(log(run)).unwrap_or_default(), 40))
        .collect();
    assert_eq!(
        distinct,
        pairs.len(),
        "every id after the broker restart; the broker exited on its own {broker_exits:?}; \
         the job's logs:\n{}\nthe broker's logs:\n{}",
        runs.join("\n---\n"),
        last_lines(&broker.logs(), 80)
    );
    println!(
        "broker stopped and restarted under load: {distinct} ids, {duplicates} repeated, the \
         job started again {restarts} time(s), the broker exited on its own {broker_exits:?}"
    );
}

/// Churn under exactly-once: a steady stream while extra instances join the
/// group, take part and leave by SIGTERM; every id exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_and_leaving_under_exactly_once_repeat_nothing() {
    const EXTRAS: usize = 3;
    let broker = started_broker_kind(BrokerKind::Noida).await;
    let churning = Arc::new(AtomicBool::new(true));
    let stream = steady_stream(&broker, Arc::clone(&churning));
    let args = enrich_args(&broker, "g-churn-eos", &EXACTLY_ONCE);
    let mut steady = spawn_binary(&args);
    let mut extra_outputs = Vec::new();
    for _ in 0..EXTRAS {
        let port = free_port();
        let metrics = ["--metrics-addr".to_string(), format!("127.0.0.1:{port}")];
        let mut extra = spawn_binary(&[args.clone(), metrics.to_vec()].concat());
        tokio::task::block_in_place(|| wait_for_metric(port, "crossflow_messages_out_total", 1.0));
        extra_outputs.push(messages_out(port));
        signal(&extra, "-TERM");
        let status = tokio::task::block_in_place(|| extra.wait()).unwrap();
        assert!(status.success(), "an extra instance left cleanly: {status}");
    }
    churning.store(false, Ordering::SeqCst);
    let produced = stream.await.expect("the producing task");
    let aborted = assert_exactly_once(&broker, produced);
    signal(&steady, "-TERM");
    let _ = tokio::task::block_in_place(|| steady.wait());
    println!(
        "churn under exactly-once: {EXTRAS} extra instances joined, committed outputs \
         ({extra_outputs:?}) and left: {produced} ids exactly once, {aborted} records of \
         aborted transactions"
    );
}

/// The last `n` lines of `text`, for failure messages that stay readable.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
