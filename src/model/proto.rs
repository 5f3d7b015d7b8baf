//! Just enough protobuf to edit an ONNX graph: messages as ordered lists of
//! fields, so that everything not touched is written back byte for byte.

use thiserror::Error;

/// A malformed protobuf message.
#[derive(Debug, Error)]
#[error("malformed protobuf at byte {at}: {what}")]
pub struct ProtoError {
    at: usize,
    what: &'static str,
}

/// One field of a message, in wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Varint(u32, u64),
    Fixed64(u32, [u8; 8]),
    Bytes(u32, Vec<u8>),
    Fixed32(u32, [u8; 4]),
}

impl Field {
    /// The field number.
    pub fn number(&self) -> u32 {
        match self {
            Field::Varint(n, _)
            | Field::Fixed64(n, _)
            | Field::Bytes(n, _)
            | Field::Fixed32(n, _) => *n,
        }
    }

    /// The payload of a length-delimited field (`None` for other wire types).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Field::Bytes(_, b) => Some(b),
            _ => None,
        }
    }
}

/// A field as it lies in a message: payloads are borrowed, not copied.
enum Raw<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Bytes(&'a [u8]),
    Fixed32(&'a [u8]),
}

/// Splits a message into its fields.
pub fn parse(bytes: &[u8]) -> Result<Vec<Field>, ProtoError> {
    Ok(raw_fields(bytes)?
        .into_iter()
        .map(|(number, raw)| match raw {
            Raw::Varint(v) => Field::Varint(number, v),
            Raw::Fixed64(b) => Field::Fixed64(number, b.try_into().unwrap_or_default()),
            Raw::Bytes(b) => Field::Bytes(number, b.to_vec()),
            Raw::Fixed32(b) => Field::Fixed32(number, b.try_into().unwrap_or_default()),
        })
        .collect())
}

/// The sub-messages in the fields numbered `number`, parsed. A field of that
/// number that is not length-delimited, or does not parse, is an error: a
/// malformed graph is never read in part.
pub fn messages(fields: &[Field], number: u32) -> Result<Vec<Vec<Field>>, ProtoError> {
    fields
        .iter()
        .filter(|f| f.number() == number)
        .map(|f| match f.bytes() {
            Some(bytes) => parse(bytes),
            None => Err(ProtoError {
                at: 0,
                what: "a sub-message field that is not length-delimited",
            }),
        })
        .collect()
}

/// The payloads of the length-delimited fields numbered `number`, borrowed
/// from `bytes` (for reading a large message without copying it).
pub fn payloads(bytes: &[u8], number: u32) -> Result<Vec<&[u8]>, ProtoError> {
    Ok(raw_fields(bytes)?
        .into_iter()
        .filter_map(|(n, raw)| match raw {
            Raw::Bytes(b) if n == number => Some(b),
            _ => None,
        })
        .collect())
}

/// The integers of the varint field `number` (repeated, packed or not).
pub fn varints(bytes: &[u8], number: u32) -> Result<Vec<u64>, ProtoError> {
    let mut values = Vec::new();
    for (n, raw) in raw_fields(bytes)? {
        match raw {
            Raw::Varint(v) if n == number => values.push(v),
            Raw::Bytes(packed) if n == number => {
                let mut at = 0;
                while at < packed.len() {
                    values.push(varint(packed, &mut at)?);
                }
            }
            _ => {}
        }
    }
    Ok(values)
}

fn raw_fields(bytes: &[u8]) -> Result<Vec<(u32, Raw<'_>)>, ProtoError> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let number = u32::try_from(key >> 3).map_err(|_| ProtoError {
            at,
            what: "field number",
        })?;
        let raw = match key & 7 {
            0 => Raw::Varint(varint(bytes, &mut at)?),
            1 => Raw::Fixed64(take(bytes, &mut at, 8)?),
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?)
                    .map_err(|_| ProtoError { at, what: "length" })?;
                Raw::Bytes(take(bytes, &mut at, len)?)
            }
            5 => Raw::Fixed32(take(bytes, &mut at, 4)?),
            _ => {
                return Err(ProtoError {
                    at,
                    what: "unsupported wire type",
                });
            }
        };
        fields.push((number, raw));
    }
    Ok(fields)
}

/// Writes fields back as a message.
pub fn encode(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        let number = u64::from(field.number()) << 3;
        match field {
            Field::Varint(_, v) => {
                put_varint(&mut out, number);
                put_varint(&mut out, *v);
            }
            Field::Fixed64(_, v) => {
                put_varint(&mut out, number | 1);
                out.extend_from_slice(v);
            }
            Field::Bytes(_, v) => {
                put_varint(&mut out, number | 2);
                put_varint(&mut out, v.len() as u64);
                out.extend_from_slice(v);
            }
            Field::Fixed32(_, v) => {
                put_varint(&mut out, number | 5);
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// The UTF-8 strings of field `number` (e.g. a node's inputs).
pub fn strings(fields: &[Field], number: u32) -> Vec<String> {
    fields
        .iter()
        .filter(|f| f.number() == number)
        .filter_map(|f| f.bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// The first string of field `number`, or "".
pub fn string(fields: &[Field], number: u32) -> String {
    strings(fields, number)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// The first varint of field `number`.
pub fn int(fields: &[Field], number: u32) -> Option<u64> {
    fields.iter().find_map(|f| match f {
        Field::Varint(n, v) if *n == number => Some(*v),
        _ => None,
    })
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, ProtoError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(ProtoError {
            at: *at,
            what: "truncated varint",
        })?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ProtoError {
        at: *at,
        what: "varint too long",
    })
}

fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], ProtoError> {
    let end = at
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or(ProtoError {
            at: *at,
            what: "field runs past the end",
        })?;
    let slice = &bytes[*at..end];
    *at = end;
    Ok(slice)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_model_round_trips_byte_for_byte() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = root.join("models/crossflow-sts-minilm-l6/onnx/model_qint8_avx2.onnx");
        let bytes = std::fs::read(path).unwrap();
        let model = parse(&bytes).unwrap();
        assert_eq!(encode(&model), bytes);
        let graph = model.iter().find(|f| f.number() == 7).unwrap();
        let graph = parse(graph.bytes().unwrap()).unwrap();
        let nodes = graph.iter().filter(|f| f.number() == 1).count();
        assert!(nodes > 100, "{nodes} nodes");
    }

    #[test]
    fn repeated_varints_read_packed_and_unpacked() {
        let mut packed = Vec::new();
        put_varint(&mut packed, 384);
        put_varint(&mut packed, 1536);
        let bytes = encode(&[
            Field::Varint(1, 7),
            Field::Bytes(1, packed),
            Field::Varint(2, 3),
        ]);
        assert_eq!(varints(&bytes, 1).unwrap(), [7, 384, 1536]);
        assert_eq!(varints(&bytes, 2).unwrap(), [3]);
        assert!(varints(&encode(&[Field::Bytes(1, vec![0x80])]), 1).is_err());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = encode(&[Field::Bytes(1, b"hello".to_vec()), Field::Varint(2, 300)]);
        assert_eq!(parse(&bytes).unwrap().len(), 2);
        for cut in 1..bytes.len() {
            let _ = parse(&bytes[..cut]);
        }
        assert!(parse(&bytes[..3]).is_err());
        assert!(parse(&[0x0f]).is_err(), "wire type 7");
    }
}
