//! Candidate pairs through an inverted-file (IVF) index built on the same
//! matrix products as the exact search.
//!
//! Spherical k-means, trained on a sample, cuts the vectors into `lists`; the
//! rows are then reordered so that each list is one contiguous slice. Every
//! row is searched against the lists of its `probes` nearest centroids only:
//! a block of rows against one list is one matrix product. The cost is about
//! `n · probes · n / lists` dot products instead of `n²`; recall against the
//! exact search is measured by `crossflow-dedupe-bench --search-recall-rows`.

use std::collections::BinaryHeap;

use ndarray::{Array2, ArrayView2, Axis, s};

use super::candidates::{
    BLOCK, Candidate, Scored, TILE, in_parallel, offer, pairs_of, ranges, searchable, unique_pairs,
};

/// Sampled rows per list that train the centroids.
const TRAIN_PER_LIST: usize = 64;
/// k-means iterations over the sample.
const ITERATIONS: usize = 10;

/// How many lists the index has and how many of them each row searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfShape {
    /// Lists (k-means centroids) the vectors are cut into.
    pub lists: usize,
    /// Lists each row is searched in: those of its nearest centroids.
    pub probes: usize,
}

impl IvfShape {
    /// The shape for `rows` vectors: `lists` (default 4·√rows) clamped to
    /// `1..=rows`, `probes` to `1..=lists`.
    pub fn for_rows(rows: usize, lists: Option<usize>, probes: usize) -> Self {
        let lists = lists.unwrap_or_else(|| (4.0 * (rows as f64).sqrt()).round() as usize);
        let lists = lists.clamp(1, rows.max(1));
        Self {
            lists,
            probes: probes.clamp(1, lists),
        }
    }
}

/// Top-`k` neighbours (cosine ≥ `min_cosine`) of every valid row, as unique
/// pairs sorted by (a, b); the contract of
/// [`super::candidates::exact_top_k`], approximately. Takes the vectors
/// (row-major `n × dim`, L2-normalised) to reorder them in place.
pub fn ivf_top_k(
    mut vectors: Vec<f32>,
    dim: usize,
    valid: &[bool],
    k: usize,
    min_cosine: f32,
    shape: IvfShape,
    threads: usize,
) -> Vec<Candidate> {
    let Some((rows, k)) = searchable(valid, k) else {
        return Vec::new();
    };
    let shape = IvfShape::for_rows(rows.len(), Some(shape.lists), shape.probes);
    let all = ArrayView2::from_shape((valid.len(), dim), &vectors).expect("vectors are n × dim");
    let centroids = train(all, &rows, shape.lists, threads);
    let nearest = nearest_centroids(all, &rows, &centroids, shape.probes, threads);
    let index = Index::new(valid, &rows, &nearest, shape);
    permute_rows(&mut vectors, dim, &index.source);
    let packed = ArrayView2::from_shape((valid.len(), dim), &vectors).expect("vectors are n × dim");
    let pairs = in_parallel(rows.len(), threads, |range| {
        index.search(packed, range, k, min_cosine)
    });
    unique_pairs(pairs)
}

/// Rows reordered list by list, and what each row searches.
struct Index {
    /// `source[p]`: the original row at packed position `p` (valid rows list
    /// by list, then the others).
    source: Vec<usize>,
    /// Packed positions of list `l`: `starts[l]..starts[l + 1]`.
    starts: Vec<usize>,
    /// The lists searched by the row at packed position `p`:
    /// `probes[p * width..(p + 1) * width]`, nearest first.
    probes: Vec<u32>,
    width: usize,
}

