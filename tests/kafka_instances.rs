//! `crossflow enrich` as real processes against a real broker (tansu):
//! stopped by SIGTERM, killed with kill -9 (mid-stream and between the
//! acknowledgement of a batch and its commit), restarted, and instances
//! joining and leaving a group under a steady stream. No id may be lost;
//! duplicates are counted and printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossflow_tests::broker::BrokerKind;
use crossflow_tests::enrich_io::*;
use crossflow_tests::snli_pairs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_batch_commits_and_exits_zero() {
    let broker = started_broker().await;
    let pairs = snli_pairs(3000);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let mut child = spawn_binary(&enrich_args(&broker, "g-term", &[]));
    tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(120), |m| {
            m.len() >= 300
        })
    });
    signal(&child, "-TERM");
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(status.success(), "exit code 0 after SIGTERM: {status}");
    let committed = committed(&broker, "g-term", "pairs");
    let outputs = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(5), |_| false)
    });
    assert!(committed > 0);
    assert_eq!(
        outputs.len() as i64,
        committed,
        "what was produced is exactly what was committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_no_message() {
    let broker = started_broker().await;
    let pairs = snli_pairs(3000);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let args = enrich_args(&broker, "g-kill", &[]);
    let mut first = spawn_binary(&args);
    tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(120), |m| {
            m.len() >= 500
        })
    });
    signal(&first, "-KILL");
    let _ = first.wait();
    let mut second = spawn_binary(&args);
    let outputs = read_all_ids(&broker, pairs.len(), Duration::from_secs(300));
    signal(&second, "-TERM");
    let _ = second.wait();
    let (distinct, duplicates) = distinct_and_duplicates(&outputs);
    assert_eq!(
        distinct,
        pairs.len(),
        "no id missing after kill -9 and restart"
    );
    println!(
        "kill -9 test: {} outputs for {} inputs, {duplicates} duplicates",
        distinct + duplicates,
        pairs.len(),
    );
}

/// kill -9 exactly between the acknowledgement of a batch's outputs and the
/// commit of its offsets (held open by the test-only `--pause-before-commit-ms`):
/// the restarted job consumes the batch again, so nothing is lost and the
/// batch's outputs are duplicated, each counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_acknowledgement_and_commit_loses_nothing() {
    let broker = started_broker().await;
    let pairs = snli_pairs(600);
    produce_pairs(&broker, "pairs", &pairs, 0).await;
    let args = enrich_args(&broker, "g-ack", &[]);
    let port = free_port();
    let hook = ["--pause-before-commit-ms", "600000", "--metrics-addr"];
    let mut paused: Vec<String> = args
        .iter()
        .cloned()
        .chain(hook.map(str::to_owned))
        .collect();
    paused.push(format!("127.0.0.1:{port}"));
    let mut first = spawn_binary(&paused);
    // Counted right before the pause: the first batch is acknowledged and its
    // commit held, so nothing is committed yet.
    tokio::task::block_in_place(|| wait_for_metric(port, "crossflow_messages_out_total", 1.0));
    let before_kill = messages_out(port) as usize;
    assert_eq!(committed(&broker, "g-ack", "pairs"), 0);
    signal(&first, "-KILL");
    let _ = first.wait();
    let mut second = spawn_binary(&args);
    let expected = pairs.len() + before_kill;
    tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(300), |m| {
            m.len() >= expected
        })
    });
    signal(&second, "-TERM");
    let _ = second.wait();
    // Everything now in the topic, more than expected if anything else was duplicated.
    let outputs = tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(10), |m| {
            m.len() > expected
        })
    });
    assert!(outputs.len() >= expected, "{} outputs read", outputs.len());
    let (distinct, duplicates) = distinct_and_duplicates(&outputs);
    assert_eq!(distinct, pairs.len(), "no id lost");
    assert_eq!(
        duplicates, before_kill,
        "exactly the acknowledged, uncommitted batch is produced twice"
    );
    assert_eq!(committed(&broker, "g-ack", "pairs"), pairs.len() as i64);
    println!(
        "kill -9 between ack and commit: {} outputs for {} inputs, {duplicates} duplicates (the batch acknowledged before the kill)",
        distinct + duplicates,
        pairs.len(),
    );
}

