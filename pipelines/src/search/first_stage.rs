//! The first stage: each query's top-k documents by cosine, as the table of
//! candidates the cross-encoder re-ranks.

use std::path::PathBuf;
use std::sync::Arc;

use crossflow::BiEncoder;
use datafusion::arrow::array::{ArrayRef, Float32Array, RecordBatch, UInt64Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use ndarray::{ArrayView2, s};

use super::args::{EXACT_LIMIT, SearchMode};
use super::build::threads;
use super::index_dir::CorpusIndex;
use super::table::TextTable;
use crate::Result;
use crate::dedupe::candidates::in_parallel;
use crate::dedupe::ivf::query_probes;
use crate::embedding::embed;
use crate::progress::Laps;
use crate::rerank::RerankArgs;
use crate::sql::ClusterArgs;

/// How many candidates a query gets, and how they are searched.
#[derive(Debug, Clone, Copy)]
pub struct Searching {
    pub top_k: usize,
    pub mode: SearchMode,
    /// Lists searched per query by IVF.
    pub probes: usize,
}

/// The candidates (see [`candidates`]) of every query of `queries` with a
/// text: embedded by `model`, searched in `index`; ends the laps `embed` and
/// `search`. Also returns the number of queries with a text.
pub fn query_candidates(
    model: &BiEncoder,
    index: &CorpusIndex,
    (queries, docs): (&TextTable, &TextTable),
    searching: Searching,
    laps: &mut Laps,
) -> Result<(RecordBatch, usize)> {
    let rows = queries.with_text();
    let texts: Vec<&str> = rows.iter().map(|&r| queries.text(r)).collect();
    let vectors = embed(model, &texts)?;
    laps.lap("embed");
    let found = nearest(index, &vectors, searching);
    let batch = candidates(queries, &rows, docs, &found)?;
    laps.lap("search");
    Ok((batch, rows.len()))
}

/// Each query's `k` nearest documents (corpus rows, cosine), best first
/// (equal cosines: lower row first). `queries` is row-major, the index's
/// width, L2-normalised.
fn nearest(index: &CorpusIndex, queries: &[f32], searching: Searching) -> Vec<Vec<(usize, f32)>> {
    // No more neighbours than documents: a heap per query is this big.
    let k = searching.top_k.min(index.manifest.indexed);
    let dim = index.manifest.dim;
    let n = queries.len() / dim;
    let queries = ArrayView2::from_shape((n, dim), queries).expect("queries are n × dim");
    let lists = index.manifest.lists;
    let exact = match searching.mode {
        SearchMode::Exact => true,
        SearchMode::Ivf => false,
        SearchMode::Auto => index.manifest.indexed <= EXACT_LIMIT,
    };
    let probes: Vec<u32> = match exact {
        true => (0..n).flat_map(|_| 0..lists as u32).collect(),
        false => query_probes(queries, &index.centroids, searching.probes, threads()),
    };
    let width = probes.len() / n.max(1);
    tracing::info!(exact, lists, probes = width, "candidate search");
    in_parallel(n, threads(), |range| {
        let block = queries.slice(s![range.clone(), ..]);
        let probes = &probes[range.start * width..range.end * width];
        index.index.nearest(block, probes, k, f32::NEG_INFINITY)
    })
}

/// The candidates as rows `query_id, query, doc_id, doc, bi_score`: for the
/// `i`-th of `query_rows`, the documents `found[i]`, in order. Ids keep
/// their type; texts are strings.
fn candidates(
    queries: &TextTable,
    query_rows: &[usize],
    docs: &TextTable,
    found: &[Vec<(usize, f32)>],
) -> Result<RecordBatch> {
    let pairs = found.iter().map(Vec::len).sum();
    let (mut query, mut doc) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    let mut cosine = Vec::with_capacity(pairs);
    for (&row, hits) in query_rows.iter().zip(found) {
        for &(doc_row, c) in hits {
            query.push(row as u64);
            doc.push(doc_row as u64);
            cosine.push(c);
        }
    }
    let (query, doc) = (UInt64Array::from(query), UInt64Array::from(doc));
    let text = |table: &TextTable, rows: &UInt64Array| -> Result<ArrayRef> {
        Ok(cast(&take(&table.texts, rows, None)?, &DataType::Utf8)?)
    };
    let schema = candidates_schema(queries.ids.data_type(), docs.ids.data_type());
    Ok(RecordBatch::try_new(
        schema,
        vec![
            take(&queries.ids, &query, None)?,
            text(queries, &query)?,
            take(&docs.ids, &doc, None)?,
            text(docs, &doc)?,
            Arc::new(Float32Array::from(cosine)),
        ],
    )?)
}

/// The columns of [`candidates`] for ids of these types.
pub fn candidates_schema(query_id: &DataType, doc_id: &DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query_id", query_id.clone(), true),
        Field::new("query", DataType::Utf8, true),
        Field::new("doc_id", doc_id.clone(), true),
        Field::new("doc", DataType::Utf8, true),
        Field::new("bi_score", DataType::Float32, true),
    ]))
}

/// How `crossflow rerank` ranks a table of [`candidates`]: the cosine as
/// first stage, fused with weight `fusion`, the best `top_n` of each query
/// written to `output`.
pub fn rerank_of_candidates(
    output: PathBuf,
    top_n: usize,
    fusion: f64,
    cluster: ClusterArgs,
) -> RerankArgs {
    RerankArgs {
        input: String::new(),
        output,
        top_k: top_n,
        query_id_column: "query_id".into(),
        query_column: "query".into(),
        doc_id_column: "doc_id".into(),
        doc_column: "doc".into(),
        first_stage_column: Some("bi_score".into()),
        fusion,
        cluster,
    }
}
