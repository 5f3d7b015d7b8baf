//! Finding and checking the input columns a job reads.

use std::sync::Arc;

use crossflow::Texts;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};

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

/// A text column as a string array the engine reads: Utf8, LargeUtf8 and
/// Utf8View as they are, dictionary strings and all-null columns cast; any
/// other type is an error naming the column.
pub fn text_array(column: &ArrayRef, name: &str, path: &str) -> Result<ArrayRef> {
    match column.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(Arc::clone(column)),
        DataType::Dictionary(_, value) if value.is_string() => Ok(cast(column.as_ref(), value)?),
        DataType::Null => Ok(cast(column.as_ref(), &DataType::Utf8)?),
        other => Err(JobError::ColumnType {
            column: name.to_string(),
            path: path.to_string(),
            found: other.to_string(),
            expected: "a string column (Utf8, LargeUtf8, Utf8View)",
        }),
    }
}

/// The texts of a checked text column, owned.
pub fn owned_texts(column: &ArrayRef) -> Result<Vec<Option<String>>> {
    let texts = Texts::from_array(column.as_ref())?;
    Ok((0..column.len())
        .map(|i| texts.get(i).map(str::to_owned))
        .collect())
}
