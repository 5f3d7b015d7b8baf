//! The dedupe job's input: every row read once, its text and id, and the
//! rows grouped by normalised text (exact duplicates).

use std::collections::HashMap;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::args::DedupeArgs;
use super::clusters::Representative;
use super::normalize::normalize;
use crate::columns;
use crate::{JobError, Result};

/// The input as read, with the texts and ids of its rows in the same order.
pub(super) struct Rows {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub texts: Vec<Option<String>>,
    pub ids: Vec<Option<String>>,
}

/// Rows grouped by normalised text (null and empty texts are in no group).
/// A group's head is the row embedded, verified and named for the whole group:
/// its first row, or its longest text under `--representative longest`.
pub(super) struct Groups {
    pub of_row: Vec<Option<usize>>,
    pub head: Vec<usize>,
    pub sizes: Vec<usize>,
}

/// The group of a row that was embedded (an invariant: candidates are group heads).
pub(super) fn group_of(groups: &Groups, row: usize) -> usize {
    groups.of_row[row].expect("candidate rows have a non-empty text")
}

/// Reads the whole input once; the output is these batches with columns added,
/// so every result row is attached to the row it was computed from.
pub(super) async fn read_rows(ctx: &SessionContext, args: &DedupeArgs) -> Result<Rows> {
    let df = ctx
        .read_parquet(&args.input, ParquetReadOptions::default())
        .await?;
    let schema = df.schema().inner().clone();
    let text_index = columns::index_of(&schema, &args.text_column, &args.input)?;
    let id_index = match &args.id_column {
        Some(column) => Some(columns::index_of(&schema, column, &args.input)?),
        None => None,
    };
    let mut rows = Rows {
        schema,
        batches: df.collect().await?,
        texts: Vec::new(),
        ids: Vec::new(),
    };
    for batch in &rows.batches {
        let text = columns::text_array(batch.column(text_index), &args.text_column, &args.input)?;
        rows.texts.extend(columns::owned_texts(&text)?);
        match id_index {
            Some(index) => {
                let ids = id_strings(batch.column(index), args)?;
                rows.ids
                    .extend(ids.as_string::<i32>().iter().map(|v| v.map(str::to_owned)));
            }
            None => {
                let start = rows.ids.len();
                rows.ids
                    .extend((start..start + batch.num_rows()).map(|i| Some(i.to_string())));
            }
        }
    }
    if args.id_column.is_some() {
        refuse_duplicate_ids(&rows.ids, args)?;
    }
    Ok(rows)
}

/// An id column as strings: any type with a text form (numbers, strings,
/// dates); nested types are refused, naming the column.
fn id_strings(column: &ArrayRef, args: &DedupeArgs) -> Result<ArrayRef> {
    let name = args.id_column.as_deref().unwrap_or_default();
    let data_type = column.data_type();
    if data_type.is_nested() || !can_cast_types(data_type, &DataType::Utf8) {
        return Err(JobError::ColumnType {
            column: name.to_string(),
            path: args.input.clone(),
            found: data_type.to_string(),
            expected: "a scalar id column (string, integer, date, ...)",
        });
    }
    Ok(cast(column, &DataType::Utf8)?)
}

/// Ids name clusters and matches, so two rows may not share one.
fn refuse_duplicate_ids(ids: &[Option<String>], args: &DedupeArgs) -> Result<()> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for (row, id) in ids.iter().enumerate() {
        let Some(id) = id.as_deref() else { continue };
        if let Some(first) = seen.insert(id, row) {
            return Err(JobError::InvalidData(format!(
                "{}: id {id:?} in column {:?} is on rows {first} and {row}; \
                 ids must be unique (or leave out --id-column to use row numbers)",
                args.input,
                args.id_column.as_deref().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// Groups rows whose normalised texts are equal, in order of first
/// appearance. Null and empty texts are in no group.
pub(super) fn exact_groups(texts: &[Option<String>], rule: Representative) -> Groups {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups = Groups {
        of_row: vec![None; texts.len()],
        head: Vec::new(),
        sizes: Vec::new(),
    };
    for (row, text) in texts.iter().enumerate() {
        let Some(key) = text.as_deref().map(normalize).filter(|k| !k.is_empty()) else {
            continue;
        };
        let group = *index.entry(key).or_insert_with(|| {
            groups.head.push(row);
            groups.sizes.push(0);
            groups.head.len() - 1
        });
        groups.sizes[group] += 1;
        groups.of_row[row] = Some(group);
        let chars = |r: usize| texts[r].as_ref().map_or(0, |t| t.chars().count());
        if rule == Representative::Longest && chars(row) > chars(groups.head[group]) {
            groups.head[group] = row;
        }
    }
    groups
}
