//! The split per pair on hand-built graphs and on the bundled models (their
//! results are checked against one-pair runs in `graph::tests`).

use super::super::onnx::{GRAPH_NODE, MODEL_GRAPH, MODEL_OPSET};
use super::super::proto;
use super::super::unpadded;
use super::*;

fn nodes_of(model: &[u8]) -> Vec<Node> {
    let model = proto::parse(model).unwrap();
    let graph = proto::messages(&model, MODEL_GRAPH).unwrap().remove(0);
    proto::messages(&graph, GRAPH_NODE)
        .unwrap()
        .iter()
        .map(|n| Node::parse(&proto::encode(n)).unwrap())
        .collect()
}

fn count(nodes: &[Node], op: &str) -> usize {
    nodes.iter().filter(|n| n.op == op).count()
}

#[test]
fn every_quantizer_of_the_bundled_unmasked_models_runs_per_pair() {
    for name in [
        "crossflow-sts-minilm-l6",
        "crossflow-nli-minilm-l6",
        "all-minilm-l6-v2",
    ] {
        let original = std::fs::read(super::super::bundled_int8(name)).unwrap();
        let unmasked = unpadded::rewrite(&original).unwrap().expect(name).bytes;
        let before = nodes_of(&unmasked);
        let rewritten = rewrite(&unmasked, 4).unwrap().expect(name);
        let after = nodes_of(&rewritten.bytes);
        let quantizers = count(&before, "DynamicQuantizeLinear");
        assert!(quantizers >= 24, "{name}: {quantizers}");
        assert_eq!(rewritten.quantizers, quantizers, "{name}");
        assert_eq!(count(&after, "DynamicQuantizeLinear"), 4 * quantizers);
        assert_eq!(count(&after, "Split"), count(&before, "Split") + quantizers);
        let products = count(&before, "MatMulInteger");
        assert_eq!(count(&after, "MatMulInteger"), 4 * products, "{name}");
        assert_eq!(
            count(&after, "Concat"),
            count(&before, "Concat") + products,
            "{name}: one concatenation per product"
        );
        assert!(
            after
                .iter()
                .filter(|n| n.op == "MatMulInteger")
                .all(|n| n.inputs[0].starts_with(PREFIX)),
            "{name}: every product reads one pair's quantized rows"
        );
    }
}

/// `x → DynamicQuantizeLinear → MatMulInteger(W) → Cast → Mul(scale · w_scale) → Add(bias)`,
/// with `extra` nodes after it, in a model of operator set `opset`.
fn product_graph(opset: u64, extra: &[Node]) -> Vec<u8> {
    let mut nodes = vec![
        Node::new("DynamicQuantizeLinear", &["x"], &["y", "s", "z"], vec![]),
        Node::new("MatMulInteger", &["y", "w", "z", "wz"], &["p"], vec![]),
        Node::new("Cast", &["p"], &["c"], vec![int_attribute("to", 1)]),
        Node::new("Mul", &["s", "ws"], &["f"], vec![]),
        Node::new("Mul", &["c", "f"], &["m"], vec![]),
        Node::new("Add", &["bias", "m"], &["out"], vec![]),
    ];
    nodes.extend(extra.iter().cloned());
    model(opset, &nodes)
}

/// A model of operator set `opset` with `nodes` and the product's initializers.
fn model(opset: u64, nodes: &[Node]) -> Vec<u8> {
    let mut graph = graph_fields(nodes, vec![]);
    for (name, data_type) in [("w", 3), ("wz", 3), ("ws", 1), ("bias", 1)] {
        graph.push(tensor(name, data_type, &[1], vec![0; 4]));
    }
    proto::encode(&[
        Field::Bytes(MODEL_OPSET, proto::encode(&[Field::Varint(2, opset)])),
        Field::Bytes(MODEL_GRAPH, proto::encode(&graph)),
    ])
}

#[test]
fn a_product_chain_is_copied_per_pair_and_concatenated_back() {
    let rewritten = rewrite(&product_graph(17, &[]), 3)
        .unwrap()
        .expect("handled");
    assert_eq!(rewritten.quantizers, 1);
    let nodes = nodes_of(&rewritten.bytes);
    let ops: Vec<&str> = nodes.iter().map(|n| n.op.as_str()).collect();
    let chain = [
        "DynamicQuantizeLinear",
        "Mul",
        "MatMulInteger",
        "Cast",
        "Mul",
        "Add",
    ];
    let mut expected = vec!["Split"];
    (0..3).for_each(|_| expected.extend(chain));
    expected.push("Concat");
    assert_eq!(ops, expected);
    let concat = nodes.last().unwrap();
    assert_eq!(concat.outputs, ["out"]);
    assert_eq!(
        concat.inputs,
        [
            "crossflow_pg0_out",
            "crossflow_pg1_out",
            "crossflow_pg2_out"
        ]
    );
    let second = &nodes[1 + chain.len()];
    assert_eq!(second.inputs, ["crossflow_pg1_x"]);
    assert_eq!(nodes[0].inputs, ["x", "crossflow_pg_ones"]);
}

#[test]
fn graphs_it_does_not_handle_are_left_alone() {
    let reads = |op: &str, input: &str| [Node::new(op, &[input], &["other"], vec![])];
    let cases = [
        ("a group of one", rewrite(&product_graph(17, &[]), 1)),
        ("operator set 12", rewrite(&product_graph(12, &[]), 2)),
        (
            "scale read elsewhere",
            rewrite(&product_graph(17, &reads("Relu", "s")), 2),
        ),
        (
            "quantized values read elsewhere",
            rewrite(&product_graph(17, &reads("Cast", "y")), 2),
        ),
        (
            "product read elsewhere",
            rewrite(&product_graph(17, &reads("Relu", "c")), 2),
        ),
    ];
    for (case, result) in cases {
        assert!(result.unwrap().is_none(), "{case}");
    }
    let no_quantizer = model(17, &reads("Relu", "x"));
    assert!(rewrite(&no_quantizer, 2).unwrap().is_none(), "no quantizer");
}
