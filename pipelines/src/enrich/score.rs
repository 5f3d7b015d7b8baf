//! Scoring a micro-batch of parsed messages through the engine, from each
//! model's predictions straight to the messages' enrichments.

use std::sync::Arc;

use crossflow::head::{Head, argmax, probabilities};
use crossflow::{CrossEncoder, OutputColumns, Predictions, StatsSnapshot, Texts};
use datafusion::arrow::array::StringArray;

use super::message::Enrichment;
use crate::Result;

/// The models of an enrich job and what each adds to a message.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// Gives `cross_score` (and `nli_*` when it is a classifier), plus
    /// `is_paraphrase` at the threshold when one is set.
    score: (Arc<CrossEncoder>, Option<f32>),
    /// Gives `nli_label` / `nli_probs` when set.
    nli: Option<Arc<CrossEncoder>>,
}

/// Outputs of one batch and what it cost.
pub struct Scored {
    pub enrichments: Vec<Enrichment>,
    /// The engines' counters over this batch, summed over both models.
    pub stats: StatsSnapshot,
}

impl Scorer {
    /// The scorer of `score` (with `is_paraphrase` at `threshold`, which
    /// needs a one-label model and a threshold on its scale) and, when given,
    /// the classifier `nli`.
    pub fn new(
        score: Arc<CrossEncoder>,
        nli: Option<Arc<CrossEncoder>>,
        threshold: Option<f32>,
    ) -> Result<Self> {
        // The checks of the columns SQL and `score` add for the same models.
        OutputColumns::for_model(&score, threshold)?;
        if let Some(model) = &nli {
            OutputColumns::classes(model)?;
        }
        Ok(Self {
            score: (score, threshold),
            nli,
        })
    }

    /// Scores `(a, b)` pairs, waiting for the models without blocking the thread.
    pub async fn score(&self, pairs: &[(&str, &str)]) -> Result<Scored> {
        let a = StringArray::from_iter_values(pairs.iter().map(|p| p.0));
        let b = StringArray::from_iter_values(pairs.iter().map(|p| p.1));
        let (a, b) = (Texts::Utf8(&a), Texts::Utf8(&b));
        let before = self.stats();
        let mut enrichments = vec![Enrichment::default(); pairs.len()];
        let (model, threshold) = &self.score;
        let predictions = model.predict_async(&a, &b).await?;
        for (i, enrichment) in enrichments.iter_mut().enumerate() {
            enrich(enrichment, model.head(), &predictions, i, *threshold);
        }
        if let Some(model) = &self.nli {
            let predictions = model.predict_async(&a, &b).await?;
            for (i, enrichment) in enrichments.iter_mut().enumerate() {
                add_classes(enrichment, model.head(), &predictions, i);
            }
        }
        Ok(Scored {
            enrichments,
            stats: self.stats().since(&before),
        })
    }

    /// The models, the score model first.
    pub fn models(&self) -> Vec<Arc<CrossEncoder>> {
        std::iter::once(&self.score.0)
            .chain(&self.nli)
            .cloned()
            .collect()
    }

    /// The counters of both models, summed.
    fn stats(&self) -> StatsSnapshot {
        self.models().iter().map(|model| model.stats()).sum()
    }
}

/// Row `i` of the score model: `cross_score`, the classes of a classifier,
/// and `is_paraphrase` at `threshold`.
fn enrich(
    out: &mut Enrichment,
    head: &Head,
    predictions: &Predictions,
    i: usize,
    threshold: Option<f32>,
) {
    if !predictions.is_valid(i) {
        return;
    }
    let score = head.score(predictions.logits(i));
    out.cross_score = Some(score);
    out.is_paraphrase = threshold.map(|threshold| score >= threshold);
    add_classes(out, head, predictions, i);
}

/// Row `i`'s `nli_label` and `nli_probs`, for a classifier.
fn add_classes(out: &mut Enrichment, head: &Head, predictions: &Predictions, i: usize) {
    let Head::Classification { labels } = head else {
        return;
    };
    if !predictions.is_valid(i) {
        return;
    }
    let probs = probabilities(predictions.logits(i));
    out.nli_label = Some(labels[argmax(&probs)].clone());
    out.nli_probs = Some(labels.iter().cloned().zip(probs).collect());
}
