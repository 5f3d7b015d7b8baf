//! Writing the dedupe results: the input rows with their cluster columns,
//! and the candidate pairs.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;

use super::candidates::Candidate;
use super::job::{DedupeArgs, Rows};
use crate::{JobError, Result};

pub(super) async fn write_output(
    ctx: &SessionContext,
    args: &DedupeArgs,
    rows: &Rows,
    cluster: &[usize],
    scores: &[Option<f32>],
) -> Result<()> {
    let df = ctx
        .read_parquet(&args.input, ParquetReadOptions::default())
        .await?;
    let input_schema = df.schema().as_arrow().clone();
    let added = [
        Field::new("cluster_id", DataType::Utf8, false),
        Field::new("is_duplicate", DataType::Boolean, false),
        Field::new("duplicate_of", DataType::Utf8, true),
        Field::new("match_score", DataType::Float32, true),
    ];
    let mut fields: Vec<Field> = input_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for field in &added {
        if input_schema.index_of(field.name()).is_ok() {
            return Err(JobError::ColumnExists(field.name().clone()));
        }
        fields.push(field.clone());
    }
    let schema = Arc::new(Schema::new(fields));
    let path = args.output.display().to_string();
    let file = std::fs::File::create(&args.output).map_err(|e| JobError::io(&path, e))?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None)
        .map_err(|e| JobError::parquet(&path, e))?;
    let mut offset = 0;
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let range = offset..offset + batch.num_rows();
        offset = range.end;
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(StringArray::from_iter_values(
            range.clone().map(|r| rows.ids[cluster[r]].as_str()),
        )));
        columns.push(Arc::new(BooleanArray::from_iter(
            range.clone().map(|r| Some(cluster[r] != r)),
        )));
        columns.push(Arc::new(StringArray::from_iter(
            range
                .clone()
                .map(|r| (cluster[r] != r).then(|| rows.ids[cluster[r]].as_str())),
        )));
        columns.push(Arc::new(Float32Array::from_iter(range.map(|r| scores[r]))) as ArrayRef);
        let out = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        writer
            .write(&out)
            .map_err(|e| JobError::parquet(&path, e))?;
    }
    writer.close().map_err(|e| JobError::parquet(&path, e))?;
    Ok(())
}

pub(super) fn write_pairs(
    path: &std::path::Path,
    rows: &Rows,
    found: &[Candidate],
    cross: &[f32],
    threshold: f32,
) -> Result<()> {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id_a",
            Arc::new(StringArray::from_iter_values(
                found.iter().map(|c| rows.ids[c.a].as_str()),
            )),
        ),
        (
            "id_b",
            Arc::new(StringArray::from_iter_values(
                found.iter().map(|c| rows.ids[c.b].as_str()),
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
            Arc::new(Float32Array::from_iter_values(cross.iter().copied())),
        ),
        (
            "verified",
            Arc::new(BooleanArray::from_iter(
                cross.iter().map(|&s| Some(s >= threshold)),
            )),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns)?;
    let name = path.display().to_string();
    let file = std::fs::File::create(path).map_err(|e| JobError::io(&name, e))?;
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| JobError::parquet(&name, e))?;
    writer
        .write(&batch)
        .map_err(|e| JobError::parquet(&name, e))?;
    writer.close().map_err(|e| JobError::parquet(&name, e))?;
    Ok(())
}
