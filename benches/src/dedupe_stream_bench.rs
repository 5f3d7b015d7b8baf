//! `crossflow-dedupe-stream-bench`: `crossflow dedupe-stream` through a real
//! Kafka-protocol broker (tansu, from `scripts/setup`).
//!
//! - `quality`: every distinct sentence of a labelled dev split once, in a
//!   fixed shuffled order, through the stream job and through the batch
//!   `crossflow dedupe` on the same rows in the same order: recall of the
//!   labelled duplicate pairs and false merges of the others, side by side.
//! - `speed`: messages/s of the stream job next to the bare engine's embed +
//!   verify rate on the same messages in the same run; then p50 / p99
//!   end-to-end latency with messages sent at a fraction of that rate.
//! - `restore`: a changelog partition of N representatives read back into a
//!   window: seconds and memory.

#[path = "rss.rs"]
mod rss;
#[path = "stream_quality.rs"]
mod stream_quality;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use crossflow_pipelines::cli::{Cli as CrossflowCli, Command};
use crossflow_pipelines::dedupe_stream::{self, changelog, window::Representative};
use crossflow_pipelines::models::ModelArgs;
use crossflow_tests::broker::Broker;
use crossflow_tests::enrich_io::read_topic;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Bench,
    /// Labelled data sets
    #[arg(long, global = true, default_value = "../shared/data")]
    data: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Recall and false merges, stream against batch
    Quality,
    /// Throughput against the bare engine, then latency at a fraction of it
    Speed {
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// Send rate of the latency phase as a fraction of the measured rate
        #[arg(long, default_value_t = 0.5)]
        load: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Restore time and memory of a window of N representatives
    Restore {
        #[arg(long, default_value_t = 10_000)]
        representatives: usize,
    },
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CROSSFLOW_LOG"))
        .with_writer(std::io::stderr)
        .init();
    println!("CPU: {}\n", crossflow::CpuInfo::host());
    match args.command {
        Bench::Quality => stream_quality::quality(&args.data).await,
        Bench::Speed {
            messages,
            load,
            seconds,
        } => speed(&args.data, messages, load, seconds).await,
        Bench::Restore { representatives } => restore(&args.data, representatives).await,
    }
}

/// A broker with topics `texts` (one partition), `flags` and `dead`.
async fn broker() -> Broker {
    let broker = Broker::start();
    broker.create_topics(&["texts", "flags", "dead"], 1).await;
    broker
}

/// Produces `{id, text}` messages (ids 0..) one after the other.
async fn produce(
    broker: &Broker,
    sentences: &[String],
    first: usize,
    pace: Option<Duration>,
) -> Result<()> {
    let producer: FutureProducer = broker.config().set("linger.ms", "5").create()?;
    for (i, s) in sentences.iter().enumerate() {
        let payload = serde_json::to_vec(&json!({"id": first + i, "text": s}))?;
        let record = FutureRecord::<(), [u8]>::to("texts").payload(&payload);
        match pace {
            Some(every) => {
                producer.send_result(record).map_err(|(e, _)| e)?;
                tokio::time::sleep(every).await;
            }
            None => {
                producer
                    .send(record, Timeout::Never)
                    .await
                    .map_err(|(e, _)| e)?;
            }
        }
    }
    Ok(())
}

/// The model and dedupe-stream arguments of a run on `broker` (topics
/// `texts` → `flags`, dead letters to `dead`) in consumer group `group`.
fn stream_command(
    broker: &Broker,
    group: &str,
) -> Result<(ModelArgs, dedupe_stream::DedupeStreamArgs)> {
    let argv = ["crossflow", "dedupe-stream", "--input-topic", "texts"]
        .into_iter()
        .chain(["--output-topic", "flags", "--dlq-topic", "dead"])
        .chain(["--status-secs", "0", "--group-id", group, "--brokers"])
        .map(str::to_owned)
        .chain([broker.bootstrap()]);
    let cli = CrossflowCli::try_parse_from(argv)?;
    let Command::DedupeStream(args) = cli.command else {
        anyhow::bail!("not dedupe-stream")
    };
    Ok((cli.models, args))
}

