//! Candidate pairs: for each text its top-k most similar texts by cosine of
//! L2-normalised embeddings — by exact blocked search over all rows
//! (quadratic, as blocked matrix products), through an inverted-file index
//! over the same products ([`super::ivf`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ndarray::{ArrayView2, s};

/// A candidate pair, `a < b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub a: usize,
    pub b: usize,
    pub cosine: f32,
}

/// Rows of a query block: the scores of a block against a tile are one
/// matrix product (`matrixmultiply` through `ndarray`, AVX2/FMA kernels picked
/// at run time), then scanned for each row's top k.
pub(super) const BLOCK: usize = 256;
/// Rows of a tile of candidates (the block × tile scores: 2 MiB).
pub(super) const TILE: usize = 2048;

/// A neighbour kept in a row's top-k heap: cosine and row.
#[derive(PartialEq)]
pub(super) struct Scored(pub f32, pub usize);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    /// Reversed: the heap's top is the weakest kept neighbour.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// Top-`k` neighbours (cosine ≥ `min_cosine`) of every valid row, as unique
/// pairs sorted by (a, b). `vectors` is row-major `n × dim`, L2-normalised.
pub fn exact_top_k(
    vectors: &[f32],
    dim: usize,
    valid: &[bool],
    k: usize,
    min_cosine: f32,
    threads: usize,
) -> Vec<Candidate> {
    let n = valid.len();
    if k == 0 || n < 2 {
        return Vec::new();
    }
    let k = k.min(n - 1);
    let pairs = in_parallel(n, threads, |rows| {
        neighbours(vectors, dim, valid, rows, k, min_cosine)
    });
    unique_pairs(pairs)
}

fn neighbours(
    vectors: &[f32],
    dim: usize,
    valid: &[bool],
    rows: std::ops::Range<usize>,
    k: usize,
    min: f32,
) -> Vec<Candidate> {
    let n = valid.len();
    let all = ArrayView2::from_shape((n, dim), vectors).expect("vectors are n × dim");
    let mut out = Vec::new();
    for block in ranges(rows, BLOCK) {
        let queries = all.slice(s![block.clone(), ..]);
        let mut heaps: Vec<BinaryHeap<Scored>> = block
            .clone()
            .map(|_| BinaryHeap::with_capacity(k + 1))
            .collect();
        for tile in ranges(0..n, TILE) {
            let scores = queries.dot(&all.slice(s![tile.clone(), ..]).t());
            for (slot, i) in block.clone().enumerate().filter(|&(_, i)| valid[i]) {
                let heap = &mut heaps[slot];
                for (j, &cosine) in tile.clone().zip(scores.row(slot)) {
                    if cosine >= min && j != i && valid[j] {
                        offer(heap, k, cosine, j);
                    }
                }
            }
        }
        for (slot, heap) in heaps.into_iter().enumerate() {
            out.extend(pairs_of(block.start + slot, heap));
        }
    }
    out
}

/// Keeps neighbour `j` in a top-`k` heap if the heap has room or it beats
/// the weakest kept (higher cosine; equal cosine: lower row, whatever the
/// order rows are offered in). The caller checks the minimum cosine first:
/// the hot loops reject most scores on it.
pub(super) fn offer(heap: &mut BinaryHeap<Scored>, k: usize, cosine: f32, j: usize) {
    if heap.len() < k
        || heap
            .peek()
            .is_some_and(|weakest| Scored(cosine, j) < *weakest)
    {
        heap.push(Scored(cosine, j));
        if heap.len() > k {
            heap.pop();
        }
    }
}

/// Row `i`'s kept neighbours as pairs (`a < b`).
pub(super) fn pairs_of(i: usize, heap: BinaryHeap<Scored>) -> impl Iterator<Item = Candidate> {
    heap.into_iter().map(move |Scored(cosine, j)| Candidate {
        a: i.min(j),
        b: i.max(j),
        cosine,
    })
}

/// `range` cut into consecutive pieces of at most `size`.
pub(super) fn ranges(
    range: std::ops::Range<usize>,
    size: usize,
) -> impl Iterator<Item = std::ops::Range<usize>> {
    let end = range.end;
    range.step_by(size).map(move |s| s..(s + size).min(end))
}

/// Runs `work` over `0..n` in contiguous ranges (four per thread, for
/// balance) on a rayon pool of `threads` threads; concatenates the results
/// in order.
pub(crate) fn in_parallel<T, F>(n: usize, threads: usize, work: F) -> Vec<T>
where
    T: Send,
    F: Fn(std::ops::Range<usize>) -> Vec<T> + Sync,
{
    use rayon::prelude::*;
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads * 4).max(1);
    let ranges: Vec<_> = (0..n)
        .step_by(chunk)
        .map(|start| start..(start + chunk).min(n))
        .collect();
    let run = || ranges.into_par_iter().map(&work).collect::<Vec<Vec<T>>>();
    let parts = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run),
        // No thread could be started for a pool of its own: rayon's global pool.
        Err(_) => run(),
    };
    parts.into_iter().flatten().collect()
}

