//! `Engine`: one loaded cross-encoder, shared by every Python thread.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, RecordBatch};
use arrow::datatypes::Schema;
use arrow_pyarrow::ToPyArrow;
use crossflow::{CrossEncoder, Head, OutputColumns, Predictions, StatsSnapshot, head};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{self, Side};
use crate::errors::{CrossflowError, to_py};
use crate::hub::{self, HubArgs};
use crate::options::Settings;

/// A cross-encoder loaded from a model directory, its sessions started. The
/// methods release the GIL while the engine works: calls from several
/// Python threads share the model's queue and micro-batches.
#[pyclass(frozen, module = "crossflow._crossflow")]
pub struct Engine {
    model: Arc<CrossEncoder>,
}

impl Engine {
    /// The loaded model.
    pub fn model(&self) -> &Arc<CrossEncoder> {
        &self.model
    }
}

#[pymethods]
impl Engine {
    /// Loads `model` (a directory, or a Hugging Face Hub repo id fetched
    /// into the Hugging Face cache) with the `crossflow` command's model
    /// settings; `None` is the command's default. With `start=False`
    /// the model is only opened (files read and checked): ONNX Runtime starts
    /// on its first call, as for the SQL functions of `crossflow sql`.
    #[new]
    #[pyo3(signature = (
        model, *, onnx_file=None, max_length=None, device=None, activation=None,
        batch_invariant=None, sessions=None, threads=None, max_batch_tokens=None,
        max_batch_pairs=None, cache_pairs=None, queue_pairs=None, queue_tokens=None,
        batch_wait_ms=None, ort_lib=None, revision=None, token=None, local_files_only=false,
        cache_folder=None, start=true
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        onnx_file: Option<PathBuf>,
        max_length: Option<usize>,
        device: Option<String>,
        activation: Option<String>,
        batch_invariant: Option<String>,
        sessions: Option<usize>,
        threads: Option<usize>,
        max_batch_tokens: Option<usize>,
        max_batch_pairs: Option<usize>,
        cache_pairs: Option<usize>,
        queue_pairs: Option<usize>,
        queue_tokens: Option<usize>,
        batch_wait_ms: Option<u64>,
        ort_lib: Option<PathBuf>,
        revision: Option<String>,
        token: Option<String>,
        local_files_only: bool,
        cache_folder: Option<PathBuf>,
        start: bool,
    ) -> PyResult<Self> {
        let settings = Settings {
            onnx_file,
            max_length,
            device,
            activation,
            batch_invariant,
            sessions,
            threads,
            max_batch_tokens,
            max_batch_pairs,
            cache_pairs,
            queue_pairs,
            queue_tokens,
            batch_wait_ms,
            ort_lib,
        };
        let hub = HubArgs {
            revision,
            token,
            local_files_only,
            cache_folder,
        };
        let options = settings.engine_options()?;
        let (dir, options) = py.detach(|| hub::locate(&model, &hub, options))?;
        let model = py
            .detach(|| match start {
                true => CrossEncoder::load(&dir, &options),
                false => CrossEncoder::open(&dir, &options),
            })
            .map_err(to_py)?;
        Ok(Self {
            model: Arc::new(model),
        })
    }

    /// Runs `pairs` (a sequence of `(a, b)` str pairs): returns the flat
    /// float32 pyarrow array of the results, one value per label per pair. A
    /// score model gives its activated score; a classifier its logits, or
    /// its probabilities with `softmax`.
    #[pyo3(signature = (pairs, *, softmax=false))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        softmax: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (a, b) = arrays::pairs(pairs)?;
        let model = &self.model;
        let predictions = py
            .detach(|| model.predict(&crossflow::Texts::Utf8(&a), &crossflow::Texts::Utf8(&b)))
            .map_err(to_py)?;
        let values = match model.head() {
            Head::Score { .. } => model.scores_of(&predictions),
            Head::Classification { .. } => rows(&predictions, softmax),
        };
        arrays::to_pyarrow(py, &values)
    }

    /// One float32 score per row of `a` and `b` (Arrow string arrays through
    /// the PyCapsule interface, or a `str` for every row): a pyarrow array,
    /// null where a text is null.
    fn score<'py>(
        &self,
        py: Python<'py>,
        a: &Bound<'py, PyAny>,
        b: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (a, b) = (
            Side::extract("score", "a", a)?,
            Side::extract("score", "b", b)?,
        );
        let model = &self.model;
        let scores = py
            .detach(|| model.score(&a.texts()?, &b.texts()?))
            .map_err(to_py)?;
        arrays::to_pyarrow(py, &scores)
    }

    /// A classifier's `nli_label` and `nli_probs` columns for the rows of `a`
    /// and `b` (as `score` takes them), as a pyarrow RecordBatch.
    fn nli<'py>(
        &self,
        py: Python<'py>,
        a: &Bound<'py, PyAny>,
        b: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (a, b) = (Side::extract("nli", "a", a)?, Side::extract("nli", "b", b)?);
        let model = &self.model;
        let columns = OutputColumns::classes(model).map_err(to_py)?;
        let arrays: Vec<ArrayRef> = py
            .detach(|| columns.arrays(&model.predict(&a.texts()?, &b.texts()?)?))
            .map_err(to_py)?;
        let schema = Arc::new(Schema::new(columns.fields().to_vec()));
        let batch = RecordBatch::try_new(schema, arrays)
            .map_err(|e| CrossflowError::new_err(format!("nli: {e}")))?;
        batch.to_pyarrow(py)
    }

    /// The model's fingerprint: its files and the settings that change its results.
    #[getter]
    fn fingerprint(&self) -> String {
        self.model.fingerprint().to_string()
    }

    /// The model's name: its directory's, or its Hub repo id.
    #[getter]
    fn name(&self) -> String {
        self.model.name().to_string()
    }

    /// The directory the model's files were read from (for a Hub model,
    /// its snapshot in the Hugging Face cache).
    #[getter]
    fn path(&self) -> PathBuf {
        self.model.files().dir.clone()
    }

    /// The Hub commit a Hub model's files are from; `None` for a directory.
    #[getter]
    fn revision(&self) -> Option<String> {
        self.model
            .description()
            .origin
            .as_ref()
            .map(|o| o.commit.clone())
    }

    /// The ONNX graph the model runs.
    #[getter]
    fn onnx(&self) -> PathBuf {
        self.model.files().onnx.clone()
    }

    /// `"score"` (one value per pair) or `"classification"`.
    #[getter]
    fn head(&self) -> &'static str {
        match self.model.head() {
            Head::Score { .. } => "score",
            Head::Classification { .. } => "classification",
        }
    }

    /// A classifier's labels in logit order; `None` for a score model.
    #[getter]
    fn labels(&self) -> Option<Vec<String>> {
        match self.model.head() {
            Head::Classification { labels } => Some(labels.clone()),
            Head::Score { .. } => None,
        }
    }

    /// A score model's activation (`"sigmoid"`, `"none"`, `"softmax"`); `None` for a classifier.
    #[getter]
    fn activation(&self) -> Option<String> {
        match self.model.head() {
            Head::Score { activation } => Some(activation.to_string()),
            Head::Classification { .. } => None,
        }
    }

    /// The decision threshold that means 50 % on this model's scores.
    #[getter]
    fn default_threshold(&self) -> f32 {
        self.model.head().default_threshold()
    }

    /// Maximum pair length in tokens.
    #[getter]
    fn max_length(&self) -> usize {
        self.model.max_length()
    }

    /// Whether ONNX Runtime runs the model yet (a model opened with
    /// `start=False` starts on its first call).
    #[getter]
    fn started(&self) -> bool {
        self.model.is_started()
    }

    /// Whether a pair's result never depends on the other pairs of its batch.
    #[getter]
    fn batch_invariant(&self) -> bool {
        self.model.is_batch_invariant()
    }

    /// The engine's counters since the model was loaded, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.model.stats())
    }
}