/// Starts dedupe-stream in this process on `broker`.
fn start(
    broker: &Broker,
    group: &str,
) -> Result<(
    watch::Sender<bool>,
    tokio::task::JoinHandle<crossflow_pipelines::Result<dedupe_stream::DedupeStreamSummary>>,
)> {
    let (models, args) = stream_command(broker, group)?;
    let (settings, engines) = dedupe_stream::prepare(&models, &args)?;
    let (stop, stopped) = watch::channel(false);
    Ok((
        stop,
        tokio::spawn(dedupe_stream::run(settings, engines, stopped)),
    ))
}

/// Outputs in `flags` until `count` (or ten minutes).
fn outputs(broker: &Broker, count: usize) -> Vec<rdkafka::message::OwnedMessage> {
    tokio::task::block_in_place(|| {
        read_topic(broker, "flags", Duration::from_secs(600), |m| {
            m.len() >= count
        })
    })
}

/// `n` distinct STS-B train sentences.
fn train_sentences(data: &Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(data.join("stsbenchmark/sts-train.csv"))?;
    let mut seen = std::collections::HashSet::new();
    let all: Vec<String> = text
        .lines()
        .flat_map(|l| {
            l.split('\t')
                .skip(5)
                .take(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|s| seen.insert(s.clone()))
        .collect();
    anyhow::ensure!(all.len() >= n, "only {} sentences", all.len());
    Ok(all.into_iter().take(n).collect())
}

async fn speed(data: &Path, n: usize, load: f64, seconds: u64) -> Result<()> {
    let sentences = train_sentences(data, n)?;
    // The stream job first: how many candidate pairs it verifies.
    let broker = broker().await;
    produce(&broker, &sentences, 0, None).await?;
    let started = Instant::now();
    let (stop, task) = start(&broker, "speed")?;
    let out = outputs(&broker, n);
    let wall = started.elapsed().as_secs_f64();
    stop.send(true)?;
    let summary = task.await??;
    let stamps: Vec<i64> = out
        .iter()
        .filter_map(|m| m.timestamp().to_millis())
        .collect();
    // Steady rate: the outputs after the first batch's, over the time from
    // the first batch's outputs to the last output.
    let (first, last) = (*stamps.iter().min().unwrap(), *stamps.iter().max().unwrap());
    let after_first = stamps.iter().filter(|&&t| t > first + 20).count();
    let span = (last - first) as f64 / 1000.0;
    // The bare engine on the same messages: embed them all, verify as many
    // pairs in both orders (the default --direction mean).
    let models = crossflow_pipelines::models::ModelArgs::default();
    let bi = models.load_bi_encoder(None)?;
    let cross = models.load_score_model_as_configured()?;
    let clock = Instant::now();
    for chunk in sentences.chunks(256) {
        bi.embed_texts(&chunk.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    let embed = clock.elapsed().as_secs_f64();
    let pairs: Vec<(&str, &str)> = (0..summary.pairs_verified as usize)
        .map(|i| {
            (
                sentences[i % n].as_str(),
                sentences[(i * 7 + 1) % n].as_str(),
            )
        })
        .flat_map(|(a, b)| [(a, b), (b, a)])
        .collect();
    let clock = Instant::now();
    for chunk in pairs.chunks(512) {
        cross.predict_pairs(chunk)?;
    }
    let verify = clock.elapsed().as_secs_f64();
    let bare = n as f64 / (embed + verify);
    let steady = after_first as f64 / span.max(1e-3);
    println!(
        "| messages | candidate pairs verified | duplicates | bare engine embed + verify | dedupe-stream (after its first batch) | dedupe-stream (from start, group join included) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {} | {} | {bare:.0} msg/s (embed {embed:.1}s, verify {verify:.1}s) | {steady:.0} msg/s ({:.0} %) | {:.0} msg/s |",
        summary.pairs_verified,
        summary.duplicates,
        100.0 * steady / bare,
        n as f64 / wall
    );
    latency(data, steady * load, seconds).await
}

/// p50 / p99 of output timestamp minus send time at `rate` messages/s.
async fn latency(data: &Path, rate: f64, seconds: u64) -> Result<()> {
    let count = (rate * seconds as f64).max(1.0) as usize;
    let sentences = train_sentences(data, 2 * count + 1)?;
    let broker = broker().await;
    let (stop, task) = start(&broker, "latency")?;
    produce(&broker, &sentences[..1], 0, None).await?;
    outputs(&broker, 1);
    let sent = Instant::now();
    let paced = tokio::spawn({
        let (bootstrap, texts) = (broker.bootstrap(), sentences[1..=count].to_vec());
        async move { produce_timed(&bootstrap, &texts, Duration::from_secs_f64(1.0 / rate)).await }
    });
    paced.await??;
    let out = outputs(&broker, count + 1);
    stop.send(true)?;
    task.await??;
    let mut latencies: Vec<f64> = out
        .iter()
        .filter_map(|m| {
            let v: Value = serde_json::from_slice(m.payload()?).ok()?;
            Some((m.timestamp().to_millis()? - v["sent_ms"].as_i64()?) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "\nLatency at {rate:.1} msg/s for {:.0} s ({} messages): p50 {:.3} s, p99 {:.3} s",
        sent.elapsed().as_secs_f64(),
        latencies.len(),
        at(0.5),
        at(0.99)
    );
    Ok(())
}

/// Produces `{id, text, sent_ms}` one every `every`.
async fn produce_timed(bootstrap: &str, texts: &[String], every: Duration) -> Result<()> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()?;
    let mut ticker = tokio::time::interval(every);
    for (i, text) in texts.iter().enumerate() {
        ticker.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let payload = serde_json::to_vec(&json!({"id": i + 1, "text": text, "sent_ms": now}))?;
        producer
            .send_result(FutureRecord::<(), [u8]>::to("texts").payload(&payload))
            .map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

async fn restore(data: &Path, count: usize) -> Result<()> {
    let broker = broker().await;
    broker.create_topics(&["changelog"], 1).await;
    let sentences = train_sentences(data, 5000)?;
    let producer: FutureProducer = broker.config().set("linger.ms", "20").create()?;
    let mut state: u64 = 1;
    let mut written = 0;
    for chunk in (0..count).collect::<Vec<_>>().chunks(1000) {
        let records: Vec<(Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .map(|&i| {
                let vector: Vec<f32> = (0..384)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .collect();
                let r = Representative {
                    offset: i as i64,
                    timestamp_ms: i as i64,
                    watermark_ms: i as i64,
                    id: json!(i),
                    text: sentences[i % sentences.len()].clone(),
                    key: String::new(),
                    vector,
                };
                (changelog::key(0, r.offset), changelog::encode(&r))
            })
            .collect();
        written += records.iter().map(|r| r.1.len()).sum::<usize>();
        let sends = records.iter().map(|(k, v)| {
            producer.send(
                FutureRecord::to("changelog").partition(0).key(k).payload(v),
                Timeout::Never,
            )
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(e, _)| e)?;
        }
    }
    let (mut models, args) = stream_command(&broker, "restore")?;
    let settings = args.resolve(&mut models)?;
    let before = rss::rss_mb();
    let restored = tokio::task::block_in_place(|| {
        changelog::restore(&settings.kafka, "changelog", 0, settings.bounds, 384)
    })?;
    let grown = rss::rss_mb() - before;
    println!(
        "| representatives | changelog bytes | records read | restore seconds | records/s | resident memory added | per representative | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.1} MB | {} | {:.2} | {:.0} | {grown:.1} MB | {:.2} KB | {:.0} MB |",
        restored.window.len(),
        written as f64 / 1e6,
        restored.records,
        restored.seconds,
        restored.records as f64 / restored.seconds,
        grown * 1024.0 / restored.window.len().max(1) as f64,
        rss::peak_rss_mb()
    );
    Ok(())
}
