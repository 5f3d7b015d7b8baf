//! Scoring a micro-batch of parsed messages through the engine.

use std::sync::Arc;

use crossflow::{CrossEncoder, Head, StatsSnapshot, Texts};
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::Float32Type;

use super::message::{Enrichment, PairMessage};
use crate::Result;

/// The models of an enrich job and what they add to each message.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// Gives `cross_score` (and `nli_*` when it is a classifier).
    pub score: Arc<CrossEncoder>,
    /// Gives `nli_label` / `nli_probs` when set.
    pub nli: Option<Arc<CrossEncoder>>,
    /// Adds `is_paraphrase` when set.
    pub threshold: Option<f32>,
}

/// Outputs of one batch and what it cost.
pub struct Scored {
    pub enrichments: Vec<Enrichment>,
    /// The engines' counters over this batch, summed over both models.
    pub stats: StatsSnapshot,
}

impl Scorer {
    /// Scores `pairs` (blocking: run it off the async threads).
    pub fn score(&self, pairs: &[PairMessage]) -> Result<Scored> {
        let a = StringArray::from_iter_values(pairs.iter().map(|p| p.a.as_str()));
        let b = StringArray::from_iter_values(pairs.iter().map(|p| p.b.as_str()));
        let (a, b) = (Texts::Utf8(&a), Texts::Utf8(&b));
        let before = self.stats();
        let mut enrichments = vec![Enrichment::default(); pairs.len()];
        let predictions = self.score.predict(&a, &b)?;
        let scores = self.score.scores_of(&predictions);
        for (i, e) in enrichments.iter_mut().enumerate() {
            e.cross_score = scores.is_valid(i).then(|| scores.value(i));
            e.is_paraphrase = self.threshold.zip(e.cross_score).map(|(t, s)| s >= t);
        }
        if matches!(self.score.head(), Head::Classification { .. }) {
            classify(&self.score, &predictions, &mut enrichments)?;
        }
        if let Some(nli) = &self.nli {
            classify(nli, &nli.predict(&a, &b)?, &mut enrichments)?;
        }
        Ok(Scored {
            enrichments,
            stats: self.stats().since(&before),
        })
    }

    /// The counters of both models, summed.
    fn stats(&self) -> StatsSnapshot {
        std::iter::once(&self.score)
            .chain(&self.nli)
            .map(|m| m.stats())
            .fold(StatsSnapshot::default(), |sum, s| sum + s)
    }
}

fn classify(
    model: &CrossEncoder,
    predictions: &crossflow::Predictions,
    out: &mut [Enrichment],
) -> Result<()> {
    let classified = model.classes_of(predictions)?;
    let fields = classified.probs.fields().clone();
    for (i, e) in out.iter_mut().enumerate() {
        if classified.labels.is_null(i) {
            continue;
        }
        e.nli_label = Some(classified.labels.value(i).to_string());
        let probs = fields
            .iter()
            .enumerate()
            .map(|(c, f)| {
                (
                    f.name().clone(),
                    classified
                        .probs
                        .column(c)
                        .as_primitive::<Float32Type>()
                        .value(i),
                )
            })
            .collect();
        e.nli_probs = Some(probs);
    }
    Ok(())
}
