//! A graph's large constant tensors (its weights), read once so that every
//! session of the graph can use the same copy in memory.
//!
//! Each ONNX Runtime session otherwise keeps its own copy of every weight.
//! crossflow runs one single-threaded session per core, and a one-pair run
//! streams all of the model's weights through the caches: with one copy per
//! session, the cores compete for the shared last-level cache (see
//! docs/performance.md, "One copy of the weights").

use std::collections::HashMap;

use super::onnx::{GRAPH_INITIALIZER, MODEL_GRAPH, TENSOR_DATA_TYPE, TENSOR_RAW_DATA, tensor_name};
use super::proto::{self, ProtoError};

/// Initializers smaller than this stay in each session (biases, scales, the
/// constants of the graph rewrites): sharing them saves nothing.
const MIN_SHARED_BYTES: usize = 16 * 1024;

/// `TensorProto.dims`.
const TENSOR_DIMS: u32 = 1;
/// `TensorProto.data_location` (1: the data is in another file).
const TENSOR_DATA_LOCATION: u32 = 14;

/// One initializer's raw little-endian data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Initializer {
    pub name: String,
    pub dims: Vec<i64>,
    pub data: TensorData,
}

/// An initializer's elements, by element type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TensorData {
    F32(Vec<f32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// The initializers of `model`'s main graph of at least 16 KiB stored in the
/// model itself as raw data of a plain numeric type; others are left to each
/// session.
///
/// A name given to several initializers is left to each session (ONNX
/// Runtime takes the last of them; a value given twice would fail the load).
pub(crate) fn large_initializers(model: &[u8]) -> Result<Vec<Initializer>, ProtoError> {
    let mut found = Vec::new();
    let mut names = HashMap::new();
    for graph in proto::payloads(model, MODEL_GRAPH)? {
        for tensor in proto::payloads(graph, GRAPH_INITIALIZER)? {
            let name = tensor_name(tensor)?;
            *names.entry(name.clone()).or_insert(0) += 1;
            found.extend(initializer(tensor, name)?);
        }
    }
    found.retain(|i: &Initializer| names.get(&i.name) == Some(&1));
    Ok(found)
}

/// The initializer `tensor`, named `name`, if it can be shared.
fn initializer(tensor: &[u8], name: String) -> Result<Option<Initializer>, ProtoError> {
    let raw = match proto::payloads(tensor, TENSOR_RAW_DATA)?.as_slice() {
        [raw] if raw.len() >= MIN_SHARED_BYTES => *raw,
        _ => return Ok(None),
    };
    if proto::varints(tensor, TENSOR_DATA_LOCATION)?.last() == Some(&1) {
        return Ok(None);
    }
    let dims = proto::varints(tensor, TENSOR_DIMS)?;
    let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    let data_type = proto::varints(tensor, TENSOR_DATA_TYPE)?.last().copied();
    let Some(data) = data_type.and_then(|t| TensorData::from_raw(t, raw)) else {
        return Ok(None);
    };
    if elements != Some(data.len() as u64) {
        return Ok(None);
    }
    Ok((!name.is_empty()).then(|| Initializer {
        name,
        dims: dims.iter().map(|&d| d as i64).collect(),
        data,
    }))
}

impl TensorData {
    /// `raw` as elements of ONNX's `TensorProto.DataType` `data_type`;
    /// `None` for other types or a length that is not a whole number of them.
    fn from_raw(data_type: u64, raw: &[u8]) -> Option<Self> {
        fn chunks<const N: usize, T>(raw: &[u8], read: fn([u8; N]) -> T) -> Option<Vec<T>> {
            raw.len().is_multiple_of(N).then(|| {
                raw.chunks_exact(N)
                    .map(|c| read(c.try_into().expect("chunks of N bytes")))
                    .collect()
            })
        }
        match data_type {
            1 => chunks(raw, f32::from_le_bytes).map(Self::F32),
            2 => Some(Self::U8(raw.to_vec())),
            3 => Some(Self::I8(raw.iter().map(|&b| b as i8).collect())),
            6 => chunks(raw, i32::from_le_bytes).map(Self::I32),
            7 => chunks(raw, i64::from_le_bytes).map(Self::I64),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::onnx::tensor;
    use super::super::proto::{Field, encode};
    use super::*;

    fn model(tensors: Vec<Field>) -> Vec<u8> {
        encode(&[Field::Bytes(MODEL_GRAPH, encode(&tensors))])
    }

    #[test]
    fn large_raw_initializers_are_read_with_their_type_and_shape() {
        let weights: Vec<u8> = (0..8192u32)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let int8: Vec<u8> = (0..=255u8).cycle().take(384 * 64).collect();
        let found = large_initializers(&model(vec![
            tensor("w", 1, &[64, 128], weights),
            tensor("q", 3, &[384, 64], int8),
            tensor("bias", 1, &[384], vec![0; 384 * 4]),
        ]))
        .unwrap();
        assert_eq!(found.len(), 2, "the bias is too small to share");
        assert_eq!(
            (found[0].name.as_str(), &found[0].dims[..]),
            ("w", &[64, 128][..])
        );
        assert_eq!(
            found[0].data,
            TensorData::F32((0..8192).map(|i| i as f32).collect())
        );
        assert_eq!(found[1].dims, [384, 64]);
        let TensorData::I8(q) = &found[1].data else {
            panic!("{:?}", found[1].data)
        };
        assert_eq!((q[127], q[128], q[255]), (127, -128, -1));
    }

    #[test]
    fn initializers_it_cannot_read_whole_stay_in_each_session() {
        let big = vec![0u8; 64 * 1024];
        let found = large_initializers(&model(vec![
            tensor("strings", 8, &[1024], big.clone()),
            tensor("short", 1, &[64, 1024], big.clone()),
            tensor("", 1, &[16, 1024], big.clone()),
            tensor("twice", 1, &[16, 1024], big.clone()),
            tensor("twice", 1, &[16, 1024], big.clone()),
        ]))
        .unwrap();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn the_bundled_graphs_share_their_weight_matrices() {
        for name in ["crossflow-sts-minilm-l6", "all-minilm-l6-v2"] {
            let bytes = std::fs::read(super::super::bundled_int8(name)).unwrap();
            let found = large_initializers(&bytes).unwrap();
            let elements: usize = found.iter().map(|i| i.data.len()).sum();
            // Six layers of 4 × 384² + 2 × 384 × 1536 int8 weights, and the embeddings.
            assert!(found.len() >= 36, "{name}: {}", found.len());
            assert!(elements >= 6 * 1_769_472, "{name}: {elements}");
        }
    }
}
