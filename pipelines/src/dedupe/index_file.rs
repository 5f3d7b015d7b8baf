//! A [`SearchIndex`] as an Arrow IPC file, for a cluster's executors: one
//! row per packed position with its original `row`, the lists it `probes`
//! (its own list first) and its `vector`; the number of lists in the
//! schema's metadata.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array,
    UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema, UInt32Type, UInt64Type};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;

use ndarray::Array2;

use super::index::SearchIndex;

/// Schema metadata key holding the number of lists.
const LISTS: &str = "crossflow.lists";
/// Rows per record batch written.
const BATCH_ROWS: usize = 16_384;

/// Why an index file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    #[error("search index {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("search index {path}: {source}")]
    Arrow { path: String, source: ArrowError },
    #[error("search index {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Writes `index` (every row searchable) to `path`.
pub fn write(index: &SearchIndex, path: &Path) -> Result<(), IndexFileError> {
    if index.searchable() != index.source().len() {
        return Err(invalid(
            path,
            "every row of a cluster's search index must be searchable",
        ));
    }
    let schema = Arc::new(schema(index.width(), index.dim(), index.lists()));
    let batches = (0..index.source().len()).step_by(BATCH_ROWS).map(|start| {
        batch(
            index,
            &schema,
            start..(start + BATCH_ROWS).min(index.source().len()),
        )
    });
    write_file(path, &schema, batches)
}

/// Reads the index written to `path`.
pub fn read(path: &Path) -> Result<SearchIndex, IndexFileError> {
    let reader = open(path)?;
    let schema = reader.schema();
    let (width, dim) = match (widths(&schema, "probes"), widths(&schema, "vector")) {
        (Some(width), Some(dim)) if same_shape(&schema) => (width, dim),
        _ => return Err(invalid(path, "not a crossflow search index")),
    };
    let lists: usize = schema
        .metadata()
        .get(LISTS)
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| invalid(path, format!("no {LISTS} in the schema's metadata")))?;
    let (mut source, mut probes, mut packed) = (Vec::new(), Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.map_err(arrow(path))?;
        let rows = batch.column(0).as_primitive::<UInt64Type>();
        source.extend(rows.values().iter().map(|&r| r as usize));
        probes.extend(list_values::<UInt32Type>(batch.column(1)));
        packed.extend(list_values::<Float32Type>(batch.column(2)));
    }
    SearchIndex::from_parts(source, probes, width, lists, packed, dim)
        .map_err(|reason| invalid(path, reason))
}

/// Writes IVF `centroids` (one per row) to `path`, one column `centroid`.
pub fn write_centroids(centroids: &Array2<f32>, path: &Path) -> Result<(), IndexFileError> {
    let dim = centroids.ncols();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "centroid",
        list_type(DataType::Float32, dim),
        false,
    )]));
    let values = Float32Array::from_iter_values(centroids.iter().copied());
    let column = list_array(Arc::new(values), dim, DataType::Float32);
    let batch = column.and_then(|c| RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(c)]));
    write_file(path, &schema, std::iter::once(batch))
}

/// Reads centroids written by [`write_centroids`].
pub fn read_centroids(path: &Path) -> Result<Array2<f32>, IndexFileError> {
    let reader = open(path)?;
    let schema = reader.schema();
    let dim = widths(&schema, "centroid").filter(|&dim| {
        schema.fields().len() == 1
            && schema.field(0).data_type() == &list_type(DataType::Float32, dim)
    });
    let Some(dim) = dim else {
        return Err(invalid(
            path,
            "not a file of IVF centroids (one column of float vectors)",
        ));
    };
    let mut values = Vec::new();
    for batch in reader {
        let batch = batch.map_err(arrow(path))?;
        values.extend(list_values::<Float32Type>(batch.column(0)));
    }
    Array2::from_shape_vec((values.len() / dim.max(1), dim), values)
        .map_err(|e| invalid(path, e.to_string()))
}

/// Writes `batches` of `schema` to a new Arrow IPC file at `path`.
fn write_file(
    path: &Path,
    schema: &Arc<Schema>,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
) -> Result<(), IndexFileError> {
    let file = File::create(path).map_err(io(path))?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), schema).map_err(arrow(path))?;
    for batch in batches {
        writer
            .write(&batch.map_err(arrow(path))?)
            .map_err(arrow(path))?;
    }
    let buffered = writer.into_inner().map_err(arrow(path))?;
    buffered
        .into_inner()
        .map_err(|e| io(path)(e.into_error()))?;
    Ok(())
}

