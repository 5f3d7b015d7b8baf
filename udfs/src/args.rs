//! Turning DataFusion arguments into engine inputs, and type checks at planning.

use crossflow::Texts;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};

use crate::FunctionError;
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;

/// Checks text argument types at planning: strings and dictionary-encoded
/// strings stay as they are (the engine reads both without copying), `NULL`
/// becomes `Utf8`, anything else is a plan error naming the function and
/// argument.
pub(crate) fn coerce_text(
    function: &str,
    position: usize,
    data_type: &DataType,
) -> Result<DataType> {
    match data_type {
        text if crossflow::is_text_type(text) => Ok(data_type.clone()),
        DataType::Null => Ok(DataType::Utf8),
        other => plan_err!(
            "{function}: argument {position} must be a string ({}), got {other}; cast it with \
             CAST(... AS VARCHAR) if that is intended",
            crossflow::TEXT_TYPES
        ),
    }
}

/// Checks a threshold argument: any number becomes `Float32`.
pub(crate) fn coerce_threshold(
    function: &str,
    position: usize,
    data_type: &DataType,
) -> Result<DataType> {
    if data_type.is_numeric() || data_type.is_null() {
        Ok(DataType::Float32)
    } else {
        plan_err!("{function}: argument {position} (threshold) must be a number, got {data_type}")
    }
}

/// Views one text argument as engine input without copying it.
pub(crate) fn texts<'a>(function: &str, value: &'a ColumnarValue) -> Result<Texts<'a>> {
    match value {
        ColumnarValue::Array(array) => {
            Texts::from_array(array.as_ref()).map_err(|e| FunctionError::wrap(function, e))
        }
        ColumnarValue::Scalar(scalar) => match scalar {
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                Ok(Texts::Scalar(s.as_deref()))
            }
            ScalarValue::Null => Ok(Texts::Scalar(None)),
            other => exec_err!("{function}: expected a string, got {}", other.data_type()),
        },
    }
}

/// The threshold argument, which must be one non-null number. A constant
/// can also arrive as an array repeating it (DataFusion's FFI passes every
/// argument as an array): one distinct value is accepted.
pub(crate) fn constant_threshold(function: &str, value: &ColumnarValue) -> Result<Option<f32>> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Float32(Some(t))) => Ok(Some(*t)),
        ColumnarValue::Scalar(other) => {
            exec_err!("{function}: threshold must be a non-null number, got {other}")
        }
        ColumnarValue::Array(array) => {
            let Some(values) = array.as_primitive_opt::<Float32Type>() else {
                return exec_err!(
                    "{function}: threshold must be a number, got {}",
                    array.data_type()
                );
            };
            if values.null_count() > 0 {
                return exec_err!("{function}: threshold must be a non-null number, got NULL");
            }
            let first = values.values().first().copied();
            if values.values().iter().any(|t| Some(*t) != first) {
                return exec_err!(
                    "{function}: threshold must be a constant, got a column of several values"
                );
            }
            Ok(first)
        }
    }
}

/// Whether every argument is a constant (the result is then a constant too).
pub(crate) fn all_scalar(args: &[ColumnarValue]) -> bool {
    args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float32Array, Int32Array};

    use super::*;

    fn threshold(array: impl Array + 'static) -> Result<Option<f32>> {
        constant_threshold("is_paraphrase", &ColumnarValue::Array(Arc::new(array)))
    }

    #[test]
    fn a_constant_passed_as_an_array_is_one_threshold() {
        let repeated = Float32Array::from(vec![0.8; 3]);
        assert_eq!(threshold(repeated).unwrap(), Some(0.8));
    }

    #[test]
    fn a_column_of_several_thresholds_or_a_null_is_refused() {
        let several = threshold(Float32Array::from(vec![0.8, 0.7])).unwrap_err();
        assert!(
            several.to_string().contains("must be a constant"),
            "{several}"
        );
        let null = threshold(Float32Array::from(vec![Some(0.8), None])).unwrap_err();
        assert!(null.to_string().contains("non-null"), "{null}");
        let ints = threshold(Int32Array::from(vec![1])).unwrap_err();
        assert!(ints.to_string().contains("must be a number"), "{ints}");
    }
}
