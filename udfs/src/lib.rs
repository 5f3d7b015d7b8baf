//! DataFusion SQL functions backed by crossflow cross-encoders.
//!
//! | function | returns | model |
//! |---|---|---|
//! | `cross_score(a, b)` | `Float32` | the score model |
//! | `is_paraphrase(a, b [, threshold])` | `Boolean` | the score model |
//! | `nli_label(a, b)` | `Utf8` | the NLI model |
//! | `nli_probs(a, b)` | `Struct<label: Float32, ...>` | the NLI model |
//! | `embed(text)` | `FixedSizeList<Float32>` (unit vector) | the bi-encoder |
//! | `cosine(u, v)` | `Float32` | none |
//!
//! Every function instance is bound to one loaded model, so a session can hold
//! several (a relevance model and an NLI model, or two relevance models under
//! different function names via [`cross_udf`]). The functions are vectorized:
//! each call scores a whole record batch through the engine's sorted,
//! token-budgeted micro-batches, and a constant argument is never expanded
//! into a column.

mod args;
mod cosine;
mod embed;
mod error;
mod functions;
mod tables;

pub use cosine::{COSINE, CosineUdf, cosine_udf};
pub use embed::{EMBED, EmbedUdf, embed_udf, vector_type};

pub use error::{FunctionError, Result, UdfError};
pub use functions::{
    CrossFunction, CrossUdf, ModelSet, bound_model, cross_functions, cross_udf, off_async_threads,
    register_cross_functions,
};
pub use tables::{TableFormat, parse_table_spec, register_table};