impl Index {
    /// `rows`: the valid rows; `nearest[i * probes..]`: the lists of
    /// `rows[i]`, nearest first.
    fn new(valid: &[bool], rows: &[usize], nearest: &[u32], shape: IvfShape) -> Self {
        let width = shape.probes;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| (nearest[i * width], rows[i]));
        let mut starts = vec![0; shape.lists + 1];
        for &i in &order {
            starts[nearest[i * width] as usize + 1] += 1;
        }
        for l in 0..shape.lists {
            starts[l + 1] += starts[l];
        }
        let probes = order
            .iter()
            .flat_map(|&i| nearest[i * width..(i + 1) * width].iter().copied())
            .collect();
        let mut source: Vec<usize> = order.iter().map(|&i| rows[i]).collect();
        source.extend((0..valid.len()).filter(|&r| !valid[r]));
        Self {
            source,
            starts,
            probes,
            width,
        }
    }

    /// Candidates of the rows at packed positions `range`, block by block:
    /// for each list probed by some row of a block, those rows against the
    /// list as one matrix product.
    fn search(
        &self,
        packed: ArrayView2<f32>,
        range: std::ops::Range<usize>,
        k: usize,
        min: f32,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        for block in ranges(range, BLOCK) {
            let mut heaps: Vec<BinaryHeap<Scored>> = block
                .clone()
                .map(|_| BinaryHeap::with_capacity(k + 1))
                .collect();
            for (list, positions) in self.block_lists(block.clone()) {
                let queries = packed.select(Axis(0), &positions);
                let members = self.starts[list]..self.starts[list + 1];
                for tile in ranges(members, TILE) {
                    let scores = queries.dot(&packed.slice(s![tile.clone(), ..]).t());
                    for (row, &p) in positions.iter().enumerate() {
                        let heap = &mut heaps[p - block.start];
                        for (q, &cosine) in tile.clone().zip(scores.row(row)) {
                            if cosine >= min && q != p {
                                offer(heap, k, cosine, self.source[q]);
                            }
                        }
                    }
                }
            }
            for (slot, heap) in heaps.into_iter().enumerate() {
                out.extend(pairs_of(self.source[block.start + slot], heap));
            }
        }
        out
    }

    /// The lists probed by the rows of `block`, each with the positions that probe it.
    fn block_lists(&self, block: std::ops::Range<usize>) -> Vec<(usize, Vec<usize>)> {
        let mut wanted: Vec<(u32, usize)> = block
            .flat_map(|p| {
                self.probes[p * self.width..(p + 1) * self.width]
                    .iter()
                    .map(move |&l| (l, p))
            })
            .collect();
        wanted.sort_unstable();
        wanted
            .chunk_by(|x, y| x.0 == y.0)
            .map(|run| (run[0].0 as usize, run.iter().map(|&(_, p)| p).collect()))
            .collect()
    }
}

/// Spherical k-means centroids (`lists × dim`, unit length) of a strided
/// sample of `rows`, started from evenly spaced sample rows (deterministic).
fn train(all: ArrayView2<f32>, rows: &[usize], lists: usize, threads: usize) -> Array2<f32> {
    let step = (rows.len() / (lists * TRAIN_PER_LIST)).max(1);
    let sample: Vec<usize> = rows.iter().copied().step_by(step).collect();
    let starts: Vec<usize> = (0..lists)
        .map(|l| sample[l * sample.len() / lists])
        .collect();
    let mut centroids = all.select(Axis(0), &starts);
    for _ in 0..ITERATIONS {
        let nearest = nearest_centroids(all, &sample, &centroids, 1, threads);
        let mut sums = Array2::<f32>::zeros(centroids.raw_dim());
        for (&row, &list) in sample.iter().zip(&nearest) {
            let mut sum = sums.row_mut(list as usize);
            sum += &all.row(row);
        }
        for (mut centroid, sum) in centroids.outer_iter_mut().zip(sums.outer_iter()) {
            let norm = sum.dot(&sum).sqrt();
            // An empty list keeps its centroid.
            if norm > 0.0 {
                centroid.assign(&(&sum / norm));
            }
        }
    }
    centroids
}

/// For each of `rows`, its `probes` most similar centroids, most similar
/// first (ties: lower list), flattened.
fn nearest_centroids(
    all: ArrayView2<f32>,
    rows: &[usize],
    centroids: &Array2<f32>,
    probes: usize,
    threads: usize,
) -> Vec<u32> {
    in_parallel(rows.len(), threads, |range| {
        let mut out = Vec::with_capacity(range.len() * probes);
        for block in ranges(range, BLOCK) {
            let queries = all.select(Axis(0), &rows[block]);
            let scores = queries.dot(&centroids.t());
            for row in scores.outer_iter() {
                // A NaN score (from a NaN input) ranks last, not first.
                let mut ranked: Vec<(f32, u32)> = row
                    .iter()
                    .enumerate()
                    .map(|(l, &c)| (if c.is_nan() { f32::NEG_INFINITY } else { c }, l as u32))
                    .collect();
                let best_first =
                    |x: &(f32, u32), y: &(f32, u32)| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1));
                if probes < ranked.len() {
                    ranked.select_nth_unstable_by(probes - 1, best_first);
                    ranked.truncate(probes);
                }
                ranked.sort_unstable_by(best_first);
                out.extend(ranked.iter().map(|&(_, l)| l));
            }
        }
        out
    })
}

