//! `crossflow rerank`: re-rank each query's candidates with the cross-encoder
//! and keep the top k, as one DataFusion query over the registered functions —
//! the same SQL a user can write (see docs/dedupe-rerank.md).

use std::path::{Path, PathBuf};

use clap::Args;
use crossflow_udfs::ModelSet;
use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::functions::expr_fn::{abs, coalesce, isnan};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::{Expr, cast, lit, when};
use datafusion::prelude::{DataFrame, SessionContext, ident};

use crate::columns;
use crate::output_file::{FlagPath, StagedOutput, check_paths};
use crate::sql::{ClusterArgs, execute_with_params};
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
    /// Candidates kept per query (at least 1)
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Column identifying a query; null ids are refused
    #[arg(long, default_value = "query_id")]
    pub query_id_column: String,
    /// Column holding the query text
    #[arg(long, default_value = "query")]
    pub query_column: String,
    /// Column identifying a candidate (ties are broken by it)
    #[arg(long, default_value = "doc_id")]
    pub doc_id_column: String,
    /// Column holding the candidate text
    #[arg(long, default_value = "doc")]
    pub doc_column: String,
    /// Numeric column with a first-stage score (e.g. BM25 or bi-encoder
    /// cosine), for --fusion; null, NaN or infinite scores are refused
    #[arg(long)]
    pub first_stage_column: Option<String>,
    /// Rank by W × cross + (1 - W) × first stage, each min-max normalised per query
    /// (needs --first-stage-column); a weight in [0, 1], 1 ranks by the cross-encoder alone
    #[arg(long, default_value_t = 1.0)]
    pub fusion: f64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The SQL of a rerank run over table `candidates`; its numbers are the
/// parameters `$1` (cross-encoder weight), `$2` (first-stage weight) and `$3`
/// (k) given by [`rerank_params`], never text pasted into the query.
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
            format!(
                "CAST($1 AS DOUBLE) * COALESCE({}, 0.5) + CAST($2 AS DOUBLE) * COALESCE({}, 0.5)",
                norm("CAST(cross_score AS DOUBLE)"),
                norm(&format!("CAST({} AS DOUBLE)", quote(first)))
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
         WHERE rank <= CAST($3 AS BIGINT UNSIGNED) ORDER BY {qid}, rank",
        doc_id = quote(&args.doc_id_column),
    ))
}

/// The values of [`rerank_sql`]'s parameters.
pub fn rerank_params(args: &RerankArgs) -> ParamValues {
    ParamValues::List(vec![
        ScalarValue::Float64(Some(args.fusion)).into(),
        ScalarValue::Float64(Some(1.0 - args.fusion)).into(),
        ScalarValue::UInt64(Some(args.top_k as u64)).into(),
    ])
}

/// `--top-k` of at least 1 and a `--fusion` weight in [0, 1].
fn check_numbers(args: &RerankArgs) -> Result<()> {
    if args.top_k == 0 {
        return Err(JobError::Usage(
            "--top-k 0: expected at least 1 candidate per query".into(),
        ));
    }
    if !(0.0..=1.0).contains(&args.fusion) {
        return Err(JobError::Usage(format!(
            "--fusion {}: expected a weight in [0, 1] (1 ranks by the cross-encoder alone)",
            args.fusion
        )));
    }
    Ok(())
}

/// Runs the job; returns the number of rows written.
pub async fn run(args: &RerankArgs, models: &ModelSet) -> Result<u64> {
    check_numbers(args)?;
    check_paths(
        &[FlagPath::new("--input", Path::new(&args.input))],
        &[FlagPath::new("--output", &args.output)],
    )?;
    let tables = [format!("candidates={}", args.input)];
    let ctx = args.cluster.session(models, &tables).await?;
    check_input(&ctx, args).await?;
    write_top(&ctx, args).await
}

