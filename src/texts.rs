//! Text inputs: any Arrow string array, or one constant for every row.

use arrow::array::{Array, AsArray, LargeStringArray, StringArray, StringViewArray};
use arrow::datatypes::DataType;

use crate::{Error, Result};

/// One side of the pairs: a string column, or a constant (`NULL` included)
/// repeated for every row without materialising a column.
#[derive(Debug, Clone, Copy)]
pub enum Texts<'a> {
    /// `Utf8` array.
    Utf8(&'a StringArray),
    /// `LargeUtf8` array.
    LargeUtf8(&'a LargeStringArray),
    /// `Utf8View` array.
    Utf8View(&'a StringViewArray),
    /// The same text (or null) for every row.
    Scalar(Option<&'a str>),
}

impl<'a> Texts<'a> {
    /// Views an Arrow array as texts; other types than Utf8, LargeUtf8 and
    /// Utf8View are an error naming the type.
    pub fn from_array(array: &'a dyn Array) -> Result<Self> {
        match array.data_type() {
            DataType::Utf8 => Ok(Texts::Utf8(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Texts::LargeUtf8(array.as_string::<i64>())),
            DataType::Utf8View => Ok(Texts::Utf8View(array.as_string_view())),
            other => Err(Error::InvalidInput(format!(
                "expected a string array (Utf8, LargeUtf8 or Utf8View), got {other}"
            ))),
        }
    }

    /// Number of rows, or `None` for a constant.
    pub fn len(&self) -> Option<usize> {
        match self {
            Texts::Utf8(a) => Some(a.len()),
            Texts::LargeUtf8(a) => Some(a.len()),
            Texts::Utf8View(a) => Some(a.len()),
            Texts::Scalar(_) => None,
        }
    }

    /// Whether this is an empty array.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The text of row `i`, `None` where it is null.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match *self {
            Texts::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::Utf8View(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::Scalar(s) => s,
        }
    }
}

/// Number of rows of a pair of inputs: the arrays' common length, 1 when both are constants.
pub(crate) fn row_count(a: &Texts, b: &Texts) -> Result<usize> {
    match (a.len(), b.len()) {
        (Some(x), Some(y)) if x != y => Err(Error::InvalidInput(format!(
            "the two text columns have different lengths ({x} and {y})"
        ))),
        (Some(n), _) | (None, Some(n)) => Ok(n),
        (None, None) => Ok(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;

    #[test]
    fn all_string_types_and_nulls_are_read() {
        let utf8 = StringArray::from(vec![Some("a"), None, Some("")]);
        let large = LargeStringArray::from(vec![Some("a"), None, Some("")]);
        let view = StringViewArray::from(vec![Some("a"), None, Some("")]);
        for array in [&utf8 as &dyn Array, &large, &view] {
            let texts = Texts::from_array(array).unwrap();
            assert_eq!(texts.len(), Some(3));
            assert_eq!(
                (texts.get(0), texts.get(1), texts.get(2)),
                (Some("a"), None, Some(""))
            );
        }
    }

    #[test]
    fn other_types_are_rejected_with_their_name() {
        let ints = Int32Array::from(vec![1]);
        let err = Texts::from_array(&ints).unwrap_err().to_string();
        assert!(err.contains("Int32"), "{err}");
    }

    #[test]
    fn constants_broadcast_and_lengths_must_match() {
        let column = StringArray::from(vec!["x", "y"]);
        let texts = Texts::from_array(&column).unwrap();
        assert_eq!(row_count(&Texts::Scalar(Some("q")), &texts).unwrap(), 2);
        assert_eq!(
            row_count(&Texts::Scalar(None), &Texts::Scalar(None)).unwrap(),
            1
        );
        let short = StringArray::from(vec!["x"]);
        assert!(row_count(&texts, &Texts::from_array(&short).unwrap()).is_err());
    }
}
