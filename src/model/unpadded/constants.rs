//! The float constants a mask term chooses between, read from `Constant`
//! nodes and initializers.

use super::super::onnx::{
    NODE_ATTRIBUTE, Node, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_RAW_DATA, tensor_name,
};
use super::super::proto::{self, Field, ProtoError};

/// A mask term's value where attention is masked out is at most this.
const MASKED_OUT: f32 = -1e4;
/// ONNX field numbers beyond [`super::super::onnx`]'s.
pub(super) const ATTRIBUTE_NAME: u32 = 1;
pub(super) const ATTRIBUTE_TENSOR: u32 = 5;
/// `TensorProto.DataType` of float32.
pub(super) const FLOAT: u64 = 1;
/// Constants larger than this are not read (a mask term's are scalars).
const MAX_CONSTANT: usize = 16;

/// Whether one of `x`, `y` is a constant 0 and the other a masking constant
/// (at most [`MASKED_OUT`]).
pub(super) fn selects_zero_or_masked(
    constants: &Constants,
    x: &str,
    y: &str,
) -> Result<bool, ProtoError> {
    let (Some(x), Some(y)) = (constants.floats(x)?, constants.floats(y)?) else {
        return Ok(false);
    };
    let zero = |v: &[f32]| !v.is_empty() && v.iter().all(|&f| f == 0.0);
    let masking = |v: &[f32]| !v.is_empty() && v.iter().all(|&f| f <= MASKED_OUT);
    Ok(zero(&x) && masking(&y) || masking(&x) && zero(&y))
}

/// The small float constants of a graph: `Constant` nodes and initializers.
pub(super) struct Constants<'a> {
    pub(super) nodes: &'a [Node],
    pub(super) initializers: &'a [&'a [u8]],
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
            if tensor_name(tensor)? == name {
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
