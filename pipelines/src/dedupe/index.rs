//! What the candidate search runs over: the vectors reordered list by list
//! (the lists of an IVF index, or one list for the exact search), each row
//! with the lists it searches. The dedupe job searches it in this process;
//! on a cluster it is written to a file ([`super::index_file`]) that every
//! executor searches a range of rows of.

use std::collections::BinaryHeap;

use ndarray::{ArrayView2, Axis, s};

use super::candidates::{BLOCK, Candidate, Scored, TILE, offer, pairs_of, ranges};
use super::ivf::IvfShape;

/// Rows reordered list by list, what each row searches, and the vectors in
/// that order.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchIndex {
    /// `source[p]`: the original row at packed position `p` (searchable rows
    /// list by list, then the others).
    source: Vec<usize>,
    /// Packed positions of list `l`: `starts[l]..starts[l + 1]`.
    starts: Vec<usize>,
    /// The lists searched by the row at packed position `p`:
    /// `probes[p * width..(p + 1) * width]`, nearest first.
    probes: Vec<u32>,
    width: usize,
    /// The vectors in packed order, `dim` wide.
    packed: Vec<f32>,
    dim: usize,
}

impl SearchIndex {
    /// `vectors` (row-major, `dim` wide) reordered by lists: `rows` are the
    /// searchable rows, `nearest[i * probes..]` the lists of `rows[i]`,
    /// nearest first; the other rows of `valid` go last, searched by none.
    pub fn new(
        mut vectors: Vec<f32>,
        dim: usize,
        valid: &[bool],
        rows: &[usize],
        nearest: &[u32],
        shape: IvfShape,
    ) -> Self {
        let width = shape.probes;
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| (nearest[i * width], rows[i]));
        let probes: Vec<u32> = order
            .iter()
            .flat_map(|&i| nearest[i * width..(i + 1) * width].iter().copied())
            .collect();
        let mut source: Vec<usize> = order.iter().map(|&i| rows[i]).collect();
        source.extend((0..valid.len()).filter(|&r| !valid[r]));
        permute_rows(&mut vectors, dim, &source);
        let starts = list_starts(&probes, width, shape.lists);
        Self {
            source,
            starts,
            probes,
            width,
            packed: vectors,
            dim,
        }
    }

    /// One list of every row, which every row searches: the exact search.
    pub fn exact(vectors: Vec<f32>, dim: usize) -> Self {
        let n = vectors.len() / dim.max(1);
        let rows: Vec<usize> = (0..n).collect();
        let shape = IvfShape {
            lists: 1,
            probes: 1,
        };
        Self::new(vectors, dim, &vec![true; n], &rows, &vec![0; n], shape)
    }

    /// An index from its parts as [`index_file`](super::index_file) stores
    /// them: every row searchable, rows list by list.
    pub fn from_parts(
        source: Vec<usize>,
        probes: Vec<u32>,
        width: usize,
        lists: usize,
        packed: Vec<f32>,
        dim: usize,
    ) -> Result<Self, String> {
        let rows = source.len();
        if width == 0 || probes.len() != rows * width || packed.len() != rows * dim {
            return Err(format!(
                "{rows} rows with {} probes ({width} each) and {} vector values ({dim} each)",
                probes.len(),
                packed.len()
            ));
        }
        if let Some(&list) = probes.iter().find(|&&l| l as usize >= lists) {
            return Err(format!("list {list} of {lists}"));
        }
        let own = |p: usize| probes[p * width];
        if (1..rows).any(|p| own(p) < own(p - 1)) {
            return Err("rows are not grouped list by list".into());
        }
        let starts = list_starts(&probes, width, lists);
        Ok(Self {
            source,
            starts,
            probes,
            width,
            packed,
            dim,
        })
    }

    /// Rows searched (packed positions `0..searchable()`).
    pub fn searchable(&self) -> usize {
        self.probes.len() / self.width
    }

    /// Number of lists.
    pub fn lists(&self) -> usize {
        self.starts.len() - 1
    }

    /// Original row of each packed position.
    pub fn source(&self) -> &[usize] {
        &self.source
    }

    /// Lists each packed row searches, `width()` per row, nearest first.
    pub fn probes(&self) -> &[u32] {
        &self.probes
    }

    /// Lists searched per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The vectors in packed order.
    pub fn packed(&self) -> &[f32] {
        &self.packed
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Candidates of the rows at packed positions `range`, block by block:
    /// for each list probed by some row of a block, those rows against the
    /// list as one matrix product. Pairs name original rows.
    pub fn search(&self, range: std::ops::Range<usize>, k: usize, min: f32) -> Vec<Candidate> {
        let packed = ArrayView2::from_shape((self.source.len(), self.dim), &self.packed)
            .expect("vectors are rows × dim");
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

/// Where each list starts among rows grouped list by list (a row's own list
/// is its first probe).
fn list_starts(probes: &[u32], width: usize, lists: usize) -> Vec<usize> {
    let mut starts = vec![0; lists + 1];
    for own in probes.iter().step_by(width) {
        starts[*own as usize + 1] += 1;
    }
    for l in 0..lists {
        starts[l + 1] += starts[l];
    }
    starts
}

/// Reorders the rows of `data` (`dim` wide) in place so that row `p` becomes
/// the old row `source[p]`, following the permutation's cycles with one row
/// of scratch (no second copy of the vectors).
pub(super) fn permute_rows(data: &mut [f32], dim: usize, source: &[usize]) {
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
