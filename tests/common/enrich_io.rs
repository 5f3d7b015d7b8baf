//! Helpers of the Kafka end-to-end tests: producing pair messages, reading
//! topics, committed offsets, and running `crossflow enrich` in-process or as
//! the real binary.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use crossflow_pipelines::cli::{Cli, Command as CliCommand};
use crossflow_pipelines::enrich::{self, EnrichSettings, EnrichSummary, Scorer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::broker::{Broker, BrokerKind};
use super::crossflow_binary;

pub const PARTITIONS: i32 = 3;

/// A fresh tansu broker with the topics the tests use: `pairs`, `enriched`, `dead`.
pub async fn started_broker() -> Broker {
    started_broker_kind(BrokerKind::Tansu).await
}

/// [`started_broker`] of a given kind.
pub async fn started_broker_kind(kind: BrokerKind) -> Broker {
    let broker = Broker::start_kind(kind);
    broker
        .create_topics(&["pairs", "enriched", "dead"], PARTITIONS)
        .await;
    broker
}

/// Produces `{id, a, b}` messages keyed by id with a `trace` header.
pub async fn produce_pairs(
    broker: &Broker,
    topic: &str,
    pairs: &[(String, String)],
    first_id: usize,
) {
    produce_pairs_at(&broker.bootstrap(), topic, pairs, first_id).await;
}

/// [`produce_pairs`] to the brokers at `bootstrap` (e.g. librdkafka's mock cluster).
pub async fn produce_pairs_at(
    bootstrap: &str,
    topic: &str,
    pairs: &[(String, String)],
    first_id: usize,
) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let payloads: Vec<(String, Vec<u8>)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (a, b))| {
            let id = format!("id-{}", first_id + i);
            let payload = serde_json::to_vec(&json!({"id": id, "a": a, "b": b})).unwrap();
            (id, payload)
        })
        .collect();
    let sends = payloads.iter().map(|(id, payload)| {
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(id.as_str()),
        });
        producer.send(
            FutureRecord::to(topic)
                .key(id)
                .payload(payload)
                .headers(headers),
            Timeout::Never,
        )
    });
    for result in futures::future::join_all(sends).await {
        result.expect("delivered");
    }
}

/// A steady stream of pairs into `pairs` (10 every 100 ms, new ids) until
/// `going` turns false; the task returns how many it produced.
pub fn steady_stream(broker: &Broker, going: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let (bootstrap, texts) = (broker.bootstrap(), crate::snli_pairs(1000));
    tokio::spawn(async move {
        let mut produced = 0;
        for chunk in texts.chunks(10).cycle() {
            if !going.load(Ordering::SeqCst) {
                return produced;
            }
            produce_pairs_at(&bootstrap, "pairs", chunk, produced).await;
            produced += chunk.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!("a cycle over a non-empty list never ends")
    })
}

/// Reads every partition of `topic` from the start until `done` says so or
/// `timeout` (`read_committed`).
pub fn read_topic(
    broker: &Broker,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    read_topic_as(broker, topic, "read_committed", timeout, done)
}

/// [`read_topic`] with an `isolation.level`.
pub fn read_topic_as(
    broker: &Broker,
    topic: &str,
    isolation: &str,
    timeout: Duration,
    done: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer = broker.reader_with(topic, PARTITIONS, isolation);
    let started = Instant::now();
    let mut messages = Vec::new();
    while started.elapsed() < timeout && !done(&messages) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => messages.push(message.detach()),
            Some(Err(error)) => eprintln!("reader of {topic}: {error}"),
            None => {}
        }
    }
    messages
}

/// Reads `enriched` until `count` distinct ids have appeared (or `timeout`).
pub fn read_all_ids(broker: &Broker, count: usize, timeout: Duration) -> Vec<OwnedMessage> {
    tokio::task::block_in_place(|| {
        read_topic(broker, "enriched", timeout, |m| {
            distinct_and_duplicates(m).0 >= count
        })
    })
}

