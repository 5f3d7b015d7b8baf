//! The engine's options from the keyword arguments of `CrossEncoder(...)`,
//! named and defaulted as the `crossflow` command's model flags.

use std::path::PathBuf;
use std::time::Duration;

use crossflow::{
    Activation, BatchLimits, DEFAULT_CACHE_PAIRS, Device, EngineOptions, MAX_BATCH_WAIT_MS,
    QueueOptions,
};
use pyo3::PyResult;
use pyo3::exceptions::PyValueError;

/// The keyword arguments, as given (`None`: the command's default).
#[derive(Debug, Default)]
pub struct Settings {
    pub onnx_file: Option<PathBuf>,
    pub max_length: Option<usize>,
    pub device: Option<String>,
    pub activation: Option<String>,
    pub batch_invariant: Option<String>,
    pub sessions: Option<usize>,
    pub threads: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub max_batch_pairs: Option<usize>,
    pub cache_pairs: Option<usize>,
    pub queue_pairs: Option<usize>,
    pub queue_tokens: Option<usize>,
    pub batch_wait_ms: Option<u64>,
    pub ort_lib: Option<PathBuf>,
}

impl Settings {
    /// The engine options; a value outside a setting's choices is a
    /// `ValueError` naming the argument and the choices.
    pub fn engine_options(&self) -> PyResult<EngineOptions> {
        let device: Device = match &self.device {
            Some(text) => text
                .parse()
                .map_err(|e| PyValueError::new_err(format!("device: {e}")))?,
            None => Device::Cpu,
        };
        let (batch_invariant, per_pair_scales) = invariance(self.batch_invariant.as_deref())?;
        if let Some(wait) = self.batch_wait_ms.filter(|&ms| ms > MAX_BATCH_WAIT_MS) {
            return Err(PyValueError::new_err(format!(
                "batch_wait_ms: {wait}; expected at most {MAX_BATCH_WAIT_MS}"
            )));
        }
        let limits = BatchLimits::for_device(device);
        Ok(EngineOptions {
            onnx_file: self.onnx_file.clone(),
            max_length: self.max_length,
            limits: BatchLimits {
                max_batch_tokens: self.max_batch_tokens.unwrap_or(limits.max_batch_tokens),
                max_batch_pairs: self.max_batch_pairs.unwrap_or(limits.max_batch_pairs),
            },
            sessions: self.sessions,
            threads: self.threads,
            device,
            activation: activation(self.activation.as_deref())?,
            ort_library: self.ort_lib.clone(),
            batch_invariant,
            per_pair_scales,
            cache_pairs: self.cache_pairs.unwrap_or(DEFAULT_CACHE_PAIRS),
            queue: QueueOptions {
                max_pairs: self.queue_pairs,
                max_tokens: self.queue_tokens,
                max_wait: self.batch_wait_ms.map(Duration::from_millis),
            },
            origin: None,
        })
    }
}

/// `activation`: `None` / "auto" keeps the model's own.
fn activation(text: Option<&str>) -> PyResult<Option<Activation>> {
    Ok(match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => None,
        Some("none" | "identity" | "raw") => Some(Activation::Identity),
        Some("sigmoid") => Some(Activation::Sigmoid),
        Some("softmax") => Some(Activation::Softmax),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "activation: {other:?}; expected one of auto, none, sigmoid, softmax"
            )));
        }
    })
}

/// `batch_invariant` as the engine's (invariant, per-pair scales) choice.
fn invariance(text: Option<&str>) -> PyResult<(Option<bool>, Option<bool>)> {
    Ok(match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => (None, None),
        Some("on" | "true") => (Some(true), None),
        Some("off" | "false") => (Some(false), None),
        Some("one-pair") => (Some(true), Some(false)),
        Some("scales") => (Some(true), Some(true)),
        Some(other) => {
            return Err(PyValueError::new_err(format!(
                "batch_invariant: {other:?}; expected one of auto, on, off, one-pair, scales"
            )));
        }
    })
}
