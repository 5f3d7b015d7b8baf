//! Pair tokenization: `[CLS] a [SEP] b [SEP]` with longest-first truncation.

use std::path::Path;

use tokenizers::{
    EncodeInput, PostProcessor, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

use crate::model::{ModelConfig, ModelFiles};
use crate::{Error, Result};

/// Bytes of a text tokenized at first, per token of the maximum length (see
/// [`PairTokenizer::bounded`]): English averages 4-5 bytes a token.
pub const BYTES_PER_TOKEN: usize = 16;

/// `text` up to the last space before byte `limit`, if there is one.
fn prefix_before_space(text: &str, limit: usize) -> Option<&str> {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end]
        .rfind(' ')
        .filter(|&i| i > 0)
        .map(|i| &text[..i])
}

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
    /// The same tokenizer without truncation, to count a text's tokens.
    counter: Tokenizer,
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
        // Its special tokens plus one token of each text.
        let shortest = tokenizer
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(true))
            + 2;
        if max_length < shortest {
            return Err(Error::InvalidSetting(format!(
                "--max-length {max_length}: a pair needs at least {shortest} tokens \
                 (its special tokens and one token of each text)"
            )));
        }
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        counter
            .with_truncation(None)
            .map_err(|e| Error::tokenizer("", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::tokenizer(format!(", max length {max_length}"), e))?;
        let pad_id = pad_token
            .and_then(|token| tokenizer.token_to_id(token))
            .or(pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .unwrap_or(0);
        Ok(Self {
            tokenizer,
            counter,
            max_length,
            pad_id,
        })
    }

    /// The tokenizer of a model directory, cutting at `max_length` tokens;
    /// a length beyond the model's position table is an error.
    pub fn for_model(files: &ModelFiles, config: &ModelConfig, max_length: usize) -> Result<Self> {
        if let Some(limit) = config.max_position_embeddings.filter(|&l| max_length > l) {
            return Err(Error::InvalidSetting(format!(
                "--max-length {max_length} exceeds the model's max_position_embeddings {limit}"
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
        let mut inputs = Vec::with_capacity(pairs.len());
        for &(a, b) in pairs {
            inputs.push(self.bounded_pair(a, b)?.into());
        }
        self.encode(inputs)
    }

    /// Tokenizes single texts (`[CLS] text [SEP]`), in order.
    pub fn encode_texts(&self, texts: &[&str]) -> Result<Vec<EncodedPair>> {
        let mut inputs = Vec::with_capacity(texts.len());
        for &text in texts {
            inputs.push(self.bounded(text)?.into());
        }
        self.encode(inputs)
    }

    /// The part of `text` that decides its tokens: a text longer than
    /// [`BYTES_PER_TOKEN`] × the maximum length is cut just before a space
    /// where its first part alone already gives at least the maximum length
    /// in tokens (see [`PairTokenizer::cut`]). Truncation keeps at most that
    /// many tokens, so the cut never changes the result of a single text; it
    /// bounds the cost of a huge one.
    pub fn bounded<'a>(&self, text: &'a str) -> Result<&'a str> {
        self.cut(text, self.max_length)
    }

    /// Both texts of a pair, cut where that cannot change the pair's tokens.
    /// Longest-first truncation gives an odd last token to the longer text,
    /// so a long text is cut where it is still longer than the other one
    /// (counted whole: it is short); when both texts are long, which one is
    /// longer is unknown and both are tokenized whole.
    fn bounded_pair<'a>(&self, a: &'a str, b: &'a str) -> Result<(&'a str, &'a str)> {
        let long = |text: &str| text.len() > self.max_length.saturating_mul(BYTES_PER_TOKEN);
        match (long(a), long(b)) {
            (true, false) => Ok((self.cut(a, self.count(b)? + 1)?, b)),
            (false, true) => Ok((a, self.cut(b, self.count(a)? + 1)?)),
            _ => Ok((a, b)),
        }
    }

    /// `text` cut just before a space where its first part gives at least
    /// `tokens` tokens (and the maximum length), trying [`BYTES_PER_TOKEN`]
    /// bytes per token first and doubling; the whole text when no cut does.
    /// Words before a space are tokenized the same whatever follows.
    fn cut<'a>(&self, text: &'a str, tokens: usize) -> Result<&'a str> {
        let tokens = tokens.max(self.max_length);
        let mut limit = tokens.saturating_mul(BYTES_PER_TOKEN);
        while limit < text.len() {
            if let Some(prefix) = prefix_before_space(text, limit)
                && self.count(prefix)? >= tokens
            {
                return Ok(prefix);
            }
            limit = limit.saturating_mul(2);
        }
        Ok(text)
    }

    /// The tokens of `text` alone, untruncated and without special tokens.
    fn count(&self, text: &str) -> Result<usize> {
        let encoding = self
            .counter
            .encode_fast(text, false)
            .map_err(|e| Error::tokenizer("", e))?;
        Ok(encoding.len())
    }

    fn encode(&self, inputs: Vec<EncodeInput>) -> Result<Vec<EncodedPair>> {
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| Error::tokenizer("", e))?;
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

    /// The tokens of `text` tokenized whole, as the engine did before cutting.
    fn uncut(tokenizer: &PairTokenizer, a: &str, b: &str) -> Vec<u32> {
        let encoding = tokenizer.tokenizer.encode((a, b), true).unwrap();
        encoding.get_ids().to_vec()
    }

    #[test]
    fn cutting_a_huge_text_never_changes_its_tokens() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/crossflow-sts-minilm-l6/tokenizer.json");
        let tokenizer = PairTokenizer::from_file(&path, 128, Some("[PAD]"), None).unwrap();
        // Words of 1 to 40 letters, punctuation, accents and CJK: a varied
        // number of bytes per token, so that the first limit is sometimes short.
        let words = [
            "a",
            "théâtre",
            "supercalifragilisticexpialidocious",
            "東京",
            "x,y.",
            &"z".repeat(40),
        ];
        let text: String = (0..60_000)
            .map(|i| words[(i * 7 + i / 3) % words.len()])
            .collect::<Vec<_>>()
            .join(" ");
        let dense = "東".repeat(100_000);
        // ~630 tokens of CJK under the first cut's 2,048 bytes: a cut English
        // text must stay the longer one (the odd last token goes to it).
        let cjk: String = "東 ".repeat(500);
        let english = "the quick brown fox jumps over the lazy dog ".repeat(2_000);
        for (a, b) in [
            (english.as_str(), cjk.as_str()),
            (cjk.as_str(), english.as_str()),
            (text.as_str(), english.as_str()),
            (text.as_str(), "a short text"),
            ("a short text", text.as_str()),
            (text.as_str(), text.as_str()),
            (prefix_before_space(&text, 3_000).unwrap(), "b"),
            (dense.as_str(), "b"),
        ] {
            let cut = &tokenizer.encode_pairs(&[(a, b)]).unwrap()[0];
            assert_eq!(cut.ids, uncut(&tokenizer, a, b));
            assert!(cut.truncated);
        }
        assert!(tokenizer.bounded(&text).unwrap().len() < 128 * BYTES_PER_TOKEN);
    }

    #[test]
    fn a_max_length_without_room_for_both_texts_is_refused() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/crossflow-sts-minilm-l6/tokenizer.json");
        for short in [0, 1, 2, 4] {
            let error = PairTokenizer::from_file(&path, short, Some("[PAD]"), None).unwrap_err();
            assert!(error.to_string().contains("--max-length"), "{error}");
        }
        let tokenizer = PairTokenizer::from_file(&path, 5, Some("[PAD]"), None).unwrap();
        let long = "word ".repeat(10);
        let encoded = &tokenizer.encode_pairs(&[(&long, &long)]).unwrap()[0];
        assert_eq!(encoded.len(), 5);
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
