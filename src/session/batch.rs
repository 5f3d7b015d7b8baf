//! A micro-batch as the graph's input tensors.

use crate::tokenize::EncodedPair;

/// One micro-batch, padded to its longest pair (row-major `rows × cols`).
pub(crate) struct PaddedBatch {
    pub rows: usize,
    pub cols: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl PaddedBatch {
    /// Pads `pairs` to `cols` tokens with `pad_id`.
    pub fn new(pairs: &[&EncodedPair], cols: usize, pad_id: u32) -> Self {
        let size = pairs.len() * cols;
        let mut batch = Self {
            rows: pairs.len(),
            cols,
            input_ids: Vec::with_capacity(size),
            attention_mask: Vec::with_capacity(size),
            token_type_ids: Vec::with_capacity(size),
        };
        for pair in pairs {
            let pad = cols - pair.len();
            batch.input_ids.extend(pair.ids.iter().map(|&id| id as i64));
            batch
                .input_ids
                .extend(std::iter::repeat_n(pad_id as i64, pad));
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, pair.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, pad));
            batch
                .token_type_ids
                .extend(pair.type_ids.iter().map(|&t| t as i64));
            batch.token_type_ids.extend(std::iter::repeat_n(0, pad));
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pad_ids_mask_and_segments_to_the_longest_pair() {
        let long = EncodedPair {
            ids: vec![101, 7, 102, 8, 102],
            type_ids: vec![0, 0, 0, 1, 1],
            truncated: false,
        };
        let short = EncodedPair {
            ids: vec![101, 102, 102],
            type_ids: vec![0, 0, 1],
            truncated: false,
        };
        let batch = PaddedBatch::new(&[&long, &short], 5, 0);
        assert_eq!((batch.rows, batch.cols), (2, 5));
        assert_eq!(batch.input_ids, [101, 7, 102, 8, 102, 101, 102, 102, 0, 0]);
        assert_eq!(batch.attention_mask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.token_type_ids, [0, 0, 0, 1, 1, 0, 0, 1, 0, 0]);
    }
}
