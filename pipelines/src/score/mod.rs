//! `crossflow score`: a Parquet-to-Parquet batch job adding model outputs to
//! every row, streaming record batches (memory bounded by the batch size and
//! the writer's row-group size); with `--scheduler`, the same columns
//! computed and written by a cluster's executors ([`cluster`]).

pub mod cluster;

use std::fs::File;
use std::path::PathBuf;

use clap::Args;
use crossflow::{CrossEncoder, OutputColumns, Texts};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::columns;
use crate::output_file::{FlagPath, OutputFile, check_paths};
use crate::progress::PairProgress;
use crate::sql::ClusterArgs;
use crate::{JobError, Result};

/// Arguments of `crossflow score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Input Parquet file
    #[arg(long)]
    pub input: PathBuf,
    /// Column holding the first text of each pair
    #[arg(long, default_value = "a")]
    pub a: String,
    /// Column holding the second text of each pair
    #[arg(long, default_value = "b")]
    pub b: String,
    /// Output Parquet file (every input column plus the model's outputs)
    #[arg(long)]
    pub output: PathBuf,
    /// Also add `is_paraphrase` (score ≥ THRESHOLD) for a score model
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Rows read per record batch
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// What a score job did.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    /// Rows written.
    pub rows: u64,
    /// Rows with a null text (null outputs).
    pub null_rows: u64,
    /// Pairs cut to the model's maximum length.
    pub truncated: u64,
    /// Distinct pairs answered from the score cache (seen earlier in the file).
    pub cache_hits: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Runs the job.
pub fn run(args: &ScoreArgs, model: &CrossEncoder) -> Result<ScoreSummary> {
    check_paths(
        &[FlagPath::new("--input", &args.input)],
        &[FlagPath::new("--output", &args.output)],
    )?;
    let input = args.input.display().to_string();
    let file =
        File::open(&args.input).map_err(|e| JobError::Usage(format!("--input {input}: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| JobError::input_parquet(&input, e))?;
    let total = builder.metadata().file_metadata().num_rows() as u64;
    let in_schema = builder.schema().clone();
    let columns = [
        columns::index_of(&in_schema, &args.a, &input)?,
        columns::index_of(&in_schema, &args.b, &input)?,
    ];
    let outputs = OutputColumns::for_model(model, args.threshold)?;
    let out_schema = columns::with_added(&in_schema, outputs.fields())?;
    let reader = builder
        .with_batch_size(args.batch_size.max(1))
        .build()
        .map_err(|e| JobError::input_parquet(&input, e))?;

    let output = args.output.display().to_string();
    let (pending, out_file) = OutputFile::create(&args.output)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(65_536))
        .build();
    let mut writer = ArrowWriter::try_new(out_file, out_schema.clone(), Some(properties))
        .map_err(|e| JobError::parquet(&output, e))?;

    let before = model.stats();
    let progress = PairProgress::new(Some(total), "scoring");
    for batch in reader {
        let batch = batch.map_err(|e| columns::read_error(&input, e))?;
        let a = columns::text_array(batch.column(columns[0]), &args.a, &input)?;
        let b = columns::text_array(batch.column(columns[1]), &args.b, &input)?;
        let mut arrays = batch.columns().to_vec();
        let predictions = model.predict(&Texts::from_array(&a)?, &Texts::from_array(&b)?)?;
        arrays.extend(outputs.arrays(&predictions)?);
        let out = RecordBatch::try_new(out_schema.clone(), arrays)?;
        writer
            .write(&out)
            .map_err(|e| JobError::parquet(&output, e))?;
        progress.inc(batch.num_rows() as u64);
    }
    writer.close().map_err(|e| JobError::parquet(&output, e))?;
    pending.commit()?;
    let elapsed = progress.finish();
    let stats = model.stats().since(&before);
    Ok(ScoreSummary {
        rows: stats.pairs,
        null_rows: stats.null_pairs,
        truncated: stats.truncated_pairs,
        cache_hits: stats.cache_hits,
        seconds: elapsed.as_secs_f64(),
    })
}
