//! One scheduler per loaded model, after text-embeddings-inference
//! (`core/src/queue.rs`, `core/src/infer.rs`): a bounded queue of tokenized
//! pairs in front of worker threads that each own one ONNX Runtime session.
//!
//! Callers (SQL partitions, `score`, `enrich`, `dedupe`, `rerank`, the
//! bi-encoder) submit their pairs longest first and block until their rows
//! come back, in their order. A free worker cuts the next micro-batch from
//! what waits (see [`state::State::take`]): the head call's pairs up to the
//! token budget, then the next call's, so concurrent calls share batches. A
//! new call goes to the head of the line, and a call's turn lasts one token
//! budget, after which it goes to the back: a small call never waits behind
//! the whole of a large one. The queue is bounded in pairs and tokens:
//! a caller waits for room instead of growing memory (a call may always have
//! one turn's worth waiting, so a small call never waits for room). Inference runs only on
//! the workers' threads, never on a caller's (an async runtime's) thread.

mod state;

use std::cmp::Reverse;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batching::BatchLimits;
use crate::model::graph::Prepared;
use crate::options::{EngineOptions, queue_limits};
use crate::runtime::Device;
use crate::session::{OrtSession, Output, PaddedBatch};
use crate::stats::Stats;
use crate::tokenize::EncodedPair;
use crate::{Error, Result};
use state::{State, Taken};

/// Bounds of a model's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Pairs waiting at most.
    pub max_pairs: usize,
    /// Tokens (unpadded) waiting at most.
    pub max_tokens: usize,
    /// How long a free worker waits for a batch to fill before it runs what
    /// is there.
    pub max_wait: Duration,
}

impl QueueLimits {
    /// Defaults: eight micro-batches per worker, so that every worker finds a
    /// batch waiting when it is done with one. No wait on the CPU (a worker
    /// that waits is a core idle); 2 ms on a GPU, which gains more from
    /// full batches (not measured: no GPU was lent).
    pub fn for_workers(device: Device, batches: BatchLimits, workers: usize) -> Self {
        let depth = 8 * workers.max(1);
        Self {
            max_pairs: depth * batches.max_batch_pairs.max(1),
            max_tokens: depth * batches.max_batch_tokens.max(1),
            max_wait: match device {
                Device::Cpu => Duration::ZERO,
                Device::Cuda(_) => Duration::from_millis(2),
            },
        }
    }
}

/// Overrides of the default [`QueueLimits`] (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Pairs waiting at most.
    pub max_pairs: Option<usize>,
    /// Tokens waiting at most.
    pub max_tokens: Option<usize>,
    /// How long a free worker waits for a batch to fill.
    pub max_wait: Option<Duration>,
}

impl QueueOptions {
    /// The limits in force for `workers` sessions running `batches` on `device`.
    pub fn resolve(&self, device: Device, batches: BatchLimits, workers: usize) -> QueueLimits {
        let default = QueueLimits::for_workers(device, batches, workers);
        QueueLimits {
            max_pairs: self.max_pairs.unwrap_or(default.max_pairs).max(1),
            max_tokens: self.max_tokens.unwrap_or(default.max_tokens).max(1),
            max_wait: self.max_wait.unwrap_or(default.max_wait),
        }
    }
}

/// What a worker runs batches on: one session it owns.
pub(crate) trait Backend: Send + 'static {
    /// Runs one padded batch.
    fn run(&mut self, batch: &PaddedBatch) -> Result<Output>;
}

impl Backend for OrtSession {
    fn run(&mut self, batch: &PaddedBatch) -> Result<Output> {
        OrtSession::run(self, batch)
    }
}

/// Turns one batch's output into `width` floats per row, given the rows'
/// token lengths.
pub(crate) type Rows = dyn Fn(Output, &[usize]) -> Result<Vec<f32>> + Send + Sync;

/// How a scheduler cuts and pads batches and reads their output.
pub(crate) struct Config {
    /// Model name, for thread names and logs.
    pub name: String,
    pub batches: BatchLimits,
    pub queue: QueueLimits,
    pub pad_id: u32,
    /// Floats per row of the output.
    pub width: usize,
    pub rows: Box<Rows>,
}

/// A worker's answer to one call: its rows of one batch.
pub(crate) struct Answer {
    rows: Vec<usize>,
    values: Result<Vec<f32>>,
}

