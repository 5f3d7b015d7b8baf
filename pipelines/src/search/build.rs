//! Building a corpus index: embed every document with a text, cut the
//! vectors into IVF lists.

use crossflow::BiEncoder;

use super::index_dir::{CorpusIdentity, CorpusIndex, Manifest};
use super::table::{Columns, TextTable};
use crate::dedupe::ivf::{IvfShape, corpus_index};
use crate::embedding::embed;
use crate::{JobError, Result};

/// The index of the rows of `table` (the corpus file `identity`, read as
/// `columns`) embedded by `model`, with `lists` IVF lists [default:
/// 4·√(documents with a text)].
pub fn build_index(
    identity: CorpusIdentity,
    table: &TextTable,
    columns: Columns<'_>,
    model: &BiEncoder,
    lists: Option<u64>,
) -> Result<CorpusIndex> {
    let rows = table.with_text();
    if rows.is_empty() {
        return Err(JobError::InvalidData(format!(
            "{}: no row of column {:?} has a text to index",
            identity.path.display(),
            columns.text
        )));
    }
    let texts: Vec<&str> = rows.iter().map(|&r| table.text(r)).collect();
    let vectors = embed(model, &texts)?;
    let dim = model.dimension();
    let shape = IvfShape::for_rows(rows.len(), lists.map(|l| l as usize), 1);
    let (index, centroids) = corpus_index(vectors, dim, shape.lists, threads());
    let manifest = Manifest {
        format: super::index_dir::FORMAT,
        crossflow_version: env!("CARGO_PKG_VERSION").into(),
        bi_encoder: model.name().into(),
        bi_encoder_fingerprint: model.fingerprint().as_str().into(),
        corpus: identity,
        doc_id_column: columns.id.into(),
        doc_column: columns.text.into(),
        docs: table.len(),
        indexed: rows.len(),
        dim,
        lists: centroids.nrows(),
    };
    Ok(CorpusIndex {
        manifest,
        index: index.renumbered(&rows),
        centroids,
    })
}

/// Threads for the vector search: one per core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
