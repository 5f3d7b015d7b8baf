//! How a session is built: the graph optimizer's settings per device, and
//! the weights the sessions of one graph share on the CPU.

use std::path::Path;
use std::sync::Arc;

use ort::ep::CUDA;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::value::{DynValue, Tensor};

use super::SessionSettings;
use crate::model::initializers::{Initializer, TensorData, large_initializers};
use crate::runtime::{self, Device};
use crate::{Error, Result};

/// A session builder with crossflow's settings for `settings.device`.
pub(super) fn builder(settings: &SessionSettings) -> Result<SessionBuilder> {
    let env = runtime::environment(settings.ort_library.as_deref())?;
    let mut builder = Session::builder(env).map_err(|e| Error::ort("creating a session", e))?;
    builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| option("setting the optimization level", e))?;
    if let Some(threads) = settings.intra_threads {
        builder = builder
            .with_intra_threads(threads)
            .map_err(|e| option("setting intra-op threads", e))?;
    }
    builder = builder
        .with_inter_threads(1)
        .map_err(|e| option("setting inter-op threads", e))?;
    match settings.device {
        Device::Cpu => builder
            .with_config_entry(DISABLED_OPTIMIZERS_KEY, CPU_DISABLED_OPTIMIZERS)
            .map_err(|e| option("disabling graph optimizers", e)),
        Device::Cuda(id) => with_cuda(builder, id),
    }
}

/// A builder setting that failed.
fn option(what: &str, e: ort::Error<SessionBuilder>) -> Error {
    Error::ort(what, e.to_string())
}

/// ONNX Runtime's session setting that names graph optimizers to skip.
const DISABLED_OPTIMIZERS_KEY: &str = "optimization.disable_specified_optimizers";

/// The graph optimizers crossflow skips on the CPU. `SkipLayerNormFusion`
/// replaces a residual `Add` and a `LayerNormalization` by one
/// `SkipLayerNormalization`, whose CPU kernel normalizes each row in scalar
/// loops with a division per element: measured 5.6–7.6× slower than the two
/// operators it replaces; the bundled int8 graph runs 1.14–1.15× faster one
/// pair per run without it (docs/performance.md, "Layer norms on the CPU").
/// Part of the models' fingerprint ([`crate::model::Fingerprint`]). A list
/// would be `;`-separated: ONNX Runtime 1.31 ignores a `,`-separated one.
pub(crate) const CPU_DISABLED_OPTIMIZERS: &str = "SkipLayerNormFusion";

/// `builder` on CUDA device `id` (failing if the provider cannot start).
fn with_cuda(builder: SessionBuilder, id: i32) -> Result<SessionBuilder> {
    let cuda = CUDA::default()
        .with_device_id(id)
        .build()
        .error_on_failure();
    builder
        .with_execution_providers([cuda])
        .map_err(|e| Error::ort(format!("enabling CUDA device {id}"), e.to_string()))
}

/// One copy of a graph's weights for all its sessions on the CPU: its large
/// initializers ([`crate::model::initializers`]), given to each session as
/// ONNX Runtime initializers, and one container for the copies ONNX Runtime
/// prepacks from them for its matrix-product kernels (it shares prepacked
/// weights only among sessions given the same initializers).
///
/// Each single-threaded session reads every weight once per one-pair run.
/// With a copy per session, two cores stream twice the bytes through the
/// last-level cache they share; with one copy the bundled int8 graph runs
/// short pairs 1.15–1.25× faster on two cores, and longer pairs (whose runs
/// reuse each weight over more tokens) as fast as before
/// (docs/performance.md, "One copy of the weights"). ONNX Runtime matches the
/// given weights by name and skips those its optimizer replaced under another
/// name (docs/known-gaps.md).
#[derive(Default)]
pub(super) struct SharedWeights {
    initializers: Vec<(String, Arc<DynValue>)>,
    prepacked: Option<PrepackedWeights>,
}

impl SharedWeights {
    /// The weights to share of the graph `bytes` (of the file at `path`);
    /// none for a single session or on CUDA.
    pub fn load(path: &Path, bytes: &[u8], settings: &SessionSettings) -> Result<Self> {
        if settings.sessions < 2 || settings.device != Device::Cpu {
            return Ok(Self::default());
        }
        let found = large_initializers(bytes).map_err(|e| Error::corrupt(path, e))?;
        if found.is_empty() {
            return Ok(Self::default());
        }
        // Tensors and the container come from ONNX Runtime's API: load it first.
        runtime::environment(settings.ort_library.as_deref())?;
        let initializers = found
            .into_iter()
            .map(|init| Ok((init.name.clone(), Arc::new(value(init)?))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            initializers,
            prepacked: Some(PrepackedWeights::new()),
        })
    }

    /// `builder` with the shared weights; how many it was given.
    pub fn apply(&self, mut builder: SessionBuilder) -> Result<(SessionBuilder, usize)> {
        if let Some(prepacked) = &self.prepacked {
            builder = builder
                .with_prepacked_weights(prepacked)
                .map_err(|e| option("sharing prepacked weights", e))?;
        }
        for (name, value) in &self.initializers {
            builder = builder
                .with_initializer(name, value.clone())
                .map_err(|e| option(&format!("sharing weight {name:?}"), e))?;
        }
        Ok((builder, self.initializers.len()))
    }
}

/// An initializer as an ONNX Runtime tensor.
fn value(init: Initializer) -> Result<DynValue> {
    let shape: Vec<usize> = init.dims.iter().map(|&d| d as usize).collect();
    let value = match init.data {
        TensorData::F32(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U8(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I8(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I32(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I64(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
    };
    value.map_err(|e| Error::ort(format!("loading weight {:?}", init.name), e))
}
