//! `crossflow sql`: SQL over Parquet / CSV / JSON files with the cross-encoder
//! functions registered.

use std::io::Write;

use clap::Args;
use crossflow_udfs::{ModelSet, parse_table_spec, register_cross_functions, register_table};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::Result;
use crate::format::{OutputFormat, write_batches};

/// Arguments of `crossflow sql`.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// SQL statements, run in order (SELECT, COPY ... TO, CREATE EXTERNAL TABLE, ...)
    #[arg(required = true)]
    pub queries: Vec<String>,
    /// Register a file, directory or glob as a table: NAME=PATH (.parquet, .csv, .json/.jsonl)
    #[arg(long = "table", short = 't', value_name = "NAME=PATH")]
    pub tables: Vec<String>,
    /// How results are printed
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// A DataFusion session with crossflow's functions and the given tables.
pub async fn session(models: &ModelSet, tables: &[String]) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    register_cross_functions(&ctx, models)?;
    for spec in tables {
        let (name, path) = parse_table_spec(spec)?;
        let format = register_table(&ctx, name, path).await?;
        tracing::info!(table = name, path, ?format, "table registered");
    }
    Ok(ctx)
}

/// Runs each statement and collects its results.
pub async fn execute(ctx: &SessionContext, queries: &[String]) -> Result<Vec<Vec<RecordBatch>>> {
    let mut results = Vec::with_capacity(queries.len());
    for query in queries {
        results.push(ctx.sql(query).await?.collect().await?);
    }
    Ok(results)
}

/// Runs the command, printing each statement's result to `out`.
pub async fn run(args: &SqlArgs, models: &ModelSet, out: &mut dyn Write) -> Result<()> {
    let ctx = session(models, &args.tables).await?;
    for batches in execute(&ctx, &args.queries).await? {
        write_batches(out, &batches, args.format)?;
    }
    Ok(())
}
