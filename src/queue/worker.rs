//! The worker side of the scheduler: admitting pairs, cutting batches,
//! running them on a worker's session, and answering the calls.

use std::iter::Peekable;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::MutexGuard;
use std::time::Instant;

use super::reply::ReplyTo;
use super::state::{State, Taken};
use super::{Backend, Shared};
use crate::session::PaddedBatch;
use crate::tokenize::EncodedPair;
use crate::{Error, Result};

impl Shared {
    /// The queue's state. The backend runs outside the lock; what runs under
    /// it only panics on a broken invariant of [`State`], which a poisoned
    /// lock cannot make worse, so its state is used as it is.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a call's pairs, waiting for room whenever the queue is full.
    pub(super) async fn submit(
        &self,
        id: u64,
        reply: &ReplyTo,
        pairs: Vec<(usize, EncodedPair)>,
    ) -> Result<()> {
        let mut queueing = Queueing {
            pairs: pairs.into_iter().peekable(),
            first: true,
            waited: false,
        };
        loop {
            let room = self.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            let queued = self.push_admitted(id, reply, &mut queueing);
            self.work.notify_all();
            if queued? {
                return Ok(());
            }
            room.await;
        }
    }

    /// Queues the pairs the queue admits now; whether all are queued.
    fn push_admitted(&self, id: u64, reply: &ReplyTo, queueing: &mut Queueing) -> Result<bool> {
        let (limits, batches) = (&self.config.queue, &self.config.batches);
        let mut state = self.lock();
        while let Some((_, pair)) = queueing.pairs.peek() {
            if !state.admits(id, pair.len(), limits, batches) {
                if state.shutdown {
                    return Err(Error::Scheduler("the model is shutting down".into()));
                }
                if !std::mem::replace(&mut queueing.waited, true) {
                    self.stats.record_admission_wait();
                }
                return Ok(false);
            }
            let pair = queueing.pairs.next().expect("peeked");
            state.push(id, reply, pair, std::mem::take(&mut queueing.first));
            queueing.waited = false;
            self.stats.set_queue_depth(state.pairs());
        }
        Ok(true)
    }

    /// A worker's loop: take a batch, run it, answer its calls. A batch of
    /// several calls that fails is run again call by call, so that one
    /// call's bad pair never fails another call.
    pub(super) fn work(&self, mut backend: impl Backend) {
        while let Some(batch) = self.next_batch() {
            let result = self.run_caught(&mut backend, &batch);
            if result.is_err() && batch.parts.len() > 1 {
                for alone in batch.split() {
                    let result = self.run_caught(&mut backend, &alone);
                    answer(alone, result, self.config.width);
                }
            } else {
                answer(batch, result, self.config.width);
            }
        }
    }

    /// [`Shared::run`], with a panic turned into an error.
    fn run_caught(&self, backend: &mut impl Backend, batch: &Taken) -> Result<Vec<f32>> {
        catch_unwind(AssertUnwindSafe(|| self.run(backend, batch)))
            .unwrap_or_else(|panic| Err(Error::Scheduler(panic_message(&*panic))))
    }

    /// Waits for pairs, and up to `max_wait` for a full batch; `None` at shutdown.
    fn next_batch(&self) -> Option<Taken> {
        let (batches, max_wait) = (&self.config.batches, self.config.queue.max_wait);
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return None;
            }
            let now = Instant::now();
            if state.pairs() > 0 {
                let waited = state.oldest_wait(now);
                if waited >= max_wait || state.fills_a_batch(batches, &self.config.queue) {
                    let taken = state.take(batches, now);
                    self.stats.set_queue_depth(state.pairs());
                    drop(state);
                    self.room.notify_waiters();
                    return taken;
                }
                state = self
                    .work
                    .wait_timeout(state, max_wait - waited)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            } else {
                state = self.work.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Pads and runs one batch; returns its rows' values, in batch order.
    fn run(&self, backend: &mut impl Backend, batch: &Taken) -> Result<Vec<f32>> {
        let members: Vec<&EncodedPair> = batch.pairs.iter().collect();
        let padded = PaddedBatch::new(&members, batch.padded_length, self.config.pad_id);
        let started = Instant::now();
        let output = backend.run(&padded)?;
        let lengths: Vec<usize> = members.iter().map(|p| p.len()).collect();
        let tokens = lengths.iter().sum();
        self.stats
            .record_batch(tokens, padded.rows * padded.cols, started.elapsed());
        self.stats
            .record_queued(batch.waited, batch.parts.len() > 1);
        (self.config.rows)(output, &lengths)
    }
}

/// A call's pairs on their way into the queue.
struct Queueing {
    pairs: Peekable<std::vec::IntoIter<(usize, EncodedPair)>>,
    /// Whether no pair is queued yet (the first puts the call at the head).
    first: bool,
    /// Whether the next pair's wait for room is already counted.
    waited: bool,
}

/// Gives each call its rows of a batch. On failure the first call gets the
/// error itself, the others an error naming it. A call that ended already
/// ignores them.
fn answer(batch: Taken, result: Result<Vec<f32>>, width: usize) {
    match result {
        Ok(values) => {
            let mut start = 0;
            for part in batch.parts {
                let end = start + part.rows.len();
                let values = values
                    .get(start * width..end * width)
                    .ok_or_else(|| Error::Scheduler("a batch's output has too few rows".into()));
                start = end;
                part.reply.deliver(&part.rows, values);
            }
        }
        Err(error) => {
            let message = error.to_string();
            let mut first = Some(error);
            for part in batch.parts {
                let error = first.take().unwrap_or_else(|| {
                    Error::Scheduler(format!(
                        "a batch shared with another call failed: {message}"
                    ))
                });
                part.reply.deliver(&part.rows, Err(error));
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("a worker panicked running a batch: {text}")
}
