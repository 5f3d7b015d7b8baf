//! Arrow arrays built from predictions.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, StringArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields};

use crate::encoder::{CrossEncoder, Predictions};
use crate::head::{self, Head};
use crate::{Error, Result};

/// A classifier's outputs: the winning label and every label's probability.
#[derive(Debug, Clone)]
pub struct ClassifiedArrays {
    /// The most probable label per row (`Utf8`).
    pub labels: StringArray,
    /// A struct of `Float32` fields named by the labels, in the model's order.
    pub probs: StructArray,
}

/// The struct fields of a classifier's probabilities.
pub fn probability_fields(labels: &[String]) -> Fields {
    labels
        .iter()
        .map(|label| Field::new(label, DataType::Float32, true))
        .collect()
}

fn nulls(predictions: &Predictions) -> Option<NullBuffer> {
    let valid: Vec<bool> = (0..predictions.len())
        .map(|i| predictions.is_valid(i))
        .collect();
    let buffer = NullBuffer::from(valid);
    (buffer.null_count() > 0).then_some(buffer)
}

pub(crate) fn scores(predictions: &Predictions, head: &Head) -> Float32Array {
    (0..predictions.len())
        .map(|i| {
            predictions
                .is_valid(i)
                .then(|| head.score(predictions.logits(i)))
        })
        .collect()
}

pub(crate) fn classified(predictions: &Predictions, labels: &[String]) -> Result<ClassifiedArrays> {
    let rows = predictions.len();
    let mut columns = vec![Vec::with_capacity(rows); labels.len()];
    let mut winners = Vec::with_capacity(rows);
    for i in 0..rows {
        let probs = head::probabilities(predictions.logits(i));
        winners.push(
            predictions
                .is_valid(i)
                .then(|| labels[head::argmax(&probs)].as_str()),
        );
        for (column, p) in columns.iter_mut().zip(probs) {
            column.push(predictions.is_valid(i).then_some(p));
        }
    }
    let arrays: Vec<ArrayRef> = columns
        .into_iter()
        .map(|c| Arc::new(Float32Array::from(c)) as ArrayRef)
        .collect();
    // Children are null where the row is, so a field read gives null too.
    let probs = StructArray::try_new(probability_fields(labels), arrays, nulls(predictions))?;
    Ok(ClassifiedArrays {
        labels: StringArray::from(winners),
        probs,
    })
}

/// `score >= threshold` per row, null where the score is null.
pub fn at_least(scores: &Float32Array, threshold: f32) -> BooleanArray {
    scores.iter().map(|s| s.map(|s| s >= threshold)).collect()
}

/// The columns crossflow adds for a model, named and typed the same in the
/// `score` job, the enrich job and SQL: `cross_score` (`Float32`), for a
/// classifier `nli_label` (`Utf8`) and `nli_probs` (a struct of the labels'
/// `Float32` probabilities), and `is_paraphrase` (`Boolean`) with a threshold.
#[derive(Debug, Clone)]
pub struct OutputColumns {
    head: Head,
    fields: Vec<Field>,
    score: bool,
    threshold: Option<f32>,
}

impl OutputColumns {
    /// `cross_score`, the classes of a classifier, and `is_paraphrase` when
    /// `threshold` is given (a one-label score model only).
    pub fn for_model(model: &CrossEncoder, threshold: Option<f32>) -> Result<Self> {
        let head = model.head();
        if threshold.is_some() && matches!(head, Head::Classification { .. }) {
            return Err(model.wrong_head("--threshold", "a one-label score model"));
        }
        if let Some(threshold) = threshold {
            head.check_threshold("--threshold", threshold)
                .map_err(Error::InvalidSetting)?;
        }
        let mut fields = vec![Field::new("cross_score", DataType::Float32, true)];
        fields.extend(class_fields(head));
        if threshold.is_some() {
            fields.push(Field::new("is_paraphrase", DataType::Boolean, true));
        }
        Ok(Self {
            head: head.clone(),
            fields,
            score: true,
            threshold,
        })
    }

    /// `nli_label` and `nli_probs` only; needs a classifier.
    pub fn classes(model: &CrossEncoder) -> Result<Self> {
        let head = model.head();
        let fields = class_fields(head);
        if fields.is_empty() {
            return Err(model.wrong_head("labels", "a model with several labels"));
        }
        Ok(Self {
            head: head.clone(),
            fields,
            score: false,
            threshold: None,
        })
    }

    /// The columns' fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The columns of `predictions`, in the order of [`OutputColumns::fields`].
    pub fn arrays(&self, predictions: &Predictions) -> Result<Vec<ArrayRef>> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.fields.len());
        let scores = self.score.then(|| scores(predictions, &self.head));
        if let Some(scores) = &scores {
            arrays.push(Arc::new(scores.clone()));
        }
        if let Head::Classification { labels } = &self.head {
            let classes = classified(predictions, labels)?;
            arrays.push(Arc::new(classes.labels));
            arrays.push(Arc::new(classes.probs));
        }
        if let (Some(threshold), Some(scores)) = (self.threshold, &scores) {
            arrays.push(Arc::new(at_least(scores, threshold)));
        }
        Ok(arrays)
    }
}

/// `nli_label` and `nli_probs` for a classifier; nothing for a score model.
fn class_fields(head: &Head) -> Vec<Field> {
    match head {
        Head::Classification { labels } => vec![
            Field::new("nli_label", DataType::Utf8, true),
            Field::new(
                "nli_probs",
                DataType::Struct(probability_fields(labels)),
                true,
            ),
        ],
        Head::Score { .. } => Vec::new(),
    }
}
