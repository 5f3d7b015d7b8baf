//! Candidate pairs through an inverted-file (IVF) index built on the same
//! matrix products as the exact search.
//!
//! Spherical k-means, trained on a sample, cuts the vectors into `lists`; the
//! rows are then reordered so that each list is one contiguous slice. Every
//! row is searched against the lists of its `probes` nearest centroids only:
//! a block of rows against one list is one matrix product. The cost is about
//! `n · probes · n / lists` dot products instead of `n²`; recall against the
//! exact search is measured by `crossflow-dedupe-bench --search-recall-rows`.

use ndarray::{Array2, ArrayView2, Axis};

use super::candidates::{BLOCK, Candidate, in_parallel, ranges, searchable, unique_pairs};
use super::index::SearchIndex;

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
    vectors: Vec<f32>,
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
    let index = ivf_index(vectors, dim, valid, &rows, shape, threads);
    let pairs = in_parallel(rows.len(), threads, |range| {
        index.search(range, k, min_cosine)
    });
    unique_pairs(pairs)
}

/// The IVF index of the valid `rows` of `vectors` (row-major `n × dim`,
/// L2-normalised, reordered in place): centroids trained on a sample, each
/// row assigned to the lists of its nearest ones. `shape.lists` is clamped
/// to the rows.
pub fn ivf_index(
    vectors: Vec<f32>,
    dim: usize,
    valid: &[bool],
    rows: &[usize],
    shape: IvfShape,
    threads: usize,
) -> SearchIndex {
    let shape = IvfShape::for_rows(rows.len(), Some(shape.lists), shape.probes);
    let all = ArrayView2::from_shape((valid.len(), dim), &vectors).expect("vectors are n × dim");
    let centroids = train(all, rows, shape.lists, threads);
    let nearest = nearest_centroids(all, rows, &centroids, shape.probes, threads);
    SearchIndex::new(vectors, dim, valid, rows, &nearest, shape)
}

/// An index over every row of `vectors` (row-major `n × dim`, L2-normalised,
/// `n ≥ 1`, reordered in place) for outside queries: each row in the one
/// list of its nearest centroid, `lists` clamped to `1..=n`. Returns the
/// index and its centroids (`lists × dim`), whose nearest ones are the lists
/// a query searches ([`query_probes`]).
pub fn corpus_index(
    vectors: Vec<f32>,
    dim: usize,
    lists: usize,
    threads: usize,
) -> (SearchIndex, Array2<f32>) {
    let n = vectors.len() / dim.max(1);
    let rows: Vec<usize> = (0..n).collect();
    let shape = IvfShape::for_rows(n, Some(lists), 1);
    let all = ArrayView2::from_shape((n, dim), &vectors).expect("vectors are n × dim");
    let centroids = train(all, &rows, shape.lists, threads);
    let nearest = nearest_centroids(all, &rows, &centroids, 1, threads);
    let index = SearchIndex::new(vectors, dim, &vec![true; n], &rows, &nearest, shape);
    (index, centroids)
}

/// The `probes` lists each of `queries` (`q × dim`) searches: those of its
/// most similar `centroids`, most similar first, flattened.
pub fn query_probes(
    queries: ArrayView2<f32>,
    centroids: &Array2<f32>,
    probes: usize,
    threads: usize,
) -> Vec<u32> {
    let rows: Vec<usize> = (0..queries.nrows()).collect();
    let probes = probes.clamp(1, centroids.nrows());
    nearest_centroids(queries, &rows, centroids, probes, threads)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::candidates::exact_top_k;
    use crate::dedupe::candidates::tests::assert_recall_at_least;
    use crate::dedupe::index::permute_rows;

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

    /// Each query's `k` best rows by brute force: (row, cosine), best first.
    fn brute_force(
        vectors: &[f32],
        queries: &[f32],
        dim: usize,
        k: usize,
    ) -> Vec<Vec<(usize, f32)>> {
        queries
            .chunks(dim)
            .map(|q| {
                let mut all: Vec<(usize, f32)> = vectors
                    .chunks(dim)
                    .enumerate()
                    .map(|(r, v)| (r, v.iter().zip(q).map(|(a, b)| a * b).sum()))
                    .collect();
                all.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                all.truncate(k);
                all
            })
            .collect()
    }

    #[test]
    fn outside_queries_probing_every_list_get_the_exact_ranking() {
        let (n, dim, k) = (1500, 5, 7);
        let vectors = clustered(n);
        let queries: Vec<f32> = clustered(n + 40)[n * dim..].to_vec();
        let (index, centroids) = corpus_index(vectors.clone(), dim, 30, 2);
        assert_eq!(centroids.nrows(), 30);
        let view = ArrayView2::from_shape((40, dim), &queries).unwrap();
        let every: Vec<u32> = (0..40).flat_map(|_| 0..30).collect();
        let found = index.nearest(view, &every, k, f32::NEG_INFINITY);
        let truth = brute_force(&vectors, &queries, dim, k);
        for (got, want) in found.iter().zip(&truth) {
            let rows = |x: &[(usize, f32)]| x.iter().map(|r| r.0).collect::<Vec<_>>();
            assert_eq!(rows(got), rows(want));
            assert!(got.iter().zip(want).all(|(a, b)| (a.1 - b.1).abs() < 1e-5));
        }
        // Through the nearest centroids' lists: most of them, none invented.
        let probes = query_probes(view, &centroids, 4, 2);
        assert_eq!(probes.len(), 40 * 4);
        let approximate = index.nearest(view, &probes, k, f32::NEG_INFINITY);
        let kept: usize = approximate
            .iter()
            .zip(&truth)
            .map(|(got, want)| {
                got.iter()
                    .filter(|g| want.iter().any(|w| w.0 == g.0))
                    .count()
            })
            .sum();
        assert!(kept * 10 >= 40 * k * 9, "recall {kept}/{}", 40 * k);
        let renumbered = index.renumbered(&(0..n).map(|r| r * 2).collect::<Vec<_>>());
        let doubled = renumbered.nearest(view, &every, k, f32::NEG_INFINITY);
        assert_eq!(doubled[0][0].0, found[0][0].0 * 2);
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
