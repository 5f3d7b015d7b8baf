//! `crossflow-lag-bench`: resident memory of `crossflow enrich` behind a large
//! lag. Produces `--messages` messages of about `--payload-bytes` each into a
//! real broker (tansu), then runs the real `crossflow` binary (beside this one)
//! on them with each consumer setting given, sampling its RSS from
//! `/proc/<pid>/status` for `--seconds`: the model scores far slower than the
//! broker delivers, so the lag stays large while the process runs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use crossflow_tests::broker::Broker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::json;

/// Memory of enrich behind a large lag.
#[derive(Debug, Parser)]
struct Args {
    /// Messages produced before enrich starts (the lag)
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Approximate size of each message (a `pad` field the job ignores)
    #[arg(long, default_value_t = 2048)]
    payload_bytes: usize,
    /// Seconds each configuration runs
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Consumer settings to compare, each a comma-separated list of -X
    /// KEY=VALUE ("default": none)
    #[arg(long, value_delimiter = ';', default_value = "default")]
    configs: Vec<String>,
}

const PARTITIONS: i32 = 3;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let binary = std::env::current_exe()?
        .parent()
        .context("bench directory")?
        .join("crossflow");
    anyhow::ensure!(
        binary.is_file(),
        "{} missing: cargo build first",
        binary.display()
    );
    let broker = Broker::start();
    broker
        .create_topics(&["in", "out", "in.dlq"], PARTITIONS)
        .await;
    let started = Instant::now();
    produce(&broker, args.messages, args.payload_bytes).await?;
    eprintln!(
        "produced {} messages of ~{} bytes in {:.0} s",
        args.messages,
        args.payload_bytes,
        started.elapsed().as_secs_f64()
    );
    println!("CPU: {}\n", crossflow::CpuInfo::host());
    println!(
        "| consumer settings | peak RSS | RSS at the end | messages enriched in {} s | lag left |",
        args.seconds
    );
    println!("|---|---:|---:|---:|---:|");
    for (i, config) in args.configs.iter().enumerate() {
        let run = run_one(&binary, &broker, config, &format!("lag-{i}"), args.seconds)?;
        println!(
            "| {config} | {:.0} MiB | {:.0} MiB | {} | {} |",
            run.peak_kib as f64 / 1024.0,
            run.last_kib as f64 / 1024.0,
            run.enriched,
            args.messages as u64 - run.enriched
        );
    }
    Ok(())
}

async fn produce(broker: &Broker, count: usize, payload_bytes: usize) -> Result<()> {
    let producer: FutureProducer = broker
        .config()
        .set("linger.ms", "20")
        .set("queue.buffering.max.kbytes", "262144")
        .create()?;
    let texts = crossflow_tests::snli_pairs(1000);
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in 0..count {
        let (a, b) = &texts[i % texts.len()];
        let base = json!({"id": i.to_string(), "a": a, "b": b, "pad": ""}).to_string();
        let pad = "x".repeat(payload_bytes.saturating_sub(base.len()));
        let payload = json!({"id": i.to_string(), "a": a, "b": b, "pad": pad}).to_string();
        let key = i.to_string();
        let producer = producer.clone();
        pending.push(async move {
            producer
                .send(
                    FutureRecord::to("in").key(&key).payload(&payload),
                    Timeout::Never,
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        });
        if pending.len() >= 10_000 {
            drain(&mut pending).await?;
        }
    }
    drain(&mut pending).await
}

async fn drain<F>(pending: &mut futures::stream::FuturesUnordered<F>) -> Result<()>
where
    F: std::future::Future<Output = Result<(), rdkafka::error::KafkaError>>,
{
    use futures::StreamExt;
    while let Some(sent) = pending.next().await {
        sent?;
    }
    Ok(())
}

struct Run {
    peak_kib: u64,
    last_kib: u64,
    enriched: u64,
}

fn run_one(
    binary: &PathBuf,
    broker: &Broker,
    config: &str,
    group: &str,
    seconds: u64,
) -> Result<Run> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(binary);
    command.args([
        "enrich",
        "--brokers",
        &broker.bootstrap(),
        "--input-topic",
        "in",
    ]);
    command.args([
        "--output-topic",
        "out",
        "--group-id",
        group,
        "--status-secs",
        "0",
    ]);
    command.args(["--metrics-addr", &format!("127.0.0.1:{port}")]);
    // The texts repeat: without the cache every message is run through the model.
    command.args(["--cache-pairs", "0"]);
    for setting in config.split(',').filter(|s| *s != "default") {
        command.args(["-X", setting]);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let (mut peak_kib, mut last_kib) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        last_kib = rss_kib(&child)?;
        peak_kib = peak_kib.max(last_kib);
    }
    let enriched = crossflow_tests::enrich_io::metric(port, "crossflow_messages_out_total") as u64;
    stop(&mut child)?;
    Ok(Run {
        peak_kib,
        last_kib,
        enriched,
    })
}

fn rss_kib(child: &Child) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

fn stop(child: &mut Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}
