//! Helpers of the dedupe tests: input files, running the job, reading its output.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{Float32Type, Int64Type};
use clap::Parser;
use crossflow_pipelines::cli::{Cli, run};

use super::write_parquet;

/// Writes `(doc_id, body)` rows as one Parquet file.
pub fn write_texts(path: &Path, rows: &[(i64, Option<&str>)]) {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)));
    let texts: ArrayRef = Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1)));
    write_parquet(path, vec![("doc_id", ids), ("body", texts)]);
}

/// Runs `crossflow dedupe` with `args` in this process.
pub async fn dedupe(args: &[&str]) -> Result<(), String> {
    let cli = Cli::try_parse_from(
        ["crossflow", "dedupe"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .map_err(|e| e.to_string())?;
    run(cli, &mut Vec::new()).await.map_err(|e| e.to_string())
}

/// `doc_id` → `cluster_id` of an output.
pub fn clusters_of(batch: &RecordBatch) -> HashMap<i64, String> {
    let (ids, clusters) = (ints(batch, "doc_id"), strings(batch, "cluster_id"));
    (0..batch.num_rows())
        .map(|r| (ids.value(r), clusters.value(r).to_string()))
        .collect()
}

/// The flags of a run over `input`'s `body` and `doc_id` columns into `output`.
pub fn job_flags(input: &Path, output: &Path) -> Vec<String> {
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    vec![
        "--input".into(),
        path(input),
        "--text-column".into(),
        "body".into(),
        "--id-column".into(),
        "doc_id".into(),
        "--output".into(),
        path(output),
    ]
}

/// `dedupe` with owned flags and more borrowed ones.
pub async fn dedupe_with(args: &[String], more: &[&str]) -> Result<(), String> {
    let all: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect();
    dedupe(&all).await
}

/// A string column of `batch`.
pub fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch.column_by_name(name).unwrap().as_string::<i32>()
}

/// A Float32 column of `batch`.
pub fn floats<'a>(batch: &'a RecordBatch, name: &str) -> &'a Float32Array {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float32Type>()
}

/// An Int64 column of `batch`.
pub fn ints<'a>(batch: &'a RecordBatch, name: &str) -> &'a Int64Array {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Int64Type>()
}

/// A Boolean column of `batch`.
pub fn booleans<'a>(batch: &'a RecordBatch, name: &str) -> &'a BooleanArray {
    batch.column_by_name(name).unwrap().as_boolean()
}
