//! Batch-invariant dynamic quantization.
//!
//! onnxruntime's `quantize_dynamic` puts a `DynamicQuantizeLinear` before each
//! int8 matrix product: one uint8 scale and zero point for the whole activation
//! tensor of a batch, padding included, so a pair's logits depend on its batch
//! neighbours. [`rewrite`] replaces each of them by the same quantization
//! computed per pair over that pair's real tokens (a per-axis `QuantizeLinear`
//! along the batch), and corrects the products for the per-pair zero point
//! (`MatMulInteger` takes only one): `(A − zp)·W = A·W − zp·colsum(W)`, exact
//! in int32. A batch then gives every pair exactly the logits it gets alone.

use std::collections::HashMap;

use super::onnx::{
    GRAPH_INITIALIZER, GRAPH_INPUT, Node, edit_graph, graph_fields, nodes_and_rest, opset,
    tensor_name,
};
use super::proto::{self, Field, ProtoError};

mod nodes;

use nodes::{PREFIX, constants, corrected_product, mask_nodes, per_pair_quantizer};

/// What [`rewrite`] did.
#[derive(Debug)]
pub struct Rewritten {
    /// The serialized graph to run.
    pub bytes: Vec<u8>,
    /// `DynamicQuantizeLinear` nodes replaced.
    pub quantizers: usize,
}

/// Rewrites a dynamically quantized graph for per-pair scales; `Ok(None)`
/// when the graph does not have the shape this handles (then run it one pair
/// per batch instead).
pub fn rewrite(model: &[u8]) -> Result<Option<Rewritten>, ProtoError> {
    let edited = edit_graph(model, |model, graph| {
        let opset = opset(model)?;
        if opset < 13 {
            return Ok(None);
        }
        Graph::new(graph)?.rewrite(opset)
    })?;
    Ok(edited.map(|(bytes, quantizers)| Rewritten { bytes, quantizers }))
}

struct Graph {
    /// The graph's fields other than its nodes, in order, with the place of the nodes.
    rest: Vec<Field>,
    nodes: Vec<Node>,
    constants: Vec<String>,
}

impl Graph {
    fn new(fields: Vec<Field>) -> Result<Self, ProtoError> {
        let (nodes, rest) = nodes_and_rest(fields)?;
        let constants = rest
            .iter()
            .filter(|f| f.number() == GRAPH_INITIALIZER)
            .map(|f| tensor_name(f.bytes().unwrap_or_default()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rest,
            nodes,
            constants,
        })
    }

    fn has_input(&self, name: &str) -> Result<bool, ProtoError> {
        Ok(proto::messages(&self.rest, GRAPH_INPUT)?
            .iter()
            .any(|value_info| proto::string(value_info, 1) == name))
    }

    fn rewrite(self, opset: u64) -> Result<Option<(Vec<Field>, usize)>, ProtoError> {
        if !self.has_input("attention_mask")? {
            return Ok(None);
        }
        let consumers = self.consumers();
        let producers: HashMap<&str, &Node> = self
            .nodes
            .iter()
            .flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let mut zero_points = HashMap::new();
        let mut nodes = mask_nodes();
        let mut quantizers = 0;
        for node in &self.nodes {
            if node.op == "DynamicQuantizeLinear" {
                let [x, y, scale, zero] = [
                    &node.inputs[0],
                    &node.outputs[0],
                    &node.outputs[1],
                    &node.outputs[2],
                ];
                if !only_matmul_integer(&consumers, y, 0)
                    || !only_matmul_integer(&consumers, zero, 2)
                {
                    return Ok(None);
                }
                let prefix = format!("{PREFIX}{quantizers}_");
                let pooled = after_cls_selection(x, &producers, &self.constants, 0)?;
                nodes.extend(per_pair_quantizer(&prefix, [x, y, scale], pooled, opset));
                zero_points.insert(zero.clone(), format!("{prefix}zp"));
                quantizers += 1;
            } else if node.op == "MatMulInteger" && node.inputs.len() >= 3 {
                let Some(zero) = zero_points.get(&node.inputs[2]) else {
                    nodes.push(node.clone());
                    continue;
                };
                nodes.extend(corrected_product(node, zero));
            } else {
                nodes.push(node.clone());
            }
        }
        if quantizers == 0 {
            return Ok(None);
        }
        let mut fields = graph_fields(&nodes, self.rest);
        fields.extend(constants());
        Ok(Some((fields, quantizers)))
    }

