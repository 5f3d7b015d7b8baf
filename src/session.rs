//! The ONNX Runtime sessions of one model: one per worker of the model's
//! [`crate::queue::Scheduler`], which owns them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::ep::CUDA;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType};

use crate::runtime::{self, Device};
use crate::tokenize::EncodedPair;
use crate::{Error, Result};

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionSettings {
    pub device: Device,
    /// Sessions in the pool (micro-batches run on them in parallel).
    pub sessions: usize,
    pub intra_threads: Option<usize>,
    pub ort_library: Option<PathBuf>,
}

/// A loaded graph: its sessions, before they go to the scheduler's workers.
#[derive(Debug)]
pub(crate) struct OrtModel {
    sessions: Vec<OrtSession>,
}

/// One ONNX Runtime session, owned by one worker thread.
#[derive(Debug)]
pub(crate) struct OrtSession {
    session: Session,
    signature: Arc<Signature>,
    /// The graph is valid only for one pair without padding (see
    /// [`crate::model::graph`]): any other batch is refused.
    single_unpadded: bool,
}

/// What the graph's inputs and output are called and typed.
#[derive(Debug)]
struct Signature {
    ids_type: TensorElementType,
    has_token_type_ids: bool,
    output: String,
}

/// A graph output, row-major, first dimension = rows of the batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Output {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

/// One micro-batch, padded to its longest pair (row-major `rows × cols`).
pub(crate) struct PaddedBatch {
    pub rows: usize,
    pub cols: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl PaddedBatch {
    /// Pads `pairs` to `cols` tokens with `pad_id`.
    pub fn new(pairs: &[&EncodedPair], cols: usize, pad_id: u32) -> Self {
        let size = pairs.len() * cols;
        let mut batch = Self {
            rows: pairs.len(),
            cols,
            input_ids: Vec::with_capacity(size),
            attention_mask: Vec::with_capacity(size),
            token_type_ids: Vec::with_capacity(size),
        };
        for pair in pairs {
            let pad = cols - pair.len();
            batch.input_ids.extend(pair.ids.iter().map(|&id| id as i64));
            batch
                .input_ids
                .extend(std::iter::repeat_n(pad_id as i64, pad));
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, pair.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, pad));
            batch
                .token_type_ids
                .extend(pair.type_ids.iter().map(|&t| t as i64));
            batch.token_type_ids.extend(std::iter::repeat_n(0, pad));
        }
        batch
    }
}

