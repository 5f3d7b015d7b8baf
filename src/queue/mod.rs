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

mod limits;
mod reply;
mod state;
mod worker;

use std::cmp::Reverse;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::Notify;

pub use limits::{BatchLimits, QueueLimits, QueueOptions};

use crate::model::graph::Prepared;
use crate::options::EngineOptions;
use crate::session::{OrtSession, Output, PaddedBatch};
use crate::stats::Stats;
use crate::tokenize::EncodedPair;
use crate::{Error, Result};
use reply::Reply;
use state::State;

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

/// The queue and the workers of one model.
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when pairs are queued (workers wait on it).
    work: Condvar,
    /// Notified when pairs leave the queue (callers wait on it for room,
    /// without blocking a thread).
    room: Notify,
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
            room: Notify::new(),
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
    /// the batch limits in force. `width` floats per row come out of `rows`;
    /// its workers count into `stats`.
    pub fn for_graph(
        name: &str,
        prepared: Prepared,
        options: &EngineOptions,
        (pad_id, width): (u32, usize),
        rows: Box<Rows>,
        stats: Arc<Stats>,
    ) -> Result<(Self, BatchLimits)> {
        let mut batches = options.limits;
        if prepared.one_pair_per_batch {
            batches.max_batch_pairs = 1;
        }
        let sessions = prepared.model.into_sessions();
        let config = Config {
            name: name.to_string(),
            batches,
            queue: options
                .queue
                .resolve(options.device, batches, sessions.len()),
            pad_id,
            width,
            rows,
        };
        let scheduler = Self::start(sessions, config, stats)?;
        scheduler.shared.stats.set_sessions(scheduler.workers());
        Ok((scheduler, batches))
    }

    /// Number of workers (sessions).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Runs `pairs`; returns `pairs.len() × width` floats in input order.
    /// Blocks the calling thread until every row is back (and while the
    /// queue is full): [`Scheduler::infer`] for blocking callers.
    pub fn run(&self, pairs: Vec<EncodedPair>) -> Result<Vec<f32>> {
        futures::executor::block_on(self.infer(pairs))
    }

    /// Runs `pairs`; returns `pairs.len() × width` floats in input order.
    /// Waits for room in the queue and for the workers' rows without blocking
    /// the thread; dropping the future withdraws the pairs still waiting.
    pub async fn infer(&self, pairs: Vec<EncodedPair>) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let mut ordered: Vec<(usize, EncodedPair)> = pairs.into_iter().enumerate().collect();
        ordered.sort_by_key(|(_, pair)| Reverse(pair.len()));
        let id = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        let _withdraw = Withdraw {
            shared: &self.shared,
            id,
        };
        let (reply, answer) = Reply::new(ordered.len(), self.shared.config.width);
        self.shared.submit(id, &reply, ordered).await?;
        drop(reply);
        answer.await.map_err(|_| {
            Error::Scheduler("the model's workers stopped before answering every pair".into())
        })?
    }
}

/// Withdraws a call's pairs that still wait when the call ends (answered,
/// failed or dropped by its caller); nothing is left to withdraw from a call
/// whose rows all came back.
struct Withdraw<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let before = state.pairs();
        state.cancel(self.id);
        let freed = state.pairs() < before;
        self.shared.stats.set_queue_depth(state.pairs());
        drop(state);
        if freed {
            self.shared.room.notify_waiters();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        self.shared.room.notify_waiters();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                tracing::error!(model = %self.shared.config.name, "a worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests;
