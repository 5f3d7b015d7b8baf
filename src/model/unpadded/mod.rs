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
    ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS, GRAPH_INITIALIZER, GRAPH_OUTPUT, NODE_ATTRIBUTE, Node,
    edit_graph, graph_fields, nodes_and_rest,
};
use super::proto::{self, Field, ProtoError};

mod constants;
#[cfg(test)]
mod tests;

use constants::{Constants, selects_zero_or_masked};

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
    let edited = edit_graph(model, |_, graph| {
        let (nodes, rest) = nodes_and_rest(graph)?;
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
        Ok(Some((graph_fields(&live(nodes, outputs), rest), softmaxes)))
    })?;
    Ok(edited.map(|(bytes, softmaxes)| Rewritten { bytes, softmaxes }))
}

/// The nodes with every masked softmax reading the bare scores and every
/// reader of its NaN guard reading the softmax; `None` if there is none.
fn unmask(
    mut nodes: Vec<Node>,
    initializers: &[&[u8]],
) -> Result<Option<(Vec<Node>, usize)>, ProtoError> {
    let tokens = dependent(&nodes, &TOKENS);
    let mask_terms = mask_terms(&nodes, initializers, &tokens)?;
    let producers: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i)))
        .filter(|(o, _)| !o.is_empty())
        .collect();
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
    for node in nodes
        .iter_mut()
        .filter(|n| n.inputs.iter().any(|i| renamed.contains_key(i)))
    {
        let inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|i| renamed.get(i).unwrap_or(i).clone())
            .collect();
        *node = node.rewired(&inputs, &node.outputs);
    }
    Ok(Some((nodes, softmaxes)))
}

/// The outputs of every `Where` computed from the attention mask alone that
/// chooses between 0 and a masking constant (see [`selects_zero_or_masked`]).
fn mask_terms(
    nodes: &[Node],
    initializers: &[&[u8]],
    tokens: &HashSet<String>,
) -> Result<HashSet<String>, ProtoError> {
    let masked = dependent(nodes, &[MASK]);
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
