//! `crossflow-cluster-bench`: the same SQL job (every pair of a table of 8
//! Parquet files scored with `cross_score` and written with `COPY ... TO`)
//! run locally, on a Ballista cluster of one executor with all the cores,
//! and on a cluster of two executors sharing them, in interleaved rounds in
//! one process on one machine. Every node has its own model, without cache.

#[path = "datasets.rs"]
mod datasets;
#[path = "pairs_files.rs"]
mod pairs_files;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Parser;
use crossflow::{CrossEncoder, EngineOptions};
use crossflow_cluster::{ExecutorMetrics, ExecutorSettings, Node};
use crossflow_pipelines::cluster::functions;
use crossflow_pipelines::sql;
use crossflow_udfs::ModelSet;

/// Cluster benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Pair profile (short, medium, long)
    #[arg(long, default_value = "short")]
    profile: String,
    /// Pairs scored per job
    #[arg(long, default_value_t = 3000)]
    pairs: usize,
    /// Interleaved rounds
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Labelled data sets
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
}

const FILES: usize = 8;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let set = datasets::load(&args.profile, &args.data, args.pairs)?;
    let dir = tempfile::tempdir()?;
    let (_, table) = pairs_files::write_pairs(&set.pairs, FILES, dir.path())?;
    let cores = std::thread::available_parallelism()?.get();
    println!("CPU: {}, {cores} cores", crossflow::CpuInfo::host());
    println!(
        "{} {} pairs, {FILES} Parquet files, {FILES} partitions\n",
        set.pairs.len(),
        set.name
    );

    let local = models(None)?;
    let one = Cluster::start(&local, &[cores], None, dir.path()).await?;
    let two = Cluster::start(&local, &[cores / 2, cores - cores / 2], Some(1), dir.path()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "| round | local pairs/s | 1 executor ({cores} vcores) pairs/s | 2 executors ({} + {} vcores) pairs/s | tasks per executor (2 executors) |",
        cores / 2,
        cores - cores / 2
    );
    println!("|---:|---:|---:|---:|---|");
    let count = set.pairs.len() as f64;
    for round in 1..=args.rounds {
        let out = |name: &str| dir.path().join(format!("{name}-{round}.parquet"));
        let rate = |seconds: f64| count / seconds;
        let local_s = timed(run_local(&local, &table, &out("local"))).await?;
        let one_s = timed(one.run(&local, &table, &out("one"))).await?;
        let before = two.tasks();
        let two_s = timed(two.run(&local, &table, &out("two"))).await?;
        let tasks: Vec<u64> = two.tasks().iter().zip(before).map(|(a, b)| a - b).collect();
        println!(
            "| {round} | {:.1} | {:.1} | {:.1} | {tasks:?} |",
            rate(local_s),
            rate(one_s),
            rate(two_s)
        );
    }
    Ok(())
}

/// The score model, without cache, with `sessions` ONNX Runtime sessions [default: one per core].
fn models(sessions: Option<usize>) -> Result<ModelSet> {
    let options = EngineOptions {
        cache_pairs: 0,
        sessions,
        threads: sessions.map(|_| 1),
        ..EngineOptions::default()
    };
    let score = CrossEncoder::load(crossflow_tests::sts_model_dir(), &options)?;
    Ok(ModelSet {
        score: Arc::new(score),
        nli: None,
        bi: None,
    })
}

/// A scheduler and its executors, in this process.
struct Cluster {
    scheduler: SocketAddr,
    executors: Vec<Arc<ExecutorMetrics>>,
}

impl Cluster {
    async fn start(
        client: &ModelSet,
        vcores: &[usize],
        sessions: Option<usize>,
        dir: &Path,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let scheduler = listener.local_addr()?;
        tokio::spawn(crossflow_cluster::run_scheduler(
            listener,
            functions(client, Node::Scheduler, None)?,
            crossflow_cluster::Access::default(),
            Arc::new(crossflow_cluster::SchedulerMetrics::new()),
            std::time::Duration::from_secs(180),
        ));
        let mut executors = Vec::new();
        for &vcores in vcores {
            let models = models(sessions)?;
            let metrics = Arc::new(ExecutorMetrics::new(vec![models.score.clone()]));
            let bind = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let settings = ExecutorSettings {
                scheduler: scheduler.to_string(),
                bind,
                external_host: None,
                vcores,
                work_dir: Some(tempfile::tempdir_in(dir)?.keep()),
                access: crossflow_cluster::Access::default(),
            };
            let functions = functions(&models, Node::Executor, None)?;
            let task_metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                crossflow_cluster::run_executor(&settings, functions, task_metrics).await
            });
            executors.push(metrics);
        }
        Ok(Self {
            scheduler,
            executors,
        })
    }

    async fn run(&self, client: &ModelSet, table: &Path, out: &Path) -> Result<()> {
        let scheduler = self.scheduler.to_string();
        let ctx = sql::cluster_session(&scheduler, Some(FILES), None, client, &[]).await?;
        sql::execute(&ctx, &pairs_files::copy_job(table, out, None)).await?;
        Ok(())
    }

    fn tasks(&self) -> Vec<u64> {
        self.executors
            .iter()
            .map(|e| e.tasks("succeeded"))
            .collect()
    }
}

async fn run_local(models: &ModelSet, table: &Path, out: &Path) -> Result<()> {
    let ctx = sql::session(models, &[]).await?;
    sql::execute(&ctx, &pairs_files::copy_job(table, out, Some(FILES))).await?;
    Ok(())
}

async fn timed(job: impl Future<Output = Result<()>>) -> Result<f64> {
    let started = Instant::now();
    job.await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(seconds > 0.0, "a job took no time");
    Ok(seconds)
}
