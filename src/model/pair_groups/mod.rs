//! A graph for groups of pairs of one length whose int8 products still run
//! pair by pair.
//!
//! A dynamically quantized graph quantizes the activations of each int8
//! matrix product with one scale for the whole batch, so it runs one pair per
//! batch to keep every pair's result its own, and each run then reads every
//! weight matrix for one pair's tokens. [`rewrite`] makes the graph for
//! batches of exactly `size` pairs of one length, without padding: before each
//! `DynamicQuantizeLinear` the activations are split into the pairs (`Split`
//! on the batch axis), each pair gets its own quantizer and its own copy of
//! the products reading it (the `MatMulInteger`, its `Cast`, the scale `Mul`s
//! and the bias `Add`), which ONNX Runtime fuses into the same
//! `DynamicQuantizeMatMul` a one-pair run uses, and the products' outputs are
//! concatenated back (`Concat`). Everything else (layer norms, attention,
//! GELU) runs on the whole group, row by row as for one pair. Each pair gets
//! bit for bit what it gets alone (checked on probes when the graph loads,
//! [`super::graph::load`]), while the pairs of a group read each weight
//! matrix from the core's cache.
//!
//! It is made from the graph without attention masking ([`super::unpadded`]),
//! whose sessions refuse any batch but `size` pairs without padding.

use std::collections::{HashMap, HashSet};

use super::onnx::{
    GRAPH_INITIALIZER, Node, edit_graph, graph_fields, int_attribute, nodes_and_rest, opset,
    tensor, tensor_name,
};
use super::proto::{Field, ProtoError};

#[cfg(test)]
mod tests;

/// Prefix of every name the rewrite adds to a graph.
const PREFIX: &str = "crossflow_pg";

/// ONNX's `INT64` element type.
const INT64: u64 = 7;

/// What [`rewrite`] did.
#[derive(Debug)]
pub struct Rewritten {
    /// The serialized graph to run.
    pub bytes: Vec<u8>,
    /// `DynamicQuantizeLinear` nodes split per pair.
    pub quantizers: usize,
}

/// Rewrites `model` for groups of `size` pairs of one length; `Ok(None)`
/// when it has no dynamic quantization, one of a shape this does not handle
/// (a quantized value read by anything but the products copied per pair),
/// control flow, or an operator set before 13 (`Split` reads its sizes as an
/// input from 13 on), or when `size` is under 2.
pub fn rewrite(model: &[u8], size: usize) -> Result<Option<Rewritten>, ProtoError> {
    if size < 2 {
        return Ok(None);
    }
    let edited = edit_graph(model, |model, graph| {
        if opset(model)? < 13 {
            return Ok(None);
        }
        let (nodes, mut rest) = nodes_and_rest(graph)?;
        for node in &nodes {
            if node.has_subgraph()? {
                return Ok(None);
            }
        }
        let constants = rest
            .iter()
            .filter(|f| f.number() == GRAPH_INITIALIZER)
            .map(|f| tensor_name(f.bytes().unwrap_or_default()))
            .collect::<Result<HashSet<_>, _>>()?;
        let Some((nodes, quantizers)) = split_per_pair(&nodes, &constants, size) else {
            return Ok(None);
        };
        rest.push(ones(size));
        Ok(Some((graph_fields(&nodes, rest), quantizers)))
    })?;
    Ok(edited.map(|(bytes, quantizers)| Rewritten { bytes, quantizers }))
}

/// The sizes `Split` cuts a group into: one row per pair.
fn ones(size: usize) -> Field {
    let raw = std::iter::repeat_n(1i64, size)
        .flat_map(i64::to_le_bytes)
        .collect();
    tensor(&format!("{PREFIX}_ones"), INT64, &[size as u64], raw)
}

/// The nodes with every quantizer and its products run per pair, and how
/// many quantizers there were; `None` when there is none, or one of a shape
/// [`Chains::of`] does not handle.
fn split_per_pair(
    nodes: &[Node],
    constants: &HashSet<String>,
    size: usize,
) -> Option<(Vec<Node>, usize)> {
    let readers = readers(nodes);
    let mut replaced: HashMap<usize, Vec<Node>> = HashMap::new();
    let mut moved: HashSet<usize> = HashSet::new();
    for (at, node) in nodes.iter().enumerate() {
        if node.op != "DynamicQuantizeLinear" {
            continue;
        }
        let chains = Chains::of(at, nodes, &readers, constants)?;
        moved.extend(chains.members.iter().flatten());
        replaced.insert(at, chains.per_pair(nodes, size));
    }
    if replaced.is_empty() {
        return None;
    }
    let quantizers = replaced.len();
    let mut out = Vec::with_capacity(nodes.len() * 2);
    for (at, node) in nodes.iter().enumerate() {
        match replaced.remove(&at) {
            Some(new) => out.extend(new),
            None if moved.contains(&at) => {}
            None => out.push(node.clone()),
        }
    }
    Some((out, quantizers))
}

/// Which nodes read each value (by index, once per input slot).
fn readers(nodes: &[Node]) -> HashMap<&str, Vec<usize>> {
    let mut map: HashMap<&str, Vec<usize>> = HashMap::new();
    for (at, node) in nodes.iter().enumerate() {
        for input in node.inputs.iter().filter(|i| !i.is_empty()) {
            map.entry(input.as_str()).or_default().push(at);
        }
    }
    map
}