impl OrtModel {
    /// Builds the session pool for the graph at `path` (or, when given, its
    /// rewritten bytes) and checks its signature. The output read is the
    /// graph's only one, else the first of `wanted` it has.
    pub fn load(
        path: &Path,
        rewritten: Option<&[u8]>,
        settings: &SessionSettings,
        wanted: &[&str],
    ) -> Result<Self> {
        let sessions = (0..settings.sessions.max(1))
            .map(|_| {
                let mut builder = builder(settings)?;
                match rewritten {
                    Some(bytes) => builder.commit_from_memory(bytes),
                    None => builder.commit_from_file(path),
                }
                .map_err(|e| Error::ort(format!("loading {}", path.display()), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let session = &sessions[0];
        let invalid = |reason: String| Error::InvalidModel {
            path: path.to_path_buf(),
            reason,
        };
        let mut ids_type = None;
        let mut has_mask = false;
        let mut has_token_type_ids = false;
        for input in session.inputs() {
            match input.name() {
                "input_ids" => ids_type = input.dtype().tensor_type(),
                "attention_mask" => has_mask = true,
                "token_type_ids" => has_token_type_ids = true,
                other => return Err(invalid(format!("unsupported graph input {other:?}"))),
            }
        }
        let ids_type =
            ids_type.ok_or_else(|| invalid("the graph has no input_ids input".into()))?;
        if !matches!(
            ids_type,
            TensorElementType::Int64 | TensorElementType::Int32
        ) {
            return Err(invalid(format!(
                "input_ids has type {ids_type:?}, expected int64 or int32"
            )));
        }
        if !has_mask {
            return Err(invalid("the graph has no attention_mask input".into()));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let output = match outputs.as_slice() {
            [only] => only.to_string(),
            many => match wanted.iter().find(|w| many.contains(w)) {
                Some(name) => name.to_string(),
                None => {
                    return Err(invalid(format!(
                        "none of the outputs {wanted:?} among {many:?}"
                    )));
                }
            },
        };
        let signature = Arc::new(Signature {
            ids_type,
            has_token_type_ids,
            output,
        });
        let sessions = sessions
            .into_iter()
            .map(|session| OrtSession {
                session,
                signature: signature.clone(),
                single_unpadded: false,
            })
            .collect();
        Ok(Self { sessions })
    }

    /// The sessions, one per worker.
    pub fn into_sessions(self) -> Vec<OrtSession> {
        self.sessions
    }

    /// Marks the graph as valid only for batches of one unpadded pair: its
    /// sessions refuse any other batch.
    pub fn single_unpadded(mut self) -> Self {
        for session in &mut self.sessions {
            session.single_unpadded = true;
        }
        self
    }

    /// Whether the sessions run only batches of one unpadded pair.
    #[cfg(test)]
    pub fn is_single_unpadded(&self) -> bool {
        self.sessions.iter().all(|s| s.single_unpadded)
    }

    /// Whether each of `probes`, run alone here, gets exactly (bit for bit)
    /// the output `reference` gives it alone.
    pub fn agrees_alone_with(
        &mut self,
        reference: &mut OrtModel,
        probes: &[EncodedPair],
        pad_id: u32,
    ) -> Result<bool> {
        for probe in probes {
            let alone = PaddedBatch::new(&[probe], probe.len(), pad_id);
            let got = self.sessions[0].run(&alone)?;
            if !same_bits(&got.data, &reference.sessions[0].run(&alone)?.data) {
                return Ok(false);
            }
        }
        Ok(!probes.is_empty())
    }

    /// Whether every row of one padded batch of `probes`, run here, gets
    /// exactly (bit for bit) the output `reference` gives it alone.
    pub fn agrees_batched_with(
        &mut self,
        reference: &mut OrtModel,
        probes: &[EncodedPair],
        pad_id: u32,
    ) -> Result<bool> {
        self.sessions[0].agrees_batched_with(&mut reference.sessions[0], probes, pad_id)
    }
}

impl OrtSession {
    /// Runs one batch; returns the output, row-major.
    pub fn run(&mut self, batch: &PaddedBatch) -> Result<Output> {
        if self.single_unpadded && (batch.rows != 1 || batch.attention_mask.contains(&0)) {
            let padding = batch.attention_mask.iter().filter(|&&m| m == 0).count();
            return Err(Error::Scheduler(format!(
                "a batch of {} pairs × {} tokens ({padding} of them padding) reached a graph \
                 that runs only one pair without padding",
                batch.rows, batch.cols
            )));
        }
        let shape = [batch.rows, batch.cols];
        let signature = &*self.signature;
        let mut inputs: Vec<(&str, SessionInputValue)> = vec![
            ("input_ids", signature.tensor(shape, &batch.input_ids)?),
            (
                "attention_mask",
                signature.tensor(shape, &batch.attention_mask)?,
            ),
        ];
        if signature.has_token_type_ids {
            inputs.push((
                "token_type_ids",
                signature.tensor(shape, &batch.token_type_ids)?,
            ));
        }
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| Error::ort("running a batch", e))?;
        let output = signature.output.as_str();
        let (shape, data) = outputs[output]
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::ort(format!("reading output {output:?}"), e))?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if shape.first() != Some(&batch.rows) {
            return Err(Error::ort(
                format!("reading output {output:?}"),
                format!("expected {} rows, got shape {shape:?}", batch.rows),
            ));
        }
        Ok(Output {
            data: data.to_vec(),
            shape,
        })
    }

    fn agrees_batched_with(
        &mut self,
        reference: &mut OrtSession,
        probes: &[EncodedPair],
        pad_id: u32,
    ) -> Result<bool> {
        let members: Vec<&EncodedPair> = probes.iter().collect();
        let longest = probes.iter().map(EncodedPair::len).max().unwrap_or(0);
        let batched = self.run(&PaddedBatch::new(&members, longest, pad_id))?;
        let width = batched.data.len() / probes.len().max(1);
        for (row, probe) in members.iter().enumerate() {
            let alone = reference.run(&PaddedBatch::new(&[probe], probe.len(), pad_id))?;
            // A token-level output ([rows, tokens, hidden]) compares over the
            // pair's own tokens: the batched row continues with padding.
            let got = &batched.data[row * width..(row + 1) * width];
            if alone.data.len() > width || !same_bits(&got[..alone.data.len()], &alone.data) {
                return Ok(false);
            }
        }
        Ok(!probes.is_empty())
    }
}

/// Whether two outputs are equal bit for bit (`-0.0` is not `0.0`, a NaN
/// equals the same NaN).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl Signature {
    /// An input tensor in the element type the graph declares for its ids.
    fn tensor(&self, shape: [usize; 2], values: &[i64]) -> Result<SessionInputValue<'static>> {
        let value = match self.ids_type {
            TensorElementType::Int32 => {
                let narrow: Vec<i32> = values.iter().map(|&v| v as i32).collect();
                Tensor::from_array((shape, narrow)).map(Into::into)
            }
            _ => Tensor::from_array((shape, values.to_vec())).map(Into::into),
        };
        value.map_err(|e| Error::ort("building an input tensor", e))
    }
}

fn builder(settings: &SessionSettings) -> Result<SessionBuilder> {
    let env = runtime::environment(settings.ort_library.as_deref())?;
    let option = |what: &str, e: ort::Error<SessionBuilder>| Error::ort(what, e.to_string());
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
        Device::Cpu => {
            builder = builder
                .with_config_entry(DISABLED_OPTIMIZERS_KEY, CPU_DISABLED_OPTIMIZERS)
                .map_err(|e| option("disabling graph optimizers", e))?;
        }
        Device::Cuda(id) => {
            builder = with_cuda(builder, id)?;
        }
    }
    Ok(builder)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pad_ids_mask_and_segments_to_the_longest_pair() {
        let long = EncodedPair {
            ids: vec![101, 7, 102, 8, 102],
            type_ids: vec![0, 0, 0, 1, 1],
            truncated: false,
        };
        let short = EncodedPair {
            ids: vec![101, 102, 102],
            type_ids: vec![0, 0, 1],
            truncated: false,
        };
        let batch = PaddedBatch::new(&[&long, &short], 5, 0);
        assert_eq!((batch.rows, batch.cols), (2, 5));
        assert_eq!(batch.input_ids, [101, 7, 102, 8, 102, 101, 102, 102, 0, 0]);
        assert_eq!(batch.attention_mask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.token_type_ids, [0, 0, 0, 1, 1, 0, 0, 1, 0, 0]);
    }
}
