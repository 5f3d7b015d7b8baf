//! Model options shared by every command, and the bundled default models.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use crossflow::BatchLimits;
use crossflow::{Activation, Device, EngineOptions, QueueOptions};
pub use crossflow::{DEFAULT_CACHE_PAIRS, MAX_BATCH_WAIT_MS};
use serde::{Deserialize, Deserializer};

use crate::{JobError, Result};

mod bundled;
mod cache_command;
mod load;

pub use bundled::{MODELS_PYTHON_PACKAGE, bundled_model_dir};
pub use cache_command::{ModelsAction, ModelsArgs};
pub use load::HubToken;

/// Directory name of the bundled STS / paraphrase cross-encoder (default `--model`).
pub const DEFAULT_SCORE_MODEL: &str = "crossflow-sts-minilm-l6";
/// Directory name of the bundled NLI cross-encoder (default `--nli-model`).
pub const DEFAULT_NLI_MODEL: &str = "crossflow-nli-minilm-l6";
/// Directory name of the bundled bi-encoder (candidates of `crossflow dedupe`).
pub const DEFAULT_BI_ENCODER: &str = "all-minilm-l6-v2";
/// Every bundled model, as shipped in the `crossflow-models` wheel.
pub const BUNDLED_MODELS: [&str; 3] = [DEFAULT_SCORE_MODEL, DEFAULT_NLI_MODEL, DEFAULT_BI_ENCODER];

/// Activation of a one-label model's score (`--activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActivationArg {
    /// The activation the model's configuration names.
    Auto,
    /// The raw logit.
    #[value(alias = "identity", alias = "raw")]
    None,
    /// `1 / (1 + e^-x)`, a score in 0..1.
    Sigmoid,
    /// Softmax over the labels (classifiers).
    Softmax,
}

/// Batch invariance of dynamically quantized int8 graphs (`--batch-invariant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BatchInvariance {
    /// `on` for int8 graphs whose results depend on batch neighbours.
    Auto,
    /// One pair per micro-batch on the CPU, per-pair scales on CUDA.
    #[value(alias = "true")]
    On,
    /// Batched as they are: not invariant.
    #[value(alias = "false")]
    Off,
    /// One pair per micro-batch.
    OnePair,
    /// Rewritten to per-pair quantization scales, batched.
    Scales,
}

/// How to find and run the models: the same settings from the command line
/// and, for `crossflow enrich --config`, from the `[models]` table of its
/// file (the flags' names in snake_case); a flag wins over the file.
#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Model and inference options (any command)")]
pub struct ModelArgs {
    /// Cross-encoder serving scores: a directory (sentence-transformers
    /// layout) or a Hugging Face Hub repo id, ORG/NAME[@REVISION]
    /// [default: the bundled crossflow-sts-minilm-l6]
    #[arg(long, env = "CROSSFLOW_MODEL", global = true)]
    pub model: Option<PathBuf>,

    /// NLI cross-encoder serving nli_label / nli_probs: a directory or a
    /// Hub repo id [default: the bundled crossflow-nli-minilm-l6]
    #[arg(long, env = "CROSSFLOW_NLI_MODEL", global = true)]
    pub nli_model: Option<PathBuf>,

    /// ONNX file of --model, relative to its directory (e.g. onnx/model_qint8_avx2.onnx),
    /// or auto-int8: the published int8 graph for this CPU (avx512_vnni, avx512, avx2, arm64)
    /// [default: model.onnx or onnx/model.onnx]
    #[arg(long, global = true)]
    pub onnx_file: Option<PathBuf>,

    /// Use only the Hugging Face cache for Hub models, never the network
    /// [default: HF_HUB_OFFLINE]
    #[arg(long, global = true)]
    pub offline: bool,

    /// Hugging Face access token for gated or private Hub repos
    /// [default: HF_TOKEN, then the token of `huggingface-cli login`]
    #[arg(long, global = true)]
    pub hf_token: Option<HubToken>,

    /// Maximum pair length in tokens, special tokens included [default: the model's]
    #[arg(long, global = true)]
    pub max_length: Option<usize>,

    /// Padded tokens per micro-batch (pairs × longest pair) [default: 512 on CPU, 16384 on CUDA]
    #[arg(long, global = true)]
    pub max_batch_tokens: Option<usize>,

    /// Pairs per micro-batch [default: 256 on CPU, 512 on CUDA]
    #[arg(long, global = true)]
    pub max_batch_pairs: Option<usize>,

    /// ONNX Runtime sessions running micro-batches in parallel [default: one per core on CPU, 1 on CUDA]
    #[arg(long, global = true)]
    pub sessions: Option<usize>,

    /// ONNX Runtime intra-op threads per session [default: cores / sessions]
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// Execution device: cpu, cuda or cuda:N [default: cpu]
    #[arg(long, global = true)]
    #[serde(deserialize_with = "device")]
    pub device: Option<Device>,