pub fn ids_of(messages: &[OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| serde_json::from_slice::<Value>(m.payload()?).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// The outputs' ids: how many distinct ones, and how many outputs repeat an id.
pub fn distinct_and_duplicates(messages: &[OwnedMessage]) -> (usize, usize) {
    let ids = ids_of(messages);
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    (distinct, ids.len() - distinct)
}

pub fn committed(broker: &Broker, group: &str, topic: &str) -> i64 {
    committed_at(&broker.bootstrap(), group, topic, PARTITIONS)
}

/// The offsets `group` committed on `partitions` partitions of `topic` at
/// the brokers at `bootstrap`, summed (0 for a partition without one).
pub fn committed_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let offsets = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    offsets
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum()
}

/// Waits up to 60 s for `ready`, polling.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(60), "60 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn enrich_args(broker: &Broker, group: &str, extra: &[&str]) -> Vec<String> {
    enrich_args_at(&broker.bootstrap(), group, extra)
}

/// [`enrich_args`] for the brokers at `bootstrap`.
pub fn enrich_args_at(bootstrap: &str, group: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["enrich", "--brokers", bootstrap, "--input-topic", "pairs"]
        .into_iter()
        .chain([
            "--output-topic",
            "enriched",
            "--dlq-topic",
            "dead",
            "--group-id",
            group,
        ])
        .chain(["-X", "session.timeout.ms=6000"])
        .map(str::to_owned)
        .collect();
    if !extra.contains(&"--status-secs") {
        args.extend(["--status-secs", "0"].map(str::to_owned));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Parses an enrich command line (`enrich ...`) and prepares its run.
fn prepare_in_process(args: Vec<String>) -> Result<(EnrichSettings, Scorer), String> {
    let cli = Cli::try_parse_from(std::iter::once("crossflow".to_string()).chain(args))
        .map_err(|e| e.to_string())?;
    let CliCommand::Enrich(enrich_args) = &cli.command else {
        panic!("enrich command")
    };
    enrich::prepare(&cli.models, enrich_args).map_err(|e| e.to_string())
}

/// Runs enrich in this process until the returned sender is told to stop.
pub fn start_in_process(
    args: Vec<String>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<EnrichSummary>) {
    let (settings, scorer) = prepare_in_process(args).expect("prepare");
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        enrich::run(settings, scorer, stopped)
            .await
            .expect("enrich run")
    });
    (stop, task)
}

/// Runs enrich in this process to its result (for runs that end on their own).
pub async fn run_in_process(args: Vec<String>) -> Result<EnrichSummary, String> {
    let (settings, scorer) = prepare_in_process(args)?;
    let (_stop, stopped) = watch::channel(false);
    enrich::run(settings, scorer, stopped)
        .await
        .map_err(|e| e.to_string())
}

/// Runs the binary with its stderr in `log` (read it with `std::fs::read_to_string`).
pub fn spawn_binary_logged(args: &[String], log: &std::path::Path) -> Child {
    Command::new(crossflow_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .env("CROSSFLOW_LOG", "info")
        .spawn()
        .expect("spawn crossflow")
}

pub fn spawn_binary(args: &[String]) -> Child {
    Command::new(crossflow_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crossflow")
}

pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A free local TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of metric `name` at an instance's metrics endpoint.
pub fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} in {body}"))
}

/// Waits until metric `name` of the instance serving metrics on `port`
/// reaches `at_least` (panics after two minutes).
pub fn wait_for_metric(port: u16, name: &str, at_least: f64) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(300));
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && metric(port, name) >= at_least
        {
            return;
        }
    }
    panic!("{name} never reached {at_least}");
}

/// `crossflow_messages_out_total` of an instance's metrics endpoint.
pub fn messages_out(port: u16) -> u64 {
    metric(port, "crossflow_messages_out_total") as u64
}
