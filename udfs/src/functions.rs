//! The scalar UDFs and their registration.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crossflow::{BiEncoder, CrossEncoder, Fingerprint, Head, probability_fields};
use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::plan_err;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::FunctionError;
use crate::args::{self, Threshold};
use crate::cosine::cosine_udf;
use crate::embed::{EmbedUdf, embed_udf};
use crate::error::{Result, UdfError};

/// What a function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrossFunction {
    /// `cross_score(a, b)`: `Float32` score.
    Score,
    /// `is_paraphrase(a, b [, threshold])`: `Boolean`, score ≥ threshold (a
    /// constant or a column).
    Paraphrase,
    /// `nli_label(a, b)`: `Utf8`, the most probable label.
    NliLabel,
    /// `nli_probs(a, b)`: `Struct` of `Float32` per label.
    NliProbs,
}

impl CrossFunction {
    /// The SQL name the function is registered under by default.
    pub fn default_name(self) -> &'static str {
        match self {
            Self::Score => "cross_score",
            Self::Paraphrase => "is_paraphrase",
            Self::NliLabel => "nli_label",
            Self::NliProbs => "nli_probs",
        }
    }

    fn return_type(self, head: &Head) -> DataType {
        match (self, head) {
            (Self::Score, _) => DataType::Float32,
            (Self::Paraphrase, _) => DataType::Boolean,
            (Self::NliLabel, _) => DataType::Utf8,
            (Self::NliProbs, Head::Classification { labels }) => {
                DataType::Struct(probability_fields(labels))
            }
            (Self::NliProbs, Head::Score { .. }) => DataType::Null,
        }
    }

    /// Which heads can serve the function; `None` means any.
    fn needs(self, head: &Head) -> Option<&'static str> {
        let is_classifier = matches!(head, Head::Classification { .. });
        match self {
            Self::Score => None,
            Self::Paraphrase => is_classifier.then_some("a one-label score model"),
            Self::NliLabel | Self::NliProbs => {
                (!is_classifier).then_some("a classification (NLI) model")
            }
        }
    }
}

/// A crossflow function bound to one model.
pub struct CrossUdf {
    name: String,
    function: CrossFunction,
    model: Arc<CrossEncoder>,
    signature: Signature,
    return_type: DataType,
}

impl std::fmt::Debug for CrossUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossUdf")
            .field("name", &self.name)
            .field("function", &self.function)
            .field("model", &self.model.name())
            .finish()
    }
}

impl PartialEq for CrossUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.function == other.function
            && Arc::ptr_eq(&self.model, &other.model)
    }
}

impl Eq for CrossUdf {}

impl Hash for CrossUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.function.hash(state);
        (Arc::as_ptr(&self.model) as usize).hash(state);
    }
}

/// Builds `function` under `name`, bound to `model`. Fails when the model's
/// head cannot serve the function (e.g. `nli_label` on a score model).
pub fn cross_udf(
    function: CrossFunction,
    name: &str,
    model: Arc<CrossEncoder>,
) -> Result<ScalarUDF> {
    if let Some(needs) = function.needs(model.head()) {
        return Err(UdfError::WrongModel {
            function: name.to_string(),
            needs,
            model: model.name().to_string(),
            has: model.head().describe(),
        });
    }
    Ok(ScalarUDF::new_from_impl(CrossUdf {
        name: name.to_string(),
        function,
        return_type: function.return_type(model.head()),
        signature: Signature::user_defined(volatility(&model)),
        model,
    }))
}

/// `Immutable` when a row's result depends on its texts only; `Volatile`
/// when it also depends on the other rows of its batch (a dynamically
/// quantized graph run with `--batch-invariant off`), so DataFusion does not
/// treat two calls with the same texts as interchangeable.
fn volatility(model: &CrossEncoder) -> Volatility {
    if model.is_batch_invariant() {
        Volatility::Immutable
    } else {
        Volatility::Volatile
    }
}

/// The models a session's functions use.
#[derive(Debug, Clone)]
pub struct ModelSet {
    /// Serves `cross_score` and `is_paraphrase`.
    pub score: Arc<CrossEncoder>,
    /// Serves `nli_label` and `nli_probs` (not registered when `None`).
    pub nli: Option<Arc<CrossEncoder>>,
    /// Serves `embed` (not registered when `None`).
    pub bi: Option<Arc<BiEncoder>>,
}

