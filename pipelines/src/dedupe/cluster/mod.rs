//! `crossflow dedupe --scheduler`: the job's expensive stages on the
//! executors of a Ballista cluster, with the local job's output.
//!
//! The client reads the input and groups exact duplicates, as the local job
//! does. Then, each stage as tasks (one SQL query each, see [`tasks`]):
//! - **embedding**: the distinct texts, up to 4096 per task, through `embed`;
//! - **candidate search**: the client builds the search index (for IVF: the
//!   centroids trained on a sample and every row's lists, as the local job
//!   does) and writes it beside the output; each task searches a range of its
//!   rows through `crossflow_dedupe_search`, with the local search's code;
//! - **verification**: the centre linkage runs on the client and asks for
//!   the scores it needs in windows of 2048 pairs, as the local job; each
//!   window's pairs are scored by tasks of up to 512 pairs through `cross_score` (or `nli_probs` of the duplicate
//!   label), both orders when `--direction` says so, combined on the client.
//!
//! Every value is computed by the same code as in the local job, and scores
//! are batch-invariant by default, so the output equals the local run's.

pub mod search_udf;
mod tasks;

use std::sync::Arc;

use crossflow::Head;
use crossflow_udfs::{EMBED, ModelSet};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{Float32Type, UInt64Type};
use tokio::runtime::Handle;

use self::search_udf::{SEARCH, candidates_of};
use self::tasks::{TABLE, Task, Tasks};
use super::args::{DedupeArgs, DedupeSummary, Search};
use super::candidates::{Candidate, ranges, searchable, unique_pairs};
use super::index::SearchIndex;
use super::index_file;
use super::input::Rows;
use super::ivf::ivf_index;
use super::job::{Stages, Work, chosen_search, dedupe_rows, ivf_shape};
use super::verify::Verifier;
use crate::blocking::run_blocking;
use crate::models::ModelArgs;
use crate::{JobError, Result};

/// Distinct texts embedded per task, at most (fewer when there would be
/// less than two tasks per task slot).
const EMBED_TASK: usize = 4096;
/// Rows searched per task, at least (four tasks per task slot otherwise).
const SEARCH_TASK_MIN: usize = 32;
/// Candidate pairs scored per task, at most.
const VERIFY_TASK: usize = 512;

/// Runs the stages after reading on the cluster of `args.cluster`.
pub(super) async fn run(
    args: &DedupeArgs,
    models: &ModelArgs,
    rows: Rows,
    verifier: Verifier,
    stages: Stages,
) -> Result<DedupeSummary> {
    let model = Arc::clone(verifier.model());
    let classifier = matches!(model.head(), Head::Classification { .. });
    let set = ModelSet {
        nli: classifier.then(|| Arc::clone(&model)),
        score: model,
        bi: Some(Arc::new(
            models.open_bi_encoder(args.bi_encoder.as_deref())?,
        )),
    };
    let ctx = args.cluster.session(&set, &[]).await?;
    let concurrency = args
        .cluster
        .partitions
        .unwrap_or(crossflow_cluster::DEFAULT_PARTITIONS);
    let tasks = Tasks::new(ctx, &args.output, concurrency)?;
    let (args, handle) = (args.clone(), Handle::current());
    // Searching and linking are work for this process's CPU: off the async threads.
    run_blocking("dedupe", move || {
        let work = OnCluster {
            args: &args,
            tasks: &tasks,
            handle: &handle,
            verifier: &verifier,
        };
        dedupe_rows(&args, &rows, &work, stages)
    })
    .await
}

/// The job's work as tasks on the cluster, waited for from a blocking thread.
struct OnCluster<'a> {
    args: &'a DedupeArgs,
    tasks: &'a Tasks,
    handle: &'a Handle,
    verifier: &'a Verifier,
}

impl Work for OnCluster<'_> {
    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.handle.block_on(embed(self.tasks, texts))
    }

    fn neighbours(&self, vectors: Vec<f32>, n: usize) -> Result<Vec<Candidate>> {
        self.handle
            .block_on(search(self.tasks, self.args, vectors, n))
    }

    fn score(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        self.handle
            .block_on(score(self.tasks, self.verifier, pairs))
    }
}

