//! The dedupe job's input: every row read once, its text and id, and the
//! rows grouped by normalised text (exact duplicates).

use std::collections::HashMap;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crossflow::Texts;

use super::args::DedupeArgs;
use super::clusters::Representative;
use super::normalize::normalize;
use crate::columns;
use crate::{JobError, Result};

/// The input as read, with the ids of its rows in the same order and the
/// text column of each batch (read in place: see [`Rows::texts`]).
pub(super) struct Rows {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    text_arrays: Vec<ArrayRef>,
    pub ids: Vec<Option<String>>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The texts of every row, borrowed from the batches.
    pub fn texts(&self) -> Result<TextColumn<'_>> {
        let mut parts = Vec::with_capacity(self.text_arrays.len());
        let mut starts = Vec::with_capacity(self.text_arrays.len());
        let mut start = 0;
        for array in &self.text_arrays {
            parts.push(Texts::from_array(array.as_ref())?);
            starts.push(start);
            start += array.len();
        }
        Ok(TextColumn { parts, starts })
    }
}

/// The text column across the input's batches.
pub(super) struct TextColumn<'a> {
    parts: Vec<Texts<'a>>,
    /// The first row of each part.
    starts: Vec<usize>,
}

impl<'a> TextColumn<'a> {
    /// The text of `row`, `None` where it is null.
    pub fn get(&self, row: usize) -> Option<&'a str> {
        let part = self.starts.partition_point(|&start| start <= row) - 1;
        self.parts[part].get(row - self.starts[part])
    }

    /// The text of `row`, empty where it is null.
    pub fn text(&self, row: usize) -> &'a str {
        self.get(row).unwrap_or_default()
    }
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
        text_arrays: Vec::new(),
        ids: Vec::new(),
    };
    for batch in &rows.batches {
        let text = columns::text_array(batch.column(text_index), &args.text_column, &args.input)?;
        rows.text_arrays.push(text);
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
pub(super) fn exact_groups(texts: &TextColumn, rows: usize, rule: Representative) -> Groups {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups = Groups {
        of_row: vec![None; rows],
        head: Vec::new(),
        sizes: Vec::new(),
    };
    for row in 0..rows {
        let Some(key) = texts.get(row).map(normalize).filter(|k| !k.is_empty()) else {
            continue;
        };
        let group = *index.entry(key).or_insert_with(|| {
            groups.head.push(row);
            groups.sizes.push(0);
            groups.head.len() - 1
        });
        groups.sizes[group] += 1;
        groups.of_row[row] = Some(group);
        let chars = |r: usize| texts.text(r).chars().count();
        if rule == Representative::Longest && chars(row) > chars(groups.head[group]) {
            groups.head[group] = row;
        }
    }
    groups
}
