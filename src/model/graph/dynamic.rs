//! Whether a graph quantizes activations dynamically: read from its nodes.

use std::path::Path;

use super::super::onnx::{
    ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS, GRAPH_NODE, MODEL_GRAPH, NODE_ATTRIBUTE, NODE_OP_TYPE,
};
use super::super::proto::{self, ProtoError};
use crate::{Error, Result};

/// Whether the graph quantizes activations dynamically (onnxruntime
/// `quantize_dynamic` output: `DynamicQuantizeLinear` nodes, or the fused
/// operators of a graph saved after onnxruntime's optimizer, see
/// [`DYNAMIC_QUANTIZERS`]; searched in subgraphs and model-local functions too).
///
/// Such a graph computes one int8 scale over the whole activation tensor of a
/// batch, padding included, so a pair's logits depend on the other pairs in its
/// batch (measured on the bundled int8 STS model: up to 0.57 logits between
/// batch 1 and batch 32). [`load`] therefore rewrites these graphs to
/// per-pair scales (or runs them one pair per micro-batch).
pub fn uses_dynamic_quantization(onnx: &Path) -> Result<bool> {
    let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
    quantizes_dynamically(&bytes).map_err(|e| Error::corrupt(onnx, e))
}

/// Operators that compute an activation's int8 scale from the tensor they
/// are given: `DynamicQuantizeLinear` and onnxruntime's fused forms of it,
/// which a graph saved after graph optimization holds instead (a
/// `DynamicQuantizeMatMul` replaces `DynamicQuantizeLinear` + `MatMulInteger`).
const DYNAMIC_QUANTIZERS: [&[u8]; 3] = [
    b"DynamicQuantizeLinear",
    b"DynamicQuantizeMatMul",
    b"DynamicQuantizeLSTM",
];

/// ONNX field numbers the check reads beyond [`super::onnx`]'s.
const MODEL_FUNCTIONS: u32 = 25;
const FUNCTION_NODE: u32 = 7;
/// Subgraphs nested deeper than this are not searched.
const MAX_DEPTH: usize = 16;

/// Whether any node of the model — main graph, subgraphs of control-flow
/// nodes, model-local functions — is one of [`DYNAMIC_QUANTIZERS`]. Reads the
/// serialized model in place, without copying its weights.
pub(super) fn quantizes_dynamically(model: &[u8]) -> std::result::Result<bool, ProtoError> {
    for graph in proto::payloads(model, MODEL_GRAPH)? {
        if graph_quantizes(graph, 0)? {
            return Ok(true);
        }
    }
    for function in proto::payloads(model, MODEL_FUNCTIONS)? {
        if nodes_quantize(&proto::payloads(function, FUNCTION_NODE)?, 0)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn graph_quantizes(graph: &[u8], depth: usize) -> std::result::Result<bool, ProtoError> {
    nodes_quantize(&proto::payloads(graph, GRAPH_NODE)?, depth)
}

fn nodes_quantize(nodes: &[&[u8]], depth: usize) -> std::result::Result<bool, ProtoError> {
    for node in nodes {
        let op = proto::payloads(node, NODE_OP_TYPE)?;
        if op.first().is_some_and(|op| DYNAMIC_QUANTIZERS.contains(op)) {
            return Ok(true);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for attribute in proto::payloads(node, NODE_ATTRIBUTE)? {
            let mut graphs = proto::payloads(attribute, ATTRIBUTE_GRAPH)?;
            graphs.extend(proto::payloads(attribute, ATTRIBUTE_GRAPHS)?);
            for graph in graphs {
                if graph_quantizes(graph, depth + 1)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::super::super::onnx::Node;
    use super::super::super::proto::Field;
    use super::*;

    #[test]
    fn quantization_is_read_from_the_nodes_not_from_any_bytes() {
        let bundled = super::super::super::bundled_int8("crossflow-sts-minilm-l6");
        assert!(uses_dynamic_quantization(&bundled).unwrap());
        // The operator's name in a node *name* is not a quantizer.
        let mut node = Node::new("MatMul", &["x", "w"], &["y"], Vec::new()).fields;
        node.push(Field::Bytes(3, b"DynamicQuantizeLinear_1".to_vec()));
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&node))]);
        let model = proto::encode(&[Field::Bytes(MODEL_GRAPH, graph)]);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.onnx");
        std::fs::write(&plain, &model).unwrap();
        assert!(!uses_dynamic_quantization(&plain).unwrap());
        // In the branch of an `If`, and in a model-local function.
        let quantizer = Node::new(
            "DynamicQuantizeLinear",
            &["x"],
            &["y", "s", "z"],
            Vec::new(),
        );
        let branch = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&quantizer.fields))]);
        let attribute = proto::encode(&[
            Field::Bytes(1, b"then_branch".to_vec()),
            Field::Bytes(6, branch),
        ]);
        let mut control = Node::new("If", &["c"], &["out"], Vec::new()).fields;
        control.push(Field::Bytes(NODE_ATTRIBUTE, attribute));
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&control))]);
        std::fs::write(&plain, proto::encode(&[Field::Bytes(MODEL_GRAPH, graph)])).unwrap();
        assert!(uses_dynamic_quantization(&plain).unwrap(), "in a subgraph");
        let function = proto::encode(&[Field::Bytes(
            FUNCTION_NODE,
            proto::encode(&quantizer.fields),
        )]);
        std::fs::write(
            &plain,
            proto::encode(&[Field::Bytes(MODEL_FUNCTIONS, function)]),
        )
        .unwrap();
        assert!(uses_dynamic_quantization(&plain).unwrap(), "in a function");
        // The fused operator of a graph saved after onnxruntime's optimizer.
        let fused = Node::new(
            "DynamicQuantizeMatMul",
            &["x", "w", "s"],
            &["y"],
            Vec::new(),
        );
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&fused.fields))]);
        std::fs::write(&plain, proto::encode(&[Field::Bytes(MODEL_GRAPH, graph)])).unwrap();
        assert!(uses_dynamic_quantization(&plain).unwrap(), "fused");
        std::fs::write(&plain, b"\x0a\xff\xff").unwrap();
        assert!(
            uses_dynamic_quantization(&plain).is_err(),
            "malformed graph"
        );
        assert!(uses_dynamic_quantization(&dir.path().join("missing.onnx")).is_err());
    }
}
