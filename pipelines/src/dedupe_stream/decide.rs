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
    let mut scores: HashMap<(i64, i64), f32> = HashMap::new();
    let mut decisions = Vec::with_capacity(messages.len());
    let mut added = Vec::new();
    let mut scored = 0;
    while decisions.len() < messages.len() {
        let next = decisions.len();
        let wanted = wanted_pairs(window, messages, next, matching, &scores);
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
            let Some(decision) = decide_one(window, &messages[i], &keys[i], matching, &scores)
            else {
                break;
            };
            let m = &messages[i];
            window.prune(m.offset);
            if decision == Decision::Representative {
                let new = window.insert(m.offset, m.timestamp_ms, m.id.clone(), m.text, m.vector);
                added.extend(new.cloned());
            }
            decisions.push(decision);
        }
        assert!(decisions.len() > next, "each round decides a message");
    }
    Ok(Decided {
        decisions,
        added,
        scored,
    })
}

/// The decision of `m` if every pair it needs is scored.
fn decide_one(
    window: &Window,
    m: &Incoming<'_>,
    key: &str,
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
    let candidates = top_k(
        window
            .in_window(m.offset, m.timestamp_ms)
            .map(|r| (r.offset, r.vector.as_slice())),
        m.vector,
        matching,
    );
    let mut verified = None;
    for offset in candidates {
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

/// The pairs (representative offset, message offset, texts) the undecided
/// messages from `next` may need and that are not scored yet, counting every
/// undecided earlier message of the batch as a representative.
fn wanted_pairs<'a>(
    window: &'a Window,
    messages: &[Incoming<'a>],
    next: usize,
    matching: Matching,
    scores: &HashMap<(i64, i64), f32>,
) -> Vec<(i64, i64, &'a str, &'a str)> {
    let mut wanted = Vec::new();
    let end = messages.len().min(next + LOOKAHEAD);
    for i in next..end {
        let m = &messages[i];
        let (first, oldest) = (
            window.first_offset(m.offset),
            window.oldest_allowed(m.offset, m.timestamp_ms),
        );
        let earlier = messages[next..i]
            .iter()
            .filter(|e| e.offset >= first && e.timestamp_ms.is_none_or(|t| t >= oldest));
        let held = window
            .in_window(m.offset, m.timestamp_ms)
            .map(|r| (r.offset, r.text.as_str(), r.vector.as_slice()));
        let pool: Vec<(i64, &str, &[f32])> = held
            .chain(earlier.map(|e| (e.offset, e.text, e.vector)))
            .collect();
        let texts: HashMap<i64, &str> = pool.iter().map(|p| (p.0, p.1)).collect();
        for offset in top_k(pool.iter().map(|p| (p.0, p.2)), m.vector, matching) {
            if !scores.contains_key(&(offset, m.offset)) {
                wanted.push((offset, m.offset, texts[&offset], m.text));
            }
        }
    }
    wanted
}

/// The offsets of the `top_k` vectors most similar to `query` with a
/// cosine of at least `min_cosine` (ties: the earlier first).
fn top_k<'v>(
    pool: impl Iterator<Item = (i64, &'v [f32])>,
    query: &[f32],
    matching: Matching,
) -> Vec<i64> {
    let mut near: Vec<(f32, i64)> = pool
        .map(|(offset, v)| (dot(v, query), offset))
        .filter(|(cosine, _)| *cosine >= matching.min_cosine)
        .collect();
    near.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    near.truncate(matching.top_k);
    near.into_iter().map(|(_, offset)| offset).collect()
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
