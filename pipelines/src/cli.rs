//! The `crossflow` command line.

use std::io::Write;

use clap::{Parser, Subcommand};

use crate::cluster::{ExecutorArgs, SchedulerArgs};
use crate::dedupe::DedupeArgs;
use crate::dedupe_stream::DedupeStreamArgs;
use crate::enrich::EnrichArgs;
use crate::models::{ModelArgs, ModelsArgs};
use crate::progress::stage_times;
use crate::rerank::RerankArgs;
use crate::score::ScoreArgs;
use crate::search::{IndexArgs, SearchArgs};
use crate::sql::SqlArgs;
use crate::{Result, score, sql};

/// crossflow: transformer cross-encoders over Arrow data (SQL, batch jobs).
#[derive(Debug, Parser)]
#[command(name = "crossflow", version, about, long_about = None)]
pub struct Cli {
    /// Models and inference settings (valid for every command)
    #[command(flatten)]
    pub models: ModelArgs,

    /// More logging on stderr (-v info, -vv debug); CROSSFLOW_LOG overrides
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The command to run
    #[command(subcommand)]
    pub command: Command,
}

/// crossflow's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL with cross_score / nli_label / nli_probs / is_paraphrase over files
    Sql(SqlArgs),
    /// Score the pairs of a Parquet file into a new Parquet file
    Score(ScoreArgs),
    /// Enrich a Kafka topic of pair messages into another topic
    Enrich(EnrichArgs),
    /// Find paraphrase duplicates in a text column (bi-encoder candidates, cross-encoder verification)
    Dedupe(DedupeArgs),
    /// Flag each message of a Kafka topic that paraphrases an earlier one (is_duplicate, duplicate_of, duplicate_score)
    DedupeStream(DedupeStreamArgs),
    /// Re-rank each query's candidate passages with the cross-encoder and keep the top k
    Rerank(RerankArgs),
    /// Embed a corpus with the bi-encoder into an index directory for `crossflow search`
    Index(IndexArgs),
    /// Each query's best documents from a corpus: bi-encoder candidates re-ranked by the cross-encoder
    Search(SearchArgs),
    /// Run a cluster scheduler (Ballista) for `sql --scheduler`
    Scheduler(SchedulerArgs),
    /// Run a cluster executor (Ballista) that scores with this node's models
    Executor(ExecutorArgs),
    /// Fetch Hugging Face Hub models into the cache ahead of time (pull), or list the cache (list)
    Models(ModelsArgs),
}

