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
        let packed = self.vectors();
        let mut out = Vec::new();
        for block in ranges(range, BLOCK) {
            let queries = packed.slice(s![block.clone(), ..]);
            let probes = &self.probes[block.start * self.width..block.end * self.width];
            let heaps = self.top_k(queries, probes, k, min, Some(block.start));
            for (slot, heap) in heaps.into_iter().enumerate() {
                out.extend(pairs_of(self.source[block.start + slot], heap));
            }
        }
        out
    }

    /// The `k` nearest rows (original rows, cosine ≥ `min`) of each of
    /// `queries` (row-major, `dim()` wide, L2-normalised), best first (equal
    /// cosines: lower row first). Query `i` searches the lists
    /// `probes[i * width..(i + 1) * width]`, `width = probes.len() / queries`.
    pub fn nearest(
        &self,
        queries: ArrayView2<f32>,
        probes: &[u32],
        k: usize,
        min: f32,
    ) -> Vec<Vec<(usize, f32)>> {
        let width = probes.len() / queries.nrows().max(1);
        let mut out = Vec::with_capacity(queries.nrows());
        for block in ranges(0..queries.nrows(), BLOCK) {
            let rows = queries.slice(s![block.clone(), ..]);
            let probes = &probes[block.start * width..block.end * width];
            for heap in self.top_k(rows, probes, k, min, None) {
                let best_first = heap.into_sorted_vec();
                out.push(best_first.into_iter().map(|s| (s.1, s.0)).collect());
            }
        }
        out
    }

    /// Top-`k` heaps of a block of `queries` against the lists in `probes`
    /// (the same number per query): for each list probed, the queries that
    /// probe it against the list as one matrix product. `own`: the block is
    /// the packed rows from this position on, none its own neighbour.
    fn top_k(
        &self,
        queries: ArrayView2<f32>,
        probes: &[u32],
        k: usize,
        min: f32,
        own: Option<usize>,
    ) -> Vec<BinaryHeap<Scored>> {
        let packed = self.vectors();
        let width = probes.len() / queries.nrows().max(1);
        let mut heaps: Vec<BinaryHeap<Scored>> = (0..queries.nrows())
            .map(|_| BinaryHeap::with_capacity(k + 1))
            .collect();
        for (members, slots) in self.probed(probes, width) {
            let rows = queries.select(Axis(0), &slots);
            for tile in ranges(members, TILE) {
                let scores = rows.dot(&packed.slice(s![tile.clone(), ..]).t());
                for (row, &slot) in slots.iter().enumerate() {
                    let heap = &mut heaps[slot];
                    let me = own.map(|start| start + slot);
                    for (q, &cosine) in tile.clone().zip(scores.row(row)) {
                        if cosine >= min && Some(q) != me {
                            offer(heap, k, cosine, self.source[q]);
                        }
                    }
                }
            }
        }
        heaps
    }

    /// The packed rows of the lists in `probes` (`width` per query), each
    /// with the queries that probe it; when every query probes every list,
    /// all searchable rows at once.
    fn probed(&self, probes: &[u32], width: usize) -> Vec<(std::ops::Range<usize>, Vec<usize>)> {
        let queries = probes.len() / width.max(1);
        if width == self.lists() {
            return vec![(0..self.searchable(), (0..queries).collect())];
        }
        lists_probed(probes, width)
            .into_iter()
            .map(|(list, slots)| (self.starts[list]..self.starts[list + 1], slots))
            .collect()
    }

    /// The packed vectors as a matrix.
    fn vectors(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.source.len(), self.dim), &self.packed)
            .expect("vectors are rows × dim")
    }

    /// The index with its original rows renamed: row `r` becomes `rows[r]`
    /// (an increasing renumbering keeps every order and tie).
    pub fn renumbered(mut self, rows: &[usize]) -> Self {
        for row in &mut self.source {
            *row = rows[*row];
        }
        self
    }
}

/// The lists in `probes` (`width` per query), each with the queries that
/// probe it.
fn lists_probed(probes: &[u32], width: usize) -> Vec<(usize, Vec<usize>)> {
    let mut wanted: Vec<(u32, usize)> = probes
        .iter()
        .enumerate()
        .map(|(i, &list)| (list, i / width))
        .collect();
    wanted.sort_unstable();
    wanted
        .chunk_by(|x, y| x.0 == y.0)
        .map(|run| (run[0].0 as usize, run.iter().map(|&(_, q)| q).collect()))
        .collect()
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
