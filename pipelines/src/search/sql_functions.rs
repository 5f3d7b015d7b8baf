//! `crossflow search` as SQL table functions, in any session with a
//! bi-encoder (`crossflow sql`):
//!
//! - `search('INDEX_DIR', 'query text', top_k, top_n [, fusion])`: one query;
//! - `search_queries('INDEX_DIR', 'table', top_k, top_n [, fusion])`: every
//!   row of a registered table with columns `query_id` and `query`.
//!
//! Both give the columns of `crossflow search` (the single query without
//! `query_id`): the first stage runs when the table is scanned, and the
//! second is `crossflow rerank`'s SQL, planned with the session's own
//! `cross_score`. The index is refused when its bi-encoder's fingerprint is
//! not the session's, or its corpus changed: an index or corpus that changed
//! since this process read it is read and checked again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use crossflow::BiEncoder;
use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, LargeStringArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableType, ViewTable};
use datafusion::execution::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::args::{DEFAULT_FUSION, DEFAULT_IVF_PROBES, SearchMode};
use super::first_stage::{Searching, candidates_schema, query_candidates, rerank_of_candidates};
use super::index_dir::{CorpusIndex, Manifest};
use super::job::{check_bi_encoder, doc_columns, open_indexed};
use super::table::{self, Columns, TextTable, refuse_bad_ids};
use crate::JobError;
use crate::progress::Laps;
use crate::rerank::{rerank_params, rerank_sql};

type DfResult<T> = datafusion::error::Result<T>;

/// Registers `search` and `search_queries` on `bi` in `ctx`.
pub fn register_search_functions(ctx: &SessionContext, bi: &Arc<BiEncoder>) {
    for (name, form) in [("search", Form::Text), ("search_queries", Form::Table)] {
        let function = SearchFunction {
            bi: Arc::clone(bi),
            form,
        };
        ctx.register_udtf(name, Arc::new(function));
    }
}

/// Whether the second argument is a query's text or a table of queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Text,
    Table,
}

#[derive(Debug)]
struct SearchFunction {
    bi: Arc<BiEncoder>,
    form: Form,
}

/// One call's arguments.
#[derive(Debug, Clone)]
struct Call {
    index: PathBuf,
    /// The query text, or the name of the table of queries.
    queries: String,
    top_k: usize,
    top_n: usize,
    fusion: f64,
}

impl TableFunctionImpl for SearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let call = parse(self.form, args.exprs())?;
        let state = session_state(args.session())?;
        let manifest = Manifest::read(&call.index).map_err(external)?;
        check_bi_encoder(&manifest, &self.bi, Some(&call.index)).map_err(external)?;
        let query_id = match self.form {
            Form::Text => DataType::Int64,
            Form::Table => column_type(state, &call.queries, "query_id")?,
        };
        let doc_id = corpus_column_type(&manifest)?;
        let candidates = Arc::new(Candidates {
            bi: Arc::clone(&self.bi),
            form: self.form,
            call: call.clone(),
            manifest,
            schema: candidates_schema(&query_id, &doc_id),
        });
        second_stage(state, candidates, self.form, &call)
    }
}

/// The rerank SQL over `candidates`, with the session's functions, as a view.
fn second_stage(
    state: &SessionState,
    candidates: Arc<Candidates>,
    form: Form,
    call: &Call,
) -> DfResult<Arc<dyn TableProvider>> {
    let ctx = SessionContext::new_with_config(state.config().clone());
    for function in state.scalar_functions().values() {
        ctx.register_udf(function.as_ref().clone());
    }
    ctx.register_table("candidates", candidates)?;
    let rerank = rerank_of_candidates(PathBuf::new(), call.top_n, call.fusion, Default::default());
    let ranked = rerank_sql(&rerank).map_err(external)?;
    let sql = match form {
        Form::Text => format!("SELECT * EXCLUDE (query_id) FROM ({ranked}) ORDER BY rank"),
        Form::Table => ranked,
    };
    // Planning reads nothing: the candidates are computed when scanned.
    let frame =
        futures::executor::block_on(ctx.sql(&sql))?.with_param_values(rerank_params(&rerank))?;
    Ok(Arc::new(ViewTable::new(frame.logical_plan().clone(), None)))
}

/// The candidates of a call: computed when scanned.
#[derive(Debug)]
struct Candidates {
    bi: Arc<BiEncoder>,
    form: Form,
    call: Call,
    manifest: Manifest,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Candidates {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let queries = match self.form {
            Form::Text => TextTable {
                ids: Arc::new(Int64Array::from(vec![0])),
                texts: LargeStringArray::from(vec![self.call.queries.as_str()]),
            },
            Form::Table => {
                let query_id = self.schema.field(0).data_type();
                read_queries(session_state(state)?, &self.call.queries, query_id).await?
            }
        };
        let loaded = loaded(&self.call.index, &self.manifest).await?;
        let (index, docs) = (&loaded.0, &loaded.1);
        let searching = Searching {
            top_k: self.call.top_k,
            mode: SearchMode::Auto,
            probes: DEFAULT_IVF_PROBES as usize,
        };
        let (batch, _) = crossflow_udfs::off_async_threads(|| {
            let laps = &mut Laps::default();
            query_candidates(&self.bi, index, (&queries, docs), searching, laps)
        })
        .map_err(external)?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())?;
        let plan = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?;
        Ok(plan)
    }
}

/// An index opened in this process, with what it was opened from.
struct Opened {
    manifest: Manifest,
    corpus: Option<(u64, std::time::SystemTime)>,
    loaded: Loaded,
}

