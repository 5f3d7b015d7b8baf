//! The scheduler with a backend that computes each row from its tokens, so
//! that every answer can be checked, and a gate that holds the worker while a
//! test sets the queue up.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// Marks a pair whose batch fails, and one whose batch panics.
const FAILS: u32 = 666;
const PANICS: u32 = 777;

/// Holds every batch until opened; counts the batches that reached it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(bool, usize)>, Condvar)>);

impl Gate {
    fn open(&self) {
        self.0.0.lock().unwrap().0 = true;
        self.0.1.notify_all();
    }

    fn pass(&self) {
        let mut gate = self.0.0.lock().unwrap();
        gate.1 += 1;
        while !gate.0 {
            gate = self.0.1.wait(gate).unwrap();
        }
    }

    fn arrived(&self) -> usize {
        self.0.0.lock().unwrap().1
    }
}

/// Row output: the sum of the pair's ids and its length.
struct Summing {
    gate: Gate,
    /// The first id of every pair of every batch run, batch by batch.
    log: Arc<Mutex<Vec<Vec<i64>>>>,
}

impl Backend for Summing {
    fn run(&mut self, batch: &PaddedBatch) -> Result<Output> {
        self.gate.pass();
        let rows: Vec<&[i64]> = batch.input_ids.chunks(batch.cols).collect();
        self.log
            .lock()
            .unwrap()
            .push(rows.iter().map(|r| r[0]).collect());
        if rows.iter().any(|r| r.contains(&i64::from(PANICS))) {
            panic!("pair {PANICS}");
        }
        if rows.iter().any(|r| r.contains(&i64::from(FAILS))) {
            return Err(Error::ort("running a batch", "injected failure"));
        }
        let mut data = Vec::new();
        for (row, mask) in rows.iter().zip(batch.attention_mask.chunks(batch.cols)) {
            data.push(row.iter().sum::<i64>() as f32);
            data.push(mask.iter().sum::<i64>() as f32);
        }
        Ok(Output {
            shape: vec![batch.rows, 2],
            data,
        })
    }
}

struct Setup {
    scheduler: Scheduler,
    stats: Arc<Stats>,
    gate: Gate,
    log: Arc<Mutex<Vec<Vec<i64>>>>,
}

fn start(workers: usize, batches: BatchLimits, queue: QueueLimits) -> Setup {
    let (gate, log, stats) = (Gate::default(), Arc::default(), Arc::new(Stats::default()));
    let backends = (0..workers)
        .map(|_| Summing {
            gate: gate.clone(),
            log: Arc::clone(&log),
        })
        .collect();
    let config = Config {
        name: "test".into(),
        batches,
        queue,
        pad_id: 0,
        width: 2,
        rows: Box::new(|output, _| Ok(output.data)),
    };
    let scheduler = Scheduler::start(backends, config, stats.clone()).unwrap();
    Setup {
        scheduler,
        stats,
        gate,
        log,
    }
}

fn batches(pairs: usize) -> BatchLimits {
    BatchLimits {
        max_batch_tokens: 10_000,
        max_batch_pairs: pairs,
    }
}

fn queue(pairs: usize) -> QueueLimits {
    QueueLimits {
        max_pairs: pairs,
        max_tokens: 100_000,
        max_wait: Duration::ZERO,
    }
}

/// A pair whose ids start with `first`, `len` tokens long.
fn pair(first: u32, len: usize) -> EncodedPair {
    let ids: Vec<u32> = std::iter::once(first)
        .chain((1..len as u32).map(|i| i + 1))
        .collect();
    EncodedPair {
        type_ids: vec![0; ids.len()],
        ids,
        truncated: false,
    }
}

fn expected(pairs: &[EncodedPair]) -> Vec<f32> {
    pairs
        .iter()
        .flat_map(|p| [p.ids.iter().map(|&i| i as f32).sum(), p.len() as f32])
        .collect()
}