/// A classifier's rows: logits, or probabilities with `softmax`.
fn rows(predictions: &Predictions, softmax: bool) -> Float32Array {
    (0..predictions.len())
        .flat_map(|i| match softmax {
            true => head::probabilities(predictions.logits(i)),
            false => predictions.logits(i).to_vec(),
        })
        .map(Some)
        .collect()
}

fn stats_dict<'py>(py: Python<'py>, stats: &StatsSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("pairs", stats.pairs)?;
    dict.set_item("null_pairs", stats.null_pairs)?;
    dict.set_item("unique_pairs", stats.unique_pairs)?;
    dict.set_item("truncated_pairs", stats.truncated_pairs)?;
    dict.set_item("cache_hits", stats.cache_hits)?;
    dict.set_item("cache_misses", stats.cache_misses)?;
    dict.set_item("batches", stats.batches)?;
    dict.set_item("tokens", stats.tokens)?;
    dict.set_item("padded_tokens", stats.padded_tokens)?;
    dict.set_item("inference_seconds", stats.inference_time.as_secs_f64())?;
    dict.set_item("queue_wait_seconds", stats.queue_wait_time.as_secs_f64())?;
    dict.set_item("merged_batches", stats.merged_batches)?;
    dict.set_item("sessions", stats.sessions)?;
    Ok(dict)
}
