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

use super::proto::{self, Field, ProtoError};

const MODEL_GRAPH: u32 = 7;
const MODEL_OPSET: u32 = 8;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const NODE_INPUT: u32 = 1;
const NODE_OUTPUT: u32 = 2;
const NODE_OP_TYPE: u32 = 4;
const NODE_ATTRIBUTE: u32 = 5;
const PREFIX: &str = "crossflow_pq";

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
    let mut model = proto::parse(model)?;
    let opset = opset(&model);
    if opset < 13 {
        return Ok(None);
    }
    let Some(at) = model.iter().position(|f| f.number() == MODEL_GRAPH) else {
        return Ok(None);
    };
    let graph = proto::parse(model[at].bytes().unwrap_or_default())?;
    let Some((graph, quantizers)) = Graph::new(graph)?.rewrite(opset)? else {
        return Ok(None);
    };
    model[at] = Field::Bytes(MODEL_GRAPH, proto::encode(&graph));
    Ok(Some(Rewritten {
        bytes: proto::encode(&model),
        quantizers,
    }))
}

fn opset(model: &[Field]) -> u64 {
    model
        .iter()
        .filter(|f| f.number() == MODEL_OPSET)
        .filter_map(|f| proto::parse(f.bytes()?).ok())
        .filter(|set| matches!(proto::string(set, 1).as_str(), "" | "ai.onnx"))
        .find_map(|set| proto::int(&set, 2))
        .unwrap_or(0)
}

/// A node as its fields, with its inputs, outputs and operator read out.
#[derive(Clone)]
struct Node {
    fields: Vec<Field>,
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl Node {
    fn parse(bytes: &[u8]) -> Result<Self, ProtoError> {
        let fields = proto::parse(bytes)?;
        Ok(Self {
            op: proto::string(&fields, NODE_OP_TYPE),
            inputs: proto::strings(&fields, NODE_INPUT),
            outputs: proto::strings(&fields, NODE_OUTPUT),
            fields,
        })
    }

    fn new(op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<Field>) -> Self {
        let mut fields: Vec<Field> = inputs.iter().map(|i| text(NODE_INPUT, i)).collect();
        fields.extend(outputs.iter().map(|o| text(NODE_OUTPUT, o)));
        fields.push(text(NODE_OP_TYPE, op));
        fields.extend(attributes);
        Self {
            op: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            fields,
        }
    }

    /// The node with new inputs and outputs, its other fields kept.
    fn rewired(&self, inputs: &[String], outputs: &[String]) -> Self {
        let mut fields: Vec<Field> = inputs.iter().map(|i| text(NODE_INPUT, i)).collect();
        fields.extend(outputs.iter().map(|o| text(NODE_OUTPUT, o)));
        fields.extend(
            self.fields
                .iter()
                .filter(|f| !matches!(f.number(), NODE_INPUT | NODE_OUTPUT))
                .cloned(),
        );
        Self {
            fields,
            op: self.op.clone(),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        }
    }

    fn int_attribute(&self, name: &str) -> Option<u64> {
        self.fields
            .iter()
            .filter(|f| f.number() == NODE_ATTRIBUTE)
            .filter_map(|f| proto::parse(f.bytes()?).ok())
            .find(|a| proto::string(a, 1) == name)
            .and_then(|a| proto::int(&a, 3))
    }
}

struct Graph {
    /// The graph's fields other than its nodes, in order, with the place of the nodes.
    rest: Vec<Field>,
    nodes: Vec<Node>,
    constants: Vec<String>,
}

impl Graph {
    fn new(fields: Vec<Field>) -> Result<Self, ProtoError> {
        let mut nodes = Vec::new();
        let mut constants = Vec::new();
        let mut rest = Vec::new();
        for field in fields {
            match field.number() {
                GRAPH_NODE => nodes.push(Node::parse(field.bytes().unwrap_or_default())?),
                GRAPH_INITIALIZER => {
                    constants.push(proto::string(
                        &proto::parse(field.bytes().unwrap_or_default())?,
                        8,
                    ));
                    rest.push(field);
                }
                _ => rest.push(field),
            }
        }
        Ok(Self {
            rest,
            nodes,
            constants,
        })
    }

    fn has_input(&self, name: &str) -> bool {
        self.rest
            .iter()
            .filter(|f| f.number() == GRAPH_INPUT)
            .filter_map(|f| proto::parse(f.bytes()?).ok())
            .any(|value_info| proto::string(&value_info, 1) == name)
    }

