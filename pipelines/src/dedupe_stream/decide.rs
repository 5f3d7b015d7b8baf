//! Deciding the messages of one partition's micro-batch, in offset order:
//! each is compared with the representatives in its window (exact
//! normalised copies first, then bi-encoder candidates verified by the
//! cross-encoder) and is a duplicate of the earliest one it matches, or a
//! representative itself.
//!
//! Later messages of a batch may match earlier ones, so deciding is
//! sequential; scoring is not: the candidate pairs of the undecided messages
//! are scored together as if every earlier message of the batch were a
//! representative (a superset of what the decisions need), and a message is
//! decided once every pair it needs is scored.

use std::collections::HashMap;

use super::window::{Representative, Window};
use crate::dedupe::normalize::normalize;

/// A message to decide.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub id: serde_json::Value,
    pub text: &'a str,
    pub vector: &'a [f32],
}

/// What a message is.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not a duplicate: later messages are compared with it.
    Representative,
    /// A duplicate of the representative at `offset`: its id, and the score
    /// of the match (1 for an exact normalised copy).
    Duplicate {
        offset: i64,
        id: serde_json::Value,
        score: f32,
    },
    /// A text with nothing in it (empty after normalisation): neither.
    Empty,
}

/// How candidates are found and verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matching {
    pub top_k: usize,
    pub min_cosine: f32,
    pub threshold: f32,
}

/// Messages whose candidate pairs are scored ahead in one call.
const LOOKAHEAD: usize = 512;

/// What deciding a batch gave.
#[derive(Debug, Default)]
pub struct Decided {
    /// One per message.
    pub decisions: Vec<Decision>,
    /// The representatives added (to record; some may have left the window
    /// again by the end of the batch).
    pub added: Vec<Representative>,
    /// Pairs scored by the cross-encoder.
    pub scored: usize,
}

