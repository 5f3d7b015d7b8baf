//! [`BiEncoder`]: sentence embeddings for candidate generation, through the
//! same tokenizer, batching and ONNX Runtime sessions as the cross-encoder.
//!
//! The model directory is a sentence-transformers bi-encoder: the transformer
//! graph (`last_hidden_state` or `token_embeddings` output, or an already
//! pooled `sentence_embedding`), `1_Pooling/config.json` (mean, CLS or max
//! pooling over the attention mask) and, when `modules.json` lists a
//! `Normalize` module, L2 normalisation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::model::{ModelConfig, ModelFiles, graph};
use crate::options::{EngineOptions, invariance, session_settings};
use crate::queue::Scheduler;
use crate::session::Output;
use crate::stats::{Stats, StatsSnapshot};
use crate::texts::Texts;
use crate::tokenize::PairTokenizer;
use crate::{Error, Result};

/// Texts of different lengths that check a rewritten graph at load time.
const PROBES: [&str; 6] = [
    "A man is playing a guitar on the stage.",
    "Yes.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "How do I reset my password?",
    "A",
    "The committee postponed the vote on the new budget until next Thursday, citing missing figures.",
];

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the real (unpadded) tokens.
    Mean,
    /// The first ([CLS]) token.
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A sentence-embedding model.
#[derive(Debug)]
pub struct BiEncoder {
    name: String,
    tokenizer: PairTokenizer,
    scheduler: Scheduler,
    dimension: usize,
    stats: Arc<Stats>,
}

/// How one batch's graph output becomes one vector per text.
#[derive(Debug, Clone)]
struct Pooler {
    onnx: PathBuf,
    pooling: Pooling,
    normalize: bool,
    dimension: usize,
}

/// Embeddings of a set of rows: `dimension` floats per row; null rows are zeros.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dimension: usize,
    pub data: Vec<f32>,
    pub valid: Vec<bool>,
}

impl Embeddings {
    /// The vector of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dimension..(i + 1) * self.dimension]
    }
}

impl BiEncoder {
    /// Loads a sentence-transformers bi-encoder directory.
    pub fn load(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let files = ModelFiles::resolve(dir, options.onnx_file.as_deref())?;
        let config = ModelConfig::load(&files)?;
        let pooling_path = files.dir.join("1_Pooling/config.json");
        let pooling_config: PoolingConfig = read_json(&pooling_path)?;
        let pooling = match (
            pooling_config.pooling_mode_cls_token,
            pooling_config.pooling_mode_max_tokens,
        ) {
            (true, _) => Pooling::Cls,
            (_, true) => Pooling::Max,
            _ => Pooling::Mean,
        };
        let modules_path = files.dir.join("modules.json");
        let normalize = modules_path.is_file()
            && read_json::<Vec<Module>>(&modules_path)?
                .iter()
                .any(|m| m.kind.ends_with("Normalize"));
        let st_path = files.dir.join("sentence_bert_config.json");
        let st_length = if st_path.is_file() {
            read_json::<SentenceBertConfig>(&st_path)?.max_seq_length
        } else {
            None
        };
        let max_length = options
            .max_length
            .or(st_length)
            .unwrap_or(config.max_length);
        let tokenizer = PairTokenizer::for_model(&files, &config, max_length)?;
        let wanted = [
            "sentence_embedding",
            "last_hidden_state",
            "token_embeddings",
        ];
        let prepared = graph::load(
            &files.onnx,
            &session_settings(options),
            &wanted,
            invariance(options),
            || tokenizer.encode_texts(&PROBES),
            tokenizer.pad_id(),
        )?;
        let name = files
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dimension = pooling_config.word_embedding_dimension;
        let pooler = Pooler {
            onnx: files.onnx,
            pooling,
            normalize,
            dimension,
        };
        let rows = Box::new(move |out, lengths: &[usize]| pooler.pool(out, lengths));
        let stats = Arc::new(Stats::default());
        let (scheduler, _) = Scheduler::for_graph(
            &name,
            prepared,
            options,
            (tokenizer.pad_id(), dimension),
            rows,
            stats.clone(),
        )?;
        Ok(Self {
            name,
            tokenizer,
            scheduler,
            dimension,
            stats,
        })
    }

