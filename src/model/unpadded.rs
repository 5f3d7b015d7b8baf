//! A graph for runs of one pair without padding.
//!
//! An exported BERT masks attention in every layer: `Where(mask, 0, −∞)` is
//! added to the attention scores before the `Softmax`, and the softmax is
//! guarded by `Where(IsNaN(p), 0, p)` (a row that is all padding would be
//! NaN). In a run of one pair there is no padding: the mask is all ones, the
//! added term is exactly 0 and nothing is NaN, yet each of these operators
//! reads and writes every attention score. [`rewrite`] takes them out, and
//! the nodes that only fed them: the scores go straight to the softmax and the
//! softmax to the product with the values. The graph then gives one unpadded
//! pair the same results bit for bit (checked on probe pairs when it loads,
//! [`super::graph::load`]) and must never run anything else: the session
//! refuses a batch of several pairs or with padding.

use std::collections::{HashMap, HashSet};

use super::onnx::{
    ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS, GRAPH_INITIALIZER, GRAPH_NODE, GRAPH_OUTPUT, MODEL_GRAPH,
    NODE_ATTRIBUTE, Node,
};
use super::proto::{self, Field, ProtoError};

/// The graph input the removed masking is computed from.
const MASK: &str = "attention_mask";

/// The graph inputs the hidden states, and so the attention scores, are
/// computed from.
const TOKENS: [&str; 2] = ["input_ids", "token_type_ids"];

/// A mask term's value where attention is masked out is at most this.
const MASKED_OUT: f32 = -1e4;

/// ONNX field numbers of the constants a mask term chooses between.
const ATTRIBUTE_NAME: u32 = 1;
const ATTRIBUTE_TENSOR: u32 = 5;
const TENSOR_DATA_TYPE: u32 = 2;
const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_NAME: u32 = 8;
const TENSOR_RAW_DATA: u32 = 9;
const FLOAT: u64 = 1;
/// Constants larger than this are not read (a mask term's are scalars).
const MAX_CONSTANT: usize = 16;

/// What [`rewrite`] did.
#[derive(Debug)]
pub struct Rewritten {
    /// The serialized graph to run.
    pub bytes: Vec<u8>,
    /// Softmaxes that no longer read the mask.
    pub softmaxes: usize,
}

