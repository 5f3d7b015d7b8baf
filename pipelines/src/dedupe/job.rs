//! The dedupe job: read, group exact duplicates, embed, find candidates,
//! verify, cluster, write.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use crossflow::{BiEncoder, CrossEncoder, EngineOptions, Texts};
use datafusion::arrow::array::{AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

use super::candidates::{Candidate, approximate_top_k, exact_top_k};
use super::clusters::{Representative, UnionFind, representatives};
use super::normalize::normalize;
use super::output::{write_output, write_pairs};
use crate::Result;
use crate::columns;
use crate::models::{ModelArgs, bundled_model_dir};
use crate::progress::PairProgress;

/// Directory name of the bundled bi-encoder.
pub const DEFAULT_BI_ENCODER: &str = "all-minilm-l6-v2";

/// Arguments of `crossflow dedupe`.
#[derive(Debug, Clone, Args)]
pub struct DedupeArgs {
    /// Input Parquet: a file, a directory of files or a glob
    #[arg(long)]
    pub input: String,
    /// Column holding the texts
    #[arg(long)]
    pub text_column: String,
    /// Column identifying rows [default: the row number]
    #[arg(long)]
    pub id_column: Option<String>,
    /// Output Parquet: every input row and column plus cluster_id, is_duplicate, duplicate_of, match_score
    #[arg(long)]
    pub output: PathBuf,
    /// Also write the candidate pairs (id_a, id_b, bi_score, cross_score, verified)
    #[arg(long)]
    pub pairs_output: Option<PathBuf>,
    /// Bi-encoder directory [default: the bundled all-minilm-l6-v2]
    #[arg(long, env = "CROSSFLOW_BI_ENCODER")]
    pub bi_encoder: Option<PathBuf>,
    /// Candidate neighbours per text
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    /// Minimum bi-encoder cosine of a candidate pair
    #[arg(long, default_value_t = 0.75)]
    pub min_cosine: f32,
    /// Cross-encoder score at or above which a candidate pair is a duplicate
    #[arg(long, default_value_t = 0.75)]
    pub threshold: f32,
    /// Neighbour search: exact (quadratic), hnsw (approximate index), or auto
    /// (exact up to --exact-limit distinct texts)
    #[arg(long, value_enum, default_value_t = Search::Auto)]
    pub search: Search,
    /// Largest number of distinct texts searched exactly under --search auto
    #[arg(long, default_value_t = 50_000)]
    pub exact_limit: usize,
    /// Search breadth of the HNSW index (higher: better recall, slower)
    #[arg(long, default_value_t = 100)]
    pub hnsw_ef: usize,
    /// Which row represents a cluster
    #[arg(long, value_enum, default_value_t = Representative::First)]
    pub representative: Representative,
}

/// How candidate neighbours are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Search {
    /// Exact, tiled over all pairs.
    Exact,
    /// Approximate, through an HNSW index.
    Hnsw,
    /// Exact up to `--exact-limit` distinct texts, HNSW above.
    Auto,
}

/// What a dedupe run found, and the time per stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DedupeSummary {
    pub rows: usize,
    pub exact_duplicates: usize,
    pub candidates: usize,
    pub verified: usize,
    pub clusters: usize,
    pub duplicates: usize,
    pub stage_seconds: Vec<(&'static str, f64)>,
}

/// Texts and ids of the input, in row order.
pub(super) struct Rows {
    pub texts: Vec<Option<String>>,
    pub ids: Vec<String>,
}

