//! `crossflow-queue-bench`: the model's queue under several callers, in one
//! run on one machine.
//!
//! 1. The same pairs scored by `crossflow score` (one caller, record batches
//!    of 4,096 rows) and by SQL over a table of 8 Parquet files with
//!    `target_partitions` 8 (8 concurrent callers), in interleaved rounds, in
//!    this process on one loaded model (no cache).
//! 2. Latency of a small call (`cross_score` over 3 rows through SQL): alone,
//!    then while the SQL job of (1) runs on the same model.
//! 3. With `--before` / `--after` (two `crossflow` binaries): the same two
//!    jobs as subprocesses, interleaved, so an older build can be compared
//!    with this one (wall time, model loading included).

#[path = "datasets.rs"]
mod datasets;
#[path = "pairs_files.rs"]
mod pairs_files;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use crossflow::{CrossEncoder, EngineOptions};
use crossflow_pipelines::score::{self, ScoreArgs};
use crossflow_pipelines::sql;
use crossflow_udfs::ModelSet;

/// Queue benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Pair profile (short, medium, long)
    #[arg(long, default_value = "short")]
    profile: String,
    /// Pairs scored per job
    #[arg(long, default_value_t = 6000)]
    pairs: usize,
    /// Interleaved rounds
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Small calls timed in each latency phase
    #[arg(long, default_value_t = 40)]
    small_calls: usize,
    /// An older `crossflow` binary to compare with `--after`
    #[arg(long, requires = "after")]
    before: Option<PathBuf>,
    /// This build's `crossflow` binary
    #[arg(long, requires = "before")]
    after: Option<PathBuf>,
    /// Labelled data sets
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
}

