//! Scoring a micro-batch of parsed messages through the engine.

use std::sync::Arc;

use crossflow::{CrossEncoder, OutputColumns, StatsSnapshot, Texts};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, StructArray};
use datafusion::arrow::datatypes::{Field, Float32Type};

use super::message::{Enrichment, PairMessage};
use crate::{JobError, Result};

/// The models of an enrich job and the columns each adds to a message.
#[derive(Debug, Clone)]
pub struct Scorer {
    /// Gives `cross_score` (and `nli_*` when it is a classifier), plus
    /// `is_paraphrase` with a threshold.
    score: (Arc<CrossEncoder>, OutputColumns),
    /// Gives `nli_label` / `nli_probs` when set.
    nli: Option<(Arc<CrossEncoder>, OutputColumns)>,
}

/// Outputs of one batch and what it cost.
pub struct Scored {
    pub enrichments: Vec<Enrichment>,
    /// The engines' counters over this batch, summed over both models.
    pub stats: StatsSnapshot,
}

impl Scorer {
    /// The scorer of `score` (with `is_paraphrase` at `threshold`, which
    /// needs a one-label model) and, when given, the classifier `nli`.
    pub fn new(
        score: Arc<CrossEncoder>,
        nli: Option<Arc<CrossEncoder>>,
        threshold: Option<f32>,
    ) -> Result<Self> {
        let columns = OutputColumns::for_model(&score, threshold)?;
        let nli = match nli {
            Some(model) => Some((model.clone(), OutputColumns::classes(&model)?)),
            None => None,
        };
        Ok(Self {
            score: (score, columns),
            nli,
        })
    }

    /// Scores `pairs`, waiting for the models without blocking the thread.
    pub async fn score(&self, pairs: &[PairMessage]) -> Result<Scored> {
        let a = StringArray::from_iter_values(pairs.iter().map(|p| p.a.as_str()));
        let b = StringArray::from_iter_values(pairs.iter().map(|p| p.b.as_str()));
        let (a, b) = (Texts::Utf8(&a), Texts::Utf8(&b));
        let before = self.stats();
        let mut enrichments = vec![Enrichment::default(); pairs.len()];
        for (model, columns) in std::iter::once(&self.score).chain(&self.nli) {
            let predictions = model.predict_async(&a, &b).await?;
            fill(
                &mut enrichments,
                columns.fields(),
                &columns.arrays(&predictions)?,
            )?;
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
            .map(|(model, _)| model.stats())
            .fold(StatsSnapshot::default(), |sum, s| sum + s)
    }
}

/// Copies each row's output columns into its enrichment.
fn fill(out: &mut [Enrichment], fields: &[Field], arrays: &[ArrayRef]) -> Result<()> {
    for (field, array) in fields.iter().zip(arrays) {
        let valid = |i: usize| array.is_valid(i);
        match field.name().as_str() {
            "cross_score" => {
                let scores = array.as_primitive::<Float32Type>();
                for (i, e) in out.iter_mut().enumerate() {
                    e.cross_score = valid(i).then(|| scores.value(i));
                }
            }
            "is_paraphrase" => {
                let flags = array.as_boolean();
                for (i, e) in out.iter_mut().enumerate() {
                    e.is_paraphrase = valid(i).then(|| flags.value(i));
                }
            }
            "nli_label" => {
                let labels = array.as_string::<i32>();
                for (i, e) in out.iter_mut().enumerate() {
                    e.nli_label = valid(i).then(|| labels.value(i).to_string());
                }
            }
            "nli_probs" => {
                let probs = array.as_struct();
                for (i, e) in out.iter_mut().enumerate() {
                    e.nli_probs = valid(i).then(|| label_probabilities(probs, i));
                }
            }
            other => {
                return Err(JobError::Internal(format!(
                    "no message field for output column {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Row `i` of a probabilities struct as (label, probability) pairs.
fn label_probabilities(probs: &StructArray, i: usize) -> Vec<(String, f32)> {
    probs
        .fields()
        .iter()
        .zip(probs.columns())
        .map(|(f, c)| (f.name().clone(), c.as_primitive::<Float32Type>().value(i)))
        .collect()
}
