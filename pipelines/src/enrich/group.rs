//! What the consumer is waiting for, read from librdkafka's statistics: a
//! reachable broker, the group coordinator, the end of a rebalance, or a
//! partition. Shown on the status line and logged while it lasts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;

/// A wait shorter than this is a normal start-up or rebalance: not logged.
const WARN_AFTER: Duration = Duration::from_secs(30);
/// How often a wait that goes on is logged again.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The consumer's view of its group in one statistics report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Brokers whose connection is up, of those known.
    pub brokers_up: usize,
    /// librdkafka's consumer-group state (`up` once a coordinator is known).
    pub coordinator: String,
    /// librdkafka's join state (`steady` between rebalances).
    pub join_state: String,
    /// Partitions assigned to this member.
    pub assigned: i32,
}

impl GroupView {
    /// The view in a statistics report; `None` for a report without group
    /// statistics (not a group consumer).
    pub fn from_statistics(statistics: &Statistics) -> Option<Self> {
        let group = statistics.cgrp.as_ref()?;
        let brokers_up = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count();
        Some(Self {
            brokers_up,
            coordinator: group.state.clone(),
            join_state: group.join_state.clone(),
            assigned: group.assignment_size,
        })
    }

    /// What the member waits for before it can consume, if anything.
    pub fn waiting_for(&self, group: &str) -> Option<String> {
        if self.brokers_up == 0 {
            return Some("a reachable broker (no broker connection is up)".into());
        }
        if self.coordinator != "up" {
            return Some(format!(
                "the coordinator of group {group} (group state {})",
                self.coordinator
            ));
        }
        if !matches!(self.join_state.as_str(), "steady" | "init") {
            return Some(format!(
                "a rebalance of group {group} to finish (join state {})",
                self.join_state
            ));
        }
        (self.assigned == 0).then(|| {
            format!("a partition: group {group} assigned none to this member (more members than partitions?)")
        })
    }
}

/// Tracks how long the current wait has lasted and logs it while it goes on.
#[derive(Debug, Default)]
pub struct WaitWatch {
    state: Mutex<WaitState>,
}

#[derive(Debug, Default)]
struct WaitState {
    /// The current wait and when it began.
    current: Option<(String, Instant)>,
    /// When the current wait was last logged.
    logged: Option<Instant>,
}

impl WaitWatch {
    /// Records the latest wait (`None`: consuming); returns its text with
    /// how long it has lasted, for the status line.
    pub fn update(&self, waiting: Option<String>, now: Instant) -> Option<String> {
        let mut state = self.state.lock().expect("wait watch poisoned");
        let Some(what) = waiting else {
            *state = WaitState::default();
            return None;
        };
        let since = match &state.current {
            Some((current, since)) if *current == what => *since,
            _ => {
                state.logged = None;
                now
            }
        };
        state.current = Some((what.clone(), since));
        let waited = now.duration_since(since);
        let due = state
            .logged
            .is_none_or(|logged| now.duration_since(logged) >= WARN_EVERY);
        if waited >= WARN_AFTER && due {
            state.logged = Some(now);
            tracing::warn!(
                waited_secs = waited.as_secs(),
                "waiting for {what}; {}",
                hint(&what)
            );
        }
        Some(format!("waiting for {what}, {} s", waited.as_secs()))
    }
}

/// What usually causes a long wait of this kind.
fn hint(what: &str) -> &'static str {
    if what.starts_with("a rebalance") {
        "a rebalance completes when every member has rejoined or been evicted: a member that \
         died without leaving holds it until the broker evicts it (session.timeout.ms), a busy \
         one for up to max.poll.interval.ms"
    } else if what.starts_with("a reachable broker") {
        "check --brokers and the broker's advertised listeners"
    } else {
        "the job consumes as soon as this clears"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(brokers_up: usize, coordinator: &str, join_state: &str, assigned: i32) -> GroupView {
        GroupView {
            brokers_up,
            coordinator: coordinator.into(),
            join_state: join_state.into(),
            assigned,
        }
    }

    #[test]
    fn each_wait_is_named_and_a_steady_member_with_partitions_waits_for_nothing() {
        let waiting = |v: GroupView| v.waiting_for("g");
        assert_eq!(waiting(view(1, "up", "steady", 3)), None);
        assert!(
            waiting(view(0, "up", "steady", 3))
                .unwrap()
                .contains("reachable broker")
        );
        assert!(
            waiting(view(1, "wait-coord", "init", 0))
                .unwrap()
                .contains("coordinator of group g (group state wait-coord)")
        );
        assert!(
            waiting(view(1, "up", "wait-join", 0))
                .unwrap()
                .contains("rebalance of group g to finish (join state wait-join)")
        );
        assert!(
            waiting(view(1, "up", "steady", 0))
                .unwrap()
                .contains("assigned none")
        );
    }

    #[test]
    fn a_wait_is_timed_from_its_start_and_reset_when_it_ends() {
        let watch = WaitWatch::default();
        let start = Instant::now();
        let what = || Some("a rebalance of group g to finish".to_string());
        assert!(watch.update(what(), start).unwrap().ends_with(", 0 s"));
        let later = start + Duration::from_secs(45);
        assert!(watch.update(what(), later).unwrap().ends_with(", 45 s"));
        assert_eq!(watch.update(None, later), None);
        let again = later + Duration::from_secs(5);
        assert!(watch.update(what(), again).unwrap().ends_with(", 0 s"));
        let other = again + Duration::from_secs(10);
        let text = watch
            .update(Some("a reachable broker".into()), other)
            .unwrap();
        assert_eq!(text, "waiting for a reachable broker, 0 s");
    }
}
