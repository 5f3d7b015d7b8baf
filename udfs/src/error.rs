//! Errors of the SQL layer.

use datafusion::error::DataFusionError;

/// Result alias of this crate.
pub type Result<T, E = UdfError> = std::result::Result<T, E>;

/// What can fail while setting up SQL functions and tables.
#[derive(Debug, thiserror::Error)]
pub enum UdfError {
    /// A function was bound to a model whose head cannot serve it.
    #[error("function {function} needs {needs}, but model {model} {has}")]
    WrongModel {
        function: String,
        needs: &'static str,
        model: String,
        has: String,
    },
    /// A table path whose format cannot be told from its name.
    #[error(
        "cannot tell the format of {path}: expected a .parquet, .csv, .json or .jsonl file or a directory of them"
    )]
    UnknownFormat { path: String },
    /// A `--table` argument that is not `name=path`.
    #[error("invalid table spec {0:?}: expected NAME=PATH")]
    InvalidTableSpec(String),
    /// A table's files could not be read (format, schema, bad records).
    #[error("table {name} ({path}): {source}")]
    Table {
        name: String,
        path: String,
        source: DataFusionError,
    },
    /// DataFusion failed.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// An engine error in a call of a SQL function, carried through DataFusion
/// as an external error so that its kind and source survive the query.
#[derive(Debug, thiserror::Error)]
#[error("{function}: {source}")]
pub struct FunctionError {
    /// The SQL function.
    pub function: String,
    /// What the engine said.
    #[source]
    pub source: crossflow::Error,
}

impl FunctionError {
    /// `source` of a call of `function`, as a DataFusion error.
    pub fn wrap(function: &str, source: crossflow::Error) -> DataFusionError {
        DataFusionError::External(Box::new(Self {
            function: function.to_string(),
            source,
        }))
    }
}
