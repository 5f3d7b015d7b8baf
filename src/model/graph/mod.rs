//! Facts about the ONNX graph that change how it must be run, and loading it
//! so that a pair's result never depends on its batch.

use std::path::Path;

use super::proto::ProtoError;
use super::{per_pair, unpadded};

mod dynamic;
#[cfg(test)]
mod tests;

use crate::session::{GraphBytes, OrtModel, SessionSettings};
use crate::tokenize::EncodedPair;
use crate::{Error, Result};
use dynamic::quantizes_dynamically;
pub use dynamic::uses_dynamic_quantization;

/// A loaded graph and whether it must run one pair per batch. Whether its
/// results are batch-invariant follows from the options alone (see
/// [`crate::ModelDescription`]): every failed rewrite runs one pair per batch.
pub(crate) struct Prepared {
    pub model: OrtModel,
    pub one_pair_per_batch: bool,
}

/// How to make results batch-invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invariance {
    /// Batch as the graph is, even if a pair's result then depends on its batch.
    Off,
    /// Rewrite dynamic quantization to per-pair scales (see
    /// [`per_pair`]); one pair per batch where that is not possible.
    PerPairScales,
    /// One pair per batch for dynamically quantized graphs, on the graph
    /// without its attention masking where that is possible (see [`unpadded`]).
    OnePairPerBatch,
}

/// Loads the graph at `onnx` for batch-invariant results as `invariance`
/// asks. A rewritten graph is used only if `probes()` (made only for a
/// rewrite) get exactly what the original graph gives each alone: in one
/// padded batch for per-pair scales, one by one for the graph without
/// attention masking. A graph that cannot be rewritten for per-pair scales,
/// a rewrite ONNX Runtime refuses, and a probe check that fails or errors fall
/// back to one pair per batch, on the unmasked graph or else the original one
/// (logged, except a graph the unmasking does not recognise).
pub(crate) fn load(
    onnx: &Path,
    settings: &SessionSettings,
    wanted: &[&str],
    invariance: Invariance,
    probes: impl Fn() -> Result<Vec<EncodedPair>>,
    pad_id: u32,
) -> Result<Prepared> {
    let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
    let graph = Graph {
        onnx,
        bytes: &bytes,
        settings,
        wanted,
    };
    let rewrites = Rewrites {
        per_pair: per_pair::rewrite,
        unmask: unpadded::rewrite,
    };
    graph.load(invariance, probes, pad_id, rewrites)
}

/// Where a graph is, its bytes as read from there, and how to make its sessions.
struct Graph<'a> {
    onnx: &'a Path,
    bytes: &'a [u8],
    settings: &'a SessionSettings,
    wanted: &'a [&'a str],
}

/// Rewrites a graph's serialized bytes for per-pair scales.
type Rewrite = fn(&[u8]) -> std::result::Result<Option<per_pair::Rewritten>, ProtoError>;

/// Removes a graph's attention masking (serialized bytes in and out).
type Unmask = fn(&[u8]) -> std::result::Result<Option<unpadded::Rewritten>, ProtoError>;

/// The graph rewrites [`Graph::load`] may use.
#[derive(Clone, Copy)]
struct Rewrites {
    per_pair: Rewrite,
    unmask: Unmask,
}

