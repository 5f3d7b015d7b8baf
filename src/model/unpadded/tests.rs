//! The unmasking on hand-built graphs and on the bundled models.
use super::super::onnx::{GRAPH_NODE, MODEL_GRAPH, TENSOR_DATA_TYPE, TENSOR_RAW_DATA, text};
use super::constants::{ATTRIBUTE_NAME, ATTRIBUTE_TENSOR, FLOAT};
use super::*;

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(super::super::bundled_int8(name)).unwrap()
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
