//! Facts about the ONNX graph that change how it must be run, and loading it
//! so that a pair's result never depends on its batch.

use std::path::Path;

use super::per_pair;
use crate::session::{OrtModel, SessionSettings};
use crate::tokenize::EncodedPair;
use crate::{Error, Result};

/// A loaded graph and whether it must run one pair per batch.
pub(crate) struct Prepared {
    pub model: OrtModel,
    pub one_pair_per_batch: bool,
    /// Whether a pair's result is the same whatever batch it runs in.
    pub batch_invariant: bool,
}

/// How to make results batch-invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invariance {
    /// Batch as the graph is, even if a pair's result then depends on its batch.
    Off,
    /// Rewrite dynamic quantization to per-pair scales (see
    /// [`per_pair`]); one pair per batch where that is not possible.
    PerPairScales,
    /// One pair per batch for dynamically quantized graphs.
    OnePairPerBatch,
}

/// Loads the graph at `onnx` for batch-invariant results as `invariance`
/// asks. A rewritten graph is used only if one padded batch of `probes()`
/// (made only then) gives each probe what the original graph gives it alone.
pub(crate) fn load(
    onnx: &Path,
    settings: &SessionSettings,
    wanted: &[&str],
    invariance: Invariance,
    probes: impl FnOnce() -> Result<Vec<EncodedPair>>,
    pad_id: u32,
) -> Result<Prepared> {
    let plain = |one_pair_per_batch, batch_invariant| {
        Ok(Prepared {
            model: OrtModel::load(onnx, None, settings, wanted)?,
            one_pair_per_batch,
            batch_invariant,
        })
    };
    let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
    if !quantizes_dynamically(&bytes) {
        return plain(false, true);
    }
    if invariance == Invariance::Off {
        return plain(false, false);
    }
    if invariance == Invariance::OnePairPerBatch {
        return plain(true, true);
    }
    let rewritten = match per_pair::rewrite(&bytes) {
        Ok(Some(rewritten)) => rewritten,
        Ok(None) => {
            tracing::info!(onnx = %onnx.display(), "dynamic quantization of an unknown shape: one pair per batch");
            return plain(true, true);
        }
        Err(e) => return Err(Error::corrupt(onnx, e)),
    };
    let model = OrtModel::load(onnx, Some(&rewritten.bytes), settings, wanted)?;
    let single = SessionSettings {
        sessions: 1,
        ..settings.clone()
    };
    let reference = OrtModel::load(onnx, None, &single, wanted)?;
    if !model.agrees_batched_with(&reference, &probes()?, pad_id)? {
        tracing::warn!(onnx = %onnx.display(), "per-pair quantization changed the results: one pair per batch instead");
        return plain(true, true);
    }
    tracing::info!(onnx = %onnx.display(), quantizers = rewritten.quantizers, "dynamic quantization rewritten to per-pair scales");
    Ok(Prepared {
        model,
        one_pair_per_batch: false,
        batch_invariant: true,
    })
}

/// Whether the graph quantizes activations dynamically (onnxruntime
/// `quantize_dynamic` output: `DynamicQuantizeLinear` nodes).
///
/// Such a graph computes one int8 scale over the whole activation tensor of a
/// batch, padding included, so a pair's logits depend on the other pairs in its
/// batch (measured on the bundled int8 STS model: up to 0.57 logits between
/// batch 1 and batch 32). [`load`] therefore rewrites these graphs to
/// per-pair scales (or runs them one pair per micro-batch). The check looks
/// for the operator name in the serialized graph: node op types are stored as
/// plain strings.
pub fn uses_dynamic_quantization(onnx: &Path) -> Result<bool> {
    let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
    Ok(quantizes_dynamically(&bytes))
}

fn quantizes_dynamically(graph: &[u8]) -> bool {
    memchr::memmem::find(graph, b"DynamicQuantizeLinear").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_operator_in_the_bundled_int8_graph_only() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let int8 = root.join("models/crossflow-sts-minilm-l6/onnx/model_qint8_avx2.onnx");
        assert!(uses_dynamic_quantization(&int8).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.onnx");
        std::fs::write(&plain, b"\x08\x07MatMul Gemm Softmax").unwrap();
        assert!(!uses_dynamic_quantization(&plain).unwrap());
        assert!(uses_dynamic_quantization(&dir.path().join("missing.onnx")).is_err());
    }
}