/// Decides `messages` (one partition, offsets ascending) against `window`,
/// adding the representatives to it. `score` gets (earlier text, later text)
/// pairs and returns their scores.
pub fn decide<E>(
    window: &mut Window,
    messages: &[Incoming<'_>],
    matching: Matching,
    mut score: impl FnMut(&[(&str, &str)]) -> Result<Vec<f32>, E>,
) -> Result<Decided, E> {
    let keys: Vec<String> = messages.iter().map(|m| normalize(m.text)).collect();
    let near = Near::new(window, messages, matching.min_cosine);
    let mut scores: HashMap<(i64, i64), f32> = HashMap::new();
    let mut decisions = Vec::with_capacity(messages.len());
    let mut added = Vec::new();
    let mut scored = 0;
    while decisions.len() < messages.len() {
        let next = decisions.len();
        let wanted = near.wanted_pairs(window, messages, next, matching, &scores);
        let wanted_count = wanted.len();
        if !wanted.is_empty() {
            let texts: Vec<(&str, &str)> = wanted.iter().map(|w| (w.2, w.3)).collect();
            let values = score(&texts)?;
            assert_eq!(values.len(), wanted.len(), "one score per pair");
            scored += wanted.len();
            for (w, s) in wanted.iter().zip(values) {
                scores.insert((w.0, w.1), s);
            }
        }
        while decisions.len() < messages.len() {
            let i = decisions.len();
            let candidates = near.candidates(window, messages, i, i, matching);
            let m = &messages[i];
            // Held already: recorded as a representative before a restart.
            let decision = match window.get(m.offset) {
                Some(_) => Some(Decision::Representative),
                None => decide_one(window, m, &keys[i], &candidates, matching, &scores),
            };
            let Some(decision) = decision else {
                break;
            };
            window.prune(m.offset);
            if decision == Decision::Representative {
                let new = window.insert(m.offset, m.timestamp_ms, m.id.clone(), m.text, m.vector);
                added.extend(new.cloned());
            }
            decisions.push(decision);
        }
        assert!(decisions.len() > next, "each round decides a message");
        tracing::trace!(
            decided = decisions.len() - next,
            pairs = wanted_count,
            "round"
        );
    }
    Ok(Decided {
        decisions,
        added,
        scored,
    })
}

/// The decision of `m`, given its `candidates` (offsets), if every pair it
/// needs is scored.
fn decide_one(
    window: &Window,
    m: &Incoming<'_>,
    key: &str,
    candidates: &[i64],
    matching: Matching,
    scores: &HashMap<(i64, i64), f32>,
) -> Option<Decision> {
    if key.is_empty() {
        return Some(Decision::Empty);
    }
    let duplicate = |offset: i64, score: f32| {
        let id = window.get(offset).expect("in the window").id.clone();
        Some(Decision::Duplicate { offset, id, score })
    };
    if let Some(copy) = window
        .in_window(m.offset, m.timestamp_ms)
        .find(|r| r.key == key)
    {
        return duplicate(copy.offset, 1.0);
    }
    let mut verified = None;
    for &offset in candidates {
        let score = *scores.get(&(offset, m.offset))?;
        if score >= matching.threshold && verified.is_none_or(|(o, _)| offset < o) {
            verified = Some((offset, score));
        }
    }
    match verified {
        Some((offset, score)) => duplicate(offset, score),
        None => Some(Decision::Representative),
    }
}

/// Each message's neighbours with a cosine of at least `--min-cosine`,
/// computed once per batch: among the representatives held when the batch
/// starts, and among the earlier messages of the batch.
struct Near {
    /// `held[i]`: (cosine, offset) of held representatives in the window of message `i`.
    held: Vec<Vec<(f32, i64)>>,
    /// `batch[i]`: (cosine, index) of the messages before `i`.
    batch: Vec<Vec<(f32, usize)>>,
}

impl Near {
    fn new(window: &Window, messages: &[Incoming<'_>], min_cosine: f32) -> Self {
        let close = |a: &[f32], b: &[f32]| Some(dot(a, b)).filter(|c| *c >= min_cosine);
        let held = messages
            .iter()
            .map(|m| {
                window
                    .in_window(m.offset, m.timestamp_ms)
                    .filter_map(|r| Some((close(&r.vector, m.vector)?, r.offset)))
                    .collect()
            })
            .collect();
        let batch = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (0..i)
                    .filter_map(|j| Some((close(messages[j].vector, m.vector)?, j)))
                    .collect()
            })
            .collect();
        Self { held, batch }
    }

    /// The offsets of message `i`'s top-k candidates: representatives in its
    /// window now, and (speculatively) the undecided messages of the batch
    /// from `undecided` on as if they were representatives (within the
    /// window's bounds).
    fn candidates(
        &self,
        window: &Window,
        messages: &[Incoming<'_>],
        i: usize,
        undecided: usize,
        matching: Matching,
    ) -> Vec<i64> {
        let m = &messages[i];
        let (first, oldest) = (
            window.first_offset(m.offset),
            window.oldest_allowed(m.offset, m.timestamp_ms),
        );
        let held = self.held[i]
            .iter()
            .filter(|(_, o)| window.holds_in_window(*o, m.offset, m.timestamp_ms));
        let batch = self.batch[i].iter().filter_map(|&(c, j)| {
            let e = &messages[j];
            let counts = if j < undecided {
                window.holds_in_window(e.offset, m.offset, m.timestamp_ms)
            } else {
                e.offset >= first && e.timestamp_ms.is_none_or(|t| t >= oldest)
            };
            counts.then_some((c, e.offset))
        });
        let mut near: Vec<(f32, i64)> = held.copied().chain(batch).collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        near.truncate(matching.top_k);
        near.into_iter().map(|(_, offset)| offset).collect()
    }

    /// The pairs (representative offset, message offset, texts) the undecided
    /// messages from `next` may need and that are not scored yet, counting
    /// every undecided earlier message of the batch as a representative.
    fn wanted_pairs<'a>(
        &self,
        window: &'a Window,
        messages: &[Incoming<'a>],
        next: usize,
        matching: Matching,
        scores: &HashMap<(i64, i64), f32>,
    ) -> Vec<(i64, i64, &'a str, &'a str)> {
        let by_offset: HashMap<i64, &'a str> = messages[next..]
            .iter()
            .map(|m| (m.offset, m.text))
            .collect();
        let mut wanted = Vec::new();
        for i in next..messages.len().min(next + LOOKAHEAD) {
            let m = &messages[i];
            if window.get(m.offset).is_some() {
                continue;
            }
            for offset in self.candidates(window, messages, i, next, matching) {
                if !scores.contains_key(&(offset, m.offset)) {
                    let text = match window.get(offset) {
                        Some(r) => r.text.as_str(),
                        None => by_offset[&offset],
                    };
                    wanted.push((offset, m.offset, text, m.text));
                }
            }
        }
        wanted
    }
}

/// The dot product, summed in a fixed order (eight lanes, then the lanes in
/// turn), so a pair's cosine is the same however its vectors are held.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for k in 0..8 {
            lanes[k] += ca[k] * cb[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests;