/// One `DynamicQuantizeLinear` and, per product reading it, the nodes that
/// make the product's float output: `[scale Mul, MatMulInteger, Cast, Mul]`
/// and the bias `Add` where there is one.
struct Chains {
    quantizer: usize,
    members: Vec<Vec<usize>>,
}

impl Chains {
    /// The chains of the quantizer at `quantizer`; `None` unless its outputs
    /// are read only by the chains, each chain's values only by the chain's
    /// next node (its last by anything), and each chain reads only the
    /// quantizer's outputs, its own values and initializers.
    fn of(
        quantizer: usize,
        nodes: &[Node],
        readers: &HashMap<&str, Vec<usize>>,
        constants: &HashSet<String>,
    ) -> Option<Self> {
        let outputs = &nodes[quantizer].outputs;
        let [y, scale, zero] = [outputs.first()?, outputs.get(1)?, outputs.get(2)?];
        let read_by = |name: &str| readers.get(name).map_or(&[][..], Vec::as_slice);
        let mut members = Vec::new();
        for &product in read_by(y) {
            members.push(chain(product, nodes, readers, constants, [y, scale, zero])?);
        }
        let in_chains = |name: &str, slot: usize| {
            read_by(name)
                .iter()
                .all(|r| members.iter().any(|c| c[slot] == *r))
        };
        if members.is_empty() || !in_chains(scale, 0) || !in_chains(zero, 1) {
            return None;
        }
        Some(Self { quantizer, members })
    }

    /// The nodes that replace the quantizer and its chains: the split, a
    /// quantizer and a copy of each chain per pair, and a concatenation per
    /// chain giving its last value for the whole group.
    fn per_pair(&self, nodes: &[Node], size: usize) -> Vec<Node> {
        let quantizer = &nodes[self.quantizer];
        let x = &quantizer.inputs[0];
        let mut inner: HashSet<&str> = quantizer.outputs.iter().map(String::as_str).collect();
        for &at in self.members.iter().flatten() {
            inner.extend(nodes[at].outputs.iter().map(String::as_str));
        }
        let name = |value: &str, pair: usize| format!("{PREFIX}{pair}_{value}");
        let parts: Vec<String> = (0..size).map(|pair| name(x, pair)).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let sizes = format!("{PREFIX}_ones");
        let mut out = vec![Node::new(
            "Split",
            &[x, &sizes],
            &parts,
            vec![int_attribute("axis", 0)],
        )];
        for pair in 0..size {
            let rename = |value: &str| match inner.contains(value) || value == x {
                true => name(value, pair),
                false => value.to_string(),
            };
            let suffix = format!("_{PREFIX}{pair}");
            out.push(quantizer.copied(rename, &suffix));
            for &at in self.members.iter().flatten() {
                out.push(nodes[at].copied(rename, &suffix));
            }
        }
        for chain in &self.members {
            let last = &nodes[*chain.last().expect("a chain has nodes")].outputs[0];
            let parts: Vec<String> = (0..size).map(|pair| name(last, pair)).collect();
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            out.push(Node::new(
                "Concat",
                &parts,
                &[last],
                vec![int_attribute("axis", 0)],
            ));
        }
        out
    }
}

/// The chain of the `MatMulInteger` at `product` reading the quantizer's
/// `[y, scale, zero]`: `[scale Mul, product, Cast, Mul]` and the bias `Add`
/// where the `Mul`'s only reader adds an initializer to it.
fn chain(
    product: usize,
    nodes: &[Node],
    readers: &HashMap<&str, Vec<usize>>,
    constants: &HashSet<String>,
    [y, scale, zero]: [&String; 3],
) -> Option<Vec<usize>> {
    let only_reader = |at: usize, op: &str| {
        let out = nodes[at].outputs.first()?;
        match readers.get(out.as_str())?.as_slice() {
            [one] if nodes[*one].op == op => Some(*one),
            _ => None,
        }
    };
    let node = &nodes[product];
    let reads = |slot: usize, value: &str| node.inputs.get(slot).is_some_and(|i| i == value);
    if node.op != "MatMulInteger" || !reads(0, y) || !reads(2, zero) {
        return None;
    }
    let cast = only_reader(product, "Cast")?;
    let mul = only_reader(cast, "Mul")?;
    let factor = nodes[mul]
        .inputs
        .iter()
        .find(|i| **i != nodes[cast].outputs[0])?;
    let scale_mul = readers
        .get(scale.as_str())?
        .iter()
        .copied()
        .find(|&r| nodes[r].op == "Mul" && nodes[r].outputs.first() == Some(factor))?;
    if only_reader(scale_mul, "Mul")? != mul {
        return None;
    }
    let mut members = vec![scale_mul, product, cast, mul];
    if let Some(add) = only_reader(mul, "Add") {
        let mul_out = &nodes[mul].outputs[0];
        if nodes[add]
            .inputs
            .iter()
            .all(|i| i == mul_out || constants.contains(i))
        {
            members.push(add);
        }
    }
    let own: HashSet<&str> = members
        .iter()
        .flat_map(|&m| nodes[m].outputs.iter().map(String::as_str))
        .chain([y.as_str(), scale.as_str(), zero.as_str()])
        .collect();
    let closed = members.iter().all(|&m| {
        nodes[m]
            .inputs
            .iter()
            .all(|i| i.is_empty() || own.contains(i.as_str()) || constants.contains(i))
    });
    closed.then_some(members)
}
