//! Python values in, Arrow arrays out: pairs as Python strings, columns
//! through the Arrow PyCapsule interface (`__arrow_c_array__`), results as
//! pyarrow arrays.

use arrow::array::ArrayData;
use arrow::array::{Array, ArrayRef, StringArray, StringBuilder, make_array, new_null_array};
use arrow::datatypes::DataType;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use crossflow::Texts;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::errors::wrong_type;

/// One side of the pairs of `score` / `nli`: a string column, or one text
/// (or `None`) for every row.
pub enum Side {
    Column(ArrayRef),
    Constant(Option<String>),
}

impl Side {
    /// `value` as one side of `call`'s pairs: `None`, a `str`, or an object
    /// exporting an Arrow array of strings (`__arrow_c_array__`).
    pub fn extract(call: &str, argument: &str, value: &Bound<'_, PyAny>) -> PyResult<Self> {
        if value.is_none() {
            return Ok(Side::Constant(None));
        }
        if value.is_instance_of::<PyString>() {
            return Ok(Side::Constant(Some(value.extract()?)));
        }
        if !value.hasattr(pyo3::intern!(value.py(), "__arrow_c_array__"))? {
            let kind = value.get_type().name()?;
            return Err(wrong_type(
                call,
                argument,
                format!(
                    "is a {kind}; expected an Arrow array of strings (an object with \
                     __arrow_c_array__, such as a pyarrow.Array) or a str"
                ),
            ));
        }
        let array = make_array(ArrayData::from_pyarrow_bound(value)?);
        if array.data_type() == &DataType::Null {
            // Only nulls (pyarrow's type for `[None, None]`): no texts, every row null.
            return Ok(Side::Column(new_null_array(&DataType::Utf8, array.len())));
        }
        if !crossflow::is_text_type(array.data_type()) {
            return Err(wrong_type(
                call,
                argument,
                format!(
                    "is an Arrow {} array; expected strings ({})",
                    array.data_type(),
                    crossflow::TEXT_TYPES
                ),
            ));
        }
        Ok(Side::Column(array))
    }

    /// The engine's view of this side, without copying it.
    pub fn texts(&self) -> crossflow::Result<Texts<'_>> {
        match self {
            Side::Column(array) => Texts::from_array(array.as_ref()),
            Side::Constant(text) => Ok(Texts::Scalar(text.as_deref())),
        }
    }
}

/// The two sides of `pairs`, a sequence of `(a, b)` tuples or two-item
/// lists of `str`, as sentence-transformers' `CrossEncoder.predict` takes them.
pub fn pairs(pairs: &Bound<'_, PyAny>) -> PyResult<(StringArray, StringArray)> {
    let (mut a, mut b) = (StringBuilder::new(), StringBuilder::new());
    for (i, item) in pairs.try_iter()?.enumerate() {
        let item = item?;
        let (first, second) = pair(&item).ok_or_else(|| {
            let shown = item.repr().map(|r| r.to_string()).unwrap_or_default();
            wrong_type(
                "predict",
                "sentences",
                format!(
                    "has item {i} that is not a pair of str: {}",
                    shorten(&shown)
                ),
            )
        })?;
        a.append_value(&*first);
        b.append_value(&*second);
    }
    Ok((a.finish(), b.finish()))
}

/// A tuple or list of exactly two `str`.
fn pair(item: &Bound<'_, PyAny>) -> Option<(PyBackedStr, PyBackedStr)> {
    let items = if let Ok(tuple) = item.cast::<PyTuple>() {
        tuple.as_sequence().to_list().ok()?
    } else {
        item.cast::<PyList>().ok()?.clone()
    };
    if items.len() != 2 {
        return None;
    }
    Some((
        items.get_item(0).ok()?.extract().ok()?,
        items.get_item(1).ok()?.extract().ok()?,
    ))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// `array` as a pyarrow array (copied through the Arrow C data interface
/// without copying the buffers).
pub fn to_pyarrow<'py>(py: Python<'py>, array: &dyn Array) -> PyResult<Bound<'py, PyAny>> {
    array.to_data().to_pyarrow(py)
}