    /// Activation of a one-label model's score: auto (from its config), none,
    /// sigmoid, softmax [default: auto]
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        hide_possible_values = true
    )]
    #[serde(deserialize_with = "value_enum")]
    pub activation: Option<ActivationArg>,

    /// Results that never depend on batch neighbours, for dynamically quantized
    /// int8 graphs: auto / on (one-pair on CPU, scales on CUDA), one-pair (one
    /// pair per micro-batch), scales (rewritten to per-pair quantization
    /// scales, batched), off (batched as they are: not invariant) [default: auto]
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        hide_possible_values = true
    )]
    #[serde(deserialize_with = "value_enum")]
    pub batch_invariant: Option<BatchInvariance>,

    /// Distinct pairs whose scores are kept across batches so that a pair
    /// seen again (stream re-delivery, repeated query) is not run again; 0
    /// turns the cache off [default: 100000]
    #[arg(long, global = true)]
    pub cache_pairs: Option<usize>,

    /// Pairs waiting in a model's queue at most; callers wait for room
    /// [default: 8 micro-batches per session]
    #[arg(long, global = true)]
    pub queue_pairs: Option<usize>,

    /// Tokens waiting in a model's queue at most [default: 8 micro-batch budgets per session]
    #[arg(long, global = true)]
    pub queue_tokens: Option<usize>,

    /// Milliseconds a free session waits for its micro-batch to fill, at most
    /// 10000 [default: 0 on CPU, 2 on CUDA]
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(0..=MAX_BATCH_WAIT_MS))]
    pub batch_wait_ms: Option<u64>,

    /// Path of libonnxruntime.so.1.31.1 [default: ORT_DYLIB_PATH, beside the binary,
    /// the onnxruntime Python package installed beside the binary]
    #[arg(long, global = true)]
    pub ort_lib: Option<PathBuf>,
}

/// A `--device` value from a settings file.
fn device<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<Device>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|t| t.parse().map_err(serde::de::Error::custom))
        .transpose()
}

impl ModelArgs {
    /// These settings, each taken from `file` where it is not set here.
    pub fn or(self, file: ModelArgs) -> ModelArgs {
        ModelArgs {
            model: self.model.or(file.model),
            nli_model: self.nli_model.or(file.nli_model),
            onnx_file: self.onnx_file.or(file.onnx_file),
            offline: self.offline || file.offline,
            hf_token: self.hf_token.or(file.hf_token),
            max_length: self.max_length.or(file.max_length),
            max_batch_tokens: self.max_batch_tokens.or(file.max_batch_tokens),
            max_batch_pairs: self.max_batch_pairs.or(file.max_batch_pairs),
            sessions: self.sessions.or(file.sessions),
            threads: self.threads.or(file.threads),
            device: self.device.or(file.device),
            activation: self.activation.or(file.activation),
            batch_invariant: self.batch_invariant.or(file.batch_invariant),
            cache_pairs: self.cache_pairs.or(file.cache_pairs),
            queue_pairs: self.queue_pairs.or(file.queue_pairs),
            queue_tokens: self.queue_tokens.or(file.queue_tokens),
            batch_wait_ms: self.batch_wait_ms.or(file.batch_wait_ms),
            ort_lib: self.ort_lib.or(file.ort_lib),
        }
    }

    /// Whether `--activation` asks for another activation than the model's own.
    pub fn overrides_activation(&self) -> bool {
        self.activation.is_some_and(|a| a != ActivationArg::Auto)
    }

    /// Engine options from the flags.
    pub fn engine_options(&self) -> Result<EngineOptions> {
        let activation = match self.activation.unwrap_or(ActivationArg::Auto) {
            ActivationArg::Auto => None,
            ActivationArg::None => Some(Activation::Identity),
            ActivationArg::Sigmoid => Some(Activation::Sigmoid),
            ActivationArg::Softmax => Some(Activation::Softmax),
        };
        let (batch_invariant, per_pair_scales) =
            match self.batch_invariant.unwrap_or(BatchInvariance::Auto) {
                BatchInvariance::Auto => (None, None),
                BatchInvariance::On => (Some(true), None),
                BatchInvariance::Off => (Some(false), None),
                BatchInvariance::OnePair => (Some(true), Some(false)),
                BatchInvariance::Scales => (Some(true), Some(true)),
            };
        if let Some(wait) = self.batch_wait_ms.filter(|&ms| ms > MAX_BATCH_WAIT_MS) {
            return Err(JobError::Usage(format!(
                "--batch-wait-ms {wait}: expected at most {MAX_BATCH_WAIT_MS}"
            )));
        }
        let device = self.device.unwrap_or_default();
        let device_limits = BatchLimits::for_device(device);
        Ok(EngineOptions {
            onnx_file: self.onnx_file.clone(),
            max_length: self.max_length,
            limits: BatchLimits {
                max_batch_tokens: self
                    .max_batch_tokens
                    .unwrap_or(device_limits.max_batch_tokens),
                max_batch_pairs: self
                    .max_batch_pairs
                    .unwrap_or(device_limits.max_batch_pairs),
            },
            sessions: self.sessions,
            threads: self.threads,
            device,
            activation,
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

/// A choice of the `--config` file read as the command line reads it: any
/// case, with the same aliases, and an error listing the accepted values.
fn value_enum<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: ValueEnum,
{
    let text = String::deserialize(deserializer)?;
    T::from_str(&text, true).map(Some).map_err(|_| {
        let accepted: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        serde::de::Error::custom(format!("{text:?}: expected one of {}", accepted.join(", ")))
    })
}

/// `--bi-encoder` of the commands that serve `embed` in SQL.
#[derive(Debug, Clone, Default, Args)]
pub struct BiEncoderArg {
    /// Bi-encoder serving embed(text): a directory or a Hub repo id
    /// [default: the bundled all-minilm-l6-v2]
    #[arg(long, env = "CROSSFLOW_BI_ENCODER")]
    pub bi_encoder: Option<PathBuf>,
}
