//! What a model directory's JSON files say: labels, activation, lengths.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::ModelFiles;
use crate::head::{Activation, Head};
use crate::{Error, Result};

/// `model_max_length` values at or above this are HF's "no limit" sentinel.
const UNBOUNDED_LENGTH: u64 = 1 << 40;

/// The parts of a model's configuration the engine uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Label names by logit index (`id2label`), or generated names.
    pub labels: Vec<String>,
    /// The activation the sentence-transformers config asks for, if any.
    pub activation: Option<Activation>,
    /// `max_position_embeddings`: the hard limit of the position table.
    pub max_position_embeddings: Option<usize>,
    /// Default maximum pair length in tokens (including special tokens).
    pub max_length: usize,
    /// The padding token (`pad_token` of the tokenizer config), if named.
    pub pad_token: Option<String>,
    /// `pad_token_id` of config.json, if set.
    pub pad_token_id: Option<u32>,
}

#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    id2label: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    num_labels: Option<usize>,
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    sentence_transformers: Option<StSettings>,
}

#[derive(Deserialize, Default)]
struct StSettings {
    #[serde(default)]
    activation_fn: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    pad_token: Option<Value>,
}

impl ModelConfig {
    /// Reads `config.json` and the optional tokenizer / sentence-transformers configs.
    pub fn load(files: &ModelFiles) -> Result<Self> {
        let hf: HfConfig = read_json(&files.config)?;
        let labels = labels(&hf).map_err(|reason| Error::InvalidModel {
            path: files.config.clone(),
            reason,
        })?;
        let st: StSettings = match &files.st_config {
            Some(path) => read_json(path)?,
            None => StSettings::default(),
        };
        let tok: TokenizerConfig = match &files.tokenizer_config {
            Some(path) => read_json(path)?,
            None => TokenizerConfig::default(),
        };
        let activation_name = st.activation_fn.or_else(|| {
            hf.sentence_transformers
                .and_then(|settings| settings.activation_fn)
        });
        let activation = activation_name.as_deref().and_then(|name| {
            let parsed = Activation::from_class_path(name);
            if parsed.is_none() {
                tracing::warn!(
                    activation = name,
                    "unknown activation_fn; using the default"
                );
            }
            parsed
        });
        let max_position_embeddings = hf.max_position_embeddings;
        let declared = tok
            .model_max_length
            .filter(|n| *n > 0.0 && (*n as u64) < UNBOUNDED_LENGTH)
            .map(|n| n as usize);
        let max_length = match (declared, max_position_embeddings) {
            (Some(n), Some(limit)) => n.min(limit),
            (Some(n), None) => n,
            (None, Some(limit)) => limit,
            (None, None) => 512,
        };
        Ok(Self {
            labels,
            activation,
            max_position_embeddings,
            max_length,
            pad_token: tok.pad_token.as_ref().and_then(token_content),
            pad_token_id: hf.pad_token_id,
        })
    }

    /// Number of logits per pair.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The head this configuration describes; `activation` overrides the
    /// configured activation of a one-label model.
    pub fn head(&self, activation: Option<Activation>) -> Head {
        if self.labels.len() == 1 {
            Head::Score {
                activation: activation
                    .or(self.activation)
                    .unwrap_or(Activation::Sigmoid),
            }
        } else {
            Head::Classification {
                labels: self.labels.clone(),
            }
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::corrupt(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::corrupt(path, format!("invalid JSON: {e}")))
}

/// Label names ordered by index, from `id2label` (checked against `num_labels`).
fn labels(hf: &HfConfig) -> std::result::Result<Vec<String>, String> {
    let Some(map) = &hf.id2label else {
        let n = hf.num_labels.unwrap_or(1);
        return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
    };
    let mut labels = vec![None; map.len()];
    for (key, name) in map {
        let index: usize = key
            .parse()
            .map_err(|_| format!("id2label key {key:?} is not an index"))?;
        let slot = labels
            .get_mut(index)
            .ok_or_else(|| format!("id2label index {index} is out of range 0..{}", map.len()))?;
        *slot = Some(name.clone());
    }
    if let Some(n) = hf.num_labels.filter(|n| *n != map.len()) {
        return Err(format!(
            "num_labels is {n} but id2label has {} entries",
            map.len()
        ));
    }
    if labels.is_empty() {
        return Err("id2label is empty".into());
    }
    Ok(labels.into_iter().flatten().collect())
}

fn token_content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(
        config: &str,
        tokenizer_config: Option<&str>,
        st: Option<&str>,
    ) -> Result<ModelConfig> {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let files = ModelFiles {
            dir: dir.path().into(),
            onnx: write("model.onnx", ""),
            tokenizer: write("tokenizer.json", "{}"),
            config: write("config.json", config),
            tokenizer_config: tokenizer_config.map(|t| write("tokenizer_config.json", t)),
            st_config: st.map(|t| write("config_sentence_transformers.json", t)),
        };
        ModelConfig::load(&files)
    }

    #[test]
    fn one_label_is_a_score_head_with_sigmoid_by_default() {
        let config = config_from(r#"{"id2label": {"0": "LABEL_0"}}"#, None, None).unwrap();
        let head = config.head(None);
        assert_eq!(
            head,
            Head::Score {
                activation: Activation::Sigmoid
            }
        );
        assert_eq!(config.max_length, 512);
    }

    #[test]
    fn labels_follow_id2label_indices_not_file_order() {
        let text = r#"{"id2label": {"2": "neutral", "0": "contradiction", "1": "entailment"},
                       "max_position_embeddings": 512}"#;
        let config = config_from(text, None, None).unwrap();
        assert_eq!(config.labels, ["contradiction", "entailment", "neutral"]);
        assert!(matches!(config.head(None), Head::Classification { .. }));
    }

    #[test]
    fn activation_comes_from_either_config_and_can_be_overridden() {
        let st = r#"{"activation_fn": "torch.nn.modules.linear.Identity"}"#;
        let config = config_from(r#"{"num_labels": 1}"#, None, Some(st)).unwrap();
        assert_eq!(config.activation, Some(Activation::Identity));
        let legacy = r#"{"num_labels": 1, "sentence_transformers":
                         {"activation_fn": "torch.nn.modules.activation.Sigmoid"}}"#;
        let config = config_from(legacy, None, None).unwrap();
        assert_eq!(config.activation, Some(Activation::Sigmoid));
        let head = config.head(Some(Activation::Identity));
        assert_eq!(
            head,
            Head::Score {
                activation: Activation::Identity
            }
        );
    }

    #[test]
    fn max_length_is_the_tokenizer_limit_capped_by_positions() {
        let tok = r#"{"model_max_length": 128, "pad_token": "[PAD]"}"#;
        let config = config_from(r#"{"max_position_embeddings": 512}"#, Some(tok), None).unwrap();
        assert_eq!(config.max_length, 128);
        assert_eq!(config.pad_token.as_deref(), Some("[PAD]"));
        let unbounded = r#"{"model_max_length": 1000000000000000019884624838656}"#;
        let config = config_from(r#"{"max_position_embeddings": 256}"#, Some(unbounded), None);
        assert_eq!(config.unwrap().max_length, 256);
    }

    #[test]
    fn inconsistent_or_corrupt_configs_are_errors_naming_the_file() {
        let err = config_from(r#"{"num_labels": 2, "id2label": {"0": "a"}}"#, None, None);
        assert!(err.unwrap_err().to_string().contains("num_labels is 2"));
        let err = config_from("{not json", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("invalid JSON"),
            "{err}"
        );
    }
}
