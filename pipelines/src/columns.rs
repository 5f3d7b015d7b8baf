//! Finding and checking the input columns a job reads.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::fs::File;
use std::path::Path;

use crate::{JobError, Result};

/// The index of column `name`, or an error listing the columns there are.
pub fn index_of(schema: &Schema, name: &str, path: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| JobError::MissingColumn {
        column: name.to_string(),
        path: path.to_string(),
        available: schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A text column as an array the engine reads: strings and dictionary
/// strings as they are (read without copying), an all-null column cast to
/// strings; any other type is an error naming the column.
pub fn text_array(column: &ArrayRef, name: &str, path: &str) -> Result<ArrayRef> {
    match column.data_type() {
        text if crossflow::is_text_type(text) => Ok(Arc::clone(column)),
        DataType::Null => Ok(cast(column.as_ref(), &DataType::Utf8)?),
        other => Err(not_text(name, path, other)),
    }
}

/// Checks that a column can hold text (strings, dictionary strings or
/// nulls), as [`text_array`] reads it; any other type is an error naming it.
pub fn check_text(field: &Field, path: &str) -> Result<()> {
    match field.data_type() {
        text if crossflow::is_text_type(text) || text.is_null() => Ok(()),
        other => Err(not_text(field.name(), path, other)),
    }
}

fn not_text(name: &str, path: &str, found: &DataType) -> JobError {
    JobError::ColumnType {
        column: name.to_string(),
        path: path.to_string(),
        found: found.to_string(),
        expected: crossflow::TEXT_TYPES,
    }
}

/// The error of a failed read of Parquet file `path`, naming the column
/// when the cause is text that is not UTF-8 (see [`not_utf8_error`]).
pub fn read_error(path: &str, source: ArrowError) -> JobError {
    not_utf8_error(Path::new(path), &source.to_string()).unwrap_or_else(|| JobError::Read {
        path: path.to_string(),
        source,
    })
}

/// When `message` says text is not UTF-8 and Parquet file `path` holds
/// such text, the error naming the file and its first such column (each
/// string column read alone).
pub fn not_utf8_error(path: &Path, message: &str) -> Option<JobError> {
    if !message.contains("UTF-8") {
        return None;
    }
    let open = || ParquetRecordBatchReaderBuilder::try_new(File::open(path).ok()?).ok();
    let builder = open()?;
    let fields = builder.schema().fields().clone();
    let column = fields.iter().enumerate().find_map(|(index, field)| {
        if !is_text(field.data_type()) {
            return None;
        }
        let builder = open()?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let mut reader = builder.with_projection(mask).build().ok()?;
        reader
            .any(|batch| batch.is_err())
            .then(|| field.name().clone())
    })?;
    Some(JobError::NotUtf8 {
        column,
        path: path.display().to_string(),
        message: message.to_string(),
    })
}

/// Whether a column of this type holds texts the jobs read: strings,
/// dictionary strings ([`crossflow::is_text_type`]), or all nulls.
pub fn is_text(data_type: &DataType) -> bool {
    crossflow::is_text_type(data_type) || *data_type == DataType::Null
}

/// `schema` with the `added` columns after its own (its metadata kept): the
/// output schema of every job that adds columns to its input. An added
/// column the input already has is an error.
pub fn with_added(schema: &Schema, added: &[Field]) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for field in added {
        if schema.index_of(field.name()).is_ok() {
            return Err(JobError::ColumnExists(field.name().clone()));
        }
        fields.push(field.clone());
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}