/// Removes the attention masking of `model` for runs of one unpadded pair;
/// `Ok(None)` when it has no masked softmax this recognizes, or control flow
/// (subgraphs) whose implicit inputs the dead-node removal would not see.
pub fn rewrite(model: &[u8]) -> Result<Option<Rewritten>, ProtoError> {
    let mut model = proto::parse(model)?;
    let Some(at) = model.iter().position(|f| f.number() == MODEL_GRAPH) else {
        return Ok(None);
    };
    let fields = proto::parse(model[at].bytes().unwrap_or_default())?;
    let (node_fields, rest): (Vec<Field>, Vec<Field>) =
        fields.into_iter().partition(|f| f.number() == GRAPH_NODE);
    let nodes = node_fields
        .iter()
        .map(|f| Node::parse(f.bytes().unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    for node in &nodes {
        if has_subgraph(node)? {
            return Ok(None);
        }
    }
    let initializers: Vec<&[u8]> = rest
        .iter()
        .filter(|f| f.number() == GRAPH_INITIALIZER)
        .filter_map(Field::bytes)
        .collect();
    let Some((nodes, softmaxes)) = unmask(nodes, &initializers)? else {
        return Ok(None);
    };
    let outputs = proto::messages(&rest, GRAPH_OUTPUT)?
        .iter()
        .map(|value_info| proto::string(value_info, 1))
        .collect();
    let mut graph: Vec<Field> = live(nodes, outputs)
        .iter()
        .map(|n| Field::Bytes(GRAPH_NODE, proto::encode(&n.fields)))
        .collect();
    graph.extend(rest);
    model[at] = Field::Bytes(MODEL_GRAPH, proto::encode(&graph));
    Ok(Some(Rewritten {
        bytes: proto::encode(&model),
        softmaxes,
    }))
}

/// The nodes with every masked softmax reading the bare scores and every
/// reader of its NaN guard reading the softmax; `None` if there is none.
fn unmask(
    mut nodes: Vec<Node>,
    initializers: &[&[u8]],
) -> Result<Option<(Vec<Node>, usize)>, ProtoError> {
    let mask_terms = mask_terms(&nodes, initializers)?;
    let producers: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i)))
        .filter(|(o, _)| !o.is_empty())
        .collect();
    let tokens = dependent(&nodes, &TOKENS);
    let mut renamed = HashMap::new();
    let mut softmaxes = 0;
    for i in 0..nodes.len() {
        if nodes[i].op != "Softmax" || nodes[i].inputs.len() != 1 {
            continue;
        }
        let Some(scores) = bare_scores(
            &nodes,
            &producers,
            &mask_terms,
            &tokens,
            &nodes[i].inputs[0],
        ) else {
            continue;
        };
        let outputs = nodes[i].outputs.clone();
        nodes[i] = nodes[i].rewired(&[scores], &outputs);
        if let Some(guard) = nan_guard(&nodes, &outputs[0]) {
            renamed.insert(guard, outputs[0].clone());
        }
        softmaxes += 1;
    }
    if softmaxes == 0 {
        return Ok(None);
    }
    let nodes = nodes
        .into_iter()
        .map(|node| {
            let inputs: Vec<String> = node
                .inputs
                .iter()
                .map(|i| renamed.get(i).unwrap_or(i).clone())
                .collect();
            node.rewired(&inputs, &node.outputs.clone())
        })
        .collect();
    Ok(Some((nodes, softmaxes)))
}

/// The outputs of every `Where` computed from the attention mask alone that
/// chooses between 0 and a masking constant (at most [`MASKED_OUT`]).
fn mask_terms(nodes: &[Node], initializers: &[&[u8]]) -> Result<HashSet<String>, ProtoError> {
    let masked = dependent(nodes, &[MASK]);
    let tokens = dependent(nodes, &TOKENS);
    let constants = Constants {
        nodes,
        initializers,
    };
    let mut terms = HashSet::new();
    for node in nodes {
        let [condition, x, y] = node.inputs.as_slice() else {
            continue;
        };
        let from_mask_alone = masked.contains(condition) && !tokens.contains(condition);
        if node.op == "Where" && from_mask_alone && selects_zero_or_masked(&constants, x, y)? {
            terms.insert(node.outputs[0].clone());
        }
    }
    Ok(terms)
}

/// Whether one of `x`, `y` is a constant 0 and the other a masking constant.
fn selects_zero_or_masked(constants: &Constants, x: &str, y: &str) -> Result<bool, ProtoError> {
    let (Some(x), Some(y)) = (constants.floats(x)?, constants.floats(y)?) else {
        return Ok(false);
    };
    let zero = |v: &[f32]| !v.is_empty() && v.iter().all(|&f| f == 0.0);
    let masking = |v: &[f32]| !v.is_empty() && v.iter().all(|&f| f <= MASKED_OUT);
    Ok(zero(&x) && masking(&y) || masking(&x) && zero(&y))
}

/// The small float constants of a graph: `Constant` nodes and initializers.
struct Constants<'a> {
    nodes: &'a [Node],
    initializers: &'a [&'a [u8]],
}

