//! Arrow arrays built from predictions.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, StringArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields};

use crate::Result;
use crate::encoder::Predictions;
use crate::head::{self, Head};

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