/// A reader of the Arrow IPC file at `path`.
fn open(path: &Path) -> Result<FileReader<BufReader<File>>, IndexFileError> {
    let file = File::open(path).map_err(io(path))?;
    FileReader::try_new(BufReader::new(file), None).map_err(arrow(path))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> IndexFileError + '_ {
    move |source| IndexFileError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn arrow(path: &Path) -> impl Fn(ArrowError) -> IndexFileError + '_ {
    move |source| IndexFileError::Arrow {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> IndexFileError {
    IndexFileError::Invalid {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn schema(width: usize, dim: usize, lists: usize) -> Schema {
    Schema::new(vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("probes", list_type(DataType::UInt32, width), false),
        Field::new("vector", list_type(DataType::Float32, dim), false),
    ])
    .with_metadata(HashMap::from([(LISTS.to_string(), lists.to_string())]))
}

/// Whether `schema` has the columns of [`schema`], whatever the list sizes.
fn same_shape(found: &Schema) -> bool {
    match (widths(found, "probes"), widths(found, "vector")) {
        (Some(width), Some(dim)) => found.fields() == schema(width, dim, 0).fields(),
        _ => false,
    }
}

/// The size of the fixed-size list column `name`.
fn widths(schema: &Schema, name: &str) -> Option<usize> {
    match schema.field_with_name(name).ok()?.data_type() {
        DataType::FixedSizeList(_, size) => usize::try_from(*size).ok(),
        _ => None,
    }
}

/// Lists of `size` non-null `item`s.
fn list_type(item: DataType, size: usize) -> DataType {
    DataType::FixedSizeList(item_field(item), size as i32)
}

fn item_field(item: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", item, false))
}

/// `values` cut into lists of `size` (see [`list_type`]).
fn list_array(
    values: ArrayRef,
    size: usize,
    item: DataType,
) -> Result<FixedSizeListArray, ArrowError> {
    FixedSizeListArray::try_new(item_field(item), size as i32, values, None)
}

fn batch(
    index: &SearchIndex,
    schema: &Arc<Schema>,
    rows: std::ops::Range<usize>,
) -> Result<RecordBatch, ArrowError> {
    let (width, dim) = (index.width(), index.dim());
    let source: UInt64Array = index.source()[rows.clone()]
        .iter()
        .map(|&r| r as u64)
        .collect();
    let probes = UInt32Array::from(index.probes()[rows.start * width..rows.end * width].to_vec());
    let vectors = Float32Array::from(index.packed()[rows.start * dim..rows.end * dim].to_vec());
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(source),
            Arc::new(list_array(Arc::new(probes), width, DataType::UInt32)?),
            Arc::new(list_array(Arc::new(vectors), dim, DataType::Float32)?),
        ],
    )
}

/// The values of a fixed-size list column, row after row.
fn list_values<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    column: &ArrayRef,
) -> Vec<T::Native> {
    let list = column.as_fixed_size_list();
    let size = list.value_length() as usize;
    list.values().as_primitive::<T>().values()[..list.len() * size].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::ivf::{IvfShape, ivf_index};

    #[test]
    fn an_index_reads_back_as_written_and_searches_alike() {
        let (n, dim) = (BATCH_ROWS + 300, 4);
        let vectors: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5)
            .collect();
        let rows: Vec<usize> = (0..n).collect();
        let shape = IvfShape {
            lists: 12,
            probes: 3,
        };
        let index = ivf_index(vectors, dim, &vec![true; n], &rows, shape, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.arrow");
        write(&index, &path).unwrap();
        let read_back = read(&path).unwrap();
        assert_eq!(read_back, index);
        assert_eq!(
            read_back.search(0..500, 3, 0.0),
            index.search(0..500, 3, 0.0)
        );
    }

    #[test]
    fn a_file_that_is_not_an_index_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.arrow");
        std::fs::write(&path, b"not arrow").unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("other.arrow"), "{error}");

        // The columns' names with other types: refused, not read.
        let batch = RecordBatch::try_from_iter([
            ("row", Arc::new(Float32Array::from(vec![1.0])) as ArrayRef),
            ("probes", Arc::new(UInt32Array::from(vec![0]))),
            ("vector", Arc::new(Float32Array::from(vec![0.5]))),
        ])
        .unwrap();
        let mut writer =
            FileWriter::try_new(File::create(&path).unwrap(), &batch.schema()).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(error.contains("not a crossflow search index"), "{error}");
    }
}
