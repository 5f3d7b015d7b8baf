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
    ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS, GRAPH_NODE, GRAPH_OUTPUT, MODEL_GRAPH, NODE_ATTRIBUTE, Node,
};
use super::proto::{self, Field, ProtoError};

/// The graph input the removed masking is computed from.
const MASK: &str = "attention_mask";

/// The graph inputs the hidden states, and so the attention scores, are
/// computed from.
const TOKENS: [&str; 2] = ["input_ids", "token_type_ids"];

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
    let Some((nodes, softmaxes)) = unmask(nodes) else {
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
fn unmask(mut nodes: Vec<Node>) -> Option<(Vec<Node>, usize)> {
    let values = Values {
        masked: dependent(&nodes, &[MASK]),
        tokens: dependent(&nodes, &TOKENS),
    };
    let producers: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i)))
        .collect();
    let mut renamed = HashMap::new();
    let mut softmaxes = 0;
    for i in 0..nodes.len() {
        if nodes[i].op != "Softmax" || nodes[i].inputs.len() != 1 {
            continue;
        }
        let Some(scores) = bare_scores(&nodes, &producers, &values, &nodes[i].inputs[0]) else {
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
        return None;
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
    Some((nodes, softmaxes))
}

/// What the values of a graph are computed from.
struct Values {
    /// From the attention mask.
    masked: HashSet<String>,
    /// From the tokens (the hidden states).
    tokens: HashSet<String>,
}

/// Every value computed from the contents of the graph inputs `from` (nodes
/// are in topological order, as ONNX requires; a shape is not contents).
fn dependent(nodes: &[Node], from: &[&str]) -> HashSet<String> {
    let mut values: HashSet<String> = from.iter().map(|s| s.to_string()).collect();
    for node in nodes {
        let shape_only = matches!(node.op.as_str(), "Shape" | "Size");
        if !shape_only && node.inputs.iter().any(|i| values.contains(i)) {
            values.extend(node.outputs.iter().cloned());
        }
    }
    values
}

/// For a softmax input computed as `Add(scores, Where(..))`, the `Where`
/// computed from the mask alone and the scores from the tokens: the scores.
fn bare_scores(
    nodes: &[Node],
    producers: &HashMap<String, usize>,
    values: &Values,
    input: &str,
) -> Option<String> {
    let add = &nodes[*producers.get(input)?];
    let [a, b] = add.inputs.as_slice() else {
        return None;
    };
    let mask_term = |v: &String| {
        values.masked.contains(v)
            && !values.tokens.contains(v)
            && producers.get(v).is_some_and(|&p| nodes[p].op == "Where")
    };
    let scores = |v: &String| values.tokens.contains(v) && !mask_term(v);
    match (mask_term(a), mask_term(b)) {
        _ if add.op != "Add" => None,
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

    #[test]
    fn a_softmax_over_unmasked_scores_is_left_alone() {
        let nodes = [
            Node::new("Gather", &["embeddings", "input_ids"], &["q"], vec![]),
            Node::new("MatMul", &["q", "k"], &["scores"], vec![]),
            Node::new("Add", &["scores", "bias"], &["biased"], vec![]),
            Node::new("Softmax", &["biased"], &["p"], vec![]),
        ];
        assert!(unmask(nodes.to_vec()).is_none(), "no mask term");
        let mixed_term = [
            Node::new("Gather", &["embeddings", "input_ids"], &["q"], vec![]),
            Node::new("Mul", &["q", MASK], &["qm"], vec![]),
            Node::new("Where", &["qm", "zero", "ninf"], &["term"], vec![]),
            Node::new("MatMul", &["q", "k"], &["scores"], vec![]),
            Node::new("Add", &["scores", "term"], &["biased"], vec![]),
            Node::new("Softmax", &["biased"], &["p"], vec![]),
        ];
        assert!(
            unmask(mixed_term.to_vec()).is_none(),
            "a term computed from the tokens too"
        );
        let masked_scores = [
            Node::new("Where", &[MASK, "zero", "ninf"], &["term"], vec![]),
            Node::new("Mul", &["k", MASK], &["scores"], vec![]),
            Node::new("Add", &["scores", "term"], &["biased"], vec![]),
            Node::new("Softmax", &["biased"], &["p"], vec![]),
        ];
        assert!(
            unmask(masked_scores.to_vec()).is_none(),
            "scores computed from the mask alone"
        );
    }

    #[test]
    fn dead_nodes_go_and_graph_outputs_stay() {
        let nodes = vec![
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
        ];
        let (nodes, softmaxes) = unmask(nodes).unwrap();
        assert_eq!(softmaxes, 1);
        let kept = live(nodes, HashSet::from(["out".to_string()]));
        let ops: Vec<(&str, &[String])> = kept
            .iter()
            .map(|n| (n.op.as_str(), &n.inputs[..]))
            .collect();
        assert_eq!(
            ops,
            [
                (
                    "Gather",
                    &["embeddings".to_string(), "input_ids".to_string()][..]
                ),
                ("MatMul", &["q".to_string(), "k".to_string()][..]),
                ("Softmax", &["scores".to_string()][..]),
                ("MatMul", &["p".to_string(), "v".to_string()][..]),
            ]
        );
    }
}
