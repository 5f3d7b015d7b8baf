//! `crossflow-kafka-bench`: `crossflow enrich` end to end through a real
//! Kafka-protocol broker (tansu, from `scripts/setup`), next to the bare
//! engine on the same pairs in the same run.
//!
//! 1. Bare engine: pairs/s of `CrossEncoder::predict_pairs` on the pairs.
//! 2. Throughput: the pairs are produced first, then enrich drains them;
//!    messages/s between the first and the last output (group join excluded).
//! 3. Latency: pairs are produced at a fixed rate while enrich runs; latency is
//!    the output's timestamp minus the send time carried in the message.

#[path = "datasets.rs"]
mod datasets;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Parser;
use crossflow::{CrossEncoder, EngineOptions};
use crossflow_pipelines::cli::{Cli as CrossflowCli, Command};
use crossflow_pipelines::enrich;
use crossflow_tests::broker::Broker;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{Value, json};

/// Kafka enrichment benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Pair profile (short, medium, long)
    #[arg(long, default_value = "short")]
    profile: String,
    /// Messages in the throughput phase
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Send rate of the latency phase as a fraction of the bare engine's pairs/s
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// Seconds of the latency phase
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Labelled data sets
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
}

const PARTITIONS: i32 = 3;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let set = datasets::load(&args.profile, &args.data, args.messages)?;
    let pairs: Vec<(&str, &str)> = set
        .pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let engine_rate = bare_engine(&pairs)?;
    eprintln!(
        "bare engine: {engine_rate:.1} pairs/s on {} {} pairs",
        pairs.len(),
        set.name
    );

    let broker = Broker::start();
    broker
        .create_topics(
            &["in", "out", "in.dlq", "in-live", "out-live", "in-live.dlq"],
            PARTITIONS,
        )
        .await;
    produce(&broker, "in", &pairs, None).await?;
    let (stop, task) = start_enrich(&broker, "in", "out", "bench-throughput")?;
    let outputs =
        tokio::task::block_in_place(|| read(&broker, "out", pairs.len(), Duration::from_secs(900)));
    let times: Vec<i64> = outputs.iter().map(|(ts, _)| *ts).collect();
    let (first, last) = (
        times.iter().min().copied().unwrap_or(0),
        times.iter().max().copied().unwrap_or(0),
    );
    let stream_rate =
        (outputs.len().saturating_sub(1)) as f64 / ((last - first).max(1) as f64 / 1000.0);
    stop.send(true)?;
    task.await??;
    eprintln!("enrich: {stream_rate:.1} msg/s ({} outputs)", outputs.len());

    let rate = engine_rate * args.load;
    let (stop, task) = start_enrich(&broker, "in-live", "out-live", "bench-latency")?;
    tokio::time::sleep(Duration::from_secs(6)).await; // let the group settle
    let live: Vec<(&str, &str)> = pairs
        .iter()
        .cycle()
        .take((rate * args.seconds as f64) as usize)
        .copied()
        .collect();
    produce(&broker, "in-live", &live, Some(rate)).await?;
    let outputs = tokio::task::block_in_place(|| {
        read(&broker, "out-live", live.len(), Duration::from_secs(300))
    });
    stop.send(true)?;
    task.await??;
    let mut latencies: Vec<f64> = outputs
        .iter()
        .filter_map(|(ts, sent)| sent.map(|s| (*ts - s) as f64))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };

    println!("CPU: {}\n", crossflow::CpuInfo::host());
    println!(
        "| profile | bare engine pairs/s | enrich msg/s (through tansu) | enrich / engine | load | p50 latency | p99 latency |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {engine_rate:.1} | {stream_rate:.1} | {:.0} % | {rate:.0} msg/s | {:.0} ms | {:.0} ms |",
        args.profile,
        100.0 * stream_rate / engine_rate,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}

fn bare_engine(pairs: &[(&str, &str)]) -> Result<f64> {
    let model = CrossEncoder::load(
        crossflow_pipelines::models::bundled_model_dir("crossflow-sts-minilm-l6")?,
        &EngineOptions::default(),
    )?;
    model.predict_pairs(&pairs[..pairs.len().min(64)])?;
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            model
                .predict_pairs(pairs)
                .map(|_| started.elapsed().as_secs_f64())
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    Ok(pairs.len() as f64 / times[1])
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produces the pairs as `{id, a, b, sent_ms}`, at `rate` msg/s when given.
async fn produce(
    broker: &Broker,
    topic: &str,
    pairs: &[(&str, &str)],
    rate: Option<f64>,
) -> Result<()> {
    let producer: FutureProducer = broker.config().set("linger.ms", "2").create()?;
    let started = Instant::now();
    let mut pending = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let payload = serde_json::to_vec(&json!({"id": i, "a": a, "b": b, "sent_ms": now_ms()}))?;
        let (key, topic, producer) = (i.to_string(), topic.to_string(), producer.clone());
        pending.push(tokio::spawn(async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Timeout::Never,
                )
                .await
                .map(|_| ())
        }));
    }
    for p in pending {
        p.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

type Stop = tokio::sync::watch::Sender<bool>;

fn start_enrich(
    broker: &Broker,
    input: &str,
    output: &str,
    group: &str,
) -> Result<(
    Stop,
    tokio::task::JoinHandle<Result<enrich::EnrichSummary, crossflow_pipelines::JobError>>,
)> {
    let bootstrap = broker.bootstrap();
    let argv = [
        "crossflow",
        "enrich",
        "--brokers",
        &bootstrap,
        "--input-topic",
        input,
        "--output-topic",
        output,
        "--group-id",
        group,
        "--status-secs",
        "0",
        "-X",
        "session.timeout.ms=6000",
    ];
    let cli = CrossflowCli::try_parse_from(argv)?;
    let Command::Enrich(enrich_args) = &cli.command else {
        anyhow::bail!("not enrich")
    };
    let (settings, scorer) = enrich::prepare(&cli.models, enrich_args)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    Ok((stop, tokio::spawn(enrich::run(settings, scorer, stopped))))
}

/// Reads `count` outputs: (output timestamp ms, `sent_ms` of the input).
fn read(broker: &Broker, topic: &str, count: usize, timeout: Duration) -> Vec<(i64, Option<i64>)> {
    let consumer = broker.reader(topic, PARTITIONS);
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < count && started.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let sent = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                .and_then(|v| v["sent_ms"].as_i64());
            out.push((m.timestamp().to_millis().unwrap_or(0), sent));
        }
    }
    out
}