impl Graph<'_> {
    fn load(
        &self,
        invariance: Invariance,
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        rewrites: Rewrites,
    ) -> Result<Prepared> {
        let onnx = self.onnx;
        if !quantizes_dynamically(self.bytes).map_err(|e| Error::corrupt(onnx, e))? {
            return self.original(false);
        }
        match invariance {
            Invariance::Off => self.original(false),
            Invariance::OnePairPerBatch => self.one_pair(&probes, pad_id, rewrites.unmask),
            Invariance::PerPairScales => {
                match self.per_pair_scales(&probes, pad_id, rewrites.per_pair) {
                    Ok(model) => Ok(Prepared {
                        model,
                        one_pair_per_batch: false,
                    }),
                    Err(reason) => {
                        tracing::warn!(onnx = %onnx.display(), %reason, "no per-pair quantization scales: one pair per batch instead");
                        self.one_pair(&probes, pad_id, rewrites.unmask)
                    }
                }
            }
        }
    }

    /// The graph as it is.
    fn original(&self, one_pair_per_batch: bool) -> Result<Prepared> {
        Ok(Prepared {
            model: OrtModel::load(
                self.onnx,
                GraphBytes::File(self.bytes),
                self.settings,
                self.wanted,
            )?,
            one_pair_per_batch,
        })
    }

    /// Sessions that run one pair per batch: on the graph without attention
    /// masking ([`unpadded`]) when that gives each probe exactly what the
    /// original graph gives it, else on the original graph.
    fn one_pair(
        &self,
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        unmask: Unmask,
    ) -> Result<Prepared> {
        match self.unpadded(probes, pad_id, unmask) {
            Ok(model) => Ok(Prepared {
                model: model.single_unpadded(),
                one_pair_per_batch: true,
            }),
            Err(NoRewrite::UnknownShape) => {
                tracing::debug!(onnx = %self.onnx.display(), "no attention masking recognised: the graph runs as it is");
                self.original(true)
            }
            Err(reason) => {
                tracing::warn!(onnx = %self.onnx.display(), %reason, "attention masking kept for one-pair runs");
                self.original(true)
            }
        }
    }

    /// The unmasked graph's sessions, once each probe alone gets exactly
    /// what the original graph gives it.
    fn unpadded(
        &self,
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        unmask: Unmask,
    ) -> std::result::Result<OrtModel, NoRewrite> {
        let rewritten = unmask(self.bytes)?.ok_or(NoRewrite::UnknownShape)?;
        let model = self.checked(&rewritten.bytes, probes, |model, reference, probes| {
            model.agrees_alone_with(reference, probes, pad_id)
        })?;
        tracing::info!(onnx = %self.onnx.display(), softmaxes = rewritten.softmaxes, "attention masking removed for one-pair runs");
        Ok(model)
    }

    /// The rewritten graph's sessions, once a batch of probes gives each probe
    /// exactly what the original graph gives it alone.
    fn per_pair_scales(
        &self,
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        rewrite: Rewrite,
    ) -> std::result::Result<OrtModel, NoRewrite> {
        let rewritten = rewrite(self.bytes)?.ok_or(NoRewrite::UnknownShape)?;
        let model = self.checked(&rewritten.bytes, probes, |model, reference, probes| {
            model.agrees_batched_with(reference, probes, pad_id)
        })?;
        tracing::info!(onnx = %self.onnx.display(), quantizers = rewritten.quantizers, "dynamic quantization rewritten to per-pair scales");
        Ok(model)
    }

    /// The sessions of the rewritten graph `bytes`, once `agrees` finds that
    /// they give the probes what the original graph gives them.
    fn checked(
        &self,
        bytes: &[u8],
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        agrees: impl FnOnce(&mut OrtModel, &mut OrtModel, &[EncodedPair]) -> Result<bool>,
    ) -> std::result::Result<OrtModel, NoRewrite> {
        let rewritten = GraphBytes::Rewritten(bytes);
        let mut model = OrtModel::load(self.onnx, rewritten, self.settings, self.wanted)?;
        if !agrees(&mut model, &mut self.reference()?, &probes()?)? {
            return Err(NoRewrite::Changed);
        }
        Ok(model)
    }

    /// One session of the original graph, to check a rewrite against.
    fn reference(&self) -> Result<OrtModel> {
        let single = SessionSettings {
            sessions: 1,
            ..self.settings.clone()
        };
        OrtModel::load(
            self.onnx,
            GraphBytes::File(self.bytes),
            &single,
            self.wanted,
        )
    }
}

/// Why a graph runs without a rewrite (per-pair scales, or no attention masking).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoRewrite {
    #[error("a graph of a shape the rewrite does not handle")]
    UnknownShape,
    #[error("the graph could not be rewritten: {0}")]
    Malformed(#[from] super::proto::ProtoError),
    #[error("ONNX Runtime refused the rewritten graph or its probe check failed: {0}")]
    Refused(#[from] Error),
    #[error("the rewritten graph changed the probe pairs' results")]
    Changed,
}
