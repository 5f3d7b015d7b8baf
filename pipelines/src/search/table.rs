//! The corpus and the queries as read: an id column and a text column of a
//! Parquet file, in file order, ids unique and never null.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, LargeStringArray};
use datafusion::arrow::compute::{can_cast_types, cast, concat};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{DataFrame, ParquetReadOptions};

use crate::{JobError, Result, columns};

/// Which columns to read, and the flags that named them (for errors).
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    pub id_flag: &'static str,
    pub id: &'a str,
    pub text_flag: &'static str,
    pub text: &'a str,
}

/// The rows of a file's id and text columns.
#[derive(Debug)]
pub struct TextTable {
    /// The id column as stored (any scalar type).
    pub ids: ArrayRef,
    /// The texts, null where a row has none.
    pub texts: LargeStringArray,
}

impl TextTable {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The rows with a text to embed: not null, not blank.
    pub fn with_text(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&r| self.texts.is_valid(r) && !self.texts.value(r).trim().is_empty())
            .collect()
    }

    /// The text of `row` (empty where null).
    pub fn text(&self, row: usize) -> &str {
        if self.texts.is_valid(row) {
            self.texts.value(row)
        } else {
            ""
        }
    }
}

/// The type of the id column of `columns` in the Parquet file `path`, as
/// [`read`] reads it (nothing but the file's schema is read); errors as
/// [`read`]'s.
pub async fn id_type(path: &str, columns: Columns<'_>) -> Result<DataType> {
    Ok(open(path, columns).await?.1)
}

/// The file `path` in file order, and the types of its id and text columns
/// once checked.
async fn open(path: &str, columns: Columns<'_>) -> Result<(DataFrame, DataType, DataType)> {
    let ctx = crate::sql::file_order_session();
    let frame = ctx
        .read_parquet(path, ParquetReadOptions::default())
        .await?;
    let schema = frame.schema().inner().clone();
    let field = |flag: &str, name: &str| {
        schema.field_with_name(name).cloned().map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            JobError::InvalidData(format!(
                "{flag} {name:?}: no such column in {path}; its columns are: {}",
                names.join(", ")
            ))
        })
    };
    let id_type = field(columns.id_flag, columns.id)?.data_type().clone();
    if id_type.is_nested() || !can_cast_types(&id_type, &DataType::Utf8) {
        return Err(wrong_type(
            columns.id_flag,
            columns.id,
            path,
            &id_type,
            "a scalar id",
        ));
    }
    let text_type = field(columns.text_flag, columns.text)?.data_type().clone();
    if !(columns::is_text(&text_type) || text_type.is_null()) {
        return Err(wrong_type(
            columns.text_flag,
            columns.text,
            path,
            &text_type,
            "strings",
        ));
    }
    Ok((frame, id_type, text_type))
}

/// Reads `columns` of the Parquet file `path` in file order. A missing
/// column, a text column that holds no strings, an id column that is not a
/// scalar, a null id or an id on two rows is an error naming the flag.
pub async fn read(path: &str, columns: Columns<'_>) -> Result<TextTable> {
    let (frame, id_type, text_type) = open(path, columns).await?;
    let batches = frame
        .select_columns(&[columns.id, columns.text])?
        .collect()
        .await?;
    let column = |index: usize, data_type: &DataType| -> Result<ArrayRef> {
        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(index).as_ref()).collect();
        Ok(match parts.is_empty() {
            true => datafusion::arrow::array::new_empty_array(data_type),
            false => concat(&parts)?,
        })
    };
    let ids = column(0, &id_type)?;
    let texts = cast(&column(1, &text_type)?, &DataType::LargeUtf8)?;
    refuse_bad_ids(&ids, path, columns)?;
    Ok(TextTable {
        ids,
        texts: texts.as_string::<i64>().clone(),
    })
}

fn wrong_type(flag: &str, name: &str, path: &str, found: &DataType, expected: &str) -> JobError {
    JobError::InvalidData(format!(
        "{flag} {name:?}: column of {path} has type {found}; expected {expected}"
    ))
}

/// Ids name rows in the output: none may be null or on two rows.
pub fn refuse_bad_ids(ids: &ArrayRef, path: &str, columns: Columns<'_>) -> Result<()> {
    let (flag, name) = (columns.id_flag, columns.id);
    if ids.null_count() > 0 {
        return Err(JobError::InvalidData(format!(
            "{flag} {name:?}: {} rows of {path} have a null id; give every row one",
            ids.null_count()
        )));
    }
    let strings = cast(ids, &DataType::Utf8)?;
    let strings = strings.as_string::<i32>();
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(strings.len());
    for (row, id) in strings.iter().enumerate() {
        let id = id.unwrap_or_default();
        if let Some(first) = seen.insert(id, row) {
            return Err(JobError::InvalidData(format!(
                "{flag} {name:?}: id {id:?} is on rows {first} and {row} of {path}; ids must be unique"
            )));
        }
    }
    Ok(())
}
