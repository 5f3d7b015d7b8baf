//! [`CrossEncoder`]: a cross-encoder that scores text pairs. Opening one
//! reads its [`ModelDescription`]; its sessions start on first use.

mod engine;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{BooleanArray, Float32Array};

use crate::cache::{Key, PairCache};
use crate::head::Head;
use crate::model::{Fingerprint, ModelConfig, ModelDescription, ModelFiles};
use crate::options::EngineOptions;
use crate::output::{self, ClassifiedArrays};
use crate::queue::BatchLimits;
use crate::start_once::StartOnce;
use crate::stats::{Stats, StatsSnapshot};
use crate::texts::{Texts, row_count};
use crate::tokenize::PairTokenizer;
use crate::{Error, Result};
use engine::Engine;

/// A cross-encoder that scores pairs. Share it (`Arc`): concurrent callers
/// go through one queue to the model's sessions, and share micro-batches.
///
/// [`CrossEncoder::open`] reads the model's description and tokenizer only;
/// the ONNX Runtime sessions and worker threads start when pairs are first
/// scored, or at [`CrossEncoder::start`]. [`CrossEncoder::load`] does both.
pub struct CrossEncoder {
    description: ModelDescription,
    options: EngineOptions,
    tokenizer: PairTokenizer,
    engine: StartOnce<Engine>,
    cache: Option<PairCache>,
    stats: Arc<Stats>,
}

/// Raw model outputs for a set of rows: `num_labels` logits per row, and
/// which rows had both texts (the others are null).
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    num_labels: usize,
    logits: Vec<f32>,
    valid: Vec<bool>,
}

impl Predictions {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.valid.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.valid.is_empty()
    }

    /// Whether row `i` has a result (both texts non-null).
    pub fn is_valid(&self, i: usize) -> bool {
        self.valid[i]
    }

    /// The logits of row `i` (zeros for a null row).
    pub fn logits(&self, i: usize) -> &[f32] {
        &self.logits[i * self.num_labels..(i + 1) * self.num_labels]
    }
}

impl std::fmt::Debug for CrossEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEncoder")
            .field("name", &self.description.name)
            .field("onnx", &self.description.files.onnx)
            .field("head", &self.description.head)
            .field("max_length", &self.max_length())
            .field("limits", &self.limits())
            .finish_non_exhaustive()
    }
}

impl CrossEncoder {
    /// Opens a model directory and starts its sessions. Missing or corrupt
    /// files, and a graph ONNX Runtime refuses, give an error naming the file.
    pub fn load(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let model = Self::open(dir, options)?;
        model.start()?;
        Ok(model)
    }

    /// Opens a model directory without starting ONNX Runtime: its
    /// description and tokenizer are read (errors name the file), its
    /// sessions start on first use. For callers that may never score, such as
    /// a SQL session whose queries use one model of two, or a cluster
    /// scheduler that only checks fingerprints.
    pub fn open(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let description = ModelDescription::read(dir, options)?;
        let tokenizer = PairTokenizer::for_model(
            &description.files,
            &description.config,
            description.max_length,
        )?;
        let cache = (options.cache_pairs > 0)
            .then(|| PairCache::new(options.cache_pairs, description.head.num_labels()));
        tracing::debug!(model = %description.name, fingerprint = %description.fingerprint, "model opened");
        Ok(Self {
            description,
            options: options.clone(),
            tokenizer,
            engine: StartOnce::default(),
            cache,
            stats: Arc::default(),
        })
    }

    /// Starts the sessions and worker threads if they are not running yet.
    pub fn start(&self) -> Result<()> {
        self.engine().map(|_| ())
    }

    /// Whether the sessions have started.
    pub fn is_started(&self) -> bool {
        self.engine.get().is_some()
    }

    /// The running engine, started on first call.
    fn engine(&self) -> Result<&Engine> {
        self.engine.get_or_start(|| {
            Engine::start(
                &self.description,
                &self.tokenizer,
                &self.options,
                self.stats.clone(),
            )
        })
    }

    /// What the model is, read without starting it.
    pub fn description(&self) -> &ModelDescription {
        &self.description
    }

    /// Whether a pair's result is the same whatever else is in its batch:
    /// true unless a dynamically quantized graph runs with
    /// `batch_invariant: Some(false)`.
    pub fn is_batch_invariant(&self) -> bool {
        self.description.batch_invariant
    }

    /// The model's name: its directory's, or its Hub repo id.
    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// What the model's logits mean.
    pub fn head(&self) -> &Head {
        &self.description.head
    }

