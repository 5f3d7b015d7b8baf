//! How to load and run a model: the engine's options, and what they mean
//! for batch invariance and the ONNX Runtime sessions.

use std::path::PathBuf;

use crate::head::Activation;
use crate::model::graph::Invariance;
use crate::queue::BatchLimits;
use crate::queue::QueueOptions;
use crate::runtime::Device;
use crate::session::SessionSettings;

/// The score cache's size that front ends (`--cache-pairs`, the Python
/// module's `cache_pairs`) use when none is given; [`EngineOptions`]'s own
/// default is no cache.
pub const DEFAULT_CACHE_PAIRS: usize = 100_000;

/// The longest wait for a micro-batch to fill that front ends accept
/// (`--batch-wait-ms`, `batch_wait_ms`): every call may wait this long.
pub const MAX_BATCH_WAIT_MS: u64 = 10_000;

/// How to load and run a model. `Default` gives the CPU, all cores, the
/// model's own maximum length and activation, and the default batch limits.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// ONNX file to use, relative to the model directory (default: `model.onnx`,
    /// `onnx/model.onnx`, or the only file under `onnx/`).
    pub onnx_file: Option<PathBuf>,
    /// Maximum pair length in tokens (default: the model's).
    pub max_length: Option<usize>,
    /// Micro-batch limits.
    pub limits: BatchLimits,
    /// ONNX Runtime sessions run in parallel on different micro-batches
    /// (default: one per core on the CPU, one on a GPU).
    pub sessions: Option<usize>,
    /// ONNX Runtime intra-op threads per session (default: cores / sessions).
    pub threads: Option<usize>,
    /// Execution device.
    pub device: Device,
    /// Overrides the activation of a one-label model.
    pub activation: Option<Activation>,
    /// Path of `libonnxruntime.so` (default: see [`crate::runtime::library_candidates`]).
    pub ort_library: Option<PathBuf>,
    /// Make a pair's result independent of its batch neighbours. Only graphs
    /// with dynamic int8 quantization need it (see
    /// [`crate::model::graph::uses_dynamic_quantization`]). `None` (the
    /// default) and `Some(true)` do it; `Some(false)` batches such graphs as
    /// they are.
    pub batch_invariant: Option<bool>,
    /// How a dynamically quantized graph is made batch-invariant: `true`
    /// rewrites its quantization to per-pair scales so that it can batch,
    /// `false` runs it one pair per micro-batch. `None` (the default): one
    /// pair per batch on the CPU, where it measured faster than the
    /// rewritten graph (whose int8 products lose onnxruntime's fused kernel),
    /// per-pair scales on a GPU, which needs batches to be busy.
    pub per_pair_scales: Option<bool>,
    /// Distinct pairs whose outputs are kept across calls, so a pair seen
    /// again is not run again (0, the default: no cache). See [`crate::cache`].
    pub cache_pairs: usize,
    /// Bounds of the model's queue (default: [`crate::QueueLimits::for_workers`]).
    pub queue: QueueOptions,
    /// Where the model directory came from when it was named by Hub repo id
    /// (`None`: a local directory).
    pub origin: Option<ModelOrigin>,
}

/// A model fetched from a Hugging Face Hub repo: the name it goes by and the
/// commit its files are from. The commit is part of the model's
/// [`crate::Fingerprint`], so processes on different revisions of a repo
/// never pass for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelOrigin {
    /// `ORG/NAME`.
    pub repo: String,
    /// The 40-hex commit hash.
    pub commit: String,
}

/// How the options ask for batch-invariant results.
pub(crate) fn invariance(options: &EngineOptions) -> Invariance {
    let scales = options
        .per_pair_scales
        .unwrap_or(matches!(options.device, Device::Cuda(_)));
    match (options.batch_invariant, scales) {
        (Some(false), _) => Invariance::Off,
        (_, true) => Invariance::PerPairScales,
        (_, false) => Invariance::OnePairPerBatch,
    }
}

/// Sessions and threads: by default one single-threaded session per core on
/// the CPU (independent micro-batches in parallel beat splitting small matrix
/// products across threads), one session on a GPU.
pub(crate) fn session_settings(options: &EngineOptions) -> SessionSettings {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let sessions = options.sessions.unwrap_or(match options.device {
        Device::Cpu => cores,
        Device::Cuda(_) => 1,
    });
    SessionSettings {
        device: options.device,
        sessions,
        intra_threads: options.threads.or(Some((cores / sessions.max(1)).max(1))),
        ort_library: options.ort_library.clone(),
    }
}
