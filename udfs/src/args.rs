//! Turning DataFusion arguments into engine inputs, and type checks at planning.

use crossflow::Texts;
use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Float32Array};
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

/// The threshold argument of `is_paraphrase`.
pub(crate) enum Threshold<'a> {
    /// One number for every row.
    Constant(f32),
    /// A number per row (a column, or a constant that arrives as an array
    /// repeating it, as every constant does through DataFusion's FFI).
    Column(&'a Float32Array),
    /// `NULL`: every row's answer is null, as a null in a column gives.
    Null,
}

/// Reads the threshold argument (`Float32` after [`coerce_threshold`]).
pub(crate) fn threshold<'a>(function: &str, value: &'a ColumnarValue) -> Result<Threshold<'a>> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Float32(Some(t))) => Ok(Threshold::Constant(*t)),
        ColumnarValue::Scalar(ScalarValue::Float32(None) | ScalarValue::Null) => {
            Ok(Threshold::Null)
        }
        ColumnarValue::Scalar(other) => {
            exec_err!("{function}: threshold must be a number, got {other}")
        }
        ColumnarValue::Array(array) => match array.as_primitive_opt::<Float32Type>() {
            Some(values) => Ok(Threshold::Column(values)),
            None => exec_err!(
                "{function}: threshold must be a number, got {}",
                array.data_type()
            ),
        },
    }
}

/// Whether each score reaches its row's threshold (`score >= threshold`, as
/// for a constant threshold); null where either is null. One score (both
/// texts constant) is compared with every threshold.
pub(crate) fn at_least_each(scores: &Float32Array, thresholds: &Float32Array) -> BooleanArray {
    let reaches = |(score, threshold): (Option<f32>, Option<f32>)| Some(score? >= threshold?);
    if scores.len() == 1 {
        let score = scores.iter().next().flatten();
        thresholds.iter().map(|t| reaches((score, t))).collect()
    } else {
        scores.iter().zip(thresholds.iter()).map(reaches).collect()
    }
}

/// Whether every argument is a constant (the result is then a constant too).
pub(crate) fn all_scalar(args: &[ColumnarValue]) -> bool {
    args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
}

/// A function's result: a constant when every argument is one, else the array.
pub(crate) fn result(array: ArrayRef, args: &[ColumnarValue]) -> Result<ColumnarValue> {
    if all_scalar(args) {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int32Array;

    use super::*;

    fn scores(values: &[Option<f32>]) -> Float32Array {
        values.iter().copied().collect()
    }

    #[test]
    fn each_row_is_compared_with_its_own_threshold() {
        let got = at_least_each(
            &scores(&[Some(0.9), Some(0.5), None, Some(0.7)]),
            &scores(&[Some(0.8), Some(0.4), Some(0.1), None]),
        );
        let want: BooleanArray = vec![Some(true), Some(true), None, None].into();
        assert_eq!(got, want);
    }

    #[test]
    fn a_constant_repeated_as_an_array_is_every_rows_threshold() {
        let repeated = scores(&[Some(0.8); 3]);
        let got = at_least_each(&scores(&[Some(0.9), Some(0.5), Some(0.8)]), &repeated);
        assert_eq!(got, BooleanArray::from(vec![true, false, true]));
        let one_score = at_least_each(&scores(&[Some(0.85)]), &scores(&[Some(0.8), Some(0.9)]));
        assert_eq!(one_score, BooleanArray::from(vec![true, false]));
    }

    #[test]
    fn comparisons_are_those_of_a_constant_threshold() {
        // IEEE comparison, as `score >= threshold` with a constant: -0 reaches 0,
        // NaN reaches nothing, whatever its sign.
        let got = at_least_each(
            &scores(&[Some(-0.0), Some(f32::NAN), Some(1.0)]),
            &scores(&[Some(0.0), Some(0.5), Some(-f32::NAN)]),
        );
        assert_eq!(got, BooleanArray::from(vec![true, false, false]));
    }

    #[test]
    fn a_threshold_that_is_not_a_number_is_refused_and_null_is_null() {
        let ints = ColumnarValue::Array(Arc::new(Int32Array::from(vec![1])));
        let Err(error) = threshold("is_paraphrase", &ints) else {
            panic!("an integer column was accepted");
        };
        assert!(error.to_string().contains("must be a number"), "{error}");
        let null = ColumnarValue::Scalar(ScalarValue::Float32(None));
        assert!(matches!(
            threshold("is_paraphrase", &null),
            Ok(Threshold::Null)
        ));
    }
}
