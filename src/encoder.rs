//! [`CrossEncoder`]: a loaded model that scores text pairs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanArray, Float32Array};

use crate::cache::{Key, PairCache};
use crate::head::Head;
use crate::model::graph;
use crate::model::{Fingerprint, ModelConfig, ModelFiles};
use crate::options::{EngineOptions, invariance, session_settings};
use crate::output::{self, ClassifiedArrays};
use crate::queue::BatchLimits;
use crate::queue::Scheduler;
use crate::session::Output;
use crate::stats::{Stats, StatsSnapshot};
use crate::texts::{Texts, row_count};
use crate::tokenize::PairTokenizer;
use crate::{Error, Result};

/// A cross-encoder ready to score pairs. Share it (`Arc`): concurrent callers
/// go through one queue to the model's sessions, and share micro-batches.
pub struct CrossEncoder {
    name: String,
    files: ModelFiles,
    config: ModelConfig,
    head: Head,
    tokenizer: PairTokenizer,
    scheduler: Scheduler,
    limits: BatchLimits,
    batch_invariant: bool,
    cache: Option<PairCache>,
    stats: Arc<Stats>,
    fingerprint: Fingerprint,
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
            .field("name", &self.name)
            .field("onnx", &self.files.onnx)
            .field("head", &self.head)
            .field("max_length", &self.max_length())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl CrossEncoder {
    /// Loads a model directory. Missing or corrupt files give an error naming the file.
    pub fn load(dir: impl AsRef<Path>, options: &EngineOptions) -> Result<Self> {
        let files = ModelFiles::resolve(dir, options.onnx_file.as_deref())?;
        let config = ModelConfig::load(&files)?;
        let max_length = options.max_length.unwrap_or(config.max_length);
        let tokenizer = PairTokenizer::for_model(&files, &config, max_length)?;
        let prepared = graph::load(
            &files.onnx,
            &session_settings(options),
            &["logits"],
            invariance(options),
            || tokenizer.encode_pairs(&PROBES),
            tokenizer.pad_id(),
        )?;
        let name = model_name(&files.dir);
        let head = config.head(options.activation);
        let (one_pair_per_batch, batch_invariant) =
            (prepared.one_pair_per_batch, prepared.batch_invariant);
        let rows = Box::new(logits_of_batch(files.onnx.clone(), head.num_labels()));
        let (scheduler, limits) = Scheduler::for_graph(
            &name,
            prepared,
            options,
            (tokenizer.pad_id(), head.num_labels()),
            rows,
        )?;
        tracing::info!(model = %name, onnx = %files.onnx.display(), head = head.describe(),
            max_length, one_pair_per_batch, batch_invariant, device = %options.device,
            cache_pairs = options.cache_pairs, cpu = %crate::CpuInfo::host(), "model loaded");
        let cache = (options.cache_pairs > 0)
            .then(|| PairCache::new(options.cache_pairs, head.num_labels()));
        let stats = scheduler.stats().clone();
        let settings = format!(
            "max_length={max_length};head={};batch_invariant={batch_invariant}",
            head.describe()
        );
        let fingerprint = Fingerprint::of(&files, &settings)?;
        Ok(Self {
            name,
            files,
            head,
            config,
            tokenizer,
            scheduler,
            limits,
            batch_invariant,
            cache,
            stats,
            fingerprint,
        })
    }

    /// Whether a pair's result is the same whatever else is in its batch:
    /// true unless a dynamically quantized graph runs with
    /// `batch_invariant: Some(false)`.
    pub fn is_batch_invariant(&self) -> bool {
        self.batch_invariant
    }

    /// The model's name (its directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the model's logits mean.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The hash of the model's files and result-changing settings, computed
    /// at load: equal fingerprints mean equal scores on the same CPU.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The model's files.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    /// Maximum pair length in tokens.
    pub fn max_length(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// The micro-batch limits in force (one pair per batch when batch-invariant).
    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    /// Number of ONNX Runtime sessions micro-batches are spread over.
    pub fn sessions(&self) -> usize {
        self.scheduler.workers()
    }

    /// Counters since the model was loaded.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Runs the model over rows of pairs. A null on either side gives a null
    /// row; identical pairs are run once, and pairs in the cache not at all.
    pub fn predict(&self, a: &Texts, b: &Texts) -> Result<Predictions> {
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
        let unique_logits = self.logits_of(&unique)?;
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
        if !matches!(self.head, Head::Score { .. }) {
            return Err(self.wrong_head("a paraphrase decision", "a one-label score model"));
        }
        let threshold = threshold.unwrap_or_else(|| self.head.default_threshold());
        Ok(output::at_least(&self.score(a, b)?, threshold))
    }

    /// Scores of already computed predictions (see [`CrossEncoder::score`]).
    pub fn scores_of(&self, predictions: &Predictions) -> Float32Array {
        output::scores(predictions, &self.head)
    }

    /// Labels and probabilities of already computed predictions; needs a classifier.
    pub fn classes_of(&self, predictions: &Predictions) -> Result<ClassifiedArrays> {
        let Head::Classification { labels } = &self.head else {
            return Err(self.wrong_head("classification", "a model with several labels"));
        };
        output::classified(predictions, labels)
    }

    /// The error of an operation this model's head cannot serve.
    pub(crate) fn wrong_head(&self, operation: &'static str, needs: &'static str) -> Error {
        Error::WrongHead {
            operation,
            needs,
            model: self.name.clone(),
            has: self.head.describe(),
        }
    }

    /// Logits of distinct pairs in input order: cached ones from the cache,
    /// the others run (and then cached).
    fn logits_of(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let Some(cache) = &self.cache else {
            return self.run_unique(pairs);
        };
        let width = self.head.num_labels();
        let keys: Vec<Key> = pairs.iter().map(|(a, b)| cache.key(a, b)).collect();
        let mut logits = vec![0.0; pairs.len() * width];
        let found = cache.lookup(&keys, &mut logits);
        let missing: Vec<usize> = (0..pairs.len()).filter(|&i| !found[i]).collect();
        self.stats
            .record_cache(pairs.len() - missing.len(), missing.len());
        if missing.is_empty() {
            return Ok(logits);
        }
        let fresh = self.run_unique(&missing.iter().map(|&i| pairs[i]).collect::<Vec<_>>())?;
        for (row, &i) in fresh.chunks(width).zip(&missing) {
            logits[i * width..(i + 1) * width].copy_from_slice(row);
        }
        let missing_keys: Vec<Key> = missing.iter().map(|&i| keys[i]).collect();
        cache.store(&missing_keys, &fresh);
        Ok(logits)
    }

    /// Tokenizes distinct pairs and runs them through the model's queue;
    /// returns their logits in input order.
    fn run_unique(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let encoded = self.tokenizer.encode_pairs(pairs)?;
        let truncated = encoded.iter().filter(|e| e.truncated).count();
        self.stats.record_run(pairs.len(), truncated);
        self.scheduler.run(encoded)
    }

    fn scatter(&self, slots: &[Option<usize>], unique_logits: &[f32]) -> Predictions {
        let labels = self.head.num_labels();
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

/// Pairs of different lengths that check a rewritten graph at load time.
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

fn model_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| canonical.display().to_string())
}
