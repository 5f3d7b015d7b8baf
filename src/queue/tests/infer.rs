//! The async entry point: a call that waits for room or rows leaves its
//! thread free, and a call dropped while it waits leaves nothing queued.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::{Setup, batches, expected, pair, queue, start, until};
use crate::queue::BatchLimits;
use crate::tokenize::EncodedPair;

fn poll_once<F: Future>(call: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    call.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn an_async_call_waits_for_room_and_rows_without_blocking_its_thread() {
    // Ten pairs of 3 tokens, a queue of two pairs and batches of 6 tokens
    // (what a call may always keep waiting): the call waits for room, then
    // for its rows.
    let limits = BatchLimits {
        max_batch_tokens: 6,
        max_batch_pairs: 2,
    };
    let setup = Arc::new(start(1, limits, queue(2)));
    let pairs: Vec<EncodedPair> = (0..10).map(|i| pair(i, 3)).collect();
    let (done, finished) = std::sync::mpsc::channel();
    let caller = Arc::clone(&setup);
    let call_pairs = pairs.clone();
    std::thread::spawn(move || {
        let mut call = std::pin::pin!(caller.scheduler.infer(call_pairs));
        let first = poll_once(call.as_mut()).is_pending();
        // The thread that polled the call opens the gate the worker waits at:
        // a call that blocked its thread would never get here.
        caller.gate.open();
        let _ = done.send((first, futures::executor::block_on(call)));
    });
    let (pending, rows) = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the call blocked the thread that polled it");
    assert!(pending, "nothing could be answered before the gate opened");
    assert_eq!(rows.unwrap(), expected(&pairs));
    assert!(
        setup.stats.snapshot().admission_waits > 0,
        "it waited for room"
    );
}

#[test]
fn a_dropped_async_call_withdraws_its_waiting_pairs() {
    let Setup {
        scheduler,
        stats,
        gate,
        ..
    } = start(1, batches(2), queue(100));
    let pairs: Vec<EncodedPair> = (0..10).map(|i| pair(i, 3)).collect();
    {
        let mut call = std::pin::pin!(scheduler.infer(pairs.clone()));
        assert!(poll_once(call.as_mut()).is_pending());
        until(&gate, "the worker holds the first batch", || {
            gate.arrived() == 1
        });
        assert_eq!(stats.snapshot().queue_depth, 8);
    }
    assert_eq!(stats.snapshot().queue_depth, 0, "the dropped call's pairs");
    gate.open();
    let again = futures::executor::block_on(scheduler.infer(pairs.clone()));
    assert_eq!(again.unwrap(), expected(&pairs));
}
