//! What `crossflow index` and `crossflow search` take.

use std::path::PathBuf;

use clap::Args;

use crate::sql::ClusterArgs;

/// Arguments of `crossflow index`.
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// Corpus: one Parquet file with a document id and a document text column
    #[arg(long)]
    pub corpus: String,
    /// Column identifying a document; null or repeated ids are refused
    #[arg(long, default_value = "doc_id")]
    pub doc_id_column: String,
    /// Column holding the document text; rows with a null or blank text are not indexed
    #[arg(long, default_value = "doc")]
    pub doc_column: String,
    /// Index directory to write (an index already there is replaced when the new one is complete)
    #[arg(long, visible_alias = "output")]
    pub out: PathBuf,
    /// Bi-encoder: a directory or a Hub repo id [default: the bundled all-minilm-l6-v2]
    #[arg(long, env = "CROSSFLOW_BI_ENCODER")]
    pub bi_encoder: Option<PathBuf>,
    /// Lists of the IVF index [default: 4·√(documents indexed)]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ivf_lists: Option<u64>,
}

/// Arguments of `crossflow search`.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("documents").required(true).multiple(true).args(["index", "corpus"]))]
pub struct SearchArgs {
    /// Queries: a Parquet file with a query id and a query text column
    #[arg(long)]
    pub queries: String,
    /// Column identifying a query; null or repeated ids are refused
    #[arg(long, default_value = "query_id")]
    pub query_id_column: String,
    /// Column holding the query text; a query with a null or blank text gets no rows
    #[arg(long, default_value = "query")]
    pub query_column: String,
    /// Index directory written by `crossflow index` (its corpus file is read for the texts)
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Corpus Parquet file: indexed in memory for this run, or with --index the
    /// file to read instead of the one the index names (it must be unchanged)
    #[arg(long)]
    pub corpus: Option<String>,
    /// With --corpus alone: the document id column
    #[arg(long, default_value = "doc_id")]
    pub doc_id_column: String,
    /// With --corpus alone: the document text column
    #[arg(long, default_value = "doc")]
    pub doc_column: String,
    /// Output Parquet: each query's best --top-n documents with query_id, query,
    /// doc_id, doc, bi_score, cross_score, score and rank
    #[arg(long)]
    pub output: PathBuf,
    /// Candidates per query taken by bi-encoder cosine and scored by the cross-encoder
    #[arg(long, default_value_t = 100)]
    pub top_k: usize,
    /// Rows kept per query, best first
    #[arg(long, default_value_t = 10)]
    pub top_n: usize,
    /// Rank by W × cross_score + (1 - W) × bi_score, each min-max normalised
    /// over the query's candidates; 1 ranks by the cross-encoder alone
    #[arg(long, default_value_t = DEFAULT_FUSION)]
    pub fusion: f64,
    /// Candidate search: exact (every document), ivf (the lists of the
    /// --ivf-probes nearest centroids) or auto (exact up to 200,000 documents)
    #[arg(long, value_enum, default_value_t = SearchMode::Auto)]
    pub search: SearchMode,
    /// Lists searched per query with --search ivf
    #[arg(long, default_value_t = DEFAULT_IVF_PROBES, value_parser = clap::value_parser!(u64).range(1..))]
    pub ivf_probes: u64,
    /// With --corpus alone: lists of the in-memory IVF index [default: 4·√documents]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ivf_lists: Option<u64>,
    /// Bi-encoder: that of the index, or another one built the same way
    /// (checked by fingerprint) [default: the bundled all-minilm-l6-v2]
    #[arg(long, env = "CROSSFLOW_BI_ENCODER")]
    pub bi_encoder: Option<PathBuf>,
    /// With --scheduler: the cross-encoder re-ranks the candidates on the
    /// cluster's executors (they read a temporary file beside --output)
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Default of `--fusion`, chosen on TREC-QA train (see docs/search.md).
pub const DEFAULT_FUSION: f64 = 0.2;

/// Default of `--ivf-probes` (and the SQL functions' probes).
pub const DEFAULT_IVF_PROBES: u64 = 32;

/// Documents searched exactly under `--search auto`.
pub const EXACT_LIMIT: usize = 200_000;

/// How a query's candidates are searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchMode {
    /// Every document.
    Exact,
    /// The lists of the query's nearest centroids.
    Ivf,
    /// Exact up to [`EXACT_LIMIT`] documents, IVF above.
    Auto,
}

/// What an index run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexSummary {
    /// Rows of the corpus.
    pub docs: usize,
    /// Rows indexed (with a text).
    pub indexed: usize,
    pub lists: usize,
    pub seconds: f64,
}

/// What a search run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchSummary {
    pub queries: usize,
    /// Queries with a null or blank text (no rows).
    pub without_text: usize,
    /// (query, document) pairs scored by the cross-encoder.
    pub candidates: usize,
    pub rows_written: u64,
    pub stage_seconds: Vec<(&'static str, f64)>,
}
