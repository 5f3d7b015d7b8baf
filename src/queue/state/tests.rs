//! Turns, order, bounds and batch limits of the queue's bookkeeping.

use super::super::reply::Reply;

use super::*;

fn pair(len: usize) -> EncodedPair {
    EncodedPair {
        ids: vec![1; len],
        type_ids: vec![0; len],
        truncated: false,
    }
}

fn limits(tokens: usize, pairs: usize) -> BatchLimits {
    BatchLimits {
        max_batch_tokens: tokens,
        max_batch_pairs: pairs,
    }
}

/// Pushes `count` pairs of `len` tokens of call `id`, rows from 0.
fn call(state: &mut State, id: u64, count: usize, len: usize, first: bool) {
    let (reply, _answer) = Reply::new(64, 1);
    for row in 0..count {
        state.push(id, &reply, (row, pair(len)), first && row == 0);
    }
}

/// (call, rows) of each part of the next batch.
fn next(state: &mut State, limits: BatchLimits) -> Vec<(usize, Vec<usize>)> {
    let batch = state.take(&limits, Instant::now()).expect("a batch");
    // Calls are told apart by their rows' lengths in these tests.
    let mut at = 0;
    batch
        .parts
        .iter()
        .map(|part| {
            let len = batch.pairs[at].len();
            at += part.rows.len();
            (len, part.rows.clone())
        })
        .collect()
}

#[test]
fn new_calls_go_first_and_small_calls_share_a_batch() {
    let mut state = State::default();
    call(&mut state, 1, 5, 10, true);
    call(&mut state, 2, 1, 20, true);
    call(&mut state, 3, 1, 30, true);
    let limits = limits(1000, 4);
    // Call 3 arrived last and goes first; the batch goes on with 2, then 1.
    let first = next(&mut state, limits);
    assert_eq!(first, [(30, vec![0]), (20, vec![0]), (10, vec![0, 1])]);
    assert_eq!(next(&mut state, limits), [(10, vec![2, 3, 4])]);
    assert_eq!(state.pairs(), 0);
    assert!(state.take(&limits, Instant::now()).is_none());
}

#[test]
fn a_turn_lasts_one_token_budget_then_the_call_goes_to_the_back() {
    let mut state = State::default();
    call(&mut state, 1, 4, 10, true);
    call(&mut state, 2, 4, 11, false);
    // One pair per batch, 25 tokens a turn: two pairs each, in turn.
    let limits = limits(25, 1);
    let order: Vec<(usize, Vec<usize>)> = (0..8).flat_map(|_| next(&mut state, limits)).collect();
    let expected = [
        (10, 0),
        (10, 1),
        (11, 0),
        (11, 1),
        (10, 2),
        (10, 3),
        (11, 2),
        (11, 3),
    ];
    let expected: Vec<_> = expected.iter().map(|&(l, r)| (l, vec![r])).collect();
    assert_eq!(order, expected);
}

#[test]
fn new_calls_pass_a_waiting_call_a_bounded_number_of_times() {
    let mut state = State::default();
    call(&mut state, 1, 2, 10, true);
    let limits = limits(10, 1);
    // Call 1 is served once, then new calls keep arriving.
    assert_eq!(next(&mut state, limits), [(10, vec![0])]);
    let mut served_before_call_1 = 0;
    for id in 2.. {
        call(&mut state, id, 1, 20, true);
        let batch = next(&mut state, limits);
        if batch[0].0 == 10 {
            break;
        }
        served_before_call_1 += 1;
        assert!(served_before_call_1 <= MAX_JUMPS, "call 1 starves");
    }
    assert_eq!(served_before_call_1, MAX_JUMPS);
}

#[test]
fn batches_stay_within_the_token_budget_padded_to_their_longest_pair() {
    let (reply, _answer) = Reply::new(64, 1);
    let mut state = State::default();
    state.push(1, &reply, (0, pair(30)), true);
    state.push(1, &reply, (1, pair(20)), false);
    state.push(2, &reply, (0, pair(40)), false);
    let now = Instant::now();
    let first = state.take(&limits(64, 8), now).unwrap();
    assert_eq!((first.pairs.len(), first.padded_length), (2, 30));
    // A pair over the budget still forms a batch of its own.
    let second = state.take(&limits(32, 8), now).unwrap();
    assert_eq!((second.pairs.len(), second.padded_length), (1, 40));
}

#[test]
fn a_call_that_got_nothing_keeps_its_place() {
    let mut state = State::default();
    call(&mut state, 1, 1, 10, false);
    call(&mut state, 2, 1, 50, false);
    call(&mut state, 3, 1, 12, false);
    let limits = limits(40, 8);
    assert_eq!(
        next(&mut state, limits),
        [(10, vec![0])],
        "call 2's pair does not fit"
    );
    assert_eq!(
        next(&mut state, limits),
        [(50, vec![0])],
        "call 2 before call 3"
    );
    assert_eq!(next(&mut state, limits), [(12, vec![0])]);
}

#[test]
fn the_bound_admits_a_call_with_less_than_a_turn_waiting() {
    let (reply, _answer) = Reply::new(64, 1);
    let bound = QueueLimits {
        max_pairs: 2,
        max_tokens: 100,
        max_wait: Duration::ZERO,
    };
    let turn = limits(100, 1);
    let mut state = State::default();
    assert!(state.admits(1, 60, &bound, &turn));
    state.push(1, &reply, (0, pair(60)), true);
    assert!(
        !state.admits(1, 60, &bound, &turn),
        "over the bound and the turn"
    );
    assert!(
        state.admits(1, 40, &bound, &turn),
        "within one turn of its own"
    );
    assert!(
        state.admits(2, 60, &bound, &turn),
        "call 2 has nothing waiting"
    );
    state.push(2, &reply, (0, pair(60)), true);
    state.cancel(1);
    assert_eq!(state.pairs(), 1);
    assert!(state.admits(2, 40, &bound, &turn));
}
