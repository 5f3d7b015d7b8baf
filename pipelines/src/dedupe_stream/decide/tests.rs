//! Decisions of small batches with hand-made vectors and a scorer that
//! matches texts by their first word.

use std::convert::Infallible;

use super::*;
use crate::dedupe_stream::window::Bounds;

const MATCHING: Matching = Matching {
    top_k: 10,
    min_cosine: 0.5,
    threshold: 0.75,
};

/// 1 when both texts start with the same word, else 0.
fn first_word(pairs: &[(&str, &str)]) -> Result<Vec<f32>, Infallible> {
    let word = |t: &str| t.split_whitespace().next().unwrap_or("").to_lowercase();
    Ok(pairs
        .iter()
        .map(|(a, b)| if word(a) == word(b) { 0.9 } else { 0.1 })
        .collect())
}

/// Messages at offsets 0.. with every vector the same (all candidates).
fn messages<'a>(texts: &[&'a str], vector: &'a [f32]) -> Vec<Incoming<'a>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| Incoming {
            offset: i as i64,
            timestamp_ms: Some(i as i64),
            id: format!("m{i}").into(),
            text,
            vector,
        })
        .collect()
}

fn unbounded() -> Window {
    Window::new(
        Bounds {
            messages: None,
            age_ms: None,
        },
        [],
        None,
    )
}

fn duplicate_of(decision: &Decision) -> Option<i64> {
    match decision {
        Decision::Duplicate { offset, .. } => Some(*offset),
        _ => None,
    }
}

#[test]
fn later_messages_match_the_earliest_verified_representative_of_the_same_batch() {
    let vector = [1.0, 0.0];
    let texts = [
        "cats sleep",
        "dogs bark",
        "cats nap",
        "dogs howl",
        "  CATS   sleep ",
    ];
    let batch = messages(&texts, &vector);
    let mut window = unbounded();
    let decisions = decide(&mut window, &batch, MATCHING, first_word)
        .unwrap()
        .decisions;
    let of: Vec<Option<i64>> = decisions.iter().map(duplicate_of).collect();
    assert_eq!(of, [None, None, Some(0), Some(1), Some(0)]);
    assert_eq!(
        decisions[4],
        Decision::Duplicate {
            offset: 0,
            id: "m0".into(),
            score: 1.0
        },
        "an exact normalised copy matches with score 1"
    );
    assert_eq!(window.len(), 2, "only representatives are held");
}

#[test]
fn decisions_do_not_depend_on_how_messages_are_batched() {
    let vector = [0.6, 0.8];
    let texts = [
        "a one", "b one", "a two", "c one", "b two", "", "c two", "d one", "a three",
    ];
    let all = messages(&texts, &vector);
    let mut together = unbounded();
    let expected = decide(&mut together, &all, MATCHING, first_word)
        .unwrap()
        .decisions;
    assert_eq!(expected[5], Decision::Empty);
    for size in 1..texts.len() {
        let mut window = unbounded();
        let mut decisions = Vec::new();
        for chunk in all.chunks(size) {
            decisions.extend(
                decide(&mut window, chunk, MATCHING, first_word)
                    .unwrap()
                    .decisions,
            );
        }
        assert_eq!(decisions, expected, "batches of {size}");
    }
}

#[test]
fn candidates_are_the_top_k_by_cosine_above_the_minimum() {
    let (near, far) = ([1.0, 0.0], [0.0, 1.0]);
    let mut window = unbounded();
    let texts = ["x near", "x far"];
    let batch = vec![
        Incoming {
            vector: &near,
            ..messages(&texts, &near)[0].clone()
        },
        Incoming {
            vector: &far,
            ..messages(&texts, &far)[1].clone()
        },
    ];
    let decided = decide(&mut window, &batch, MATCHING, first_word).unwrap();
    assert_eq!(
        decided.decisions,
        [Decision::Representative, Decision::Representative]
    );
    assert_eq!(decided.added.len(), 2);
    assert_eq!(
        decided.scored, 0,
        "cosine 0 is below --min-cosine: never scored"
    );
}

#[test]
fn a_paraphrase_of_a_representative_that_left_the_window_is_a_representative() {
    let vector = [1.0, 0.0];
    let texts = ["cats sleep", "dogs bark", "birds sing", "cats nap"];
    let batch = messages(&texts, &vector);
    let mut window = Window::new(
        Bounds {
            messages: Some(2),
            age_ms: None,
        },
        [],
        None,
    );
    let decisions = decide(&mut window, &batch, MATCHING, first_word)
        .unwrap()
        .decisions;
    assert_eq!(decisions[3], Decision::Representative);
}
