//! Writing the dedupe results: the input rows with their cluster columns,
//! and the candidate pairs.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::parquet::arrow::ArrowWriter;

use super::args::DedupeArgs;
use super::candidates::Candidate;
use super::input::Rows;
use super::job::Assignment;
use crate::columns;
use crate::output_file::OutputFile;
use crate::{JobError, Result};

/// Writes every input row, as read, with cluster_id, is_duplicate,
/// duplicate_of and match_score, under a temporary name until committed. An
/// id column's null stays null in cluster_id / duplicate_of.
pub(super) fn write_output(
    args: &DedupeArgs,
    rows: &Rows,
    assignment: &Assignment,
) -> Result<OutputFile> {
    let added = [
        Field::new("cluster_id", DataType::Utf8, true),
        Field::new("is_duplicate", DataType::Boolean, false),
        Field::new("duplicate_of", DataType::Utf8, true),
        Field::new("match_score", DataType::Float32, true),
    ];
    let schema = columns::with_added(&rows.schema, &added)?;
    let path = args.output.display().to_string();
    let (pending, file) = OutputFile::create(&args.output)?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None)
        .map_err(|e| JobError::parquet(&path, e))?;
    let id = |row: usize| rows.ids[row].as_deref();
    let mut offset = 0;
    for batch in &rows.batches {
        let range = offset..offset + batch.num_rows();
        offset = range.end;
        let duplicate_of = &assignment.duplicate_of[range.clone()];
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(StringArray::from_iter(
            assignment.cluster[range.clone()].iter().map(|&r| id(r)),
        )));
        columns.push(Arc::new(BooleanArray::from_iter(
            duplicate_of.iter().map(|d| Some(d.is_some())),
        )));
        columns.push(Arc::new(StringArray::from_iter(
            duplicate_of.iter().map(|d| d.and_then(id)),
        )));
        columns.push(Arc::new(Float32Array::from(assignment.score[range].to_vec())) as ArrayRef);
        let out = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        writer
            .write(&out)
            .map_err(|e| JobError::parquet(&path, e))?;
    }
    writer.close().map_err(|e| JobError::parquet(&path, e))?;
    Ok(pending)
}

/// Writes the candidate pairs, under a temporary name until committed.
pub(super) fn write_pairs(
    path: &std::path::Path,
    rows: &Rows,
    found: &[Candidate],
    cross: &[Option<f32>],
    threshold: f32,
) -> Result<OutputFile> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id_a",
            Arc::new(StringArray::from_iter(
                found.iter().map(|c| rows.ids[c.a].as_deref()),
            )),
        ),
        (
            "id_b",
            Arc::new(StringArray::from_iter(
                found.iter().map(|c| rows.ids[c.b].as_deref()),
            )),
        ),
        (
            "row_a",
            Arc::new(UInt64Array::from_iter_values(
                found.iter().map(|c| c.a as u64),
            )),
        ),
        (
            "row_b",
            Arc::new(UInt64Array::from_iter_values(
                found.iter().map(|c| c.b as u64),
            )),
        ),
        (
            "bi_score",
            Arc::new(Float32Array::from_iter_values(
                found.iter().map(|c| c.cosine),
            )),
        ),
        (
            "cross_score",
            Arc::new(Float32Array::from_iter(cross.iter().copied())),
        ),
        (
            "verified",
            Arc::new(BooleanArray::from_iter(
                cross.iter().map(|s| s.map(|s| s >= threshold)),
            )),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns)?;
    let name = path.display().to_string();
    let (pending, file) = OutputFile::create(path)?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| JobError::parquet(&name, e))?;
    writer
        .write(&batch)
        .map_err(|e| JobError::parquet(&name, e))?;
    writer.close().map_err(|e| JobError::parquet(&name, e))?;
    Ok(pending)
}