    fn rewrite(self, opset: u64) -> Result<Option<(Vec<Field>, usize)>, ProtoError> {
        if !self.has_input("attention_mask") {
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
                let pooled = after_cls_selection(x, &producers, &self.constants, 0);
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
        let mut fields: Vec<Field> = nodes
            .iter()
            .map(|n| Field::Bytes(GRAPH_NODE, proto::encode(&n.fields)))
            .collect();
        fields.extend(self.rest);
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
) -> bool {
    let Some(node) = producers.get(name) else {
        return false;
    };
    if depth > 12 || node.op == "LayerNormalization" {
        return false;
    }
    if node.op == "Gather" && node.int_attribute("axis") == Some(1) {
        return true;
    }
    node.inputs
        .iter()
        .filter(|i| !constants.contains(i))
        .any(|i| after_cls_selection(i, producers, constants, depth + 1))
}

/// `attention_mask` as a `[batch, tokens, 1]` boolean.
fn mask_nodes() -> Vec<Node> {
    vec![
        Node::new(
            "Cast",
            &["attention_mask"],
            &[&format!("{PREFIX}_mask")],
            vec![int_attribute("to", 9)],
        ),
        Node::new(
            "Unsqueeze",
            &[&format!("{PREFIX}_mask"), &format!("{PREFIX}_axis2")],
            &[&format!("{PREFIX}_mask3")],
            vec![],
        ),
    ]
}

/// `DynamicQuantizeLinear(x) -> y, scale, zero point`, per pair: min and max
/// over the pair's real tokens (both widened to include 0), scale = range /
/// 255 (1 when the range is empty), zero point = round(clip(−min / scale)),
/// as onnxruntime computes them; `scale` comes out as `[batch, 1, 1]` (or
/// `[batch, 1]`) so the graph's scale products broadcast per pair.
fn per_pair_quantizer(p: &str, [x, y, scale]: [&str; 3], pooled: bool, opset: u64) -> Vec<Node> {
    let n = |suffix: &str| format!("{p}{suffix}");
    let c = |suffix: &str| format!("{PREFIX}_{suffix}");
    let (axes, keep) = if pooled {
        (vec![1], c("axes1"))
    } else {
        (vec![1, 2], c("axes12"))
    };
    let (high, low) = if pooled {
        (x.to_string(), x.to_string())
    } else {
        (n("high"), n("low"))
    };
    let mut nodes = Vec::new();
    if !pooled {
        nodes.push(Node::new(
            "Where",
            &[&c("mask3"), x, &c("ninf")],
            &[&high],
            vec![],
        ));
        nodes.push(Node::new(
            "Where",
            &[&c("mask3"), x, &c("inf")],
            &[&low],
            vec![],
        ));
    }
    // Reductions take their axes as an attribute before opset 18, as an input since.
    let reduce = |op: &str, input: &str, output: &str| match opset {
        ..18 => Node::new(
            op,
            &[input],
            &[output],
            vec![ints_attribute("axes", &axes), int_attribute("keepdims", 0)],
        ),
        _ => Node::new(
            op,
            &[input, &keep],
            &[output],
            vec![int_attribute("keepdims", 0)],
        ),
    };
    nodes.extend([
        reduce("ReduceMax", &high, &n("max0")),
        reduce("ReduceMin", &low, &n("min0")),
        Node::new("Max", &[&n("max0"), &c("zero")], &[&n("max")], vec![]),
        Node::new("Min", &[&n("min0"), &c("zero")], &[&n("min")], vec![]),
        Node::new("Sub", &[&n("max"), &n("min")], &[&n("range")], vec![]),
        Node::new("Div", &[&n("range"), &c("255")], &[&n("ratio")], vec![]),
        Node::new("Equal", &[&n("max"), &n("min")], &[&n("flat")], vec![]),
        Node::new(
            "Where",
            &[&n("flat"), &c("one"), &n("ratio")],
            &[&n("scale")],
            vec![],
        ),
        Node::new(
            "Div",
            &[&n("min"), &n("scale")],
            &[&n("min_scaled")],
            vec![],
        ),
        Node::new(
            "Sub",
            &[&c("zero"), &n("min_scaled")],
            &[&n("zp_raw")],
            vec![],
        ),
        Node::new(
            "Clip",
            &[&n("zp_raw"), &c("zero"), &c("255")],
            &[&n("zp_clipped")],
            vec![],
        ),
        Node::new("Round", &[&n("zp_clipped")], &[&n("zp_float")], vec![]),
        Node::new(
            "Cast",
            &[&n("zp_float")],
            &[&n("zp_u8")],
            vec![int_attribute("to", 2)],
        ),
        Node::new(
            "QuantizeLinear",
            &[x, &n("scale"), &n("zp_u8")],
            &[y],
            vec![int_attribute("axis", 0)],
        ),
        Node::new("Unsqueeze", &[&n("scale"), &keep], &[scale], vec![]),
        Node::new(
            "Cast",
            &[&n("zp_float")],
            &[&n("zp_i32")],
            vec![int_attribute("to", 6)],
        ),
        Node::new("Unsqueeze", &[&n("zp_i32"), &keep], &[&n("zp")], vec![]),
    ]);
    nodes
}

/// `MatMulInteger(y, w, zp, w_zp)` as `MatMulInteger(y, w, ∅, w_zp) − zp · colsum(w − w_zp)`.
fn corrected_product(node: &Node, zero: &str) -> Vec<Node> {
    let out = &node.outputs[0];
    let n = |suffix: &str| format!("{out}_{PREFIX}_{suffix}");
    let weight = node.inputs[1].as_str();
    let weight_zero = node.inputs.get(3).filter(|z| !z.is_empty());
    let mut inputs = vec![node.inputs[0].clone(), weight.to_string()];
    if let Some(z) = weight_zero {
        inputs.extend([String::new(), z.clone()]);
    }
    let mut nodes = vec![
        node.rewired(&inputs, &[n("raw")]),
        Node::new(
            "Cast",
            &[weight],
            &[&n("w32")],
            vec![int_attribute("to", 6)],
        ),
    ];
    let mut centered = n("w32");
    if let Some(z) = weight_zero {
        nodes.push(Node::new(
            "Cast",
            &[z],
            &[&n("wz32")],
            vec![int_attribute("to", 6)],
        ));
        nodes.push(Node::new(
            "Sub",
            &[&n("w32"), &n("wz32")],
            &[&n("wc")],
            vec![],
        ));
        centered = n("wc");
    }
    nodes.extend([
        Node::new(
            "ReduceSum",
            &[&centered, &format!("{PREFIX}_axis0")],
            &[&n("colsum")],
            vec![int_attribute("keepdims", 0)],
        ),
        Node::new("Mul", &[zero, &n("colsum")], &[&n("correction")], vec![]),
        Node::new("Sub", &[&n("raw"), &n("correction")], &[out], vec![]),
    ]);
    nodes
}

/// The constants the new nodes read.
fn constants() -> Vec<Field> {
    let float = |name: &str, v: f32| tensor(name, 1, &[], v.to_le_bytes().to_vec());
    let int64s = |name: &str, v: &[i64]| {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensor(name, 7, &[v.len() as u64], raw)
    };
    vec![
        float("zero", 0.0),
        float("255", 255.0),
        float("one", 1.0),
        float("inf", f32::INFINITY),
        float("ninf", f32::NEG_INFINITY),
        int64s("axes1", &[1]),
        int64s("axes12", &[1, 2]),
        int64s("axis2", &[2]),
        int64s("axis0", &[0]),
    ]
}

fn tensor(name: &str, data_type: u64, dims: &[u64], raw: Vec<u8>) -> Field {
    let mut fields: Vec<Field> = dims.iter().map(|&d| Field::Varint(1, d)).collect();
    fields.push(Field::Varint(2, data_type));
    fields.push(text(8, &format!("{PREFIX}_{name}")));
    fields.push(Field::Bytes(9, raw));
    Field::Bytes(GRAPH_INITIALIZER, proto::encode(&fields))
}

fn text(number: u32, value: &str) -> Field {
    Field::Bytes(number, value.as_bytes().to_vec())
}

fn int_attribute(name: &str, value: u64) -> Field {
    let fields = [text(1, name), Field::Varint(3, value), Field::Varint(20, 2)];
    Field::Bytes(NODE_ATTRIBUTE, proto::encode(&fields))
}

fn ints_attribute(name: &str, values: &[u64]) -> Field {
    let mut fields = vec![text(1, name)];
    fields.extend(values.iter().map(|&v| Field::Varint(8, v)));
    fields.push(Field::Varint(20, 7));
    Field::Bytes(NODE_ATTRIBUTE, proto::encode(&fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled(name: &str) -> Vec<u8> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::read(
            root.join("models")
                .join(name)
                .join("onnx/model_qint8_avx2.onnx"),
        )
        .unwrap()
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
}
