//! Pairs written as Parquet tables for the job benchmarks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

/// Writes the pairs as one Parquet file and as a table of `files` files
/// (`pairs/part-N.parquet`), ids numbered from 0 in both.
pub fn write_pairs(
    pairs: &[(String, String)],
    files: usize,
    dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let single = dir.join("pairs.parquet");
    write_parquet(pairs, 0, &single)?;
    let table = dir.join("pairs");
    std::fs::create_dir(&table)?;
    let per_file = pairs.len().div_ceil(files);
    for (i, chunk) in pairs.chunks(per_file).enumerate() {
        write_parquet(
            chunk,
            (i * per_file) as i64,
            &table.join(format!("part-{i}.parquet")),
        )?;
    }
    Ok((single, table))
}

/// The SQL job the job benchmarks time: every pair of the table
/// [`write_pairs`] made scored with `cross_score` and written to `out` with
/// `COPY ... TO`, over `partitions` when given (a local session's
/// `target_partitions`).
pub fn copy_job(table: &Path, out: &Path, partitions: Option<usize>) -> Vec<String> {
    let set = partitions.map(|n| format!("SET datafusion.execution.target_partitions = {n}"));
    set.into_iter()
        .chain([
            format!(
                "CREATE EXTERNAL TABLE pairs STORED AS PARQUET LOCATION '{}/'",
                table.display()
            ),
            format!(
                "COPY (SELECT id, cross_score(a, b) AS s FROM pairs) TO '{}' STORED AS PARQUET",
                out.display()
            ),
        ])
        .collect()
}

fn write_parquet(pairs: &[(String, String)], first_id: i64, path: &Path) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("a", DataType::Utf8, false),
        Field::new("b", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                first_id..first_id + pairs.len() as i64,
            )),
            Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| &p.0))),
            Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| &p.1))),
        ],
    )?;
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
