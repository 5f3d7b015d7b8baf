//! Two-stage search over a corpus: `crossflow index` embeds the documents
//! once with the bi-encoder into an index directory; `crossflow search`
//! takes each query's top-k documents by cosine (exact, or through the
//! index's IVF lists: the dedupe job's search) and re-ranks them with the
//! cross-encoder by the SQL of `crossflow rerank`.

mod args;
mod build;
mod first_stage;
pub mod index_dir;
mod job;
mod sql_functions;
pub mod table;

pub use args::{
    DEFAULT_FUSION, EXACT_LIMIT, IndexArgs, IndexSummary, SearchArgs, SearchMode, SearchSummary,
};
pub use job::{index, search};
pub use sql_functions::register_search_functions;