    /// The model's directory name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length of the vectors.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Counters since loading.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Embeds every non-null text; null rows get zero vectors and `valid = false`.
    pub fn embed(&self, texts: &Texts) -> Result<Embeddings> {
        let rows = texts.len().unwrap_or(1);
        let present: Vec<(usize, &str)> = (0..rows)
            .filter_map(|i| texts.get(i).map(|t| (i, t)))
            .collect();
        let strings: Vec<&str> = present.iter().map(|&(_, t)| t).collect();
        let vectors = self.embed_texts(&strings)?;
        let mut data = vec![0.0; rows * self.dimension];
        let mut valid = vec![false; rows];
        for (k, &(i, _)) in present.iter().enumerate() {
            data[i * self.dimension..(i + 1) * self.dimension]
                .copy_from_slice(&vectors[k * self.dimension..(k + 1) * self.dimension]);
            valid[i] = true;
        }
        Ok(Embeddings {
            dimension: self.dimension,
            data,
            valid,
        })
    }

    /// Embeds texts; returns `texts.len() × dimension` floats, row-major.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let encoded = self.tokenizer.encode_texts(texts)?;
        let truncated = encoded.iter().filter(|e| e.truncated).count();
        self.stats.record_call(texts.len(), 0);
        self.stats.record_run(texts.len(), truncated);
        self.scheduler.run(encoded)
    }
}

impl Pooler {
    /// Pools one batch's output into one vector per row.
    fn pool(&self, out: Output, lengths: &[usize]) -> Result<Vec<f32>> {
        let dim = self.dimension;
        let mut pooled = match out.shape.as_slice() {
            [_, d] if *d == dim => out.data,
            [rows, seq, d] if *d == dim && *rows == lengths.len() => {
                let mut pooled = Vec::with_capacity(rows * dim);
                for (r, &len) in lengths.iter().enumerate() {
                    let tokens = &out.data[r * seq * dim..(r * seq + len.min(*seq)) * dim];
                    pooled.extend(pool_tokens(tokens, dim, self.pooling));
                }
                pooled
            }
            other => {
                return Err(Error::InvalidModel {
                    path: self.onnx.clone(),
                    reason: format!(
                        "output shape {other:?} does not end in the embedding dimension {dim}"
                    ),
                });
            }
        };
        if self.normalize {
            pooled.chunks_mut(dim).for_each(l2_normalize);
        }
        Ok(pooled)
    }
}

fn pool_tokens(tokens: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let count = (tokens.len() / dim).max(1);
    match pooling {
        Pooling::Cls => tokens[..dim].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0.0f32; dim];
            for token in tokens.chunks(dim) {
                sum.iter_mut().zip(token).for_each(|(s, x)| *s += x);
            }
            sum.iter_mut().for_each(|s| *s /= count as f32);
            sum
        }
        Pooling::Max => {
            let mut max = vec![f32::NEG_INFINITY; dim];
            for token in tokens.chunks(dim) {
                max.iter_mut().zip(token).for_each(|(m, x)| *m = m.max(*x));
            }
            max
        }
    }
}

fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::corrupt(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::corrupt(path, format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_and_normalisation() {
        let tokens = [1.0, 2.0, 3.0, 0.0];
        assert_eq!(pool_tokens(&tokens, 2, Pooling::Mean), [2.0, 1.0]);
        assert_eq!(pool_tokens(&tokens, 2, Pooling::Cls), [1.0, 2.0]);
        assert_eq!(pool_tokens(&tokens, 2, Pooling::Max), [3.0, 2.0]);
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }
}