/// Churn: a steady stream while extra instances join the group, take part
/// (each produces outputs) and leave again, by SIGTERM and by kill -9 in turn;
/// every id must be in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_joining_and_leaving_under_a_steady_stream_lose_nothing() {
    const EXTRAS: usize = 4;
    let broker = started_broker().await;
    // The stream goes on until every extra instance has come and gone.
    let churning = Arc::new(AtomicBool::new(true));
    let stream = steady_stream(&broker, Arc::clone(&churning));
    let args = enrich_args(&broker, "g-churn", &[]);
    let mut steady = spawn_binary(&args);
    let mut extra_outputs = Vec::new();
    for round in 0..EXTRAS {
        let port = free_port();
        let metrics = ["--metrics-addr".to_string(), format!("127.0.0.1:{port}")];
        let mut extra = spawn_binary(&[args.clone(), metrics.to_vec()].concat());
        tokio::task::block_in_place(|| wait_for_metric(port, "crossflow_messages_out_total", 1.0));
        extra_outputs.push(messages_out(port));
        let how = if round % 2 == 0 { "-TERM" } else { "-KILL" };
        signal(&extra, how);
        let _ = tokio::task::block_in_place(|| extra.wait());
    }
    churning.store(false, Ordering::SeqCst);
    let produced = stream.await.expect("the producing task");
    let outputs = read_all_ids(&broker, produced, Duration::from_secs(300));
    signal(&steady, "-TERM");
    let _ = tokio::task::block_in_place(|| steady.wait());
    let (distinct, duplicates) = distinct_and_duplicates(&outputs);
    assert_eq!(distinct, produced, "every id in the output after churn");
    println!(
        "churn: {EXTRAS} extra instances joined, took part (outputs {extra_outputs:?} when they \
         left) and left by SIGTERM / kill -9 in turn: {} outputs for {produced} inputs, \
         {duplicates} duplicates",
        distinct + duplicates,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_and_hand_over_without_loss() {
    let broker = started_broker().await;
    let pairs = snli_pairs(4000);
    produce_pairs(&broker, "pairs", &pairs[..2000], 0).await;
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = spawn_binary(&enrich_args(
        &broker,
        "g-two",
        &["--metrics-addr", &format!("127.0.0.1:{port_a}")],
    ));
    let mut b = spawn_binary(&enrich_args(
        &broker,
        "g-two",
        &["--metrics-addr", &format!("127.0.0.1:{port_b}")],
    ));
    tokio::task::block_in_place(|| {
        read_topic(&broker, "enriched", Duration::from_secs(180), |m| {
            m.len() >= 2000
        })
    });
    let out_a = messages_out(port_a);
    let out_b = messages_out(port_b);
    println!("instance a produced {out_a}, instance b produced {out_b}");
    assert!(
        out_a > 0 && out_b > 0,
        "both instances got partitions ({out_a}, {out_b})"
    );
    signal(&b, "-TERM");
    assert!(tokio::task::block_in_place(|| b.wait()).unwrap().success());
    produce_pairs(&broker, "pairs", &pairs[2000..], 2000).await;
    let outputs = read_all_ids(&broker, pairs.len(), Duration::from_secs(240));
    signal(&a, "-TERM");
    let _ = a.wait();
    let (distinct, _) = distinct_and_duplicates(&outputs);
    assert_eq!(
        distinct,
        pairs.len(),
        "the remaining instance took over with no id missing"
    );
}

/// A member killed with kill -9 holds the group's next rebalance until the
/// broker evicts it, which noida-db never does: the next instance says on its
/// status line, and after 30 s in its log, what it waits for (before, it
/// printed `in 0 | out 0` and nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_held_up_by_a_rebalance_says_what_it_waits_for() {
    let broker = started_broker_kind(BrokerKind::Noida).await;
    produce_pairs(&broker, "pairs", &snli_pairs(300), 0).await;
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut first = spawn_binary(&enrich_args(
        &broker,
        "g-held",
        &["--metrics-addr", &metrics],
    ));
    tokio::task::block_in_place(|| wait_for_metric(port, "crossflow_messages_out_total", 1.0));
    signal(&first, "-KILL");
    let _ = first.wait();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("second.log");
    let args = enrich_args(&broker, "g-held", &["--status-secs", "1"]);
    let mut second = spawn_binary_logged(&args, &log);
    let status_line = "| waiting for a rebalance of group g-held to finish (join state wait-join)";
    let warning = "waiting for a rebalance of group g-held to finish (join state wait-join); \
                   a rebalance completes when every member has rejoined or been evicted";
    let started = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(warning) || started.elapsed() > Duration::from_secs(90) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    signal(&second, "-TERM");
    let _ = tokio::task::block_in_place(|| second.wait());
    assert!(
        text.contains(status_line),
        "the status line says it:\n{text}"
    );
    assert!(
        text.contains(warning),
        "the log says it after 30 s:\n{text}"
    );
}