/// The unit vectors of `texts`, row-major, embedded by the executors.
async fn embed(tasks: &Tasks, texts: &[&str]) -> Result<Vec<f32>> {
    let list = tasks
        .pieces(texts, 2, EMBED_TASK)
        .map(|(idx, piece)| {
            let text = StringArray::from(piece.to_vec());
            Ok(Task {
                sql: format!("SELECT idx, {EMBED}(text) AS vector FROM {TABLE}"),
                input: batch(vec![("idx", Arc::new(idx)), ("text", Arc::new(text))])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut vectors = Vectors::default();
    for batch in tasks.run(Some("embedding"), list).await?.iter().flatten() {
        vectors.add(batch)?;
    }
    vectors.into_rows(texts.len())
}

/// Vectors arriving by text index.
#[derive(Default)]
struct Vectors {
    dim: usize,
    values: Vec<f32>,
    filled: Vec<bool>,
}

impl Vectors {
    /// Places the `vector` of each `idx` of a result batch.
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let idx = batch.column(0).as_primitive::<UInt64Type>();
        let list = batch.column(1).as_fixed_size_list();
        let dim = list.value_length() as usize;
        if self.dim == 0 {
            self.dim = dim;
        }
        for (row, i) in idx.values().iter().enumerate() {
            let i = *i as usize;
            if dim != self.dim || list.is_null(row) {
                return Err(JobError::Internal(format!(
                    "the cluster's embedding of text {i} is null or {dim} wide, not {}",
                    self.dim
                )));
            }
            if self.filled.len() <= i {
                self.filled.resize(i + 1, false);
                self.values.resize((i + 1) * dim, 0.0);
            }
            self.filled[i] = true;
            let vector = list.value(row);
            let vector = vector.as_primitive::<Float32Type>().values();
            self.values[i * dim..(i + 1) * dim].copy_from_slice(vector);
        }
        Ok(())
    }

    /// The vectors of texts `0..n`, each of which must have arrived.
    fn into_rows(self, n: usize) -> Result<Vec<f32>> {
        let arrived = self.filled.iter().filter(|&&f| f).count();
        if arrived != n || self.filled.len() != n {
            return Err(JobError::Internal(format!(
                "the cluster embedded {arrived} of {n} texts"
            )));
        }
        Ok(self.values)
    }
}

/// Candidate pairs of the `n` distinct texts (indexes into them), searched by
/// the executors over an index this process builds and stages.
async fn search(
    tasks: &Tasks,
    args: &DedupeArgs,
    vectors: Vec<f32>,
    n: usize,
) -> Result<Vec<Candidate>> {
    let valid = vec![true; n];
    let Some((rows, k)) = searchable(&valid, args.top_k) else {
        return Ok(Vec::new());
    };
    let dim = vectors.len() / n;
    let index = match chosen_search(args, n) {
        Search::Ivf => {
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            ivf_index(vectors, dim, &valid, &rows, ivf_shape(args, n), threads)
        }
        Search::Exact | Search::Auto | Search::Hnsw => SearchIndex::exact(vectors, dim),
    };
    let path = tasks.staged("index.arrow");
    index_file::write(&index, &path)?;
    drop(index);
    let per_task = n.div_ceil(tasks.concurrency() * 4).max(SEARCH_TASK_MIN);
    let quoted = path.display().to_string().replace('\'', "''");
    let bits = args.min_cosine.to_bits();
    let list = ranges(0..n, per_task)
        .map(|range| {
            let first = UInt64Array::from(vec![range.start as u64]);
            let end = UInt64Array::from(vec![range.end as u64]);
            Ok(Task {
                sql: format!(
                    "SELECT {SEARCH}('{quoted}', first, end, {k}, {bits}) AS found FROM {TABLE}"
                ),
                input: batch(vec![("first", Arc::new(first)), ("end", Arc::new(end))])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let results = tasks.run(Some("candidate search"), list).await?;
    let found = results
        .iter()
        .flatten()
        .flat_map(|batch| candidates_of(batch.column(0).as_list::<i32>()))
        .collect();
    Ok(unique_pairs(found))
}

/// The verifier's scores of `pairs`, computed by the executors.
async fn score(tasks: &Tasks, verifier: &Verifier, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
    let mut sql = format!("SELECT pair, {} AS forward", verifier.sql_score("a", "b"));
    if verifier.both_ways() {
        sql.push_str(&format!(", {} AS backward", verifier.sql_score("b", "a")));
    }
    sql.push_str(&format!(" FROM {TABLE}"));
    let list = tasks
        .pieces(pairs, 1, VERIFY_TASK)
        .map(|(pair, piece)| {
            let a = StringArray::from(piece.iter().map(|p| p.0).collect::<Vec<_>>());
            let b = StringArray::from(piece.iter().map(|p| p.1).collect::<Vec<_>>());
            Ok(Task {
                sql: sql.clone(),
                input: batch(vec![
                    ("pair", Arc::new(pair)),
                    ("a", Arc::new(a)),
                    ("b", Arc::new(b)),
                ])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (mut forward, mut backward) = (vec![f32::NAN; pairs.len()], vec![f32::NAN; pairs.len()]);
    let mut arrived = vec![false; pairs.len()];
    for batch in tasks.run(None, list).await?.iter().flatten() {
        let pair = batch.column(0).as_primitive::<UInt64Type>();
        for &p in pair.values() {
            arrived[p as usize] = true;
        }
        for (column, out) in [(1, &mut forward), (2, &mut backward)] {
            let Some(scores) = batch.columns().get(column) else {
                continue;
            };
            if scores.null_count() > 0 {
                return Err(JobError::Internal(
                    "the cluster returned a null score".into(),
                ));
            }
            let scores = scores.as_primitive::<Float32Type>();
            for (row, &p) in pair.values().iter().enumerate() {
                out[p as usize] = scores.value(row);
            }
        }
    }
    let scored = arrived.iter().filter(|&&a| a).count();
    if scored != pairs.len() {
        return Err(JobError::Internal(format!(
            "the cluster scored {scored} of {} pairs",
            pairs.len()
        )));
    }
    Ok(verifier.combine(forward, verifier.both_ways().then_some(backward)))
}

/// A record batch of named, non-null columns.
fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_from_iter(columns)?)
}