type Loaded = Arc<(CorpusIndex, TextTable)>;

/// Indexes opened in this process, by directory: each read once, read again
/// when the index or its corpus file changed.
static OPENED: Mutex<Option<HashMap<PathBuf, Opened>>> = Mutex::new(None);

/// The corpus file's size and modification time.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// The index in `dir` (with `manifest`, as read when the query was planned)
/// and its corpus, checked and read when first used or changed.
async fn loaded(dir: &Path, manifest: &Manifest) -> DfResult<Loaded> {
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let corpus = stamp(&manifest.corpus.path);
    let fresh = |opened: &Opened| opened.manifest == *manifest && opened.corpus == corpus;
    {
        let mut cache = OPENED.lock().expect("index cache");
        if let Some(opened) = cache
            .get_or_insert_with(HashMap::new)
            .get(&key)
            .filter(|o| fresh(o))
        {
            return Ok(Arc::clone(&opened.loaded));
        }
    }
    let (index, docs) = open_indexed(dir, None).await.map_err(external)?;
    if index.manifest != *manifest {
        return Err(DataFusionError::Plan(format!(
            "search: the index {} changed while the query was planned; run it again",
            dir.display()
        )));
    }
    let loaded: Loaded = Arc::new((index, docs));
    let opened = Opened {
        manifest: manifest.clone(),
        corpus,
        loaded: Arc::clone(&loaded),
    };
    OPENED
        .lock()
        .expect("index cache")
        .get_or_insert_with(HashMap::new)
        .insert(key, opened);
    Ok(loaded)
}

/// The `query_id` and `query` columns of the session's table `name`;
/// null or repeated ids are refused.
async fn read_queries(
    state: &SessionState,
    name: &str,
    query_id: &DataType,
) -> DfResult<TextTable> {
    let ctx = SessionContext::new_with_state(state.clone());
    let batches = ctx
        .table(name)
        .await?
        .select_columns(&["query_id", "query"])?
        .collect()
        .await?;
    let schema = match batches.first() {
        Some(first) => first.schema(),
        None => Arc::new(Schema::new(vec![
            Field::new("query_id", query_id.clone(), true),
            Field::new("query", DataType::Utf8, true),
        ])),
    };
    let all = concat_batches(&schema, &batches)?;
    let columns = Columns {
        id_flag: "search_queries: column",
        id: "query_id",
        text_flag: "search_queries: column",
        text: "query",
    };
    refuse_bad_ids(all.column(0), name, columns).map_err(external)?;
    let texts: ArrayRef = cast(all.column(1), &DataType::LargeUtf8)?;
    Ok(TextTable {
        ids: Arc::clone(all.column(0)),
        texts: texts.as_string::<i64>().clone(),
    })
}

/// The type of column `column` of the session's table `name`.
fn column_type(state: &SessionState, name: &str, column: &str) -> DfResult<DataType> {
    let ctx = SessionContext::new_with_state(state.clone());
    // Looking up a registered table reads no data.
    let table = futures::executor::block_on(ctx.table(name))?;
    let field = table.schema().field_with_unqualified_name(column).map_err(|_| {
        DataFusionError::Plan(format!(
            "search_queries: table {name} has no column {column:?} (it needs query_id and query)"
        ))
    })?;
    Ok(field.data_type().clone())
}

/// The type of the index's document id column, as the corpus is read when
/// the table is scanned.
fn corpus_column_type(manifest: &Manifest) -> DfResult<DataType> {
    let path = manifest.corpus.path.display().to_string();
    let columns = doc_columns(&manifest.doc_id_column, &manifest.doc_column);
    // Reads the file's schema only.
    futures::executor::block_on(table::id_type(&path, columns)).map_err(external)
}

fn session_state(session: &dyn Session) -> DfResult<&SessionState> {
    session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("search: not a DataFusion session".into()))
}

/// The arguments: the index directory, the query text or table, top_k,
/// top_n and an optional fusion weight, as literals.
fn parse(form: Form, exprs: &[Expr]) -> DfResult<Call> {
    let (name, second) = match form {
        Form::Text => ("search", "query text"),
        Form::Table => ("search_queries", "table name"),
    };
    let usage = || {
        format!(
            "{name}('INDEX_DIR', '{second}', top_k, top_n [, fusion]): expected literal arguments"
        )
    };
    let literal = |i: usize| match exprs.get(i) {
        Some(Expr::Literal(value, _)) => Some(value.clone()),
        _ => None,
    };
    let text = |i: usize| match literal(i) {
        Some(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Some(s),
        _ => None,
    };
    let count = |i: usize| {
        literal(i)
            .and_then(|v| v.cast_to(&DataType::UInt64).ok())
            .and_then(|v| match v {
                ScalarValue::UInt64(Some(n)) if n > 0 => Some(n as usize),
                _ => None,
            })
    };
    let fusion = match literal(4) {
        None if exprs.len() == 4 => Some(DEFAULT_FUSION),
        Some(value) => match value.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(w))) if (0.0..=1.0).contains(&w) => Some(w),
            _ => None,
        },
        None => None,
    };
    match (text(0), text(1), count(2), count(3), fusion) {
        (Some(index), Some(queries), Some(top_k), Some(top_n), Some(fusion))
            if exprs.len() <= 5 && top_n <= top_k =>
        {
            Ok(Call {
                index: PathBuf::from(index),
                queries,
                top_k,
                top_n,
                fusion,
            })
        }
        _ => plan_err!(
            "{}; top_k and top_n at least 1, top_n at most top_k, fusion in [0, 1]",
            usage()
        ),
    }
}

fn external(error: JobError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}
