//! The ONNX Runtime sessions of one model: one per worker of the model's
//! [`crate::queue::Scheduler`], which owns them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType};

use crate::runtime::Device;
use crate::tokenize::EncodedPair;
use crate::{Error, Result};

mod batch;
mod builder;

pub(crate) use batch::PaddedBatch;
pub(crate) use builder::CPU_DISABLED_OPTIMIZERS;
use builder::{SharedWeights, builder};

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionSettings {
    pub device: Device,
    /// Sessions in the pool (micro-batches run on them in parallel).
    pub sessions: usize,
    pub intra_threads: Option<usize>,
    pub ort_library: Option<PathBuf>,
}

/// A graph's serialized bytes, and where its sessions load it from.
#[derive(Clone, Copy)]
pub(crate) enum GraphBytes<'a> {
    /// The file at the graph's path, as read from there: sessions load the
    /// file itself (so that data stored beside it is found).
    File(&'a [u8]),
    /// A rewrite of that file, loaded from memory.
    Rewritten(&'a [u8]),
}

impl<'a> GraphBytes<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Self::File(bytes) | Self::Rewritten(bytes) => bytes,
        }
    }
}

/// A loaded graph: its sessions, before they go to the scheduler's workers.
#[derive(Debug)]
pub(crate) struct OrtModel {
    sessions: Vec<OrtSession>,
    /// Shared weights given to the sessions, summed over them ([`SharedWeights`]).
    #[cfg(test)]
    shared_weights: usize,
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

impl OrtModel {
    /// Builds the session pool for the graph at `path` (`graph`: its bytes as
    /// read, or a rewrite of them) and checks its signature. The output read is the
    /// graph's only one, else the first of `wanted` it has. On the CPU the
    /// sessions share one copy of the graph's weights ([`SharedWeights`]).
    pub fn load(
        path: &Path,
        graph: GraphBytes<'_>,
        settings: &SessionSettings,
        wanted: &[&str],
    ) -> Result<Self> {
        let shared = SharedWeights::load(path, graph.bytes(), settings)?;
        let mut shared_weights = 0;
        let sessions = (0..settings.sessions.max(1))
            .map(|_| {
                let (mut builder, given) = shared.apply(builder(settings)?)?;
                shared_weights += given;
                match graph {
                    GraphBytes::Rewritten(bytes) => builder.commit_from_memory(bytes),
                    GraphBytes::File(_) => builder.commit_from_file(path),
                }
                .map_err(|e| Error::ort(format!("loading {}", path.display()), e))
            })
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(path = %path.display(), sessions = sessions.len(), shared_weights, "sessions loaded");
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
        Ok(Self {
            sessions,
            #[cfg(test)]
            shared_weights,
        })
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

#[cfg(test)]
mod tests;