/// The queue and the workers of one model.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when pairs are queued (workers wait on it).
    work: Condvar,
    /// Signalled when pairs leave the queue (callers wait on it for room).
    room: Condvar,
    config: Config,
    stats: Arc<Stats>,
    next_call: AtomicU64,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("model", &self.shared.config.name)
            .field("workers", &self.workers.len())
            .field("queue", &self.shared.config.queue)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts one worker thread per backend.
    pub fn start<B: Backend>(backends: Vec<B>, config: Config, stats: Arc<Stats>) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            config,
            stats,
            next_call: AtomicU64::new(0),
        });
        let mut scheduler = Self {
            shared,
            workers: Vec::new(),
        };
        for (i, backend) in backends.into_iter().enumerate() {
            let shared = scheduler.shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("crossflow-{}-{i}", shared.config.name))
                .spawn(move || shared.work(backend))
                .map_err(|e| Error::Scheduler(format!("starting a worker thread: {e}")))?;
            scheduler.workers.push(thread);
        }
        Ok(scheduler)
    }

    /// The scheduler of a loaded graph, with the options' batch and queue
    /// limits (one pair per batch where the graph needs it); returns it with
    /// the batch limits in force. `width` floats per row come out of `rows`.
    pub fn for_graph(
        name: &str,
        prepared: Prepared,
        options: &EngineOptions,
        (pad_id, width): (u32, usize),
        rows: Box<Rows>,
    ) -> Result<(Self, BatchLimits)> {
        let mut batches = options.limits;
        if prepared.one_pair_per_batch {
            batches.max_batch_pairs = 1;
        }
        let sessions = prepared.model.into_sessions();
        let config = Config {
            name: name.to_string(),
            batches,
            queue: queue_limits(options, batches, sessions.len()),
            pad_id,
            width,
            rows,
        };
        Ok((Self::start(sessions, config, Arc::default())?, batches))
    }

    /// The counters its workers update.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Number of workers (sessions).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Runs `pairs`; returns `pairs.len() × width` floats in input order.
    /// Blocks until every row is back (and while the queue is full).
    pub fn run(&self, pairs: Vec<EncodedPair>) -> Result<Vec<f32>> {
        let width = self.shared.config.width;
        let count = pairs.len();
        let mut out = vec![0.0; count * width];
        if count == 0 {
            return Ok(out);
        }
        let mut ordered: Vec<(usize, EncodedPair)> = pairs.into_iter().enumerate().collect();
        ordered.sort_by_key(|(_, pair)| Reverse(pair.len()));
        let id = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        let (reply, answers) = mpsc::channel();
        let received = self.shared.submit(id, &reply, ordered).and_then(|()| {
            drop(reply);
            receive(&answers, &mut out, width)
        });
        if received.is_err() {
            let mut state = self.shared.lock();
            state.cancel(id);
            self.shared.stats.set_queue_depth(state.pairs());
        }
        received.map(|()| out)
    }
}

/// Copies answers into `out` until all its rows are there.
fn receive(answers: &mpsc::Receiver<Answer>, out: &mut [f32], width: usize) -> Result<()> {
    let mut filled = 0;
    while filled < out.len() / width.max(1) {
        let answer = answers.recv().map_err(|_| {
            Error::Scheduler("the model's workers stopped before answering every pair".into())
        })?;
        let values = answer.values?;
        if values.len() != answer.rows.len() * width {
            return Err(Error::Scheduler(format!(
                "a batch gave {} values for {} rows of {width}",
                values.len(),
                answer.rows.len()
            )));
        }
        for (&row, value) in answer.rows.iter().zip(values.chunks(width)) {
            out[row * width..(row + 1) * width].copy_from_slice(value);
        }
        filled += answer.rows.len();
    }
    Ok(())
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        self.shared.room.notify_all();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!(model = %self.shared.config.name, "a worker thread panicked");
            }
        }
    }
}

impl Shared {
    /// The queue's state. The backend runs outside the lock; what runs under
    /// it only panics on a broken invariant of [`State`], which a poisoned
    /// lock cannot make worse, so its state is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a call's pairs, waiting for room whenever the queue is full.
    fn submit(
        &self,
        id: u64,
        reply: &Sender<Answer>,
        pairs: Vec<(usize, EncodedPair)>,
    ) -> Result<()> {
        let limits = &self.config.queue;
        let mut state = self.lock();
        for (index, (row, pair)) in pairs.into_iter().enumerate() {
            if !state.admits(id, pair.len(), limits, &self.config.batches) {
                self.stats.record_admission_wait();
            }
            while !state.admits(id, pair.len(), limits, &self.config.batches) {
                if state.shutdown {
                    return Err(Error::Scheduler("the model is shutting down".into()));
                }
                self.work.notify_all();
                state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.push(id, reply, (row, pair), index == 0);
            self.stats.set_queue_depth(state.pairs());
        }
        drop(state);
        self.work.notify_all();
        Ok(())
    }

    /// A worker's loop: take a batch, run it, answer its calls. A batch of
    /// several calls that fails is run again call by call, so that one
    /// call's bad pair never fails another call.
    fn work(&self, mut backend: impl Backend) {
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
                    self.room.notify_all();
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

/// Sends each call its rows of a batch. On failure the first call gets the
/// error itself, the others an error naming it. A caller that gave up has
/// dropped its receiver: sending to it does nothing.
fn answer(batch: Taken, result: Result<Vec<f32>>, width: usize) {
    match result {
        Ok(values) => {
            let mut start = 0;
            for part in batch.parts {
                let end = start + part.rows.len();
                let values = values
                    .get(start * width..end * width)
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| Error::Scheduler("a batch's output has too few rows".into()));
                start = end;
                let _ = part.reply.send(Answer {
                    rows: part.rows,
                    values,
                });
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
                let _ = part.reply.send(Answer {
                    rows: part.rows,
                    values: Err(error),
                });
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

#[cfg(test)]
mod tests;
