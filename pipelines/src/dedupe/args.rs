//! What `crossflow dedupe` takes and what it reports.

use std::path::PathBuf;

use clap::Args;

use super::clusters::Representative;
use super::verify::Direction;
use crate::sql::ClusterArgs;

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
    /// Cross-encoder score at or above which a candidate pair is a duplicate: a
    /// probability for a sigmoid model (the bundled one), a raw logit for a
    /// model configured without activation, the --duplicate-label probability
    /// for a classifier; --activation does not change it
    #[arg(long, default_value_t = 0.75)]
    pub threshold: f32,
    /// For a classifier model (e.g. NLI): the label that means "duplicate"; a
    /// pair's score is that label's probability (by default the lower of both
    /// directions)
    #[arg(long)]
    pub duplicate_label: Option<String>,
    /// Orders of a candidate pair the cross-encoder scores: forward (the
    /// earlier text first), or both combined by mean, max or min; match_score
    /// is the combined score [default: mean for a score model, min for a
    /// classifier]
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
    /// Neighbour search: exact (quadratic), ivf (inverted-file index), or auto
    /// (exact up to --exact-limit distinct texts, ivf above); hnsw is
    /// deprecated and runs ivf (as fast or faster at equal or better recall)
    #[arg(long, value_enum, default_value_t = Search::Auto)]
    pub search: Search,
    /// Largest number of distinct texts searched exactly under --search auto
    #[arg(long, default_value_t = 200_000)]
    pub exact_limit: usize,
    /// Lists of the IVF index [default: 4·√(distinct texts)]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ivf_lists: Option<u64>,
    /// Lists of the IVF index each text is searched in (higher: better recall, slower)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub ivf_probes: u64,
    /// Deprecated with --search hnsw; accepted and ignored
    #[arg(long, hide = true)]
    pub hnsw_ef: Option<usize>,
    /// Which row represents a cluster: its centre, which every duplicate matches directly
    #[arg(long, value_enum, default_value_t = Representative::First)]
    pub representative: Representative,
    /// Largest number of rows in a cluster (a warning names the clusters that reach it)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_cluster_size: Option<u64>,
    /// With --scheduler: embedding, candidate search and verification run on
    /// the cluster's executors, which read and write files in a temporary
    /// directory beside --output
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How candidate neighbours are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Search {
    /// Exact, tiled over all pairs.
    Exact,
    /// Approximate, through an inverted-file index over the same products.
    Ivf,
    /// Deprecated: runs [`Search::Ivf`], with a warning.
    Hnsw,
    /// Exact up to `--exact-limit` distinct texts, IVF above.
    Auto,
}

/// What a dedupe run found, and the time per stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DedupeSummary {
    pub rows: usize,
    pub exact_duplicates: usize,
    pub candidates: usize,
    /// Candidate pairs the cross-encoder scored (the others could not change a cluster).
    pub scored: usize,
    pub verified: usize,
    pub clusters: usize,
    pub duplicates: usize,
    /// Clusters that left a verified match out because of --max-cluster-size.
    pub capped_clusters: usize,
    pub stage_seconds: Vec<(&'static str, f64)>,
}
