//! `crossflow score --scheduler`: the job's output columns computed by the
//! executors of a Ballista cluster through crossflow's SQL functions, and
//! written by them: the input's columns with the input file's Arrow types,
//! then `cross_score`, a classifier's `nli_label` / `nli_probs` and, with
//! `--threshold`, `is_paraphrase`, as the local job writes them. Rows come
//! in the order the cluster's tasks finish, not the input's. The executors
//! write under a temporary name beside `--output`, which this process moves
//! into place when the job succeeded.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossflow::{CrossEncoder, Head, OutputColumns};
use crossflow_udfs::{CrossFunction, ModelSet};
use datafusion::arrow::array::UInt64Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::{SessionContext, ident};

use super::ScoreArgs;
use crate::columns;
use crate::output_file::{FlagPath, StagedOutput, check_paths};
use crate::{JobError, Result};

/// What a job on the cluster did.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSummary {
    /// Rows written.
    pub rows: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Runs the job on the cluster of `args.cluster`; `model` (opened, not
/// started: the client only plans) names the columns and checks the flags.
pub async fn run(args: &ScoreArgs, model: Arc<CrossEncoder>) -> Result<ClusterSummary> {
    check_paths(
        &[FlagPath::new("--input", &args.input)],
        &[FlagPath::new("--output", &args.output)],
    )?;
    let started = Instant::now();
    let schema = file_schema(&args.input)?;
    let input = args.input.display().to_string();
    for column in [&args.a, &args.b] {
        let index = columns::index_of(&schema, column, &input)?;
        columns::check_text(schema.field(index), &input)?;
    }
    let outputs = OutputColumns::for_model(&model, args.threshold)?;
    columns::with_added(&schema, outputs.fields())?;
    let classifier = matches!(model.head(), Head::Classification { .. });
    let models = ModelSet {
        nli: classifier.then(|| Arc::clone(&model)),
        score: model,
        bi: None,
    };
    let ctx = args
        .cluster
        .session(&models, &[format!("input={input}")])
        .await?;
    let exprs = select(&ctx, args, &schema, classifier)?;
    let staged = StagedOutput::create(&args.output)?;
    let written = ctx
        .table("input")
        .await?
        .select(exprs)?
        .write_parquet(
            &staged.staged().display().to_string(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            Some(zstd()),
        )
        .await?;
    staged.commit()?;
    Ok(ClusterSummary {
        rows: count(&written),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The input file's Arrow schema, as the local job reads it.
fn file_schema(path: &Path) -> Result<SchemaRef> {
    let input = path.display().to_string();
    let file =
        std::fs::File::open(path).map_err(|e| JobError::Usage(format!("--input {input}: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| JobError::input_parquet(&input, e))?;
    Ok(builder.schema().clone())
}

/// Every input column cast to the file's type, then the model's columns.
fn select(
    ctx: &SessionContext,
    args: &ScoreArgs,
    schema: &SchemaRef,
    classifier: bool,
) -> Result<Vec<Expr>> {
    let call = |function: CrossFunction, extra: Option<Expr>| -> Result<Expr> {
        let udf = ctx.udf(function.default_name())?;
        let mut arguments = vec![ident(&args.a), ident(&args.b)];
        arguments.extend(extra);
        Ok(udf.call(arguments).alias(function.default_name()))
    };
    let mut exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| cast(ident(f.name()), f.data_type().clone()).alias(f.name()))
        .collect();
    exprs.push(call(CrossFunction::Score, None)?);
    if classifier {
        exprs.push(call(CrossFunction::NliLabel, None)?);
        exprs.push(call(CrossFunction::NliProbs, None)?);
    }
    if let Some(threshold) = args.threshold {
        exprs.push(call(CrossFunction::Paraphrase, Some(lit(threshold)))?);
    }
    Ok(exprs)
}

/// Parquet with zstd, as the local job writes.
fn zstd() -> TableParquetOptions {
    let mut options = TableParquetOptions::default();
    options.global.compression = Some("zstd(3)".into());
    options.global.max_row_group_size = 65_536;
    options
}

/// The row count a write reports.
fn count(batches: &[datafusion::arrow::array::RecordBatch]) -> u64 {
    batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .map(|a| a.value(0))
        .unwrap_or(0)
}
