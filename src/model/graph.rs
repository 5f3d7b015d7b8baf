//! Facts about the ONNX graph that change how it must be run, and loading it
//! so that a pair's result never depends on its batch.

use std::path::Path;

use super::onnx::{
    ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS, GRAPH_NODE, MODEL_GRAPH, NODE_ATTRIBUTE, NODE_OP_TYPE,
};
use super::proto::{self, ProtoError};
use super::{per_pair, unpadded};
use crate::session::{OrtModel, SessionSettings};
use crate::tokenize::EncodedPair;
use crate::{Error, Result};

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
    let graph = Graph {
        onnx,
        settings,
        wanted,
    };
    let rewrites = Rewrites {
        per_pair: per_pair::rewrite,
        unmask: unpadded::rewrite,
    };
    graph.load(invariance, probes, pad_id, rewrites)
}

/// Where a graph is and how to make its sessions.
struct Graph<'a> {
    onnx: &'a Path,
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
        let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
        if !quantizes_dynamically(&bytes).map_err(|e| Error::corrupt(onnx, e))? {
            return self.original(false);
        }
        match invariance {
            Invariance::Off => self.original(false),
            Invariance::OnePairPerBatch => self.one_pair(&bytes, &probes, pad_id, rewrites.unmask),
            Invariance::PerPairScales => {
                match self.per_pair_scales(&bytes, &probes, pad_id, rewrites.per_pair) {
                    Ok(model) => Ok(Prepared {
                        model,
                        one_pair_per_batch: false,
                    }),
                    Err(reason) => {
                        tracing::warn!(onnx = %onnx.display(), %reason, "no per-pair quantization scales: one pair per batch instead");
                        self.one_pair(&bytes, &probes, pad_id, rewrites.unmask)
                    }
                }
            }
        }
    }

    /// The graph as it is.
    fn original(&self, one_pair_per_batch: bool) -> Result<Prepared> {
        Ok(Prepared {
            model: OrtModel::load(self.onnx, None, self.settings, self.wanted)?,
            one_pair_per_batch,
        })
    }

    /// Sessions that run one pair per batch: on the graph without attention
    /// masking ([`unpadded`]) when that gives each probe exactly what the
    /// original graph gives it, else on the original graph.
    fn one_pair(
        &self,
        bytes: &[u8],
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        unmask: Unmask,
    ) -> Result<Prepared> {
        match self.unpadded(bytes, probes, pad_id, unmask) {
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
        bytes: &[u8],
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        unmask: Unmask,
    ) -> std::result::Result<OrtModel, NoRewrite> {
        let rewritten = unmask(bytes)?.ok_or(NoRewrite::UnknownShape)?;
        let mut model = self.rewritten(&rewritten.bytes)?;
        if !model.agrees_alone_with(&mut self.reference()?, &probes()?, pad_id)? {
            return Err(NoRewrite::Changed);
        }
        tracing::info!(onnx = %self.onnx.display(), softmaxes = rewritten.softmaxes, "attention masking removed for one-pair runs");
        Ok(model)
    }

    /// The rewritten graph's sessions, once a batch of probes gives each probe
    /// exactly what the original graph gives it alone.
    fn per_pair_scales(
        &self,
        bytes: &[u8],
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        pad_id: u32,
        rewrite: Rewrite,
    ) -> std::result::Result<OrtModel, NoRewrite> {
        let rewritten = rewrite(bytes)?.ok_or(NoRewrite::UnknownShape)?;
        let mut model = self.rewritten(&rewritten.bytes)?;
        if !model.agrees_batched_with(&mut self.reference()?, &probes()?, pad_id)? {
            return Err(NoRewrite::Changed);
        }
        tracing::info!(onnx = %self.onnx.display(), quantizers = rewritten.quantizers, "dynamic quantization rewritten to per-pair scales");
        Ok(model)
    }

    /// Sessions of a rewritten graph.
    fn rewritten(&self, bytes: &[u8]) -> Result<OrtModel> {
        OrtModel::load(self.onnx, Some(bytes), self.settings, self.wanted)
    }

    /// One session of the original graph, to check a rewrite against.
    fn reference(&self) -> Result<OrtModel> {
        let single = SessionSettings {
            sessions: 1,
            ..self.settings.clone()
        };
        OrtModel::load(self.onnx, None, &single, self.wanted)
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

/// Whether the graph quantizes activations dynamically (onnxruntime
/// `quantize_dynamic` output: `DynamicQuantizeLinear` nodes, or the fused
/// operators of a graph saved after onnxruntime's optimizer, see
/// [`DYNAMIC_QUANTIZERS`]; searched in subgraphs and model-local functions too).
///
/// Such a graph computes one int8 scale over the whole activation tensor of a
/// batch, padding included, so a pair's logits depend on the other pairs in its
/// batch (measured on the bundled int8 STS model: up to 0.57 logits between
/// batch 1 and batch 32). [`load`] therefore rewrites these graphs to
/// per-pair scales (or runs them one pair per micro-batch).
pub fn uses_dynamic_quantization(onnx: &Path) -> Result<bool> {
    let bytes = std::fs::read(onnx).map_err(|e| Error::corrupt(onnx, e))?;
    quantizes_dynamically(&bytes).map_err(|e| Error::corrupt(onnx, e))
}

/// Operators that compute an activation's int8 scale from the tensor they
/// are given: `DynamicQuantizeLinear` and onnxruntime's fused forms of it,
/// which a graph saved after graph optimization holds instead (a
/// `DynamicQuantizeMatMul` replaces `DynamicQuantizeLinear` + `MatMulInteger`).
const DYNAMIC_QUANTIZERS: [&[u8]; 3] = [
    b"DynamicQuantizeLinear",
    b"DynamicQuantizeMatMul",
    b"DynamicQuantizeLSTM",
];

/// ONNX field numbers the check reads beyond [`super::onnx`]'s.
const MODEL_FUNCTIONS: u32 = 25;
const FUNCTION_NODE: u32 = 7;
/// Subgraphs nested deeper than this are not searched.
const MAX_DEPTH: usize = 16;

/// Whether any node of the model — main graph, subgraphs of control-flow
/// nodes, model-local functions — is one of [`DYNAMIC_QUANTIZERS`]. Reads the
/// serialized model in place, without copying its weights.
fn quantizes_dynamically(model: &[u8]) -> std::result::Result<bool, ProtoError> {
    for graph in proto::payloads(model, MODEL_GRAPH)? {
        if graph_quantizes(graph, 0)? {
            return Ok(true);
        }
    }
    for function in proto::payloads(model, MODEL_FUNCTIONS)? {
        if nodes_quantize(&proto::payloads(function, FUNCTION_NODE)?, 0)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn graph_quantizes(graph: &[u8], depth: usize) -> std::result::Result<bool, ProtoError> {
    nodes_quantize(&proto::payloads(graph, GRAPH_NODE)?, depth)
}

fn nodes_quantize(nodes: &[&[u8]], depth: usize) -> std::result::Result<bool, ProtoError> {
    for node in nodes {
        let op = proto::payloads(node, NODE_OP_TYPE)?;
        if op.first().is_some_and(|op| DYNAMIC_QUANTIZERS.contains(op)) {
            return Ok(true);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for attribute in proto::payloads(node, NODE_ATTRIBUTE)? {
            let mut graphs = proto::payloads(attribute, ATTRIBUTE_GRAPH)?;
            graphs.extend(proto::payloads(attribute, ATTRIBUTE_GRAPHS)?);
            for graph in graphs {
                if graph_quantizes(graph, depth + 1)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::super::onnx::{GRAPH_NODE, Node};
    use super::super::proto::Field;
    use super::*;
    use crate::session::PaddedBatch;

    fn bundled_int8() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/crossflow-sts-minilm-l6/onnx/model_qint8_avx2.onnx")
    }

    #[test]
    fn quantization_is_read_from_the_nodes_not_from_any_bytes() {
        assert!(uses_dynamic_quantization(&bundled_int8()).unwrap());
        // The operator's name in a node *name* is not a quantizer.
        let mut node = Node::new("MatMul", &["x", "w"], &["y"], Vec::new()).fields;
        node.push(Field::Bytes(3, b"DynamicQuantizeLinear_1".to_vec()));
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&node))]);
        let model = proto::encode(&[Field::Bytes(MODEL_GRAPH, graph)]);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.onnx");
        std::fs::write(&plain, &model).unwrap();
        assert!(!uses_dynamic_quantization(&plain).unwrap());
        // In the branch of an `If`, and in a model-local function.
        let quantizer = Node::new(
            "DynamicQuantizeLinear",
            &["x"],
            &["y", "s", "z"],
            Vec::new(),
        );
        let branch = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&quantizer.fields))]);
        let attribute = proto::encode(&[
            Field::Bytes(1, b"then_branch".to_vec()),
            Field::Bytes(6, branch),
        ]);
        let mut control = Node::new("If", &["c"], &["out"], Vec::new()).fields;
        control.push(Field::Bytes(NODE_ATTRIBUTE, attribute));
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&control))]);
        std::fs::write(&plain, proto::encode(&[Field::Bytes(MODEL_GRAPH, graph)])).unwrap();
        assert!(uses_dynamic_quantization(&plain).unwrap(), "in a subgraph");
        let function = proto::encode(&[Field::Bytes(
            FUNCTION_NODE,
            proto::encode(&quantizer.fields),
        )]);
        std::fs::write(
            &plain,
            proto::encode(&[Field::Bytes(MODEL_FUNCTIONS, function)]),
        )
        .unwrap();
        assert!(uses_dynamic_quantization(&plain).unwrap(), "in a function");
        // The fused operator of a graph saved after onnxruntime's optimizer.
        let fused = Node::new(
            "DynamicQuantizeMatMul",
            &["x", "w", "s"],
            &["y"],
            Vec::new(),
        );
        let graph = proto::encode(&[Field::Bytes(GRAPH_NODE, proto::encode(&fused.fields))]);
        std::fs::write(&plain, proto::encode(&[Field::Bytes(MODEL_GRAPH, graph)])).unwrap();
        assert!(uses_dynamic_quantization(&plain).unwrap(), "fused");
        std::fs::write(&plain, b"\x0a\xff\xff").unwrap();
        assert!(
            uses_dynamic_quantization(&plain).is_err(),
            "malformed graph"
        );
        assert!(uses_dynamic_quantization(&dir.path().join("missing.onnx")).is_err());
    }

    fn load_int8(probes: impl Fn() -> Result<Vec<EncodedPair>>, rewrite: Rewrite) -> Prepared {
        let rewrites = Rewrites {
            per_pair: rewrite,
            unmask: unpadded::rewrite,
        };
        load_bundled(Invariance::PerPairScales, probes, rewrites)
    }

    fn load_one_pair(probes: impl Fn() -> Result<Vec<EncodedPair>>, unmask: Unmask) -> Prepared {
        let rewrites = Rewrites {
            per_pair: per_pair::rewrite,
            unmask,
        };
        load_bundled(Invariance::OnePairPerBatch, probes, rewrites)
    }

    fn load_bundled(
        invariance: Invariance,
        probes: impl Fn() -> Result<Vec<EncodedPair>>,
        rewrites: Rewrites,
    ) -> Prepared {
        let settings = SessionSettings {
            sessions: 1,
            intra_threads: Some(1),
            ..SessionSettings::default()
        };
        let onnx = bundled_int8();
        let graph = Graph {
            onnx: &onnx,
            settings: &settings,
            wanted: &["logits"],
        };
        graph
            .load(invariance, probes, 0, rewrites)
            .expect("falls back, never fails")
    }

    fn probes() -> Result<Vec<EncodedPair>> {
        Ok((3..9)
            .map(|n| EncodedPair {
                ids: (0..n).map(|i| 101 + i as u32 * 7).collect(),
                type_ids: vec![0; n],
                truncated: false,
            })
            .collect())
    }

    #[test]
    fn a_rewrite_that_passes_its_probes_batches() {
        let prepared = load_int8(probes, per_pair::rewrite);
        assert!(!prepared.one_pair_per_batch);
    }

    #[test]
    fn one_pair_runs_use_the_unmasked_graph_and_refuse_padding() {
        let prepared = load_one_pair(probes, unpadded::rewrite);
        assert!(prepared.one_pair_per_batch && prepared.model.is_single_unpadded());
        let pairs = probes().unwrap();
        let session = &mut prepared.model.into_sessions()[0];
        for pair in &pairs[..2] {
            session
                .run(&PaddedBatch::new(&[pair], pair.len(), 0))
                .expect("one pair without padding");
        }
        let cols = pairs[1].len();
        for (batch, case) in [
            (PaddedBatch::new(&[&pairs[0]], cols, 0), "one padded pair"),
            (
                PaddedBatch::new(&[&pairs[1], &pairs[1]], cols, 0),
                "two pairs",
            ),
        ] {
            let error = session.run(&batch).expect_err(case).to_string();
            assert!(error.contains("without padding"), "{case}: {error}");
        }
        let per_pair_failed = load_int8(probes, |_| Ok(None));
        assert!(per_pair_failed.one_pair_per_batch && per_pair_failed.model.is_single_unpadded());
    }

    #[test]
    fn a_failed_unmasking_runs_the_original_graph_one_pair_per_batch() {
        let failing_probes = || Err(Error::tokenizer("", "probe tokenization failed".into()));
        let not_handled: Unmask = |_| Ok(None);
        let malformed: Unmask = |bytes| proto::parse(&bytes[..bytes.len() / 2]).map(|_| None);
        let refused: Unmask = |_| {
            Ok(Some(unpadded::Rewritten {
                bytes: b"not an onnx graph".to_vec(),
                softmaxes: 1,
            }))
        };
        let changed: Unmask = |_| {
            // Another model's graph: other logits for the same pair.
            let nli = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models/crossflow-nli-minilm-l6/onnx/model_qint8_avx2.onnx");
            Ok(Some(unpadded::Rewritten {
                bytes: std::fs::read(nli).unwrap(),
                softmaxes: 6,
            }))
        };
        let no_probes = || Ok(Vec::new());
        let cases: [(&str, Prepared); 6] = [
            (
                "probe error",
                load_one_pair(failing_probes, unpadded::rewrite),
            ),
            ("no probes", load_one_pair(no_probes, unpadded::rewrite)),
            ("unknown shape", load_one_pair(probes, not_handled)),
            ("malformed", load_one_pair(probes, malformed)),
            ("refused by ONNX Runtime", load_one_pair(probes, refused)),
            ("changed results", load_one_pair(probes, changed)),
        ];
        for (case, prepared) in cases {
            assert!(prepared.one_pair_per_batch, "{case}");
            assert!(!prepared.model.is_single_unpadded(), "{case}");
        }
    }

    #[test]
    fn every_failed_rewrite_runs_one_pair_per_batch() {
        let failing_probes = || Err(Error::tokenizer("", "probe tokenization failed".into()));
        let not_handled: Rewrite = |_| Ok(None);
        let malformed: Rewrite = |bytes| proto::parse(&bytes[..bytes.len() / 2]).map(|_| None);
        let refused: Rewrite = |_| {
            Ok(Some(per_pair::Rewritten {
                bytes: b"not an onnx graph".to_vec(),
                quantizers: 1,
            }))
        };
        let changed: Rewrite = |bytes| {
            // The original graph batched: its shared scale changes the results.
            Ok(Some(per_pair::Rewritten {
                bytes: bytes.to_vec(),
                quantizers: 0,
            }))
        };
        let cases: [(&str, Prepared); 5] = [
            ("probe error", load_int8(failing_probes, per_pair::rewrite)),
            ("unknown shape", load_int8(probes, not_handled)),
            ("malformed", load_int8(probes, malformed)),
            ("refused by ONNX Runtime", load_int8(probes, refused)),
            ("changed results", load_int8(probes, changed)),
        ];
        for (case, prepared) in cases {
            assert!(prepared.one_pair_per_batch, "{case}");
        }
    }
}
