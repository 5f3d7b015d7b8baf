//! Scoring candidate pairs with the cross-encoder, on the scale the
//! `--threshold` is documented on.
//!
//! A one-label model is scored with the activation its configuration names
//! (a probability for a sigmoid model, a raw logit for an identity one),
//! whatever `--activation` says, so a threshold keeps one meaning. A
//! classifier verifies only with `--duplicate-label`: the probability of that
//! label, the lower of the two directions (A→B and B→A).

use std::sync::Arc;

use crossflow::head::probabilities;
use crossflow::{CrossEncoder, Head};

use crate::{JobError, Result};

/// How a candidate pair's score is computed.
pub(crate) enum Verifier {
    /// A one-label model's activated score.
    Score(Arc<CrossEncoder>),
    /// A classifier: the probability of label `index`, lower of both directions.
    Label {
        model: Arc<CrossEncoder>,
        index: usize,
    },
}

impl Verifier {
    /// The verifier for `model`; a classifier needs `duplicate_label`, a score
    /// model must not have one.
    pub fn new(
        model: Arc<CrossEncoder>,
        duplicate_label: Option<&str>,
        threshold: f32,
    ) -> Result<Self> {
        model
            .head()
            .check_threshold("--threshold", threshold)
            .map_err(JobError::Usage)?;
        match (model.head(), duplicate_label) {
            (Head::Score { .. }, None) => Ok(Verifier::Score(model)),
            (Head::Score { .. }, Some(label)) => Err(JobError::Usage(format!(
                "--duplicate-label {label:?}: model {} has one score, not labels; \
                 drop --duplicate-label",
                model.name()
            ))),
            (Head::Classification { labels }, None) => Err(JobError::Usage(format!(
                "model {} is a classifier over [{}]: name the label that means \"duplicate\" \
                 with --duplicate-label (e.g. entailment, checked both ways)",
                model.name(),
                labels.join(", ")
            ))),
            (Head::Classification { labels }, Some(label)) => {
                let index = labels.iter().position(|l| l == label).ok_or_else(|| {
                    JobError::Usage(format!(
                        "--duplicate-label {label:?}: model {} has labels [{}]",
                        model.name(),
                        labels.join(", ")
                    ))
                })?;
                Ok(Verifier::Label { model, index })
            }
        }
    }

    /// The cross-encoder.
    pub fn model(&self) -> &Arc<CrossEncoder> {
        match self {
            Verifier::Score(model) | Verifier::Label { model, .. } => model,
        }
    }

    /// One score per pair of texts (the first text is the earlier row's).
    pub fn score_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        match self {
            Verifier::Score(model) => {
                let predictions = model.predict_pairs(pairs)?;
                Ok(model.scores_of(&predictions).values().to_vec())
            }
            Verifier::Label { model, index } => {
                let reversed: Vec<(&str, &str)> = pairs.iter().map(|&(a, b)| (b, a)).collect();
                let (forward, backward) =
                    (model.predict_pairs(pairs)?, model.predict_pairs(&reversed)?);
                let label = |logits: &[f32]| probabilities(logits)[*index];
                Ok((0..pairs.len())
                    .map(|i| label(forward.logits(i)).min(label(backward.logits(i))))
                    .collect())
            }
        }
    }
}
