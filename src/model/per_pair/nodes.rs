//! The subgraphs that replace a `DynamicQuantizeLinear` and correct the
//! `MatMulInteger`s reading it (see the parent module).

use super::super::onnx::{Node, int_attribute, ints_attribute, tensor};
use super::super::proto::Field;

/// Prefix of every name the rewrite adds to a graph.
pub(super) const PREFIX: &str = "crossflow_pq";

/// `attention_mask` as a `[batch, tokens, 1]` boolean.
pub(super) fn mask_nodes() -> Vec<Node> {
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
pub(super) fn per_pair_quantizer(
    p: &str,
    [x, y, scale]: [&str; 3],
    pooled: bool,
    opset: u64,
) -> Vec<Node> {
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
pub(super) fn corrected_product(node: &Node, zero: &str) -> Vec<Node> {
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
pub(super) fn constants() -> Vec<Field> {
    let name = |name: &str| format!("{PREFIX}_{name}");
    let float = |n: &str, v: f32| tensor(&name(n), 1, &[], v.to_le_bytes().to_vec());
    let int64s = |n: &str, v: &[i64]| {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensor(&name(n), 7, &[v.len() as u64], raw)
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
