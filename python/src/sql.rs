//! crossflow's SQL functions as DataFusion FFI scalar UDFs, for
//! datafusion-python's `SessionContext.register_udf(udf(f))`.

use std::sync::Arc;

use crossflow_udfs::{ModelSet, bound_model, cross_functions};
use datafusion::logical_expr::ScalarUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::engine::Engine;

/// The DataFusion release the functions are built against. The FFI ABI of
/// another major release differs: `crossflow.datafusion.register` refuses a
/// `datafusion` package of another major version.
pub const DATAFUSION_VERSION: &str = datafusion::DATAFUSION_VERSION;

/// One SQL function bound to its model, exported through
/// `__datafusion_scalar_udf__`.
#[pyclass(frozen, module = "crossflow._crossflow")]
pub struct ScalarFunction {
    udf: Arc<ScalarUDF>,
}

#[pymethods]
impl ScalarFunction {
    /// The function's SQL name.
    #[getter]
    fn name(&self) -> String {
        self.udf.name().to_string()
    }

    /// The function as a DataFusion FFI scalar UDF in a PyCapsule.
    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let exported = FFI_ScalarUDF::from(Arc::clone(&self.udf));
        PyCapsule::new_with_value(py, exported, c"datafusion_scalar_udf")
    }

    fn __repr__(&self) -> String {
        format!("<crossflow SQL function {}>", self.udf.name())
    }
}

/// `cross_score` and `is_paraphrase` on `score` (a one-label model), plus
/// `nli_label` and `nli_probs` on `nli` when given.
#[pyfunction]
#[pyo3(signature = (score, nli=None))]
pub fn scalar_functions(score: &Engine, nli: Option<&Engine>) -> PyResult<Vec<ScalarFunction>> {
    let models = ModelSet {
        score: Arc::clone(score.model()),
        nli: nli.map(|engine| Arc::clone(engine.model())),
        bi: None,
    };
    let functions = cross_functions(&models).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(functions
        .into_iter()
        .filter(|udf| bound_model(udf).is_some())
        .map(|udf| ScalarFunction { udf: Arc::new(udf) })
        .collect())
}
