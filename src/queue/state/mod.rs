//! What waits in a model's queue, and how a worker's next micro-batch is cut
//! from it. Pure bookkeeping under the scheduler's lock: no threads here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reply::ReplyTo;
use super::{BatchLimits, QueueLimits};
use crate::tokenize::EncodedPair;

/// The pairs waiting, per call, in round-robin order: the call at the head
/// has the turn.
#[derive(Default)]
pub(super) struct State {
    calls: VecDeque<Call>,
    pairs: usize,
    tokens: usize,
    /// Tokens the head call has had in its present turn.
    turn: usize,
    pub shutdown: bool,
}

/// One caller's pairs not yet taken by a worker.
struct Call {
    id: u64,
    reply: ReplyTo,
    pending: VecDeque<Pending>,
    /// Tokens of `pending`.
    tokens: usize,
    /// New calls put ahead of this one since its last turn.
    jumped: usize,
}

/// How many new calls may go ahead of a waiting call between two of its
/// turns: new calls are served first, and no call waits for ever.
const MAX_JUMPS: usize = 64;

struct Pending {
    row: usize,
    pair: EncodedPair,
    queued: Instant,
}

/// A micro-batch taken from the queue: pairs in batch order, and which run
/// of them answers which call.
pub(super) struct Taken {
    pub pairs: Vec<EncodedPair>,
    pub padded_length: usize,
    pub parts: Vec<Part>,
    /// Time the pairs waited in the queue, summed.
    pub waited: Duration,
}

impl Taken {
    /// One batch per call, each with that call's pairs (their wait is
    /// already counted in this batch's).
    pub fn split(self) -> Vec<Taken> {
        let mut pairs = self.pairs.into_iter();
        self.parts
            .into_iter()
            .map(|part| {
                let own: Vec<EncodedPair> = pairs.by_ref().take(part.rows.len()).collect();
                Taken {
                    padded_length: own.iter().map(EncodedPair::len).max().unwrap_or(0),
                    pairs: own,
                    parts: vec![part],
                    waited: Duration::ZERO,
                }
            })
            .collect()
    }
}

/// Consecutive pairs of a [`Taken`] batch that belong to one call.
pub(super) struct Part {
    pub reply: ReplyTo,
    /// The caller's row of each pair.
    pub rows: Vec<usize>,
}

impl State {
    /// Pairs waiting.
    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Whether call `id` may add a pair of `tokens` tokens: when the queue has
    /// room for it, or while the call has less than one turn (`batches`'
    /// token budget) waiting, so that a small call never waits for room
    /// behind large ones and nobody starves. The queue then exceeds its
    /// bound by at most one token budget per caller.
    pub fn admits(
        &self,
        id: u64,
        tokens: usize,
        limits: &QueueLimits,
        batches: &BatchLimits,
    ) -> bool {
        let room = self.pairs < limits.max_pairs && self.tokens + tokens <= limits.max_tokens;
        let queued = self
            .calls
            .iter()
            .find(|c| c.id == id)
            .map_or(0, |c| c.tokens);
        room || queued == 0 || queued + tokens <= batches.max_batch_tokens
    }

    /// Adds one pair of call `id` (behind the call's other pairs). A call's
    /// `first` pair puts the call at the head of the line, so a small query
    /// does not wait a round of the large ones — ahead of every call that has
    /// been passed over fewer than [`MAX_JUMPS`] times since its last turn. A
    /// call that reappears after its waiting pairs ran out joins at the back.
    pub fn push(
        &mut self,
        id: u64,
        reply: &ReplyTo,
        (row, pair): (usize, EncodedPair),
        first: bool,
    ) {
        self.pairs += 1;
        self.tokens += pair.len();
        let pending = Pending {
            row,
            pair,
            queued: Instant::now(),
        };
        let tokens = pending.pair.len();
        if let Some(call) = self.calls.iter_mut().find(|c| c.id == id) {
            call.pending.push_back(pending);
            call.tokens += tokens;
            return;
        }
        let call = Call {
            id,
            reply: reply.clone(),
            pending: VecDeque::from([pending]),
            tokens,
            jumped: 0,
        };
        if !first {
            self.calls.push_back(call);
            return;
        }
        let at = self
            .calls
            .iter()
            .rposition(|c| c.jumped >= MAX_JUMPS)
            .map_or(0, |last| last + 1);
        if at == 0 {
            self.turn = 0;
        }
        self.calls.iter_mut().skip(at).for_each(|c| c.jumped += 1);
        self.calls.insert(at, call);
    }

