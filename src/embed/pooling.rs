//! How a bi-encoder's graph output becomes one unit vector per text: the
//! pooling its `1_Pooling/config.json` names over the real tokens, then L2
//! normalisation, so that the cosine of two vectors is their dot product.

use std::path::PathBuf;

use serde::Deserialize;

use crate::session::Output;
use crate::{Error, Result};

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the real (unpadded) tokens.
    Mean,
    /// The first ([CLS]) token.
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

/// `1_Pooling/config.json`.
#[derive(Deserialize)]
pub(super) struct PoolingConfig {
    pub word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

impl PoolingConfig {
    /// The pooling the configuration names (mean unless CLS or max).
    pub fn pooling(&self) -> Pooling {
        match (self.pooling_mode_cls_token, self.pooling_mode_max_tokens) {
            (true, _) => Pooling::Cls,
            (_, true) => Pooling::Max,
            _ => Pooling::Mean,
        }
    }
}

/// How one batch's graph output becomes one vector per text.
#[derive(Debug, Clone)]
pub(super) struct Pooler {
    pub onnx: PathBuf,
    pub pooling: Pooling,
    pub dimension: usize,
}

impl Pooler {
    /// Pools one batch's output into one unit vector per row.
    pub fn pool(&self, out: Output, lengths: &[usize]) -> Result<Vec<f32>> {
        let dim = self.dimension;
        let mut pooled = match out.shape.as_slice() {
            [_, d] if *d == dim => out.data,
            [rows, seq, d] if *d == dim && *rows == lengths.len() => {
                let mut pooled = Vec::with_capacity(rows * dim);
                for (r, &len) in lengths.iter().enumerate() {
                    let tokens = &out.data[r * seq * dim..(r * seq + len.min(*seq)) * dim];
                    pooled.extend(pool_tokens(tokens, dim, self.pooling));
                }
                pooled
            }
            other => {
                return Err(Error::InvalidModel {
                    path: self.onnx.clone(),
                    reason: format!(
                        "output shape {other:?} does not end in the embedding dimension {dim}"
                    ),
                });
            }
        };
        pooled.chunks_mut(dim).for_each(l2_normalize);
        Ok(pooled)
    }
}

fn pool_tokens(tokens: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let count = (tokens.len() / dim).max(1);
    match pooling {
        Pooling::Cls => tokens[..dim].to_vec(),
        Pooling::Mean => {
            let mut sum = vec![0.0f32; dim];
            for token in tokens.chunks(dim) {
                sum.iter_mut().zip(token).for_each(|(s, x)| *s += x);
            }
            sum.iter_mut().for_each(|s| *s /= count as f32);
            sum
        }
        Pooling::Max => {
            let mut max = vec![f32::NEG_INFINITY; dim];
            for token in tokens.chunks(dim) {
                max.iter_mut().zip(token).for_each(|(m, x)| *m = m.max(*x));
            }
            max
        }
    }
}

fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_and_normalisation() {
        let tokens = [1.0, 2.0, 3.0, 0.0];
        assert_eq!(pool_tokens(&tokens, 2, Pooling::Mean), [2.0, 1.0]);
        assert_eq!(pool_tokens(&tokens, 2, Pooling::Cls), [1.0, 2.0]);
        assert_eq!(pool_tokens(&tokens, 2, Pooling::Max), [3.0, 2.0]);
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }

    #[test]
    fn every_pooled_vector_is_a_unit_vector() {
        let pooler = Pooler {
            onnx: PathBuf::from("m.onnx"),
            pooling: Pooling::Mean,
            dimension: 2,
        };
        let out = Output {
            shape: vec![2, 2],
            data: vec![3.0, 4.0, 0.0, 2.0],
        };
        assert_eq!(pooler.pool(out, &[1, 1]).unwrap(), [0.6, 0.8, 0.0, 1.0]);
    }
}