/// Runs a parsed command line, writing results to `out` and a summary to stderr.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    if matches!(
        cli.command,
        Command::Sql(_)
            | Command::Score(_)
            | Command::Dedupe(_)
            | Command::Rerank(_)
            | Command::Index(_)
            | Command::Search(_)
    ) {
        remove_outputs_on_signal();
    }
    match &cli.command {
        Command::Sql(args) => {
            let models = cli
                .models
                .load_model_set(args.bi_encoder.bi_encoder.as_deref())?;
            sql::run(args, &models, out).await?;
            for model in std::iter::once(&models.score).chain(&models.nli) {
                let truncated = model.stats().truncated_pairs;
                if truncated > 0 {
                    eprintln!(
                        "note: {truncated} pairs were truncated to {} tokens by {} (see --max-length)",
                        model.max_length(),
                        model.name()
                    );
                }
            }
            Ok(())
        }
        Command::Models(args) => args.run(&cli.models, out),
        Command::Scheduler(args) => crate::cluster::scheduler(args, &cli.models).await,
        Command::Executor(args) => crate::cluster::executor(args, &cli.models).await,
        Command::Enrich(args) => {
            let (settings, scorer) = crate::enrich::prepare(&cli.models, args)?;
            let summary = crate::enrich::run(settings, scorer, shutdown_signal()).await?;
            eprintln!(
                "enrich stopped: {} in, {} out, {} dead-lettered, {} pairs from the cache",
                summary.messages_in,
                summary.messages_out,
                summary.dead_lettered,
                summary.cache_hits
            );
            Ok(())
        }
        Command::DedupeStream(args) => {
            let (settings, engines) = crate::dedupe_stream::prepare(&cli.models, args)?;
            let summary = crate::dedupe_stream::run(settings, engines, shutdown_signal()).await?;
            eprintln!(
                "dedupe-stream stopped: {} in, {} out ({} duplicates), {} dead-lettered, {} changelog records restored",
                summary.messages_in,
                summary.messages_out,
                summary.duplicates,
                summary.dead_lettered,
                summary.restored_records
            );
            Ok(())
        }
        Command::Dedupe(args) => {
            let summary = crate::dedupe::run(args, &cli.models).await?;
            eprintln!(
                "dedupe: {} rows, {} exact duplicates, {} candidate pairs, {} scored, {} verified, {} clusters, {} duplicates, {} clusters at --max-cluster-size ({})",
                summary.rows,
                summary.exact_duplicates,
                summary.candidates,
                summary.scored,
                summary.verified,
                summary.clusters,
                summary.duplicates,
                summary.capped_clusters,
                stage_times(&summary.stage_seconds)
            );
            Ok(())
        }
        Command::Rerank(args) => {
            let models = crossflow_udfs::ModelSet {
                score: cli.models.load_score_model()?,
                nli: None,
                bi: None,
            };
            let rows = crate::rerank::run(args, &models).await?;
            eprintln!(
                "rerank: wrote {rows} rows (top {} per query) to {}",
                args.top_k,
                args.output.display()
            );
            Ok(())
        }
        Command::Index(args) => {
            let summary = crate::search::index(args, &cli.models).await?;
            eprintln!(
                "index: {} documents indexed of {} ({} without a text), {} lists, in {:.2}s ({:.0} documents/s); wrote {}",
                summary.indexed,
                summary.docs,
                summary.docs - summary.indexed,
                summary.lists,
                summary.seconds,
                summary.indexed as f64 / summary.seconds.max(1e-9),
                args.out.display()
            );
            Ok(())
        }
        Command::Search(args) => {
            let summary = crate::search::search(args, &cli.models).await?;
            eprintln!(
                "search: {} queries ({} without a text), {} candidate pairs scored, wrote {} rows (top {} per query) to {} ({})",
                summary.queries,
                summary.without_text,
                summary.candidates,
                summary.rows_written,
                args.top_n,
                args.output.display(),
                stage_times(&summary.stage_seconds)
            );
            Ok(())
        }
        Command::Score(args) if args.cluster.scheduler.is_some() => {
            let summary = score::cluster::run(args, cli.models.open_score_model()?).await?;
            eprintln!(
                "scored {} pairs on the cluster in {:.2}s ({:.0} pairs/s); wrote {}",
                summary.rows,
                summary.seconds,
                summary.rows as f64 / summary.seconds.max(1e-9),
                args.output.display()
            );
            Ok(())
        }
        Command::Score(args) => {
            let model = cli.models.load_score_model()?;
            let args = args.clone();
            let summary =
                crate::blocking::run_blocking("score", move || score::run(&args, &model)).await?;
            eprintln!(
                "scored {} pairs in {:.2}s ({:.0} pairs/s); {} with a null text, {} truncated, {} from the cache",
                summary.rows,
                summary.seconds,
                summary.rows as f64 / summary.seconds.max(1e-9),
                summary.null_rows,
                summary.truncated,
                summary.cache_hits
            );
            Ok(())
        }
    }
}

/// On SIGINT or SIGTERM, removes the outputs not yet complete and exits
/// with 128 + the signal's number (the targets keep what they held).
fn remove_outputs_on_signal() {
    tokio::spawn(async move {
        let Some(code) = first_signal().await else {
            return;
        };
        crate::output_file::remove_pending_and_exit(code);
    });
}

/// Turns true on the first SIGINT or SIGTERM.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if first_signal().await.is_some() {
            tracing::info!("shutdown requested: finishing the batch in flight");
            let _ = sender.send(true);
        }
    });
    receiver
}

/// Waits for the first SIGINT or SIGTERM; its exit code (128 + its number),
/// or `None` when SIGTERM cannot be listened for (logged).
async fn first_signal() -> Option<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return None;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Some(130),
        _ = terminate.recv() => Some(143),
    }
}
