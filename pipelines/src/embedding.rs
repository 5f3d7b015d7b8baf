//! Embedding many texts with the bi-encoder, with a progress bar.

use crossflow::BiEncoder;

use crate::Result;
use crate::progress::PairProgress;

/// The unit vectors of `texts` (row-major), with a progress bar.
pub fn embed(model: &BiEncoder, texts: &[&str]) -> Result<Vec<f32>> {
    let progress = PairProgress::new(Some(texts.len() as u64), "embedding");
    let mut vectors = Vec::with_capacity(texts.len() * model.dimension());
    for chunk in texts.chunks(4096) {
        vectors.extend(model.embed_texts(chunk)?);
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    Ok(vectors)
}
