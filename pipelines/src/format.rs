//! Printing record batches as a table, CSV or JSON lines.

use std::io::Write;

use clap::ValueEnum;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::Result;

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row (struct columns are not supported by CSV).
    Csv,
    /// One JSON object per row.
    Json,
}

/// Writes `batches` to `out` in `format`. Nothing is written for no rows,
/// except the table format's header.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    match format {
        OutputFormat::Table => {
            if batches.iter().all(|b| b.num_columns() == 0) {
                return Ok(());
            }
            writeln!(out, "{}", pretty_format_batches(batches)?)
                .map_err(|e| crate::JobError::io("stdout", e))?;
        }
        OutputFormat::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = LineDelimitedWriter::new(out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}
