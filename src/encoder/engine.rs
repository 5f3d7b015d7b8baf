//! The running part of a cross-encoder: its ONNX Runtime sessions behind one
//! scheduler, started from a [`ModelDescription`] when first needed.

use std::path::PathBuf;
use std::sync::Arc;

use crate::model::ModelDescription;
use crate::model::graph;
use crate::options::{EngineOptions, invariance, session_settings};
use crate::queue::{BatchLimits, Scheduler};
use crate::session::Output;
use crate::stats::Stats;
use crate::tokenize::PairTokenizer;
use crate::{Error, Result};

/// A started model: the queue and workers that run its batches.
pub(super) struct Engine {
    pub scheduler: Scheduler,
    /// The micro-batch limits in force (one pair per batch where the graph needs it).
    pub limits: BatchLimits,
}

impl Engine {
    /// Loads the graph (rewritten for per-pair scales where the options ask
    /// for it) into sessions and starts their workers, counting into `stats`.
    pub fn start(
        model: &ModelDescription,
        tokenizer: &PairTokenizer,
        options: &EngineOptions,
        stats: Arc<Stats>,
    ) -> Result<Self> {
        let prepared = graph::load(
            &model.files.onnx,
            &session_settings(options),
            &["logits"],
            invariance(options),
            || tokenizer.encode_pairs(&PROBES),
            tokenizer.pad_id(),
        )?;
        let one_pair_per_batch = prepared.one_pair_per_batch;
        let labels = model.head.num_labels();
        let rows = Box::new(logits_of_batch(model.files.onnx.clone(), labels));
        let (scheduler, limits) = Scheduler::for_graph(
            &model.name,
            prepared,
            options,
            (tokenizer.pad_id(), labels),
            rows,
            stats,
        )?;
        tracing::info!(model = %model.name, onnx = %model.files.onnx.display(),
            head = model.head.describe(), max_length = model.max_length, one_pair_per_batch,
            batch_invariant = model.batch_invariant, device = %options.device,
            sessions = scheduler.workers(), cache_pairs = options.cache_pairs,
            cpu = %crate::CpuInfo::host(), "model started");
        Ok(Self { scheduler, limits })
    }
}

/// Pairs of different lengths that check a rewritten graph when it starts.
const PROBES: [(&str, &str); 8] = [
    (
        "A man is playing a guitar on the stage.",
        "Someone plays an instrument.",
    ),
    ("Yes.", "No."),
    (
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "A fox jumps.",
    ),
    (
        "How do I reset my password?",
        "Steps to change a forgotten password",
    ),
    (
        "Two dogs run through the snow.",
        "Two dogs are running outside in winter.",
    ),
    (
        "I love this film!",
        "I hated every minute of that movie and left early.",
    ),
    ("A", "B"),
    (
        "The committee postponed the vote on the new budget until next Thursday, citing missing figures.",
        "The budget vote was delayed.",
    ),
];

/// Reads one batch's logits: `labels` per row, else the graph does not
/// match its config.
fn logits_of_batch(
    onnx: PathBuf,
    labels: usize,
) -> impl Fn(Output, &[usize]) -> Result<Vec<f32>> + Send + Sync {
    move |out, lengths| {
        let width = out.shape.get(1).copied().unwrap_or(1);
        if out.shape.len() > 2 || width != labels {
            return Err(Error::InvalidModel {
                path: onnx.clone(),
                reason: format!(
                    "the graph's output has shape {:?} for {} pairs; config.json names {labels} labels",
                    out.shape,
                    lengths.len()
                ),
            });
        }
        Ok(out.data)
    }
}
