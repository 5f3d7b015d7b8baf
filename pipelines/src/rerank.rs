//! `crossflow rerank`: re-rank each query's candidates with the cross-encoder
//! and keep the top k, as one DataFusion query over the registered functions —
//! the same SQL a user can write (see README).

use std::path::PathBuf;

use clap::Args;
use crossflow_udfs::ModelSet;

use crate::sql::{execute, session};
use crate::{JobError, Result};

/// Arguments of `crossflow rerank`.
#[derive(Debug, Clone, Args)]
pub struct RerankArgs {
    /// Input Parquet with one row per (query, candidate)
    #[arg(long)]
    pub input: String,
    /// Output Parquet: the top-k rows per query with `cross_score`, `score` and `rank`
    #[arg(long)]
    pub output: PathBuf,
    /// Candidates kept per query
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    #[arg(long, default_value = "query_id")]
    pub query_id_column: String,
    #[arg(long, default_value = "query")]
    pub query_column: String,
    #[arg(long, default_value = "doc_id")]
    pub doc_id_column: String,
    #[arg(long, default_value = "doc")]
    pub doc_column: String,
    /// Column with a first-stage score (e.g. BM25 or bi-encoder cosine), for --fusion
    #[arg(long)]
    pub first_stage_column: Option<String>,
    /// Rank by W × cross + (1 - W) × first stage, each min-max normalised per query
    /// (needs --first-stage-column); 1.0 ranks by the cross-encoder alone
    #[arg(long, default_value_t = 1.0)]
    pub fusion: f64,
}

/// The SQL of a rerank run over table `candidates`.
pub fn rerank_sql(args: &RerankArgs) -> Result<String> {
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let (qid, q, doc) = (
        quote(&args.query_id_column),
        quote(&args.query_column),
        quote(&args.doc_column),
    );
    let score = match &args.first_stage_column {
        Some(first) if args.fusion < 1.0 => {
            let norm = |c: &str| {
                format!(
                    "(({c}) - MIN({c}) OVER (PARTITION BY {qid})) / NULLIF(MAX({c}) OVER (PARTITION BY {qid}) - MIN({c}) OVER (PARTITION BY {qid}), 0)"
                )
            };
            let w = args.fusion;
            format!(
                "{w} * COALESCE({}, 0.5) + {} * COALESCE({}, 0.5)",
                norm("cross_score"),
                1.0 - w,
                norm(&quote(first))
            )
        }
        None if args.fusion < 1.0 => {
            return Err(JobError::Usage(
                "--fusion below 1 needs --first-stage-column".into(),
            ));
        }
        _ => "CAST(cross_score AS DOUBLE)".to_string(),
    };
    Ok(format!(
        "SELECT * FROM (\
           SELECT *, ROW_NUMBER() OVER (PARTITION BY {qid} ORDER BY score DESC NULLS LAST, {doc_id}) AS rank FROM (\
             SELECT *, {score} AS score FROM (SELECT *, cross_score({q}, {doc}) AS cross_score FROM candidates)))\
         WHERE rank <= {k} ORDER BY {qid}, rank",
        doc_id = quote(&args.doc_id_column),
        k = args.top_k,
    ))
}

/// Runs the job; returns the number of rows written.
pub async fn run(args: &RerankArgs, models: &ModelSet) -> Result<u64> {
    let ctx = session(models, &[format!("candidates={}", args.input)]).await?;
    let copy = format!(
        "COPY ({}) TO '{}' STORED AS PARQUET",
        rerank_sql(args)?,
        args.output.display().to_string().replace('\'', "''")
    );
    let result = execute(&ctx, &[copy]).await?;
    let written = result
        .first()
        .and_then(|batches| batches.first())
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    Ok(written)
}