/// `cross_score`, `is_paraphrase` (score models only), `nli_label` and
/// `nli_probs` (when there is an NLI model), `embed` (when there is a
/// bi-encoder) bound to `models`, and `cosine`.
pub fn cross_functions(models: &ModelSet) -> Result<Vec<ScalarUDF>> {
    let mut functions = model_functions(models)?;
    functions.extend(models.bi.iter().map(|bi| embed_udf(Arc::clone(bi))));
    functions.push(cosine_udf());
    Ok(functions)
}

/// The name and fingerprint of the model a crossflow function is bound to;
/// `None` for a function of no model (`cosine`) or not crossflow's.
pub fn bound_model(udf: &ScalarUDF) -> Option<(String, Fingerprint)> {
    let inner = udf.inner();
    if let Some(cross) = inner.downcast_ref::<CrossUdf>() {
        let model = cross.model();
        return Some((model.name().to_string(), model.fingerprint().clone()));
    }
    let bi = inner.downcast_ref::<EmbedUdf>()?.model();
    Some((bi.name().to_string(), bi.fingerprint().clone()))
}

/// The functions of the cross-encoders.
fn model_functions(models: &ModelSet) -> Result<Vec<ScalarUDF>> {
    let mut bindings = vec![(CrossFunction::Score, &models.score)];
    if matches!(models.score.head(), Head::Score { .. }) {
        bindings.push((CrossFunction::Paraphrase, &models.score));
    }
    if let Some(nli) = &models.nli {
        bindings.push((CrossFunction::NliLabel, nli));
        bindings.push((CrossFunction::NliProbs, nli));
    }
    bindings
        .into_iter()
        .map(|(function, model)| cross_udf(function, function.default_name(), Arc::clone(model)))
        .collect()
}

/// Registers [`cross_functions`] in `ctx`.
pub fn register_cross_functions(ctx: &SessionContext, models: &ModelSet) -> Result<()> {
    for udf in cross_functions(models)? {
        ctx.register_udf(udf);
    }
    Ok(())
}

impl ScalarUDFImpl for CrossUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.return_type.clone())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let name = &self.name;
        let arity_ok = match self.function {
            CrossFunction::Paraphrase => (2..=3).contains(&arg_types.len()),
            _ => arg_types.len() == 2,
        };
        if !arity_ok {
            let usage = match self.function {
                CrossFunction::Paraphrase => "(text_a, text_b [, threshold])",
                _ => "(text_a, text_b)",
            };
            return plan_err!("{name} takes {usage}, got {} arguments", arg_types.len());
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match i {
                0 | 1 => args::coerce_text(name, i + 1, t),
                _ => args::coerce_threshold(name, i + 1, t),
            })
            .collect()
    }

    fn invoke_with_args(&self, call: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let array = off_async_threads(|| self.compute(&call.args))?;
        args::result(array, &call.args)
    }
}

impl CrossUdf {
    /// The model the function runs.
    pub fn model(&self) -> &Arc<CrossEncoder> {
        &self.model
    }

    /// Runs the model over the arguments' rows.
    fn compute(&self, args: &[ColumnarValue]) -> DfResult<ArrayRef> {
        let name = &self.name;
        let a = args::texts(name, &args[0])?;
        let b = args::texts(name, &args[1])?;
        let engine = |e: crossflow::Error| FunctionError::wrap(name, e);
        let model = &self.model;
        Ok(match self.function {
            CrossFunction::Score => Arc::new(model.score(&a, &b).map_err(engine)?),
            CrossFunction::Paraphrase => match args.get(2).map(|t| args::threshold(name, t)) {
                None => Arc::new(model.paraphrase(&a, &b, None).map_err(engine)?),
                Some(Ok(Threshold::Constant(t))) => {
                    Arc::new(model.paraphrase(&a, &b, Some(t)).map_err(engine)?)
                }
                Some(Ok(Threshold::Column(t))) => {
                    let scores = model.score(&a, &b).map_err(engine)?;
                    Arc::new(args::at_least_each(&scores, t))
                }
                Some(Ok(Threshold::Null)) => {
                    let rows = a.len().or(b.len()).unwrap_or(1);
                    Arc::new(BooleanArray::new_null(rows))
                }
                Some(Err(error)) => return Err(error),
            },
            CrossFunction::NliLabel => Arc::new(model.classify(&a, &b).map_err(engine)?.labels),
            CrossFunction::NliProbs => Arc::new(model.classify(&a, &b).map_err(engine)?.probs),
        })
    }
}

/// Runs a call that waits for the model's workers or computes at length. On
/// a multi-threaded tokio runtime (DataFusion's) the thread first hands its
/// other tasks to the runtime's other threads, so the call never stalls them.
pub fn off_async_threads<T>(call: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}
