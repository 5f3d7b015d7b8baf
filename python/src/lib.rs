//! The crossflow engine as the Python extension module `crossflow._crossflow`.
//!
//! The Python package `crossflow` (python/crossflow/) wraps it in the
//! conventions of sentence-transformers' `CrossEncoder`; this module holds
//! what must be native:
//!
//! - [`Engine`](engine::Engine): one loaded cross-encoder behind its queue,
//!   whose calls release the GIL, so that Python threads share the queue;
//! - Arrow in and out through the Arrow PyCapsule interface (`arrays`);
//! - the SQL functions as DataFusion FFI scalar UDFs for datafusion-python
//!   (`sql`).

use pyo3::prelude::*;

mod arrays;
mod engine;
mod errors;
mod hub;
mod options;
mod sql;

/// Logs go to standard error, filtered by `CROSSFLOW_LOG` (as for the
/// `crossflow` command), warnings only without it.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CROSSFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second import in the same process (a reload) finds one installed.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[pymodule]
fn _crossflow(module: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("DATAFUSION_VERSION", sql::DATAFUSION_VERSION)?;
    module.add(
        "CrossflowError",
        module.py().get_type::<errors::CrossflowError>(),
    )?;
    module.add_class::<engine::Engine>()?;
    module.add_class::<sql::ScalarFunction>()?;
    module.add_function(wrap_pyfunction!(sql::scalar_functions, module)?)?;
    Ok(())
}
