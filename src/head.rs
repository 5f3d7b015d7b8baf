//! Heads: what the logits of a model mean.
//!
//! A model with one output label is a relevance / similarity scorer; its score
//! is the logit passed through an activation (sigmoid by default, as
//! sentence-transformers' `CrossEncoder` does). A model with several labels is
//! a classifier (NLI: entailment / neutral / contradiction) whose label names
//! come from `config.json`'s `id2label`, in the model's own order.

use std::fmt;
use std::str::FromStr;

/// Function applied to a score model's logit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    /// The raw logit.
    Identity,
    /// `1 / (1 + e^-x)`, a score in 0..1.
    Sigmoid,
    /// Softmax over the labels (for one label this is always 1, so it is only
    /// meaningful for classifiers).
    Softmax,
}

impl Activation {
    /// Maps a sentence-transformers `activation_fn` class path
    /// (`torch.nn.modules.activation.Sigmoid`) to an activation.
    pub fn from_class_path(path: &str) -> Option<Self> {
        match path.rsplit('.').next()? {
            "Identity" => Some(Self::Identity),
            "Sigmoid" => Some(Self::Sigmoid),
            "Softmax" => Some(Self::Softmax),
            _ => None,
        }
    }

    /// Applies the activation to one row of logits in place.
    pub fn apply(self, row: &mut [f32]) {
        match self {
            Self::Identity => {}
            Self::Sigmoid => row.iter_mut().for_each(|x| *x = sigmoid(*x)),
            Self::Softmax => softmax(row),
        }
    }
}

impl FromStr for Activation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "identity" | "raw" => Ok(Self::Identity),
            "sigmoid" => Ok(Self::Sigmoid),
            "softmax" => Ok(Self::Softmax),
            other => Err(format!(
                "unknown activation {other:?} (expected none, sigmoid or softmax)"
            )),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Identity => "none",
            Self::Sigmoid => "sigmoid",
            Self::Softmax => "softmax",
        })
    }
}

/// What a model's logits mean.
#[derive(Debug, Clone, PartialEq)]
pub enum Head {
    /// One logit: a relevance / similarity score after `activation`.
    Score { activation: Activation },
    /// Several logits: a classification over `labels` (index = logit column).
    Classification { labels: Vec<String> },
}

impl Head {
    /// Number of logits per pair the head expects.
    pub fn num_labels(&self) -> usize {
        match self {
            Head::Score { .. } => 1,
            Head::Classification { labels } => labels.len(),
        }
    }

    /// Short description used in messages ("a score head (sigmoid)").
    pub fn describe(&self) -> String {
        match self {
            Head::Score { activation } => format!("has a score head ({activation})"),
            Head::Classification { labels } => {
                format!("is a classifier over [{}]", labels.join(", "))
            }
        }
    }

    /// The decision threshold that means "50 %" for this head's scores:
    /// 0.5 after a sigmoid or softmax, 0.0 on raw logits.
    pub fn default_threshold(&self) -> f32 {
        match self {
            Head::Score {
                activation: Activation::Identity,
            } => 0.0,
            _ => 0.5,
        }
    }

    /// The scores a threshold on this head's scores can be: any finite
    /// number on raw logits, a probability in [0, 1] otherwise.
    pub fn threshold_range(&self) -> std::ops::RangeInclusive<f32> {
        match self {
            Head::Score {
                activation: Activation::Identity,
            } => f32::MIN..=f32::MAX,
            _ => 0.0..=1.0,
        }
    }

    /// `threshold` if it is on this head's scale, else a message naming
    /// `flag` and the range (NaN and infinities are never on it).
    pub fn check_threshold(&self, flag: &str, threshold: f32) -> Result<f32, String> {
        let range = self.threshold_range();
        if range.contains(&threshold) {
            return Ok(threshold);
        }
        let scale = if *range.end() == 1.0 {
            "a probability in [0, 1]"
        } else {
            "a finite raw score"
        };
        Err(format!(
            "{flag} {threshold}: this model's scores are {scale}"
        ))
    }

    /// The score of one row of logits: the activated logit for a score head,
    /// the probability of the winning label for a classifier.
    pub fn score(&self, logits: &[f32]) -> f32 {
        match self {
            Head::Score { activation } => {
                let mut row = [logits[0]];
                activation.apply(&mut row);
                row[0]
            }
            Head::Classification { .. } => {
                let probs = probabilities(logits);
                probs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            }
        }
    }
}

/// Softmax of one row of logits.
pub fn probabilities(logits: &[f32]) -> Vec<f32> {
    let mut row = logits.to_vec();
    softmax(&mut row);
    row
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 { (i, x) } else { best }
        })
        .0
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    row.iter_mut().for_each(|x| *x /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_off_the_head_scale_are_refused() {
        let sigmoid = Head::Score {
            activation: Activation::Sigmoid,
        };
        let raw = Head::Score {
            activation: Activation::Identity,
        };
        assert_eq!(sigmoid.check_threshold("--threshold", 0.75), Ok(0.75));
        for bad in [f32::NAN, -0.1, 1.5, f32::INFINITY] {
            let message = sigmoid.check_threshold("--threshold", bad).unwrap_err();
            assert!(message.starts_with("--threshold"), "{message}");
        }
        assert_eq!(raw.check_threshold("--threshold", -3.0), Ok(-3.0));
        assert!(raw.check_threshold("--threshold", f32::NAN).is_err());
        assert!(
            raw.check_threshold("--threshold", f32::NEG_INFINITY)
                .is_err()
        );
    }

    #[test]
    fn activations_parse_from_sentence_transformers_class_paths() {
        let sigmoid = Activation::from_class_path("torch.nn.modules.activation.Sigmoid");
        assert_eq!(sigmoid, Some(Activation::Sigmoid));
        let identity = Activation::from_class_path("torch.nn.modules.linear.Identity");
        assert_eq!(identity, Some(Activation::Identity));
        assert_eq!(Activation::from_class_path("torch.nn.Tanh"), None);
        assert_eq!("none".parse::<Activation>(), Ok(Activation::Identity));
        assert!("relu".parse::<Activation>().is_err());
    }

    #[test]
    fn score_head_applies_its_activation() {
        let head = Head::Score {
            activation: Activation::Sigmoid,
        };
        assert!((head.score(&[0.0]) - 0.5).abs() < 1e-7);
        assert!((head.score(&[2.0]) - 0.880_797).abs() < 1e-6);
        let raw = Head::Score {
            activation: Activation::Identity,
        };
        assert_eq!(raw.score(&[2.5]), 2.5);
        assert_eq!(raw.default_threshold(), 0.0);
    }

    #[test]
    fn classification_scores_are_the_winning_probability() {
        let labels = vec![
            "contradiction".into(),
            "entailment".into(),
            "neutral".into(),
        ];
        let head = Head::Classification { labels };
        let logits = [1.0, 3.0, 0.5];
        let probs = probabilities(&logits);
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(argmax(&logits), 1);
        assert!((head.score(&logits) - probs[1]).abs() < 1e-7);
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        let probs = probabilities(&[1000.0, 1000.0]);
        assert_eq!(probs, vec![0.5, 0.5]);
    }
}