    /// Drops every pair of call `id` still waiting (its caller gave up).
    pub fn cancel(&mut self, id: u64) {
        if let Some(at) = self.calls.iter().position(|c| c.id == id) {
            if at == 0 {
                self.turn = 0;
            }
            let call = self.calls.remove(at).expect("position is in range");
            self.pairs -= call.pending.len();
            self.tokens -= call.pending.iter().map(|p| p.pair.len()).sum::<usize>();
        }
    }

    /// Whether what waits fills a micro-batch, or is all the queue holds.
    pub fn fills_a_batch(&self, limits: &BatchLimits, bound: &QueueLimits) -> bool {
        self.pairs >= limits.max_batch_pairs.max(1)
            || self.tokens >= limits.max_batch_tokens
            || self.pairs >= bound.max_pairs
            || self.tokens >= bound.max_tokens
    }

    /// How long the oldest waiting pair has waited.
    pub fn oldest_wait(&self, now: Instant) -> Duration {
        self.calls
            .iter()
            .filter_map(|c| c.pending.front())
            .map(|p| now.saturating_duration_since(p.queued))
            .max()
            .unwrap_or_default()
    }

    /// Cuts the next micro-batch: pairs of the call at the head, in the order
    /// they were queued, while the batch stays within `limits` (padded to its
    /// longest pair); then the next call's, and so on. A call's turn lasts one
    /// batch budget of tokens (`max_batch_tokens`), over several batches when
    /// they are capped by pairs (one pair per batch): then, with pairs left
    /// over, it goes to the back. `None` when nothing waits.
    pub fn take(&mut self, limits: &BatchLimits, now: Instant) -> Option<Taken> {
        let mut batch = Taken {
            pairs: Vec::new(),
            padded_length: 0,
            parts: Vec::new(),
            waited: Duration::ZERO,
        };
        while let Some(mut call) = self.calls.pop_front() {
            let before = batch.pairs.len();
            let rows = self.take_from(&mut call, &mut batch, limits, now);
            self.turn += batch.pairs[before..]
                .iter()
                .map(EncodedPair::len)
                .sum::<usize>();
            let served = !rows.is_empty();
            if served {
                call.jumped = 0;
                batch.parts.push(Part {
                    reply: call.reply.clone(),
                    rows,
                });
            }
            let Some(next) = call.pending.front() else {
                self.turn = 0;
                continue;
            };
            if served && self.turn + next.pair.len() > limits.max_batch_tokens {
                self.turn = 0;
                self.calls.push_back(call);
            } else {
                self.calls.push_front(call);
            }
            break;
        }
        (!batch.pairs.is_empty()).then_some(batch)
    }

    /// Moves pairs of `call` into `batch` while they fit; returns their rows.
    fn take_from(
        &mut self,
        call: &mut Call,
        batch: &mut Taken,
        limits: &BatchLimits,
        now: Instant,
    ) -> Vec<usize> {
        let mut rows = Vec::new();
        while let Some(next) = call.pending.front() {
            let count = batch.pairs.len() + 1;
            let padded = batch.padded_length.max(next.pair.len());
            let fits =
                count <= limits.max_batch_pairs.max(1) && count * padded <= limits.max_batch_tokens;
            if !batch.pairs.is_empty() && !fits {
                break;
            }
            let next = call.pending.pop_front().expect("front exists");
            self.pairs -= 1;
            self.tokens -= next.pair.len();
            call.tokens -= next.pair.len();
            batch.padded_length = padded;
            batch.waited += now.saturating_duration_since(next.queued);
            rows.push(next.row);
            batch.pairs.push(next.pair);
        }
        rows
    }
}

#[cfg(test)]
mod tests;