/// Writes the top rows of table `candidates` of `ctx` to `--output` by
/// [`rerank_sql`]; returns the number of rows written.
pub(crate) async fn write_top(ctx: &SessionContext, args: &RerankArgs) -> Result<u64> {
    // Local COPY targets are staged by `execute`; a cluster's executors
    // write under the temporary name staged here.
    let staged = match args.cluster.scheduler {
        Some(_) => Some(StagedOutput::create(&args.output)?),
        None => None,
    };
    let target = staged
        .as_ref()
        .map_or(args.output.clone(), StagedOutput::staged);
    let copy = format!(
        "COPY ({}) TO '{}' STORED AS PARQUET",
        rerank_sql(args)?,
        target.display().to_string().replace('\'', "''")
    );
    let result = execute_with_params(ctx, &[copy], Some(rerank_params(args))).await?;
    staged.map(StagedOutput::commit).transpose()?;
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

/// Refuses, naming the flag, a missing column, a text column that holds no
/// strings, a non-numeric first stage, null query ids (they would be pooled
/// into one query) and null, NaN or infinite first-stage scores.
async fn check_input(ctx: &SessionContext, args: &RerankArgs) -> Result<()> {
    let table = ctx.table("candidates").await?;
    let schema = table.schema().clone();
    let column = |flag: &'static str, name: &str| {
        schema
            .field_with_unqualified_name(name)
            .map(|f| f.data_type().clone())
            .map_err(|_| {
                JobError::InvalidData(format!(
                    "{flag} {name:?}: no such column in {}; its columns are: {}",
                    args.input,
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    };
    column("--query-id-column", &args.query_id_column)?;
    column("--doc-id-column", &args.doc_id_column)?;
    for (flag, name) in [
        ("--query-column", &args.query_column),
        ("--doc-column", &args.doc_column),
    ] {
        let found = column(flag, name)?;
        if !columns::is_text(&found) {
            return Err(wrong_type(flag, name, &found, "a string column", args));
        }
    }
    let first = match &args.first_stage_column {
        Some(name) => {
            let found = column("--first-stage-column", name)?;
            if !found.is_numeric() {
                return Err(wrong_type(
                    "--first-stage-column",
                    name,
                    &found,
                    "a numeric column",
                    args,
                ));
            }
            Some(name.as_str())
        }
        None => None,
    };
    let problems = count_bad_rows(&table, &args.query_id_column, first).await?;
    if problems.null_query_ids > 0 {
        return Err(JobError::InvalidData(format!(
            "--query-id-column {:?}: {} rows of {} have a null query id; give them one",
            args.query_id_column, problems.null_query_ids, args.input
        )));
    }
    if let (Some(name), true) = (first, problems.bad_first_stage > 0) {
        return Err(JobError::InvalidData(format!(
            "--first-stage-column {name:?}: {} rows of {} have a null, NaN or infinite score",
            problems.bad_first_stage, args.input
        )));
    }
    Ok(())
}

fn wrong_type(
    flag: &str,
    name: &str,
    found: &DataType,
    expected: &str,
    args: &RerankArgs,
) -> JobError {
    JobError::InvalidData(format!(
        "{flag} {name:?}: column of {} has type {found}; expected {expected}",
        args.input
    ))
}

struct BadRows {
    null_query_ids: i64,
    bad_first_stage: i64,
}

async fn count_bad_rows(
    table: &DataFrame,
    query_id: &str,
    first_stage: Option<&str>,
) -> Result<BadRows> {
    let mut counts = vec![sum_of(ident(query_id).is_null()).alias("null_query_ids")];
    if let Some(first) = first_stage {
        let value = cast(ident(first), DataType::Float64);
        let bad = value
            .clone()
            .is_null()
            .or(isnan(value.clone()))
            .or(abs(value).eq(lit(f64::INFINITY)));
        counts.push(sum_of(bad).alias("bad_first_stage"));
    }
    let batches = table.clone().aggregate(vec![], counts)?.collect().await?;
    let value = |name: &str| -> i64 {
        batches
            .first()
            .and_then(|b| b.column_by_name(name))
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)))
            .unwrap_or(0)
    };
    Ok(BadRows {
        null_query_ids: value("null_query_ids"),
        bad_first_stage: value("bad_first_stage"),
    })
}

/// `SUM(CASE WHEN condition THEN 1 ELSE 0 END)` as an Int64.
fn sum_of(condition: Expr) -> Expr {
    let one = when(condition, lit(1i64))
        .otherwise(lit(0i64))
        .unwrap_or_else(|_| lit(0i64));
    coalesce(vec![sum(one), lit(0i64)])
}