    /// The hash of the model's files and result-changing settings, computed
    /// at open: equal fingerprints mean equal scores on the same CPU.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.description.fingerprint
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.description.config
    }

    /// The model's files.
    pub fn files(&self) -> &ModelFiles {
        &self.description.files
    }

    /// Maximum pair length in tokens.
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// The micro-batch limits in force once started (one pair per batch
    /// where the graph needs it for batch invariance); `None` before.
    pub fn limits(&self) -> Option<BatchLimits> {
        self.engine.get().map(|engine| engine.limits)
    }

    /// Number of ONNX Runtime sessions micro-batches are spread over (0
    /// before the model starts).
    pub fn sessions(&self) -> usize {
        self.engine
            .get()
            .map_or(0, |engine| engine.scheduler.workers())
    }

    /// Counters since the model was opened.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Runs the model over rows of pairs. A null on either side gives a null
    /// row; identical pairs are run once, and pairs in the cache not at all.
    /// Blocks the calling thread until the rows are back: see
    /// [`CrossEncoder::predict_async`] for async callers.
    pub fn predict(&self, a: &Texts, b: &Texts) -> Result<Predictions> {
        futures::executor::block_on(self.predict_async(a, b))
    }

    /// [`CrossEncoder::predict`] for async callers: the pairs are tokenized
    /// on the calling task, then the call waits for room in the model's queue
    /// and for its rows without blocking the thread (the model runs on its
    /// own worker threads). The first call of a model not yet started starts
    /// it, which blocks for the time that takes.
    pub async fn predict_async(&self, a: &Texts<'_>, b: &Texts<'_>) -> Result<Predictions> {
        let rows = row_count(a, b)?;
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let mut unique = Vec::new();
        let slots: Vec<Option<usize>> = (0..rows)
            .map(|i| {
                let pair = (a.get(i)?, b.get(i)?);
                Some(*index.entry(pair).or_insert_with(|| {
                    unique.push(pair);
                    unique.len() - 1
                }))
            })
            .collect();
        let unique_logits = self.logits_of(&unique).await?;
        let nulls = slots.iter().filter(|s| s.is_none()).count();
        self.stats.record_call(rows, nulls);
        Ok(self.scatter(&slots, &unique_logits))
    }

    /// Runs the model over a slice of pairs (none null).
    pub fn predict_pairs(&self, pairs: &[(&str, &str)]) -> Result<Predictions> {
        let (a, b): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
        let (a, b) = (
            arrow::array::StringArray::from(a),
            arrow::array::StringArray::from(b),
        );
        self.predict(&Texts::Utf8(&a), &Texts::Utf8(&b))
    }

    /// One score per row: the activated logit of a score model, or the
    /// probability of the winning label of a classifier.
    pub fn score(&self, a: &Texts, b: &Texts) -> Result<Float32Array> {
        Ok(self.scores_of(&self.predict(a, b)?))
    }

    /// Label and per-label probabilities per row; needs a classifier.
    pub fn classify(&self, a: &Texts, b: &Texts) -> Result<ClassifiedArrays> {
        self.classes_of(&self.predict(a, b)?)
    }

    /// Whether each row's score reaches `threshold` (default: the head's
    /// 50 % point); needs a score model.
    pub fn paraphrase(&self, a: &Texts, b: &Texts, threshold: Option<f32>) -> Result<BooleanArray> {
        if !matches!(self.head(), Head::Score { .. }) {
            return Err(self.wrong_head("a paraphrase decision", "a one-label score model"));
        }
        let threshold = threshold.unwrap_or_else(|| self.head().default_threshold());
        Ok(output::at_least(&self.score(a, b)?, threshold))
    }

    /// Scores of already computed predictions (see [`CrossEncoder::score`]).
    pub fn scores_of(&self, predictions: &Predictions) -> Float32Array {
        output::scores(predictions, self.head())
    }

    /// Labels and probabilities of already computed predictions; needs a classifier.
    pub fn classes_of(&self, predictions: &Predictions) -> Result<ClassifiedArrays> {
        let Head::Classification { labels } = self.head() else {
            return Err(self.wrong_head("classification", "a model with several labels"));
        };
        output::classified(predictions, labels)
    }

    /// The error of an operation this model's head cannot serve.
    pub(crate) fn wrong_head(&self, operation: &'static str, needs: &'static str) -> Error {
        Error::WrongHead {
            operation,
            needs,
            model: self.description.name.clone(),
            has: self.head().describe(),
        }
    }

    /// Logits of distinct pairs in input order: cached ones from the cache,
    /// the others run (and then cached).
    async fn logits_of(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let Some(cache) = &self.cache else {
            return self.run_unique(pairs).await;
        };
        let width = self.head().num_labels();
        let keys: Vec<Key> = pairs.iter().map(|(a, b)| cache.key(a, b)).collect();
        let mut logits = vec![0.0; pairs.len() * width];
        let found = cache.lookup(&keys, &mut logits);
        let missing: Vec<usize> = (0..pairs.len()).filter(|&i| !found[i]).collect();
        self.stats
            .record_cache(pairs.len() - missing.len(), missing.len());
        if missing.is_empty() {
            return Ok(logits);
        }
        let missing_pairs: Vec<(&str, &str)> = missing.iter().map(|&i| pairs[i]).collect();
        let fresh = self.run_unique(&missing_pairs).await?;
        for (row, &i) in fresh.chunks(width).zip(&missing) {
            logits[i * width..(i + 1) * width].copy_from_slice(row);
        }
        let missing_keys: Vec<Key> = missing.iter().map(|&i| keys[i]).collect();
        cache.store(&missing_keys, &fresh);
        Ok(logits)
    }

    /// Tokenizes distinct pairs and runs them through the model's queue;
    /// returns their logits in input order.
    async fn run_unique(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let engine = self.engine()?;
        let encoded = self.tokenizer.encode_pairs(pairs)?;
        let truncated = encoded.iter().filter(|e| e.truncated).count();
        self.stats.record_run(pairs.len(), truncated);
        engine.scheduler.infer(encoded).await
    }

    fn scatter(&self, slots: &[Option<usize>], unique_logits: &[f32]) -> Predictions {
        let labels = self.head().num_labels();
        let mut logits = vec![0.0; slots.len() * labels];
        for (row, slot) in slots.iter().enumerate() {
            if let Some(u) = slot {
                logits[row * labels..(row + 1) * labels]
                    .copy_from_slice(&unique_logits[u * labels..(u + 1) * labels]);
            }
        }
        Predictions {
            num_labels: labels,
            logits,
            valid: slots.iter().map(Option::is_some).collect(),
        }
    }
}
