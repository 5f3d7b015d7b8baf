//! Engine errors as Python exceptions of the kinds Python code expects.

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::{PyErr, create_exception};

create_exception!(
    crossflow,
    CrossflowError,
    PyException,
    "An error of the crossflow engine that is not in the arguments: ONNX Runtime, a \
     corrupt model file, the model's workers."
);

/// `errno`'s "no such file or directory".
pub const ENOENT: i32 = 2;

/// The Python exception for an engine error: a missing model directory or
/// file is a `FileNotFoundError` (naming the path), a setting or input the
/// model cannot take a `ValueError`, anything else a `CrossflowError`.
pub fn to_py(error: crossflow::Error) -> PyErr {
    use crossflow::Error;
    let message = error.to_string();
    match error {
        Error::ModelDirMissing { path } | Error::ModelFileMissing { path, .. } => {
            // As `open` raises it: errno, message and the path as `filename`.
            PyFileNotFoundError::new_err((ENOENT, message, path.display().to_string()))
        }
        Error::InvalidInput(_)
        | Error::InvalidSetting(_)
        | Error::AmbiguousOnnxFile { .. }
        | Error::WrongHead { .. } => PyValueError::new_err(message),
        _ => CrossflowError::new_err(message),
    }
}

/// A `TypeError` for an argument of the wrong type, naming the call and the argument.
pub fn wrong_type(call: &str, argument: &str, what: impl std::fmt::Display) -> PyErr {
    PyTypeError::new_err(format!("{call}: argument {argument} {what}"))
}