impl Constants<'_> {
    /// The values of the float constant `name` of at most [`MAX_CONSTANT`]
    /// elements; `None` for anything else.
    fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, ProtoError> {
        if let Some(node) = self
            .nodes
            .iter()
            .find(|n| n.op == "Constant" && n.outputs.first().is_some_and(|o| o == name))
        {
            for attribute in proto::messages(&node.fields, NODE_ATTRIBUTE)? {
                if proto::string(&attribute, ATTRIBUTE_NAME) != "value" {
                    continue;
                }
                let tensor = attribute.iter().find(|f| f.number() == ATTRIBUTE_TENSOR);
                return match tensor.and_then(Field::bytes) {
                    Some(tensor) => float_values(tensor),
                    None => Ok(None),
                };
            }
            return Ok(None);
        }
        for tensor in self.initializers {
            let named = proto::payloads(tensor, TENSOR_NAME)?;
            if named.first().is_some_and(|n| *n == name.as_bytes()) {
                return float_values(tensor);
            }
        }
        Ok(None)
    }
}

/// The values of a serialized float `TensorProto` of at most
/// [`MAX_CONSTANT`] elements (raw or `float_data`).
fn float_values(tensor: &[u8]) -> Result<Option<Vec<f32>>, ProtoError> {
    let fields = proto::parse(tensor)?;
    if proto::int(&fields, TENSOR_DATA_TYPE) != Some(FLOAT) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    for field in &fields {
        match field {
            Field::Bytes(TENSOR_RAW_DATA | TENSOR_FLOAT_DATA, b) => bytes.extend_from_slice(b),
            Field::Fixed32(TENSOR_FLOAT_DATA, b) => bytes.extend_from_slice(b),
            _ => {}
        }
    }
    if bytes.len() % 4 != 0 || bytes.len() > 4 * MAX_CONSTANT {
        return Ok(None);
    }
    Ok(Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

/// Every value computed from the contents of the graph inputs `from` (nodes
/// are in topological order, as ONNX requires; a shape is not contents).
fn dependent(nodes: &[Node], from: &[&str]) -> HashSet<String> {
    let mut values: HashSet<String> = from.iter().map(|s| s.to_string()).collect();
    for node in nodes {
        let shape_only = matches!(node.op.as_str(), "Shape" | "Size");
        if !shape_only && node.inputs.iter().any(|i| values.contains(i)) {
            values.extend(node.outputs.iter().filter(|o| !o.is_empty()).cloned());
        }
    }
    values
}

/// For a softmax input computed as `Add(scores, term)`, where the term is one
/// of `mask_terms` and the scores come from the tokens: the scores.
fn bare_scores(
    nodes: &[Node],
    producers: &HashMap<String, usize>,
    mask_terms: &HashSet<String>,
    tokens: &HashSet<String>,
    input: &str,
) -> Option<String> {
    let add = &nodes[*producers.get(input)?];
    let [a, b] = add.inputs.as_slice() else {
        return None;
    };
    if add.op != "Add" {
        return None;
    }
    let scores = |v: &String| tokens.contains(v) && !mask_terms.contains(v);
    match (mask_terms.contains(a), mask_terms.contains(b)) {
        (true, false) if scores(b) => Some(b.clone()),
        (false, true) if scores(a) => Some(a.clone()),
        _ => None,
    }
}

/// The output of `Where(IsNaN(p), _, p)` for the softmax output `p`, if the
/// graph guards it so.
fn nan_guard(nodes: &[Node], p: &str) -> Option<String> {
    let is_nan: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.op == "IsNaN" && n.inputs.first().is_some_and(|i| i == p))
        .map(|n| n.outputs[0].as_str())
        .collect();
    nodes
        .iter()
        .find(|n| {
            n.op == "Where"
                && n.inputs.len() == 3
                && is_nan.contains(n.inputs[0].as_str())
                && n.inputs[2] == p
        })
        .map(|n| n.outputs[0].clone())
}

/// The nodes some graph output depends on, in their order.
fn live(nodes: Vec<Node>, outputs: HashSet<String>) -> Vec<Node> {
    let mut needed = outputs;
    let mut kept: Vec<Node> = Vec::with_capacity(nodes.len());
    for node in nodes.into_iter().rev() {
        if node.outputs.iter().any(|o| needed.contains(o)) {
            needed.extend(node.inputs.iter().filter(|i| !i.is_empty()).cloned());
            kept.push(node);
        }
    }
    kept.reverse();
    kept
}

/// Whether any attribute of `node` holds a subgraph.
fn has_subgraph(node: &Node) -> Result<bool, ProtoError> {
    Ok(proto::messages(&node.fields, NODE_ATTRIBUTE)?
        .iter()
        .any(|a| {
            a.iter()
                .any(|f| matches!(f.number(), ATTRIBUTE_GRAPH | ATTRIBUTE_GRAPHS))
        }))
}

#[cfg(test)]
mod tests {
    use super::super::onnx::text;
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

    fn nodes_of(model: &[u8]) -> Vec<Node> {
        let model = proto::parse(model).unwrap();
        let graph = proto::messages(&model, MODEL_GRAPH).unwrap().remove(0);
        proto::messages(&graph, GRAPH_NODE)
            .unwrap()
            .iter()
            .map(|n| Node::parse(&proto::encode(n)).unwrap())
            .collect()
    }

    #[test]
    fn the_bundled_models_lose_their_attention_masking() {
        for name in [
            "crossflow-sts-minilm-l6",
            "crossflow-nli-minilm-l6",
            "all-minilm-l6-v2",
        ] {
            let original = bundled(name);
            let rewritten = rewrite(&original).unwrap().expect(name);
            assert_eq!(rewritten.softmaxes, 6, "{name}: one per layer");
            let nodes = nodes_of(&rewritten.bytes);
            assert!(nodes.iter().all(|n| n.op != "IsNaN"), "{name}: guards gone");
            assert!(
                nodes.iter().all(|n| !n.inputs.iter().any(|i| i == MASK)),
                "{name}: nothing reads the mask"
            );
            let softmax_inputs: Vec<&str> = nodes
                .iter()
                .filter(|n| n.op == "Softmax")
                .map(|n| n.inputs[0].as_str())
                .collect();
            assert!(
                softmax_inputs
                    .iter()
                    .all(|i| i.ends_with("MatMul_output_0")),
                "{softmax_inputs:?}"
            );
            let before = nodes_of(&original).len();
            assert!(
                nodes.len() < before,
                "{name}: {} of {before} nodes",
                nodes.len()
            );
        }
    }

    /// A `Constant` node giving the float `value`.
    fn constant(name: &str, value: f32) -> Node {
        let tensor = proto::encode(&[
            Field::Varint(TENSOR_DATA_TYPE, FLOAT),
            Field::Bytes(TENSOR_RAW_DATA, value.to_le_bytes().to_vec()),
        ]);
        let attribute = proto::encode(&[
            text(ATTRIBUTE_NAME, "value"),
            Field::Bytes(ATTRIBUTE_TENSOR, tensor),
        ]);
        Node::new(
            "Constant",
            &[],
            &[name],
            vec![Field::Bytes(NODE_ATTRIBUTE, attribute)],
        )
    }

    /// One attention layer as the exporter writes it: the mask term added
    /// to the scores, the softmax, its NaN guard, the product with `v`.
    fn masked_attention() -> Vec<Node> {
        vec![
            constant("zero", 0.0),
            constant("ninf", f32::NEG_INFINITY),
            Node::new("Cast", &[MASK], &["m"], vec![]),
            Node::new("Shape", &["input_ids"], &["shape"], vec![]),
            Node::new("Expand", &["m", "shape"], &["m2"], vec![]),
            Node::new("Where", &["m2", "zero", "ninf"], &["term"], vec![]),
            Node::new("Gather", &["embeddings", "input_ids"], &["q"], vec![]),
            Node::new("MatMul", &["q", "k"], &["scores"], vec![]),
            Node::new("Add", &["scores", "term"], &["biased"], vec![]),
            Node::new("Softmax", &["biased"], &["p"], vec![]),
            Node::new("IsNaN", &["p"], &["nan"], vec![]),
            Node::new("Where", &["nan", "zero", "p"], &["guarded"], vec![]),
            Node::new("MatMul", &["guarded", "v"], &["out"], vec![]),
        ]
    }

    /// A serialized model of `nodes` with the graph outputs `outputs`.
    fn model(nodes: &[Node], outputs: &[&str]) -> Vec<u8> {
        let mut graph: Vec<Field> = nodes
            .iter()
            .map(|n| Field::Bytes(GRAPH_NODE, proto::encode(&n.fields)))
            .collect();
        for output in outputs {
            graph.push(Field::Bytes(
                GRAPH_OUTPUT,
                proto::encode(&[text(1, output)]),
            ));
        }
        proto::encode(&[Field::Bytes(MODEL_GRAPH, proto::encode(&graph))])
    }

    fn ops_and_inputs(nodes: &[Node]) -> Vec<String> {
        nodes
            .iter()
            .map(|n| format!("{}({})", n.op, n.inputs.join(",")))
            .collect()
    }

    #[test]
    fn the_mask_term_the_guard_and_what_fed_only_them_go() {
        let rewritten = rewrite(&model(&masked_attention(), &["out"]))
            .unwrap()
            .unwrap();
        assert_eq!(rewritten.softmaxes, 1);
        assert_eq!(
            ops_and_inputs(&nodes_of(&rewritten.bytes)),
            [
                "Gather(embeddings,input_ids)",
                "MatMul(q,k)",
                "Softmax(scores)",
                "MatMul(p,v)"
            ]
        );
        let kept = rewrite(&model(&masked_attention(), &["out", "guarded"]))
            .unwrap()
            .unwrap();
        let ops = ops_and_inputs(&nodes_of(&kept.bytes));
        assert!(ops.contains(&"IsNaN(p)".to_string()), "{ops:?}");
        assert!(
            ops.contains(&"Where(nan,zero,p)".to_string()),
            "a graph output stays: {ops:?}"
        );
        assert!(ops.contains(&"MatMul(p,v)".to_string()), "{ops:?}");
    }

    #[test]
    fn a_graph_with_subgraphs_is_left_alone() {
        let mut nodes = masked_attention();
        let branch = proto::encode(&[
            text(ATTRIBUTE_NAME, "then_branch"),
            Field::Bytes(ATTRIBUTE_GRAPH, vec![]),
        ]);
        nodes.push(Node::new(
            "If",
            &["cond"],
            &["x"],
            vec![Field::Bytes(NODE_ATTRIBUTE, branch)],
        ));
        assert!(rewrite(&model(&nodes, &["out", "x"])).unwrap().is_none());
    }

    #[test]
    fn a_softmax_over_unmasked_scores_is_left_alone() {
        let unmask = |nodes: Vec<Node>| unmask(nodes, &[]).unwrap();
        let replace = |from: &str, to: Node| -> Vec<Node> {
            masked_attention()
                .into_iter()
                .map(|n| if n.outputs[0] == from { to.clone() } else { n })
                .collect()
        };
        assert!(
            unmask(masked_attention()).is_some(),
            "the layer as exported"
        );
        let bias = replace("ninf", constant("ninf", 0.5));
        assert!(
            unmask(bias).is_none(),
            "a term that is not a mask (0 or 0.5)"
        );
        let mixed = replace("m2", Node::new("Mul", &["input_ids", "m"], &["m2"], vec![]));
        assert!(
            unmask(mixed).is_none(),
            "a condition computed from the tokens too"
        );
        let masked_scores = replace("scores", Node::new("Mul", &["k", "m"], &["scores"], vec![]));
        assert!(
            unmask(masked_scores).is_none(),
            "scores computed from the mask alone"
        );
        let no_term = replace(
            "biased",
            Node::new("Add", &["scores", "bias"], &["biased"], vec![]),
        );
        assert!(unmask(no_term).is_none(), "no mask term");
    }
}
