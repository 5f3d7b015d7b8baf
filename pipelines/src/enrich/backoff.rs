//! Waits between tries of a Kafka call the broker failed: doubling from
//! 0.1 s up to 30 s, one policy for every retry loop of the job.

use std::time::Duration;

/// First wait after a failure.
const FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two tries.
const LONGEST: Duration = Duration::from_secs(30);

/// Exponential backoff: each [`Backoff::next`] waits twice the last, up to
/// [`LONGEST`].
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The wait before the next try; the one after it is twice as long.
    pub(super) fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(LONGEST);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_thirty_seconds() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..11).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(
            waits,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000
            ]
        );
    }
}
