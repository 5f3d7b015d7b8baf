//! Pair tokenization: `[CLS] a [SEP] b [SEP]` with longest-first truncation.

use std::path::Path;

use tokenizers::{
    EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::model::{ModelConfig, ModelFiles};
use crate::{Error, Result};

/// One tokenized pair, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// Token ids including the special tokens.
    pub ids: Vec<u32>,
    /// Segment ids (0 for `a`, 1 for `b` on BERT-style models).
    pub type_ids: Vec<u32>,
    /// Whether the pair was cut to fit the maximum length.
    pub truncated: bool,
}

impl EncodedPair {
    /// Length in tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the pair has no tokens at all (never true for BERT-style models).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A HF tokenizer set up for pairs: its own truncation, no padding (micro-batches
/// are padded to their own longest pair by the engine).
#[derive(Debug, Clone)]
pub struct PairTokenizer {
    tokenizer: Tokenizer,
    max_length: usize,
    pad_id: u32,
}

impl PairTokenizer {
    /// Loads `tokenizer.json` and overrides whatever padding / truncation it carries.
    /// `pad_token` names the padding token; `pad_id` is the fallback id.
    pub fn from_file(
        path: &Path,
        max_length: usize,
        pad_token: Option<&str>,
        pad_id: Option<u32>,
    ) -> Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| Error::corrupt(path, e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer(format!("max length {max_length}: {e}")))?;
        let pad_id = pad_token
            .and_then(|token| tokenizer.token_to_id(token))
            .or(pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .unwrap_or(0);
        Ok(Self {
            tokenizer,
            max_length,
            pad_id,
        })
    }

    /// The tokenizer of a model directory, cutting at `max_length` tokens;
    /// a length beyond the model's position table is an error.
    pub fn for_model(files: &ModelFiles, config: &ModelConfig, max_length: usize) -> Result<Self> {
        if let Some(limit) = config.max_position_embeddings.filter(|&l| max_length > l) {
            return Err(Error::InvalidInput(format!(
                "max length {max_length} exceeds the model's max_position_embeddings {limit}"
            )));
        }
        Self::from_file(
            &files.tokenizer,
            max_length,
            config.pad_token.as_deref(),
            config.pad_token_id,
        )
    }

    /// The maximum pair length in tokens, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The id used to pad micro-batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Tokenizes pairs, in order.
    pub fn encode_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<EncodedPair>> {
        self.encode(pairs.iter().map(|&(a, b)| (a, b).into()).collect())
    }

    /// Tokenizes single texts (`[CLS] text [SEP]`), in order.
    pub fn encode_texts(&self, texts: &[&str]) -> Result<Vec<EncodedPair>> {
        self.encode(texts.iter().map(|&t| t.into()).collect())
    }

    fn encode(&self, inputs: Vec<EncodeInput>) -> Result<Vec<EncodedPair>> {
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|encoding| EncodedPair {
                truncated: !encoding.get_overflowing().is_empty(),
                ids: encoding.get_ids().to_vec(),
                type_ids: encoding.get_type_ids().to_vec(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> PairTokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/crossflow-sts-minilm-l6/tokenizer.json");
        PairTokenizer::from_file(&path, 16, Some("[PAD]"), None).unwrap()
    }

    #[test]
    fn pairs_are_cls_a_sep_b_sep_with_segment_ids() {
        let tokenizer = bundled();
        let encoded = &tokenizer.encode_pairs(&[("hello", "world")]).unwrap()[0];
        let cls = tokenizer.tokenizer.token_to_id("[CLS]").unwrap();
        let sep = tokenizer.tokenizer.token_to_id("[SEP]").unwrap();
        assert_eq!(encoded.ids.len(), 5);
        assert_eq!(
            (encoded.ids[0], encoded.ids[2], encoded.ids[4]),
            (cls, sep, sep)
        );
        assert_eq!(encoded.type_ids, [0, 0, 0, 1, 1]);
        assert!(!encoded.truncated);
        assert_eq!(tokenizer.pad_id(), 0);
    }

    #[test]
    fn long_pairs_are_truncated_longest_first_and_flagged() {
        let tokenizer = bundled();
        let long = "word ".repeat(100);
        let encoded = tokenizer
            .encode_pairs(&[(long.as_str(), "short text"), ("", "")])
            .unwrap();
        assert_eq!(encoded[0].len(), 16);
        assert!(encoded[0].truncated);
        // The short side is kept whole: 2 tokens of b plus the final [SEP].
        assert_eq!(encoded[0].type_ids.iter().filter(|&&t| t == 1).count(), 3);
        assert_eq!(
            encoded[1].len(),
            3,
            "empty texts are valid: [CLS] [SEP] [SEP]"
        );
        assert!(!encoded[1].truncated);
    }
}