/// Waits (up to a minute: a deadline, not a timing assertion) for `ready`;
/// opens the gate before failing, so that held callers end.
fn until(gate: &Gate, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if Instant::now() > deadline {
            gate.open();
            panic!("never happened: {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn concurrent_callers_get_their_own_rows_in_their_order() {
    let setup = start(
        3,
        BatchLimits {
            max_batch_tokens: 64,
            max_batch_pairs: 4,
        },
        queue(16),
    );
    setup.gate.open();
    std::thread::scope(|scope| {
        for caller in 0..8u32 {
            let scheduler = &setup.scheduler;
            scope.spawn(move || {
                for call in 0..20u32 {
                    let pairs: Vec<EncodedPair> = (0..(caller * 7 + call) % 23)
                        .map(|i| pair(1000 * caller + i, 1 + ((i * 13 + call) % 17) as usize))
                        .collect();
                    let got = scheduler.run(pairs.clone()).unwrap();
                    assert_eq!(got, expected(&pairs), "caller {caller}, call {call}");
                }
            });
        }
    });
}

#[test]
fn pairs_of_concurrent_calls_share_batches() {
    let setup = start(1, batches(8), queue(100));
    let scheduler = &setup.scheduler;
    std::thread::scope(|scope| {
        // The worker takes the first call's pair and waits at the gate...
        let first = scope.spawn(|| scheduler.run(vec![pair(1, 3)]));
        until(&setup.gate, "the worker holds a batch", || {
            setup.gate.arrived() == 1
        });
        // ...while two more calls queue two pairs each.
        let calls: Vec<_> = [10, 20]
            .map(|id| scope.spawn(move || scheduler.run(vec![pair(id, 4), pair(id + 1, 2)])))
            .into_iter()
            .collect();
        until(&setup.gate, "four pairs queued", || {
            setup.stats.snapshot().queue_depth == 4
        });
        setup.gate.open();
        for (call, id) in calls.into_iter().zip([10, 20]) {
            let got = call.join().unwrap().unwrap();
            assert_eq!(got, expected(&[pair(id, 4), pair(id + 1, 2)]));
        }
        first.join().unwrap().unwrap();
    });
    let log = setup.log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "batches: {log:?}");
    let mut second = log[1].clone();
    second.sort();
    assert_eq!(second, [10, 11, 20, 21]);
    assert_eq!(setup.stats.snapshot().merged_batches, 1);
}

#[test]
fn a_small_call_does_not_wait_behind_a_large_one() {
    let setup = start(1, batches(1), queue(100));
    let large: Vec<EncodedPair> = (0..40).map(|i| pair(100 + i, 5)).collect();
    std::thread::scope(|scope| {
        let large_call = scope.spawn(|| setup.scheduler.run(large.clone()));
        until(&setup.gate, "the large call queued", || {
            setup.stats.snapshot().queue_depth == 39
        });
        let small = scope.spawn(|| setup.scheduler.run(vec![pair(9, 5)]));
        until(&setup.gate, "the small call queued", || {
            setup.stats.snapshot().queue_depth == 40
        });
        setup.gate.open();
        assert_eq!(small.join().unwrap().unwrap(), expected(&[pair(9, 5)]));
        assert_eq!(large_call.join().unwrap().unwrap(), expected(&large));
    });
    let order: Vec<i64> = setup.log.lock().unwrap().iter().map(|b| b[0]).collect();
    let at = order.iter().position(|&first| first == 9).unwrap();
    // The held batch, then the small call (first in line as a new call; FIFO: 41st).
    assert_eq!(at, 1, "{order:?}");
}

#[test]
fn a_full_queue_makes_the_caller_wait_instead_of_growing() {
    // A call may keep one turn (8 tokens) waiting beyond the bound of 4 pairs.
    let limits = BatchLimits {
        max_batch_tokens: 8,
        max_batch_pairs: 2,
    };
    let setup = start(1, limits, queue(4));
    let pairs: Vec<EncodedPair> = (0..50).map(|i| pair(i, 1 + (i % 7) as usize)).collect();
    std::thread::scope(|scope| {
        let call = scope.spawn(|| setup.scheduler.run(pairs.clone()));
        until(&setup.gate, "the caller waits for room", || {
            setup.stats.snapshot().admission_waits > 0
        });
        assert!(setup.stats.snapshot().queue_depth <= 4 + 8);
        setup.gate.open();
        assert_eq!(call.join().unwrap().unwrap(), expected(&pairs));
    });
}

#[test]
fn a_bad_pair_fails_its_own_call_not_the_calls_it_shared_a_batch_with() {
    let setup = start(1, batches(8), queue(100));
    let scheduler = &setup.scheduler;
    std::thread::scope(|scope| {
        let first = scope.spawn(|| scheduler.run(vec![pair(1, 3)]));
        until(&setup.gate, "the worker holds a batch", || {
            setup.gate.arrived() == 1
        });
        let bad = scope.spawn(|| scheduler.run(vec![pair(FAILS, 4)]));
        until(&setup.gate, "the bad call queued", || {
            setup.stats.snapshot().queue_depth == 1
        });
        let good = scope.spawn(|| scheduler.run(vec![pair(20, 4), pair(21, 2)]));
        until(&setup.gate, "both calls queued", || {
            setup.stats.snapshot().queue_depth == 3
        });
        setup.gate.open();
        first.join().unwrap().unwrap();
        assert!(bad.join().unwrap().is_err());
        let got = good.join().unwrap().unwrap();
        assert_eq!(got, expected(&[pair(20, 4), pair(21, 2)]));
    });
    // The held batch, the shared batch that failed, then each call alone.
    let log = setup.log.lock().unwrap().clone();
    let fails = i64::from(FAILS);
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log[1].len(), 3, "the two calls shared a batch: {log:?}");
    assert!(log[2..].contains(&vec![fails]), "{log:?}");
}

