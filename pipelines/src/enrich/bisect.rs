//! Narrowing a failed batch down to the items that make it fail.

use std::ops::Range;

/// Narrows a failed run of items down to the items that fail it: the caller
/// runs each range [`Bisection::next`] gives and hands the outcome to
/// [`Bisection::record`]. Where a run fails, its items are split in halves
/// and each half is run again, down to single items: every item gets its
/// result, or the error of the one-item run that failed, and one bad item
/// costs O(log n) extra runs instead of one per item.
///
/// A run must give one result per item (an invariant: violating it panics).
pub struct Bisection<U> {
    results: Vec<Option<Result<U, String>>>,
    /// Ranges still to run, the next on top: halves run left first.
    todo: Vec<Range<usize>>,
}

impl<U> Bisection<U> {
    /// A bisection of `items` items, starting with all of them.
    pub fn new(items: usize) -> Self {
        Self {
            results: (0..items).map(|_| None).collect(),
            todo: std::iter::once(0..items).collect(),
        }
    }

    /// The next range of items to run.
    pub fn next_range(&mut self) -> Option<Range<usize>> {
        self.todo.pop()
    }

    /// What running `range` gave.
    pub fn record<E: std::fmt::Display>(
        &mut self,
        range: Range<usize>,
        outcome: Result<Vec<U>, E>,
    ) {
        match outcome {
            Ok(out) => {
                assert_eq!(
                    out.len(),
                    range.len(),
                    "a batch of {} items gave {} results",
                    range.len(),
                    out.len()
                );
                for (slot, result) in self.results[range].iter_mut().zip(out) {
                    *slot = Some(Ok(result));
                }
            }
            Err(error) if range.len() <= 1 => {
                for slot in &mut self.results[range] {
                    *slot = Some(Err(error.to_string()));
                }
            }
            Err(_) => {
                let middle = range.start + range.len() / 2;
                self.todo.push(middle..range.end);
                self.todo.push(range.start..middle);
            }
        }
    }

    /// Every item's result, in item order.
    pub fn finish(self) -> Vec<Result<U, String>> {
        assert!(self.todo.is_empty(), "ranges left to run");
        self.results
            .into_iter()
            .map(|result| result.expect("every item is in one range that ran"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bisect<T, U>(
        items: &[T],
        run: &mut impl FnMut(&[T]) -> Result<Vec<U>, String>,
    ) -> Vec<Result<U, String>> {
        let mut bisection = Bisection::new(items.len());
        while let Some(range) = bisection.next_range() {
            let outcome = run(&items[range.clone()]);
            bisection.record(range, outcome);
        }
        bisection.finish()
    }

    fn doubles(calls: &mut usize) -> impl FnMut(&[i32]) -> Result<Vec<i32>, String> + '_ {
        move |items| {
            *calls += 1;
            match items.iter().find(|&&x| x < 0) {
                Some(bad) => Err(format!("negative {bad}")),
                None => Ok(items.iter().map(|x| x * 2).collect()),
            }
        }
    }

    #[test]
    fn a_good_batch_runs_once() {
        let mut calls = 0;
        let results = bisect(&[1, 2, 3], &mut doubles(&mut calls));
        assert_eq!(results, [Ok(2), Ok(4), Ok(6)]);
        assert_eq!(calls, 1);
    }

    #[test]
    fn only_the_bad_items_fail_and_the_rest_keep_their_results() {
        let mut calls = 0;
        let items: Vec<i32> = (1..=16)
            .map(|x| if x == 5 || x == 12 { -x } else { x })
            .collect();
        let results = bisect(&items, &mut doubles(&mut calls));
        for (item, result) in items.iter().zip(&results) {
            match result {
                Ok(doubled) => assert_eq!(*doubled, item * 2),
                Err(reason) => assert_eq!(reason, &format!("negative {item}")),
            }
        }
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 2);
        assert!(calls < 16, "narrowed down, not one call per item: {calls}");
    }

    #[test]
    #[should_panic(expected = "gave 1 results")]
    fn a_short_answer_is_an_invariant_violation() {
        let mut short = |_: &[i32]| Ok::<_, String>(vec![1]);
        bisect(&[1, 2], &mut short);
    }
}
