//! Narrowing a failed batch down to the items that make it fail.

/// Runs `run` over `items`. Where a call fails, the items are split in halves
/// and each half is run again, down to single items: every item gets its
/// result, or the error of the one-item call that failed, and one bad item
/// costs O(log n) extra calls instead of the whole batch.
///
/// `run` must return one result per item it was given (an invariant:
/// violating it panics).
pub fn bisect<T, U, E, F>(items: &[T], run: &mut F) -> Vec<Result<U, String>>
where
    E: std::fmt::Display,
    F: FnMut(&[T]) -> Result<Vec<U>, E>,
{
    match run(items) {
        Ok(results) => {
            assert_eq!(
                results.len(),
                items.len(),
                "a batch of {} items gave {} results",
                items.len(),
                results.len()
            );
            results.into_iter().map(Ok).collect()
        }
        Err(error) if items.len() <= 1 => items.iter().map(|_| Err(error.to_string())).collect(),
        Err(_) => {
            let (left, right) = items.split_at(items.len() / 2);
            let mut results = bisect(left, run);
            results.extend(bisect(right, run));
            results
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
