//! `crossflow sql`: SQL over Parquet / CSV / JSON files with the cross-encoder
//! functions registered.

use std::io::Write;

use clap::Args;
use crossflow_udfs::{ModelSet, parse_table_spec, register_cross_functions, register_table};
use datafusion::prelude::{SessionConfig, SessionContext};

use crossflow_cluster::{Node, Token};

use crate::cluster::TokenArgs;

use crate::format::{OutputFormat, write_batches};
use crate::models::BiEncoderArg;
pub use crate::statements::{execute, execute_with_params};
use crate::{JobError, Result};

/// Arguments of `crossflow sql`.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// SQL statements, run in order (SELECT, COPY ... TO, CREATE EXTERNAL TABLE, ...)
    #[arg(required = true)]
    pub queries: Vec<String>,
    #[command(flatten)]
    pub bi_encoder: BiEncoderArg,
    /// Register a file, directory or glob as a table: NAME=PATH (.parquet, .csv, .json/.jsonl)
    #[arg(long = "table", short = 't', value_name = "NAME=PATH")]
    pub tables: Vec<String>,
    /// How results are printed
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where a SQL job runs: in this process, or on a Ballista cluster.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Run on the Ballista cluster whose scheduler is at df://HOST:PORT (see
    /// `crossflow scheduler` / `crossflow executor`); input and output paths
    /// must be readable and writable at the same path on every executor
    #[arg(long, value_name = "df://HOST:PORT")]
    pub scheduler: Option<String>,
    /// Scan partitions (tasks) a table is split into on a cluster: about the
    /// executors' vcores in all [default: 16]
    #[arg(long, requires = "scheduler")]
    pub partitions: Option<usize>,
    #[command(flatten)]
    pub token: TokenArgs,
}

impl ClusterArgs {
    /// A session on the cluster of `--scheduler`, else a local one, with
    /// crossflow's functions on `models` and `tables` registered.
    pub async fn session(&self, models: &ModelSet, tables: &[String]) -> Result<SessionContext> {
        match &self.scheduler {
            Some(scheduler) => {
                let token = self.token.token()?;
                cluster_session(scheduler, self.partitions, token.as_ref(), models, tables).await
            }
            None => session(models, tables).await,
        }
    }
}

/// The setting that reads Parquet strings as view types; off, strings keep
/// their file's type in results and outputs, as on a cluster (Ballista turns
/// it off) and in the dedupe job.
const VIEW_TYPES: &str = "datafusion.execution.parquet.schema_force_view_types";

/// A DataFusion session with crossflow's functions and the given tables,
/// strings read with their file's type (no view types).
///
/// File statistics are not collected: DataFusion 55 reads a float column
/// whose Parquet statistics have min = max as that constant, but Parquet
/// statistics leave NaN out, so `[0.5, NaN]` would read as `[0.5, 0.5]`.
pub async fn session(models: &ModelSet, tables: &[String]) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_collect_statistics(false)
        .set_bool(VIEW_TYPES, false);
    let ctx = SessionContext::new_with_config(config);
    register_cross_functions(&ctx, models)?;
    if let Some(bi) = &models.bi {
        crate::search::register_search_functions(&ctx, bi);
    }
    register_tables(&ctx, tables).await?;
    Ok(ctx)
}

/// A session that reads a file as a job's input: in one partition (rows in
/// file order), strings with their file's type, no file statistics (see
/// [`session`]).
pub(crate) fn file_order_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_collect_statistics(false)
        .set_bool(VIEW_TYPES, false);
    SessionContext::new_with_config(config)
}

/// A session whose statements run on the cluster of `scheduler`.
pub async fn cluster_session(
    scheduler: &str,
    partitions: Option<usize>,
    token: Option<&Token>,
    models: &ModelSet,
    tables: &[String],
) -> Result<SessionContext> {
    let functions = crate::cluster::functions(models, Node::Client, None)?;
    let partitions = partitions.unwrap_or(crossflow_cluster::DEFAULT_PARTITIONS);
    if partitions == 0 {
        return Err(JobError::Usage("--partitions must be at least 1".into()));
    }
    let ctx = crossflow_cluster::remote_context(scheduler, functions, partitions, token).await?;
    register_tables(&ctx, tables).await?;
    Ok(ctx)
}

async fn register_tables(ctx: &SessionContext, tables: &[String]) -> Result<()> {
    for spec in tables {
        let (name, path) = parse_table_spec(spec)?;
        let format = register_table(ctx, name, path).await?;
        tracing::info!(table = name, path, ?format, "table registered");
    }
    Ok(())
}

/// Runs the command, printing each statement's result to `out`.
pub async fn run(args: &SqlArgs, models: &ModelSet, out: &mut dyn Write) -> Result<()> {
    let ctx = args.cluster.session(models, &args.tables).await?;
    let results = execute(&ctx, &args.queries)
        .await
        .map_err(|error| name_not_utf8_column(error, &args.tables))?;
    for batches in results {
        write_batches(out, &batches, args.format)?;
    }
    Ok(())
}

/// An error caused by text that is not UTF-8, with the table file and column
/// that hold it when a `--table` file does.
fn name_not_utf8_column(error: JobError, tables: &[String]) -> JobError {
    let message = error.to_string();
    tables
        .iter()
        .filter_map(|spec| parse_table_spec(spec).ok())
        .map(|(_, path)| std::path::Path::new(path))
        .filter(|path| path.is_file())
        .find_map(|path| crate::columns::not_utf8_error(path, &message))
        .unwrap_or(error)
}
