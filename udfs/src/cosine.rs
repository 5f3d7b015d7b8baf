//! `cosine(u, v)`: the cosine similarity of two vectors of the same length
//! (`FixedSizeList<Float32>`, as `embed` returns), `Float32`; NULL when
//! either vector is NULL or has no length.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::datatypes::{DataType, Float32Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::embed::vector_type;

/// The SQL name of the function.
pub const COSINE: &str = "cosine";

/// `cosine(u, v)`; it needs no model.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineUdf {
    signature: Signature,
}

/// The `cosine` function.
pub fn cosine_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(CosineUdf {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

impl ScalarUDFImpl for CosineUdf {
    fn name(&self) -> &str {
        COSINE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float32)
    }

    /// Two fixed-size lists of one length, of any numeric items (read as
    /// `Float32`); a NULL argument takes the other's type.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [u, v] = arg_types else {
            return plan_err!("{COSINE} takes (u, v), got {} arguments", arg_types.len());
        };
        let length = |t: &DataType| match t {
            DataType::FixedSizeList(field, n) if field.data_type().is_numeric() => Some(*n),
            _ => None,
        };
        match (length(u), length(v), u, v) {
            (Some(a), Some(b), _, _) if a == b => Ok(vec![vector_type(a as usize); 2]),
            (Some(n), None, _, DataType::Null) | (None, Some(n), DataType::Null, _) => {
                Ok(vec![vector_type(n as usize); 2])
            }
            _ => plan_err!(
                "{COSINE}: arguments must be vectors of one length (fixed-size lists of \
                 numbers, as embed returns), got {u} and {v}"
            ),
        }
    }

    fn invoke_with_args(&self, call: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = call.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&call.args)?;
        let (u, v) = (
            arrays[0].as_fixed_size_list(),
            arrays[1].as_fixed_size_list(),
        );
        if u.value_length() != v.value_length() {
            return exec_err!(
                "{COSINE}: vectors of {} and {} numbers",
                u.value_length(),
                v.value_length()
            );
        }
        let result: ArrayRef = Arc::new(cosines(u, v, rows.max(u.len())));
        crate::args::result(result, &call.args)
    }
}

/// Row by row: `u · v / (|u| |v|)`, NULL for a NULL or zero vector.
fn cosines(u: &FixedSizeListArray, v: &FixedSizeListArray, rows: usize) -> Float32Array {
    let n = u.value_length() as usize;
    let (a, b) = (floats(u), floats(v));
    (0..rows)
        .map(|row| {
            if u.is_null(row) || v.is_null(row) {
                return None;
            }
            let x = &a.values()[row * n..(row + 1) * n];
            let y = &b.values()[row * n..(row + 1) * n];
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let norms = norm(x) * norm(y);
            (norms > 0.0).then(|| dot / norms)
        })
        .collect()
}

fn floats(list: &FixedSizeListArray) -> &Float32Array {
    list.values().as_primitive::<Float32Type>()
}

fn norm(x: &[f32]) -> f32 {
    x.iter().map(|p| p * p).sum::<f32>().sqrt()
}