    fn consumers(&self) -> HashMap<&str, Vec<(&Node, usize)>> {
        let mut map: HashMap<&str, Vec<(&Node, usize)>> = HashMap::new();
        for node in &self.nodes {
            for (slot, input) in node.inputs.iter().enumerate() {
                map.entry(input.as_str()).or_default().push((node, slot));
            }
        }
        map
    }
}

/// Whether every consumer of `name` is a `MatMulInteger` reading it at `slot`.
fn only_matmul_integer(
    consumers: &HashMap<&str, Vec<(&Node, usize)>>,
    name: &str,
    slot: usize,
) -> bool {
    consumers
        .get(name)
        .is_some_and(|c| c.iter().all(|(n, s)| n.op == "MatMulInteger" && *s == slot))
}

/// Whether `name` is computed from the `[CLS]` row (a `Gather` on the
/// sequence axis upstream, before any layer norm): a `[batch, hidden]`
/// tensor with no padding rows, rather than `[batch, tokens, hidden]`.
fn after_cls_selection(
    name: &str,
    producers: &HashMap<&str, &Node>,
    constants: &[String],
    depth: usize,
) -> Result<bool, ProtoError> {
    let Some(node) = producers.get(name) else {
        return Ok(false);
    };
    if depth > 12 || node.op == "LayerNormalization" {
        return Ok(false);
    }
    if node.op == "Gather" && node.int_attribute("axis")? == Some(1) {
        return Ok(true);
    }
    for input in node.inputs.iter().filter(|i| !constants.contains(i)) {
        if after_cls_selection(input, producers, constants, depth + 1)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::super::onnx::{GRAPH_NODE, MODEL_GRAPH, MODEL_OPSET};
    use super::*;

    fn bundled(name: &str) -> Vec<u8> {
        std::fs::read(super::super::bundled_int8(name)).unwrap()
    }

    #[test]
    fn every_quantizer_of_the_bundled_models_is_replaced() {
        for name in [
            "crossflow-sts-minilm-l6",
            "crossflow-nli-minilm-l6",
            "all-minilm-l6-v2",
        ] {
            let rewritten = rewrite(&bundled(name)).unwrap().expect(name);
            let text = String::from_utf8_lossy(&rewritten.bytes);
            assert!(!text.contains("DynamicQuantizeLinear"), "{name}");
            assert!(
                rewritten.quantizers >= 24,
                "{name}: {}",
                rewritten.quantizers
            );
        }
    }

    #[test]
    fn graphs_without_dynamic_quantization_are_left_alone() {
        let node = Node::new("MatMul", &["a", "b"], &["c"], vec![]);
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&node.fields))]);
        let opset = proto::encode(&[Field::Varint(2, 17)]);
        let model = proto::encode(&[
            Field::Bytes(MODEL_OPSET, opset),
            Field::Bytes(MODEL_GRAPH, graph),
        ]);
        assert!(rewrite(&model).unwrap().is_none());
        assert!(rewrite(b"\x3a\x05junk").is_err() || rewrite(b"\x3a\x05junk").unwrap().is_none());
    }

    /// The bundled model with the sub-messages numbered `number` of its
    /// graph (or, for [`MODEL_OPSET`], of the model) replaced by bytes that
    /// do not parse.
    fn with_malformed(number: u32) -> Vec<u8> {
        let junk = b"\xff\xff\xff".to_vec();
        let break_fields = |fields: Vec<Field>| -> Vec<Field> {
            fields
                .into_iter()
                .map(|f| match f {
                    Field::Bytes(n, _) if n == number => Field::Bytes(n, junk.clone()),
                    other => other,
                })
                .collect()
        };
        let model = proto::parse(&bundled("crossflow-sts-minilm-l6")).unwrap();
        if number == MODEL_OPSET {
            return proto::encode(&break_fields(model));
        }
        let model: Vec<Field> = model
            .into_iter()
            .map(|f| match f {
                Field::Bytes(MODEL_GRAPH, graph) => {
                    let graph = break_fields(proto::parse(&graph).unwrap());
                    Field::Bytes(MODEL_GRAPH, proto::encode(&graph))
                }
                other => other,
            })
            .collect();
        proto::encode(&model)
    }

    #[test]
    fn a_malformed_sub_message_is_an_error_not_skipped() {
        let untouched = with_malformed(u32::MAX);
        assert!(rewrite(&untouched).unwrap().is_some(), "the model as it is");
        for (what, number) in [("opset import", MODEL_OPSET), ("graph input", GRAPH_INPUT)] {
            let error = rewrite(&with_malformed(number)).err();
            assert!(error.is_some(), "a malformed {what} is an error");
        }
    }
}
