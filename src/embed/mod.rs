//! [`BiEncoder`]: sentence embeddings for candidate generation, through the
//! same tokenizer, batching and ONNX Runtime sessions as the cross-encoder.
//!
//! The model directory is a sentence-transformers bi-encoder: the transformer
//! graph (`last_hidden_state` or `token_embeddings` output, or an already
//! pooled `sentence_embedding`) and `1_Pooling/config.json` (mean, CLS or max
//! pooling over the attention mask). Vectors are L2-normalised, as
//! sentence-transformers' `Normalize` module does, whether or not the model
//! lists one: the cosine of two vectors is their dot product.

mod pooling;

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::model::{Fingerprint, ModelConfig, ModelFiles, graph};
use crate::options::{EngineOptions, invariance, session_settings};
use crate::queue::Scheduler;
use crate::start_once::StartOnce;
use crate::stats::{Stats, StatsSnapshot};
use crate::texts::Texts;
use crate::tokenize::PairTokenizer;
use crate::{Error, Result};
pub use pooling::Pooling;
use pooling::{Pooler, PoolingConfig};

/// Texts of different lengths that check a rewritten graph at load time.
const PROBES: [&str; 6] = [
    "A man is playing a guitar on the stage.",
    "Yes.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "How do I reset my password?",
    "A",
    "The committee postponed the vote on the new budget until next Thursday, citing missing figures.",
];

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A sentence-embedding model. Opened, it knows its files, dimension and
/// fingerprint; ONNX Runtime starts on first use (or [`BiEncoder::start`]).
#[derive(Debug)]
pub struct BiEncoder {
    name: String,
    files: ModelFiles,
    options: EngineOptions,
    tokenizer: PairTokenizer,
    pooler: Pooler,
    fingerprint: Fingerprint,
    scheduler: StartOnce<Scheduler>,
    stats: Arc<Stats>,
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
    /// Opens a sentence-transformers bi-encoder directory and starts its sessions.
    pub fn load(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let model = Self::open(dir, options)?;
        model.start()?;
        Ok(model)
    }

    /// Opens a bi-encoder directory without starting ONNX Runtime: its
    /// configuration, pooling and tokenizer are read and its files hashed
    /// (errors name the file); the sessions start on first use.
    pub fn open(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let files = ModelFiles::resolve(dir, options.onnx_file.as_deref())?;
        let config = ModelConfig::load(&files)?;
        let pooling_config: PoolingConfig = read_json(&files.dir.join("1_Pooling/config.json"))?;
        let st_path = files.dir.join("sentence_bert_config.json");
        let st_length = match st_path.is_file() {
            true => read_json::<SentenceBertConfig>(&st_path)?.max_seq_length,
            false => None,
        };
        let max_length = options
            .max_length
            .or(st_length)
            .unwrap_or(config.max_length);
        let tokenizer = PairTokenizer::for_model(&files, &config, max_length)?;
        let pooler = Pooler {
            onnx: files.onnx.clone(),
            pooling: pooling_config.pooling(),
            dimension: pooling_config.word_embedding_dimension,
        };
        let mut settings = format!(
            "bi-encoder;max_length={max_length};pooling={:?};dimension={};unit=true",
            pooler.pooling, pooler.dimension
        );
        if let Some(origin) = &options.origin {
            settings.push_str(&format!(";commit={}", origin.commit));
        }
        let fingerprint = Fingerprint::of(&files, &settings)?;
        let name = match &options.origin {
            Some(origin) => origin.repo.clone(),
            None => files
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        Ok(Self {
            name,
            files,
            options: options.clone(),
            tokenizer,
            pooler,
            fingerprint,
            scheduler: StartOnce::default(),
            stats: Arc::default(),
        })
    }

    /// Starts the sessions if they are not running yet.
    pub fn start(&self) -> Result<()> {
        self.scheduler().map(|_| ())
    }

    /// Whether the sessions have started.
    pub fn is_started(&self) -> bool {
        self.scheduler.get().is_some()
    }

    fn scheduler(&self) -> Result<&Scheduler> {
        self.scheduler.get_or_start(|| self.start_scheduler())
    }

    fn start_scheduler(&self) -> Result<Scheduler> {
        let wanted = [
            "sentence_embedding",
            "last_hidden_state",
            "token_embeddings",
        ];
        let prepared = graph::load(
            &self.files.onnx,
            &session_settings(&self.options),
            &wanted,
            invariance(&self.options),
            || self.tokenizer.encode_texts(&PROBES),
            self.tokenizer.pad_id(),
        )?;
        let pooler = self.pooler.clone();
        let rows = Box::new(move |out, lengths: &[usize]| pooler.pool(out, lengths));
        let (scheduler, _) = Scheduler::for_graph(
            &self.name,
            prepared,
            &self.options,
            (self.tokenizer.pad_id(), self.pooler.dimension),
            rows,
            self.stats.clone(),
        )?;
        Ok(scheduler)
    }

    /// The model's name: its directory's, or its Hub repo id.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Length of the vectors.
    pub fn dimension(&self) -> usize {
        self.pooler.dimension
    }

    /// The hash of the model's files and of the settings that change its
    /// vectors: equal fingerprints mean equal vectors on the same CPU.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The model's files.
    pub fn files(&self) -> &ModelFiles {
        &self.files
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
        let dimension = self.dimension();
        let mut data = vec![0.0; rows * dimension];
        let mut valid = vec![false; rows];
        for (k, &(i, _)) in present.iter().enumerate() {
            data[i * dimension..(i + 1) * dimension]
                .copy_from_slice(&vectors[k * dimension..(k + 1) * dimension]);
            valid[i] = true;
        }
        Ok(Embeddings {
            dimension,
            data,
            valid,
        })
    }

    /// Embeds texts into unit vectors; returns `texts.len() × dimension`
    /// floats, row-major.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let scheduler = self.scheduler()?;
        let encoded = self.tokenizer.encode_texts(texts)?;
        let truncated = encoded.iter().filter(|e| e.truncated).count();
        self.stats.record_call(texts.len(), 0);
        self.stats.record_run(texts.len(), truncated);
        scheduler.run(encoded)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::corrupt(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::corrupt(path, format!("invalid JSON: {e}")))
}
