//! Building a corpus index: embed every document with a text, cut the
//! vectors into IVF lists.

use crossflow::BiEncoder;

use super::index_dir::{CorpusIdentity, CorpusIndex, Manifest};
use super::table::TextTable;
use crate::dedupe::ivf::{IvfShape, corpus_index};
use crate::embedding::embed;
use crate::{JobError, Result};

/// Where the corpus came from and how it is read.
pub struct Corpus<'a> {
    pub identity: CorpusIdentity,
    pub table: &'a TextTable,
    pub doc_id_column: &'a str,
    pub doc_column: &'a str,
}

/// The index of `corpus` embedded by `model`, with `lists` IVF lists
/// [default: 4·√(documents with a text)].
pub fn build_index(
    corpus: Corpus<'_>,
    model: &BiEncoder,
    lists: Option<u64>,
) -> Result<CorpusIndex> {
    let table = corpus.table;
    let rows = table.with_text();
    if rows.is_empty() {
        return Err(JobError::InvalidData(format!(
            "{}: no row of column {:?} has a text to index",
            corpus.identity.path.display(),
            corpus.doc_column
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
        corpus: corpus.identity,
        doc_id_column: corpus.doc_id_column.into(),
        doc_column: corpus.doc_column.into(),
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
