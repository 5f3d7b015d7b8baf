//! Text inputs: any Arrow string array, or one constant for every row.

use arrow::array::{Array, AsArray, LargeStringArray, StringArray, StringViewArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;

use crate::{Error, Result};

/// One side of the pairs: a string column, or a constant (`NULL` included)
/// repeated for every row without materialising a column.
#[derive(Debug, Clone)]
pub enum Texts<'a> {
    /// `Utf8` array.
    Utf8(&'a StringArray),
    /// `LargeUtf8` array.
    LargeUtf8(&'a LargeStringArray),
    /// `Utf8View` array.
    Utf8View(&'a StringViewArray),
    /// Dictionary-encoded strings (any integer key type).
    Dictionary(DictionaryTexts<'a>),
    /// The same text (or null) for every row.
    Scalar(Option<&'a str>),
}

impl<'a> Texts<'a> {
    /// Views an Arrow array as texts without copying it: Utf8, LargeUtf8,
    /// Utf8View, or a dictionary of one of them. Other types are an error
    /// naming the type.
    pub fn from_array(array: &'a dyn Array) -> Result<Self> {
        match array.data_type() {
            DataType::Utf8 => Ok(Texts::Utf8(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Texts::LargeUtf8(array.as_string::<i64>())),
            DataType::Utf8View => Ok(Texts::Utf8View(array.as_string_view())),
            DataType::Dictionary(_, value) if is_plain_string(value) => {
                let dictionary = array
                    .as_any_dictionary_opt()
                    .ok_or_else(|| not_texts(array.data_type()))?;
                let values = Texts::from_array(dictionary.values().as_ref())?;
                // No values (an all-null or empty dictionary array): every
                // row is null; `normalized_keys` refuses an empty dictionary.
                let keys = match dictionary.values().is_empty() {
                    true => vec![0; array.len()],
                    false => dictionary.normalized_keys(),
                };
                Ok(Texts::Dictionary(DictionaryTexts {
                    keys,
                    null_keys: dictionary.keys().nulls().cloned(),
                    values: Strings::of(values).ok_or_else(|| not_texts(array.data_type()))?,
                }))
            }
            other => Err(not_texts(other)),
        }
    }

    /// Number of rows, or `None` for a constant.
    pub fn len(&self) -> Option<usize> {
        match self {
            Texts::Utf8(a) => Some(a.len()),
            Texts::LargeUtf8(a) => Some(a.len()),
            Texts::Utf8View(a) => Some(a.len()),
            Texts::Dictionary(d) => Some(d.keys.len()),
            Texts::Scalar(_) => None,
        }
    }

    /// Whether this is an empty array.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The text of row `i`, `None` where it is null.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Texts::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::Utf8View(a) => a.is_valid(i).then(|| a.value(i)),
            Texts::Dictionary(d) => d.get(i),
            Texts::Scalar(s) => *s,
        }
    }
}

/// Dictionary-encoded strings: a key per row into a string array, the keys
/// of any integer type read once as indices (arrow-rs'
/// `AnyDictionaryArray::normalized_keys`).
#[derive(Debug, Clone)]
pub struct DictionaryTexts<'a> {
    keys: Vec<usize>,
    /// Rows whose key is null (a null key's index is arbitrary).
    null_keys: Option<NullBuffer>,
    values: Strings<'a>,
}

impl<'a> DictionaryTexts<'a> {
    fn get(&self, i: usize) -> Option<&'a str> {
        if self
            .null_keys
            .as_ref()
            .is_some_and(|nulls| nulls.is_null(i))
        {
            return None;
        }
        self.values.get(self.keys[i])
    }
}

/// A dictionary's values.
#[derive(Debug, Clone, Copy)]
enum Strings<'a> {
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    Utf8View(&'a StringViewArray),
}

impl<'a> Strings<'a> {
    fn of(texts: Texts<'a>) -> Option<Self> {
        match texts {
            Texts::Utf8(a) => Some(Strings::Utf8(a)),
            Texts::LargeUtf8(a) => Some(Strings::LargeUtf8(a)),
            Texts::Utf8View(a) => Some(Strings::Utf8View(a)),
            Texts::Dictionary(_) | Texts::Scalar(_) => None,
        }
    }

    /// Value `k`; `None` where null or out of range (a key Arrow validated
    /// is never out of range).
    fn get(&self, k: usize) -> Option<&'a str> {
        match *self {
            Strings::Utf8(a) => (k < a.len() && a.is_valid(k)).then(|| a.value(k)),
            Strings::LargeUtf8(a) => (k < a.len() && a.is_valid(k)).then(|| a.value(k)),
            Strings::Utf8View(a) => (k < a.len() && a.is_valid(k)).then(|| a.value(k)),
        }
    }
}

/// The Arrow types [`Texts::from_array`] reads, in words, for errors.
pub const TEXT_TYPES: &str = "Utf8, LargeUtf8, Utf8View or a dictionary of them";

/// Whether arrays of `data_type` are texts the engine reads without copying
/// ([`TEXT_TYPES`]): the one check of text types for every caller.
pub fn is_text_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, value) => is_plain_string(value),
        other => is_plain_string(other),
    }
}

fn is_plain_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn not_texts(data_type: &DataType) -> Error {
    Error::InvalidInput(format!(
        "expected a string array ({TEXT_TYPES}), got {data_type}"
    ))
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
    fn dictionaries_without_values_are_all_null_or_empty() {
        let key = Box::new(DataType::Int32);
        let dictionary = DataType::Dictionary(key, Box::new(DataType::Utf8));
        let nulls = arrow::array::new_null_array(&dictionary, 3);
        let texts = Texts::from_array(nulls.as_ref()).unwrap();
        assert_eq!(texts.len(), Some(3));
        assert_eq!((0..3).map(|i| texts.get(i)).collect::<Vec<_>>(), [None; 3]);
        let empty = arrow::array::new_empty_array(&dictionary);
        assert_eq!(Texts::from_array(empty.as_ref()).unwrap().len(), Some(0));
    }

    #[test]
    fn dictionary_strings_are_read_through_their_keys() {
        use arrow::array::{DictionaryArray, Int8Array, UInt16Array};
        let values = StringArray::from(vec![Some("x"), None, Some("yy")]);
        let keys = Int8Array::from(vec![Some(2), Some(0), None, Some(1), Some(2)]);
        let signed = DictionaryArray::new(keys, std::sync::Arc::new(values));
        let view = StringViewArray::from(vec!["p", "q"]);
        let unsigned =
            DictionaryArray::new(UInt16Array::from(vec![1, 1, 0]), std::sync::Arc::new(view));
        let texts = Texts::from_array(&signed).unwrap();
        assert_eq!(texts.len(), Some(5));
        let rows: Vec<_> = (0..5).map(|i| texts.get(i)).collect();
        assert_eq!(rows, [Some("yy"), Some("x"), None, None, Some("yy")]);
        let texts = Texts::from_array(&unsigned).unwrap();
        let rows: Vec<_> = (0..3).map(|i| texts.get(i)).collect();
        assert_eq!(rows, [Some("q"), Some("q"), Some("p")]);
        let numbers = DictionaryArray::new(
            Int8Array::from(vec![0]),
            std::sync::Arc::new(Int8Array::from(vec![5])),
        );
        let err = Texts::from_array(&numbers).unwrap_err().to_string();
        assert!(err.contains("Dictionary(Int8, Int8)"), "{err}");
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
