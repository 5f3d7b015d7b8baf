//! `crossflow_dedupe_search(index, first, end, k, min_cosine_bits)`: the
//! candidate search of packed rows `first..end` of the search index file
//! `index` ([`crate::dedupe::index_file`]), as a cluster task runs it. Each
//! row gives a list of `{a, b, cosine}` (original rows, `a < b`): the top
//! `k` neighbours with cosine ≥ `f32::from_bits(min_cosine_bits)`. An
//! executor keeps the last index it read, for the next tasks over it; with
//! `--data-root`, an index outside the roots is refused.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crossflow_cluster::DataRoots;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, ListArray, StructArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int64Type, UInt64Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::dedupe::candidates::Candidate;
use crate::dedupe::index::SearchIndex;
use crate::dedupe::index_file;

/// The SQL name of the function.
pub const SEARCH: &str = "crossflow_dedupe_search";

/// The search function of one node; `roots` bound what it may read.
#[derive(Debug)]
pub struct SearchUdf {
    signature: Signature,
    roots: Option<DataRoots>,
}

impl PartialEq for SearchUdf {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SearchUdf {}

impl std::hash::Hash for SearchUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        SEARCH.hash(state);
    }
}

/// The search function, reading index files under `roots` only (anywhere
/// when `None`).
pub fn search_udf(roots: Option<DataRoots>) -> ScalarUDF {
    ScalarUDF::new_from_impl(SearchUdf {
        signature: Signature::user_defined(Volatility::Volatile),
        roots,
    })
}

/// The type of a row's result: a list of [`candidate_field`]s.
fn candidates_type() -> DataType {
    DataType::List(candidate_field())
}

fn candidate_field() -> Arc<Field> {
    Arc::new(Field::new(
        "item",
        DataType::Struct(candidate_fields()),
        false,
    ))
}

fn candidate_fields() -> Fields {
    Fields::from(vec![
        Field::new("a", DataType::UInt64, false),
        Field::new("b", DataType::UInt64, false),
        Field::new("cosine", DataType::Float32, false),
    ])
}

impl ScalarUDFImpl for SearchUdf {
    fn name(&self) -> &str {
        SEARCH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(candidates_type())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 5 {
            return plan_err!(
                "{SEARCH} takes (index, first, end, k, min_cosine_bits), got {} arguments",
                arg_types.len()
            );
        }
        Ok(vec![
            DataType::Utf8,
            DataType::UInt64,
            DataType::UInt64,
            DataType::Int64,
            DataType::Int64,
        ])
    }

    fn invoke_with_args(&self, call: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&call.args)?;
        let found = crossflow_udfs::off_async_threads(|| self.search_rows(&arrays))?;
        Ok(ColumnarValue::Array(found))
    }
}

impl SearchUdf {
    /// One list of candidates per row of the arguments.
    fn search_rows(&self, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        let paths = arrays[0].as_string::<i32>();
        let (firsts, ends) = (
            arrays[1].as_primitive::<UInt64Type>(),
            arrays[2].as_primitive::<UInt64Type>(),
        );
        let (ks, mins) = (
            arrays[3].as_primitive::<Int64Type>(),
            arrays[4].as_primitive::<Int64Type>(),
        );
        let mut lists: Vec<Vec<Candidate>> = Vec::with_capacity(paths.len());
        for row in 0..paths.len() {
            let path = Path::new(paths.value(row));
            if let Some(roots) = &self.roots {
                roots.check_read(path)?;
            }
            let index = load(path)?;
            let range = firsts.value(row) as usize..ends.value(row) as usize;
            if range.start > range.end || range.end > index.searchable() {
                return exec_err!(
                    "{SEARCH}: rows {range:?} of {}: the index has {} rows",
                    path.display(),
                    index.searchable()
                );
            }
            let (k, min) = (
                ks.value(row).max(0) as usize,
                f32::from_bits(mins.value(row) as u32),
            );
            lists.push(index.search(range, k, min));
        }
        Ok(Arc::new(to_list(&lists)?))
    }
}

/// The candidates of each row as a list array.
fn to_list(lists: &[Vec<Candidate>]) -> Result<ListArray> {
    let all = lists.iter().flatten();
    let a: UInt64Array = all.clone().map(|c| c.a as u64).collect();
    let b: UInt64Array = all.clone().map(|c| c.b as u64).collect();
    let cosine: Float32Array = all.map(|c| c.cosine).collect();
    let items = StructArray::try_new(
        candidate_fields(),
        vec![Arc::new(a), Arc::new(b), Arc::new(cosine)],
        None,
    )?;
    let offsets = OffsetBuffer::from_lengths(lists.iter().map(Vec::len));
    Ok(ListArray::try_new(
        candidate_field(),
        offsets,
        Arc::new(items),
        None,
    )?)
}

/// The candidates of the lists [`search_udf`] returned, in row order.
pub fn candidates_of(list: &ListArray) -> Vec<Candidate> {
    let items = list.values().as_struct();
    let a = items.column(0).as_primitive::<UInt64Type>();
    let b = items.column(1).as_primitive::<UInt64Type>();
    let cosine = items
        .column(2)
        .as_primitive::<datafusion::arrow::datatypes::Float32Type>();
    let (start, end) = (
        list.value_offsets()[0] as usize,
        list.value_offsets()[list.len()] as usize,
    );
    (start..end)
        .map(|i| Candidate {
            a: a.value(i) as usize,
            b: b.value(i) as usize,
            cosine: cosine.value(i),
        })
        .collect()
}

/// The index last read by this process, with the file's modification time
/// and length when read.
type Loaded = (PathBuf, Option<SystemTime>, u64, Arc<SearchIndex>);

static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// The index at `path`: the one kept if the file is unchanged, else read
/// (once: tasks arriving meanwhile wait for it).
fn load(path: &Path) -> Result<Arc<SearchIndex>> {
    let external = |e: index_file::IndexFileError| DataFusionError::External(Box::new(e));
    let meta = std::fs::metadata(path).map_err(|source| {
        external(index_file::IndexFileError::Io {
            path: path.display().to_string(),
            source,
        })
    })?;
    let (modified, len) = (meta.modified().ok(), meta.len());
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((kept, m, l, index)) = loaded.as_ref()
        && kept == path
        && *m == modified
        && *l == len
    {
        return Ok(Arc::clone(index));
    }
    // The one kept goes first: two indexes need not fit at once.
    *loaded = None;
    let index = Arc::new(index_file::read(path).map_err(external)?);
    *loaded = Some((path.to_path_buf(), modified, len, Arc::clone(&index)));
    Ok(index)
}