/// Reorders the rows of `data` (`dim` wide) in place so that row `p` becomes
/// the old row `source[p]`, following the permutation's cycles with one row
/// of scratch (no second copy of the vectors).
fn permute_rows(data: &mut [f32], dim: usize, source: &[usize]) {
    let mut done = vec![false; source.len()];
    let mut scratch = vec![0.0f32; dim];
    for start in 0..source.len() {
        if done[start] || source[start] == start {
            continue;
        }
        scratch.copy_from_slice(&data[start * dim..(start + 1) * dim]);
        let mut p = start;
        loop {
            done[p] = true;
            let from = source[p];
            assert!(from == start || !done[from], "source is a permutation");
            if from == start {
                data[p * dim..(p + 1) * dim].copy_from_slice(&scratch);
                break;
            }
            data.copy_within(from * dim..(from + 1) * dim, p * dim);
            p = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::candidates::exact_top_k;
    use crate::dedupe::candidates::tests::assert_recall_at_least;

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    /// `n` unit vectors around 20 directions, every row's neighbours close.
    fn clustered(n: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                let c = (i % 20) as f32;
                let jitter = 0.02 * ((i * 7919) % 13) as f32;
                unit(&[
                    c.sin(),
                    c.cos(),
                    (c * 0.3).sin() + jitter,
                    (c * 1.7).cos(),
                    0.1,
                ])
            })
            .collect()
    }

    #[test]
    fn rows_are_permuted_in_place_along_cycles() {
        let mut data: Vec<f32> = (0..10).map(|x| x as f32).collect();
        permute_rows(&mut data, 2, &[3, 0, 2, 4, 1]);
        assert_eq!(data, [6.0, 7.0, 0.0, 1.0, 4.0, 5.0, 8.0, 9.0, 2.0, 3.0]);
    }

    #[test]
    fn tiny_and_degenerate_inputs() {
        let two = [unit(&[1.0, 0.0]), unit(&[0.9, 0.1])].concat();
        let shape = IvfShape {
            lists: 5,
            probes: 9,
        };
        let found = ivf_top_k(two.clone(), 2, &[true, true], 100, 0.5, shape, 2);
        assert_eq!(
            found.iter().map(|c| (c.a, c.b)).collect::<Vec<_>>(),
            [(0, 1)]
        );
        assert!(ivf_top_k(two.clone(), 2, &[true, true], 0, 0.5, shape, 2).is_empty());
        assert!(ivf_top_k(two.clone(), 2, &[false, true], 3, 0.5, shape, 2).is_empty());
        assert!(ivf_top_k(Vec::new(), 2, &[], 3, 0.5, shape, 2).is_empty());
        // Identical vectors leave lists empty; every copy is still found.
        let same: Vec<f32> = (0..6).flat_map(|_| unit(&[0.6, 0.8])).collect();
        let found = ivf_top_k(
            same,
            2,
            &[true; 6],
            5,
            0.5,
            IvfShape {
                lists: 3,
                probes: 1,
            },
            2,
        );
        assert_eq!(found.len(), 15, "all pairs of six copies");
    }

    #[test]
    fn probing_every_list_is_the_exact_search() {
        let n = 700;
        let vectors = clustered(n);
        let valid: Vec<bool> = (0..n).map(|i| i % 11 != 3).collect();
        let exact = exact_top_k(&vectors, 5, &valid, 4, 0.6, 2);
        let shape = IvfShape {
            lists: 9,
            probes: 9,
        };
        let ivf = ivf_top_k(vectors.clone(), 5, &valid, 4, 0.6, shape, 2);
        let pairs = |c: &[Candidate]| c.iter().map(|c| (c.a, c.b)).collect::<Vec<_>>();
        assert_eq!(pairs(&ivf), pairs(&exact));
        assert!(ivf.iter().all(|c| valid[c.a] && valid[c.b]));
        assert!(exact.len() > n, "the data has candidates: {}", exact.len());
    }

    #[test]
    fn few_probes_keep_most_neighbours_and_never_invent_one() {
        let n = 2000;
        let vectors = clustered(n);
        let valid = vec![true; n];
        let exact = exact_top_k(&vectors, 5, &valid, 5, 0.8, 2);
        let shape = IvfShape::for_rows(n, None, 4);
        assert_eq!(
            shape,
            IvfShape {
                lists: 179,
                probes: 4
            }
        );
        let ivf = ivf_top_k(vectors.clone(), 5, &valid, 5, 0.8, shape, 2);
        assert_recall_at_least(&ivf, &exact, 0.9);
        let dot = |i: usize, j: usize| -> f32 {
            (0..5)
                .map(|d| vectors[i * 5 + d] * vectors[j * 5 + d])
                .sum()
        };
        for c in &ivf {
            assert!(c.a < c.b && c.cosine >= 0.8);
            assert!(
                (c.cosine - dot(c.a, c.b)).abs() < 1e-5,
                "cosine of the original rows"
            );
        }
        let one_thread = ivf_top_k(vectors, 5, &valid, 5, 0.8, shape, 1);
        assert_eq!(ivf, one_thread, "threads do not change the result");
    }
}