const FILES: usize = 8;
const SMALL_CALL: &str = "SELECT cross_score(a, b) FROM (VALUES \
    ('A man is playing a guitar.', 'Someone plays music.'), \
    ('The cat sleeps on the sofa.', 'A dog runs in the park.'), \
    ('How do I reset my password?', 'Steps to change a forgotten password')) AS t(a, b)";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let set = datasets::load(&args.profile, &args.data, args.pairs)?;
    let dir = tempfile::tempdir()?;
    let (single, table) = pairs_files::write_pairs(&set.pairs, FILES, dir.path())?;
    let count = set.pairs.len();
    println!("CPU: {}", crossflow::CpuInfo::host());
    println!("{count} {} pairs, {FILES} Parquet files\n", set.name);

    let options = EngineOptions {
        cache_pairs: 0,
        ..EngineOptions::default()
    };
    let model = Arc::new(CrossEncoder::load(
        crossflow_tests::sts_model_dir(),
        &options,
    )?);
    let models = ModelSet {
        score: model.clone(),
        nli: None,
        bi: None,
    };
    let copy = pairs_files::copy_job(&table, &dir.path().join("sql-out.parquet"), Some(FILES));
    println!(
        "| round | score (1 caller) pairs/s | SQL, 8 partitions, pairs/s | merged batches (SQL) |"
    );
    println!("|---:|---:|---:|---:|");
    for round in 1..=args.rounds {
        let started = Instant::now();
        let score_args = ScoreArgs {
            input: single.clone(),
            a: "a".into(),
            b: "b".into(),
            output: dir.path().join("score-out.parquet"),
            threshold: None,
            batch_size: 4096,
        };
        tokio::task::block_in_place(|| score::run(&score_args, &model))?;
        let score_rate = count as f64 / started.elapsed().as_secs_f64();
        let before = model.stats();
        let started = Instant::now();
        run_sql(&models, &copy).await?;
        let sql_rate = count as f64 / started.elapsed().as_secs_f64();
        let merged = model.stats().since(&before).merged_batches;
        println!("| {round} | {score_rate:.1} | {sql_rate:.1} | {merged} |");
    }

    println!(
        "\nSmall call (cross_score over 3 rows through SQL), {} calls each:\n",
        args.small_calls
    );
    println!("| while | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    let alone = small_calls(&models, args.small_calls).await?;
    print_latency("nothing else runs", &alone);
    let ctx = sql::session(&models, &[]).await?;
    let background = {
        let models = ModelSet {
            score: model.clone(),
            nli: None,
            bi: None,
        };
        let copy = copy.clone();
        tokio::spawn(async move { run_sql(&models, &copy).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = small_calls_in(&ctx, args.small_calls).await?;
    let direct = tokio::task::block_in_place(|| engine_calls(&model, args.small_calls))?;
    let finished_first = background.is_finished();
    background.await??;
    ensure!(
        !finished_first,
        "the SQL job ended before the small calls: use more --pairs"
    );
    print_latency("the SQL job runs", &busy);
    print_latency(
        "the SQL job runs (the 3 pairs straight to the engine, no SQL)",
        &direct,
    );

    if let (Some(before), Some(after)) = (&args.before, &args.after) {
        compare_builds(before, after, &single, &copy, count, args.rounds)?;
    }
    Ok(())
}

async fn run_sql(models: &ModelSet, statements: &[String]) -> Result<()> {
    let ctx = sql::session(models, &[]).await?;
    sql::execute(&ctx, statements).await?;
    Ok(())
}

async fn small_calls(models: &ModelSet, calls: usize) -> Result<Vec<Duration>> {
    let ctx = sql::session(models, &[]).await?;
    small_calls_in(&ctx, calls).await
}

async fn small_calls_in(
    ctx: &datafusion::prelude::SessionContext,
    calls: usize,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let rows: usize = ctx
            .sql(SMALL_CALL)
            .await?
            .collect()
            .await?
            .iter()
            .map(|b| b.num_rows())
            .sum();
        times.push(started.elapsed());
        ensure!(rows == 3, "the small call returned {rows} rows");
    }
    Ok(times)
}

/// The small call's pairs through `CrossEncoder::predict_pairs`, timed.
fn engine_calls(model: &CrossEncoder, calls: usize) -> Result<Vec<Duration>> {
    let pairs = [
        ("A man is playing a guitar.", "Someone plays music."),
        ("The cat sleeps on the sofa.", "A dog runs in the park."),
        (
            "How do I reset my password?",
            "Steps to change a forgotten password",
        ),
    ];
    (0..calls)
        .map(|_| {
            let started = Instant::now();
            model.predict_pairs(&pairs)?;
            Ok(started.elapsed())
        })
        .collect()
}

fn print_latency(label: &str, times: &[Duration]) {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "| {label} | {:.1} | {:.1} | {:.1} |",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// Both jobs through two `crossflow` binaries, interleaved.
fn compare_builds(
    before: &Path,
    after: &Path,
    single: &Path,
    copy: &[String],
    count: usize,
    rounds: usize,
) -> Result<()> {
    println!("\nTwo builds, as subprocesses (wall time with model loading), pairs/s:\n");
    println!("| round | build | crossflow score | crossflow sql, 8 partitions |");
    println!("|---:|---|---:|---:|");
    let out = single.with_file_name("cli-out.parquet");
    for round in 1..=rounds {
        for (label, binary) in [("before", before), ("after", after)] {
            let score = timed(
                Command::new(binary)
                    .args(["score", "--cache-pairs", "0", "--input"])
                    .arg(single)
                    .arg("--output")
                    .arg(&out),
            )?;
            let mut sql = Command::new(binary);
            sql.args(["sql", "--cache-pairs", "0"]).args(copy);
            let sql = timed(&mut sql)?;
            println!(
                "| {round} | {label} | {:.1} | {:.1} |",
                count as f64 / score,
                count as f64 / sql
            );
        }
    }
    Ok(())
}

/// Runs a command to completion; its wall time in seconds.
fn timed(command: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let output = command.output().context("starting crossflow")?;
    ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(started.elapsed().as_secs_f64())
}