/// The valid rows and `k` clamped to their number less one; `None` when
/// there is nothing to search (`k` = 0 or fewer than two valid rows).
pub(super) fn searchable(valid: &[bool], k: usize) -> Option<(Vec<usize>, usize)> {
    let rows: Vec<usize> = (0..valid.len()).filter(|&i| valid[i]).collect();
    (k > 0 && rows.len() >= 2).then(|| {
        let k = k.min(rows.len() - 1);
        (rows, k)
    })
}

/// Sorts pairs by (a, b) and keeps one of each (both rows may have found the other).
pub(super) fn unique_pairs(mut pairs: Vec<Candidate>) -> Vec<Candidate> {
    pairs.sort_by_key(|x| (x.a, x.b));
    pairs.dedup_by(|x, y| x.a == y.a && x.b == y.b);
    pairs
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn dot(x: &[f32], y: &[f32]) -> f32 {
        x.iter().zip(y).map(|(a, b)| a * b).sum()
    }

    /// At least `share` of the `exact` pairs are in `found`.
    pub(in crate::dedupe) fn assert_recall_at_least(
        found: &[Candidate],
        exact: &[Candidate],
        share: f64,
    ) {
        let exact: std::collections::HashSet<(usize, usize)> =
            exact.iter().map(|c| (c.a, c.b)).collect();
        let kept = found.iter().filter(|c| exact.contains(&(c.a, c.b))).count();
        assert!(
            kept as f64 >= share * exact.len() as f64,
            "recall {kept}/{}",
            exact.len()
        );
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    #[test]
    fn finds_the_nearest_rows_above_the_threshold() {
        let rows = [
            unit(&[1.0, 0.0]),
            unit(&[0.9, 0.1]),
            unit(&[0.0, 1.0]),
            unit(&[0.1, 0.9]),
            unit(&[1.0, 1.0]),
        ];
        let vectors: Vec<f32> = rows.concat();
        let valid = [true, true, true, true, false];
        let pairs = exact_top_k(&vectors, 2, &valid, 1, 0.5, 2);
        let found: Vec<(usize, usize)> = pairs.iter().map(|c| (c.a, c.b)).collect();
        assert_eq!(found, [(0, 1), (2, 3)], "the invalid row takes no part");
        assert!(pairs[0].cosine > 0.99);
        assert!(exact_top_k(&vectors, 2, &valid, 1, 0.9999, 1).is_empty());
    }

    /// Across block and tile edges, the matrix-product search keeps what a
    /// row-by-row scan with the scalar dot product keeps.
    #[test]
    fn blocked_products_agree_with_a_plain_scan() {
        let (n, dim, k) = (2 * TILE + BLOCK + 7, 8, 3);
        let vectors: Vec<f32> = (0..n)
            .flat_map(|i| {
                unit(
                    &(0..dim)
                        .map(|d| ((i * 31 + d * 17) % 97) as f32 - 48.0)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let valid: Vec<bool> = (0..n).map(|i| i % 13 != 5).collect();
        let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
        let mut expected: Vec<(usize, usize)> = Vec::new();
        for i in (0..n).filter(|&i| valid[i]) {
            let mut scores: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i && valid[j])
                .map(|j| (dot(row(i), row(j)), j))
                .filter(|&(c, _)| c >= 0.2)
                .collect();
            scores.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            expected.extend(scores.iter().take(k).map(|&(_, j)| (i.min(j), i.max(j))));
        }
        expected.sort();
        expected.dedup();
        let found = exact_top_k(&vectors, dim, &valid, k, 0.2, 2);
        let found: Vec<(usize, usize)> = found.iter().map(|c| (c.a, c.b)).collect();
        let (expected, found): (std::collections::HashSet<_>, std::collections::HashSet<_>) =
            (expected.into_iter().collect(), found.into_iter().collect());
        // Rounding (product vs scalar sums) may reorder near-ties at the k-th
        // place on some CPU: allow a handful (0 differ on an AVX2 EPYC).
        let differ = expected.symmetric_difference(&found).count();
        assert!(
            differ <= n / 100,
            "{differ} pairs differ of {}",
            expected.len()
        );
        assert!(
            expected.len() > n,
            "the data has candidates: {}",
            expected.len()
        );
    }

    #[test]
    fn brute_force_agrees_across_thread_counts() {
        let n = 300;
        let vectors: Vec<f32> = (0..n)
            .flat_map(|i| unit(&[(i as f32).sin(), (i as f32 * 0.7).cos(), 0.3]))
            .collect();
        let valid = vec![true; n];
        let one = exact_top_k(&vectors, 3, &valid, 3, 0.0, 1);
        let three = exact_top_k(&vectors, 3, &valid, 3, 0.0, 3);
        assert_eq!(one, three);
    }
}
