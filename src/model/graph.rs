//! Facts about the ONNX graph that change how it must be run.

use std::path::Path;

use crate::{Error, Result};

/// Whether the graph quantizes activations dynamically (onnxruntime
/// `quantize_dynamic` output: `DynamicQuantizeLinear` nodes).
///
/// Such a graph computes one int8 scale over the whole activation tensor of a
/// batch, padding included, so a pair's logits depend on the other pairs in its
/// batch (measured on the bundled int8 STS model: up to 0.57 logits between
/// batch 1 and batch 32). The engine therefore runs these graphs one pair per
/// micro-batch unless told otherwise. The check looks for the operator name in
/// the serialized graph: node op types are stored as plain strings.
pub fn uses_dynamic_quantization(onnx: &Path) -> Result<bool> {
    let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
    Ok(memchr::memmem::find(&bytes, b"DynamicQuantizeLinear").is_some())
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
