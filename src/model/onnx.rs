//! ONNX messages as protobuf fields (see [`super::proto`]): the field numbers
//! of `onnx.proto` that graph edits need, nodes, attributes and tensors.

use super::proto::{self, Field, ProtoError};

pub(super) const MODEL_GRAPH: u32 = 7;
pub(super) const MODEL_OPSET: u32 = 8;
pub(super) const GRAPH_NODE: u32 = 1;
pub(super) const GRAPH_INITIALIZER: u32 = 5;
pub(super) const GRAPH_INPUT: u32 = 11;
pub(super) const GRAPH_OUTPUT: u32 = 12;
pub(super) const NODE_INPUT: u32 = 1;
pub(super) const NODE_OUTPUT: u32 = 2;
pub(super) const NODE_OP_TYPE: u32 = 4;
pub(super) const NODE_ATTRIBUTE: u32 = 5;
pub(super) const ATTRIBUTE_GRAPH: u32 = 6;
pub(super) const ATTRIBUTE_GRAPHS: u32 = 11;
pub(super) const TENSOR_DATA_TYPE: u32 = 2;
pub(super) const TENSOR_FLOAT_DATA: u32 = 4;
pub(super) const TENSOR_NAME: u32 = 8;
pub(super) const TENSOR_RAW_DATA: u32 = 9;

/// The version of the default (`ai.onnx`) operator set the model imports (0 if none).
pub(super) fn opset(model: &[Field]) -> Result<u64, ProtoError> {
    Ok(proto::messages(model, MODEL_OPSET)?
        .iter()
        .filter(|set| matches!(proto::string(set, 1).as_str(), "" | "ai.onnx"))
        .find_map(|set| proto::int(set, 2))
        .unwrap_or(0))
}

/// The serialized `model` with its main graph replaced by what `edit` makes
/// of it (given the model's fields and the graph's), and what `edit` returned
/// beside it; `None` when the model has no graph or `edit` declines.
pub(super) fn edit_graph<T>(
    model: &[u8],
    edit: impl FnOnce(&[Field], Vec<Field>) -> Result<Option<(Vec<Field>, T)>, ProtoError>,
) -> Result<Option<(Vec<u8>, T)>, ProtoError> {
    let mut model = proto::parse(model)?;
    let Some(at) = model.iter().position(|f| f.number() == MODEL_GRAPH) else {
        return Ok(None);
    };
    let graph = proto::messages(&model[at..=at], MODEL_GRAPH)?.remove(0);
    let Some((graph, made)) = edit(&model, graph)? else {
        return Ok(None);
    };
    model[at] = Field::Bytes(MODEL_GRAPH, proto::encode(&graph));
    Ok(Some((proto::encode(&model), made)))
}

/// A graph's fields split into its nodes, parsed, and its other fields in order.
pub(super) fn nodes_and_rest(graph: Vec<Field>) -> Result<(Vec<Node>, Vec<Field>), ProtoError> {
    let (nodes, rest): (Vec<Field>, Vec<Field>) =
        graph.into_iter().partition(|f| f.number() == GRAPH_NODE);
    let nodes = nodes
        .iter()
        .map(|f| Node::parse(f.bytes().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    Ok((nodes, rest))
}

/// A graph's fields: `nodes`, then `rest`.
pub(super) fn graph_fields(nodes: &[Node], rest: Vec<Field>) -> Vec<Field> {
    let mut fields: Vec<Field> = nodes
        .iter()
        .map(|n| Field::Bytes(GRAPH_NODE, proto::encode(&n.fields)))
        .collect();
    fields.extend(rest);
    fields
}

/// The name of a serialized `TensorProto`, read without copying its data
/// (the last one given, as protobuf reads a repeated scalar field).
pub(super) fn tensor_name(tensor: &[u8]) -> Result<String, ProtoError> {
    let names = proto::payloads(tensor, TENSOR_NAME)?;
    Ok(names
        .last()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default())
}

/// A node as its fields, with its inputs, outputs and operator read out.
#[derive(Clone)]
pub(super) struct Node {
    pub(super) fields: Vec<Field>,
    pub(super) op: String,
    pub(super) inputs: Vec<String>,
    pub(super) outputs: Vec<String>,
}

impl Node {
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, ProtoError> {
        let fields = proto::parse(bytes)?;
        Ok(Self {
            op: proto::string(&fields, NODE_OP_TYPE),
            inputs: proto::strings(&fields, NODE_INPUT),
            outputs: proto::strings(&fields, NODE_OUTPUT),
            fields,
        })
    }

    pub(super) fn new(op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<Field>) -> Self {
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
    pub(super) fn rewired(&self, inputs: &[String], outputs: &[String]) -> Self {
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

    /// The `INT` attribute `name`; a malformed attribute is an error.
    pub(super) fn int_attribute(&self, name: &str) -> Result<Option<u64>, ProtoError> {
        Ok(proto::messages(&self.fields, NODE_ATTRIBUTE)?
            .iter()
            .find(|a| proto::string(a, 1) == name)
            .and_then(|a| proto::int(a, 3)))
    }
}

/// A `TensorProto` initializer field (raw little-endian data).
pub(super) fn tensor(name: &str, data_type: u64, dims: &[u64], raw: Vec<u8>) -> Field {
    let mut fields: Vec<Field> = dims.iter().map(|&d| Field::Varint(1, d)).collect();
    fields.push(Field::Varint(TENSOR_DATA_TYPE, data_type));
    fields.push(text(TENSOR_NAME, name));
    fields.push(Field::Bytes(TENSOR_RAW_DATA, raw));
    Field::Bytes(GRAPH_INITIALIZER, proto::encode(&fields))
}

/// A string field.
pub(super) fn text(number: u32, value: &str) -> Field {
    Field::Bytes(number, value.as_bytes().to_vec())
}

/// An `INT` attribute field of a node.
pub(super) fn int_attribute(name: &str, value: u64) -> Field {
    let fields = [text(1, name), Field::Varint(3, value), Field::Varint(20, 2)];
    Field::Bytes(NODE_ATTRIBUTE, proto::encode(&fields))
}

/// An `INTS` attribute field of a node.
pub(super) fn ints_attribute(name: &str, values: &[u64]) -> Field {
    let mut fields = vec![text(1, name)];
    fields.extend(values.iter().map(|&v| Field::Varint(8, v)));
    fields.push(Field::Varint(20, 7));
    Field::Bytes(NODE_ATTRIBUTE, proto::encode(&fields))
}