/// Runs the job.
pub async fn run(args: &DedupeArgs, models: &ModelArgs) -> Result<DedupeSummary> {
    let mut summary = DedupeSummary::default();
    let mut clock = Instant::now();
    let mut lap = |summary: &mut DedupeSummary, stage: &'static str| {
        summary
            .stage_seconds
            .push((stage, clock.elapsed().as_secs_f64()));
        clock = Instant::now();
    };
    // One partition: both passes over the input see the rows in the same order.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let rows = read_rows(&ctx, args).await?;
    summary.rows = rows.texts.len();
    lap(&mut summary, "read");

    let mut sets = UnionFind::new(rows.texts.len());
    let mut scores: Vec<Option<f32>> = vec![None; rows.texts.len()];
    let unique = exact_groups(&rows.texts, &mut sets, &mut scores);
    summary.exact_duplicates = rows.texts.iter().flatten().count() - unique.len();
    lap(&mut summary, "exact");

    let options = models.engine_options()?;
    let bi_dir = match &args.bi_encoder {
        Some(dir) => dir.clone(),
        None => bundled_model_dir(DEFAULT_BI_ENCODER)?,
    };
    let texts: Vec<&str> = unique
        .iter()
        .map(|&r| rows.texts[r].as_deref().unwrap_or_default())
        .collect();
    let vectors = embed(&bi_dir, &options, &texts)?;
    lap(&mut summary, "embed");

    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let valid = vec![true; unique.len()];
    let dim = vectors.len() / unique.len().max(1);
    let exact = match args.search {
        Search::Exact => true,
        Search::Hnsw => false,
        Search::Auto => unique.len() <= args.exact_limit,
    };
    let neighbours = if exact {
        exact_top_k(
            &vectors,
            dim.max(1),
            &valid,
            args.top_k,
            args.min_cosine,
            threads,
        )
    } else {
        approximate_top_k(
            &vectors,
            dim.max(1),
            &valid,
            args.top_k,
            args.min_cosine,
            args.hnsw_ef,
            threads,
        )
    };
    let found: Vec<Candidate> = neighbours
        .into_iter()
        .map(|c| Candidate {
            a: unique[c.a],
            b: unique[c.b],
            ..c
        })
        .collect();
    summary.candidates = found.len();
    lap(&mut summary, "candidates");

    let cross = models.load_score_model()?;
    let cross_scores = verify(&cross, &rows.texts, &found)?;
    for (c, &s) in found.iter().zip(&cross_scores) {
        if s >= args.threshold {
            summary.verified += 1;
            sets.union(c.a, c.b);
            for row in [c.a, c.b] {
                scores[row] = Some(scores[row].map_or(s, |best| best.max(s)));
            }
        }
    }
    lap(&mut summary, "verify");

    let lengths: Vec<usize> = rows
        .texts
        .iter()
        .map(|t| t.as_ref().map_or(0, |t| t.chars().count()))
        .collect();
    let cluster = representatives(&mut sets, &lengths, args.representative);
    summary.clusters = (0..cluster.len()).filter(|&r| cluster[r] == r).count();
    summary.duplicates = summary.rows - summary.clusters;
    write_output(&ctx, args, &rows, &cluster, &scores).await?;
    if let Some(path) = &args.pairs_output {
        write_pairs(path, &rows, &found, &cross_scores, args.threshold)?;
    }
    lap(&mut summary, "write");
    Ok(summary)
}

async fn read_rows(ctx: &SessionContext, args: &DedupeArgs) -> Result<Rows> {
    let df = ctx
        .read_parquet(&args.input, ParquetReadOptions::default())
        .await?;
    let schema = df.schema().as_arrow().clone();
    let mut columns = vec![args.text_column.as_str()];
    columns.extend(args.id_column.as_deref());
    for column in &columns {
        columns::index_of(&schema, column, &args.input)?;
    }
    let mut rows = Rows {
        texts: Vec::new(),
        ids: Vec::new(),
    };
    for batch in df.select_columns(&columns)?.collect().await? {
        let text = columns::text_array(batch.column(0), &args.text_column, &args.input)?;
        rows.texts.extend(columns::owned_texts(&text)?);
        match args.id_column {
            Some(_) => {
                let ids = cast(batch.column(1), &DataType::Utf8)?;
                rows.ids.extend(
                    ids.as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap_or_default().to_owned()),
                );
            }
            None => {
                let start = rows.ids.len();
                rows.ids
                    .extend((start..start + batch.num_rows()).map(|i| i.to_string()));
            }
        }
    }
    Ok(rows)
}

/// Unions rows whose normalised texts are equal; returns the first row of
/// each distinct non-empty text. Null and empty texts stay alone.
fn exact_groups(
    texts: &[Option<String>],
    sets: &mut UnionFind,
    scores: &mut [Option<f32>],
) -> Vec<usize> {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut unique = Vec::new();
    for (row, text) in texts.iter().enumerate() {
        let Some(key) = text.as_deref().map(normalize).filter(|k| !k.is_empty()) else {
            continue;
        };
        match first.get(&key) {
            Some(&original) => {
                sets.union(original, row);
                scores[row] = Some(1.0);
                scores[original] = Some(1.0);
            }
            None => {
                first.insert(key, row);
                unique.push(row);
            }
        }
    }
    unique
}

fn embed(dir: &std::path::Path, options: &EngineOptions, texts: &[&str]) -> Result<Vec<f32>> {
    let options = EngineOptions {
        onnx_file: None,
        ..options.clone()
    };
    let model = BiEncoder::load(dir, &options)?;
    let progress = PairProgress::new(Some(texts.len() as u64), "embedding");
    let mut vectors = Vec::with_capacity(texts.len() * model.dimension());
    for chunk in texts.chunks(4096) {
        vectors.extend(model.embed_texts(chunk)?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    Ok(vectors)
}

fn verify(
    model: &Arc<CrossEncoder>,
    texts: &[Option<String>],
    found: &[Candidate],
) -> Result<Vec<f32>> {
    let progress = PairProgress::new(Some(found.len() as u64), "verifying");
    let mut scores = Vec::with_capacity(found.len());
    for chunk in found.chunks(4096) {
        let text = |row: usize| texts[row].as_deref().unwrap_or_default();
        let a = StringArray::from_iter_values(chunk.iter().map(|c| text(c.a)));
        let b = StringArray::from_iter_values(chunk.iter().map(|c| text(c.b)));
        let s = model.score(&Texts::Utf8(&a), &Texts::Utf8(&b))?;
        scores.extend(s.iter().map(|v| v.unwrap_or(f32::NEG_INFINITY)));
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    Ok(scores)
}