#[test]
fn a_failed_or_panicking_batch_fails_its_calls_only_and_the_worker_goes_on() {
    let setup = start(1, batches(1), queue(100));
    setup.gate.open();
    let failed = setup.scheduler.run(vec![pair(1, 2), pair(FAILS, 3)]);
    assert!(failed.unwrap_err().to_string().contains("injected failure"));
    let panicked = setup.scheduler.run(vec![pair(PANICS, 2)]);
    let message = panicked.unwrap_err().to_string();
    assert!(
        message.contains("worker panicked") && message.contains("777"),
        "{message}"
    );
    let fine = vec![pair(5, 4), pair(6, 2)];
    assert_eq!(setup.scheduler.run(fine.clone()).unwrap(), expected(&fine));
    assert_eq!(
        setup.stats.snapshot().queue_depth,
        0,
        "the failed call's pairs left the queue"
    );
}

#[test]
fn no_pairs_give_no_rows_and_dropping_stops_the_workers() {
    let setup = start(2, batches(4), queue(8));
    assert!(setup.scheduler.run(Vec::new()).unwrap().is_empty());
    assert_eq!(setup.scheduler.workers(), 2);
    drop(setup.scheduler);
}

#[test]
fn a_small_call_gets_in_and_through_a_queue_full_of_large_ones() {
    let limits = BatchLimits {
        max_batch_tokens: 100,
        max_batch_pairs: 1,
    };
    let setup = start(1, limits, queue(4));
    let scheduler = &setup.scheduler;
    let large: Vec<Vec<EncodedPair>> = (0..3)
        .map(|c| (0..50).map(|i| pair(1000 * (c + 1) + i, 10)).collect())
        .collect();
    std::thread::scope(|scope| {
        let calls: Vec<_> = large
            .iter()
            .map(|pairs| scope.spawn(move || scheduler.run(pairs.clone())))
            .collect();
        // The queue's bound is 4 pairs; each large call keeps one turn (10
        // pairs) waiting and waits for room with the rest.
        until(&setup.gate, "the large calls wait for room", || {
            let stats = setup.stats.snapshot();
            setup.gate.arrived() == 1 && stats.queue_depth == 30 && stats.admission_waits >= 3
        });
        let small = scope.spawn(|| scheduler.run(vec![pair(7, 10), pair(8, 10), pair(9, 10)]));
        until(&setup.gate, "the small call is queued whole", || {
            setup.stats.snapshot().queue_depth == 33
        });
        setup.gate.open();
        assert_eq!(
            small.join().unwrap().unwrap(),
            expected(&[pair(7, 10), pair(8, 10), pair(9, 10)])
        );
        for (call, pairs) in calls.into_iter().zip(&large) {
            assert_eq!(call.join().unwrap().unwrap(), expected(pairs));
        }
    });
    let order: Vec<i64> = setup.log.lock().unwrap().iter().map(|b| b[0]).collect();
    let small_at: Vec<usize> = (7..=9)
        .map(|id| order.iter().position(|&first| first == id).unwrap())
        .collect();
    // The held batch, then the small call's three pairs.
    assert_eq!(small_at, [1, 2, 3], "{order:?}");
}

mod infer;
