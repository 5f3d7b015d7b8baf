//! Scoring candidate pairs with the cross-encoder, on the scale the
//! `--threshold` is documented on.
//!
//! A one-label model is scored with the activation its configuration names
//! (a probability for a sigmoid model, a raw logit for an identity one),
//! whatever `--activation` says, so a threshold keeps one meaning. A
//! classifier verifies only with `--duplicate-label`: the probability of that
//! label. `--direction` says which orders of a pair are scored (A→B, B→A)
//! and how they combine.

use std::sync::Arc;

use crossflow::head::probabilities;
use crossflow::{CrossEncoder, Head};

use crate::{JobError, Result};

/// The direction of a score model's pairs when `--direction` is not given.
pub const DEFAULT_SCORE_DIRECTION: Direction = Direction::Mean;

/// Which orders of a candidate pair the cross-encoder scores, and how the
/// pair's score follows from them: the model is not symmetric (A→B and B→A
/// can score 0.70 and 0.40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The earlier text first only.
    Forward,
    /// The mean of both orders.
    Mean,
    /// The higher of both orders.
    Max,
    /// The lower of both orders.
    Min,
}

/// How a candidate pair's score is computed.
pub(crate) struct Verifier {
    kind: Kind,
    direction: Direction,
}

enum Kind {
    /// A one-label model's activated score.
    Score(Arc<CrossEncoder>),
    /// A classifier: the probability of label `index`.
    Label {
        model: Arc<CrossEncoder>,
        index: usize,
        label: String,
    },
}

impl Verifier {
    /// The verifier for `model`; a classifier needs `duplicate_label`, a score
    /// model must not have one. `direction` defaults to
    /// [`DEFAULT_SCORE_DIRECTION`] for a score model, [`Direction::Min`] for a
    /// classifier.
    pub fn new(
        model: Arc<CrossEncoder>,
        duplicate_label: Option<&str>,
        threshold: f32,
        direction: Option<Direction>,
    ) -> Result<Self> {
        model
            .head()
            .check_threshold("--threshold", threshold)
            .map_err(JobError::Usage)?;
        let kind = match (model.head(), duplicate_label) {
            (Head::Score { .. }, None) => Kind::Score(model),
            (Head::Score { .. }, Some(label)) => {
                return Err(JobError::Usage(format!(
                    "--duplicate-label {label:?}: model {} has one score, not labels; \
                     drop --duplicate-label",
                    model.name()
                )));
            }
            (Head::Classification { labels }, None) => {
                return Err(JobError::Usage(format!(
                    "model {} is a classifier over [{}]: name the label that means \"duplicate\" \
                     with --duplicate-label (e.g. entailment, checked both ways)",
                    model.name(),
                    labels.join(", ")
                )));
            }
            (Head::Classification { labels }, Some(label)) => {
                let index = labels.iter().position(|l| l == label).ok_or_else(|| {
                    JobError::Usage(format!(
                        "--duplicate-label {label:?}: model {} has labels [{}]",
                        model.name(),
                        labels.join(", ")
                    ))
                })?;
                Kind::Label {
                    model,
                    index,
                    label: label.to_string(),
                }
            }
        };
        let direction = direction.unwrap_or(match kind {
            Kind::Score(_) => DEFAULT_SCORE_DIRECTION,
            Kind::Label { .. } => Direction::Min,
        });
        Ok(Self { kind, direction })
    }

    /// The cross-encoder.
    pub fn model(&self) -> &Arc<CrossEncoder> {
        match &self.kind {
            Kind::Score(model) | Kind::Label { model, .. } => model,
        }
    }

    /// One score per pair of texts (the first text is the earlier row's).
    pub fn score_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        let forward = self.one_way(pairs)?;
        if !self.both_ways() {
            return Ok(self.combine(forward, None));
        }
        let reversed: Vec<(&str, &str)> = pairs.iter().map(|&(a, b)| (b, a)).collect();
        let backward = self.one_way(&reversed)?;
        Ok(self.combine(forward, Some(backward)))
    }

    /// Whether a pair is scored in both orders.
    pub fn both_ways(&self) -> bool {
        self.direction != Direction::Forward
    }

    /// The pairs' scores from their forward scores and, when
    /// [`both_ways`](Self::both_ways), their backward ones.
    pub fn combine(&self, forward: Vec<f32>, backward: Option<Vec<f32>>) -> Vec<f32> {
        let Some(backward) = backward else {
            return forward;
        };
        let both = |(f, b): (f32, f32)| match self.direction {
            Direction::Forward => f,
            Direction::Mean => (f + b) / 2.0,
            Direction::Max => f.max(b),
            Direction::Min => f.min(b),
        };
        forward.into_iter().zip(backward).map(both).collect()
    }

    /// The SQL expression of one order's score of the texts in columns `a`
    /// and `b`: `cross_score` of a score model, the label's `nli_probs` field
    /// of a classifier.
    pub fn sql_score(&self, a: &str, b: &str) -> String {
        match &self.kind {
            Kind::Score(_) => format!("cross_score({a}, {b})"),
            Kind::Label { label, .. } => {
                format!("nli_probs({a}, {b})['{}']", label.replace('\'', "''"))
            }
        }
    }

    /// Each pair's score in the order given.
    fn one_way(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        match &self.kind {
            Kind::Score(model) => {
                let predictions = model.predict_pairs(pairs)?;
                Ok(model.scores_of(&predictions).values().to_vec())
            }
            Kind::Label { model, index, .. } => {
                let predictions = model.predict_pairs(pairs)?;
                Ok((0..pairs.len())
                    .map(|i| probabilities(predictions.logits(i))[*index])
                    .collect())
            }
        }
    }
}
