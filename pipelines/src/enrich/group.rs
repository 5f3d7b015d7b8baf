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
    pub fn waiting_for(&self) -> Option<Wait> {
        if self.brokers_up == 0 {
            Some(Wait::Broker)
        } else if self.coordinator != "up" {
            Some(Wait::Coordinator(self.coordinator.clone()))
        } else if !matches!(self.join_state.as_str(), "steady" | "init") {
            Some(Wait::Rebalance(self.join_state.clone()))
        } else {
            (self.assigned == 0).then_some(Wait::Partition)
        }
    }
}

/// What a group consumer can wait for before it consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// No broker connection is up.
    Broker,
    /// The group coordinator is not known yet (librdkafka's group state).
    Coordinator(String),
    /// A rebalance is in progress (librdkafka's join state).
    Rebalance(String),
    /// The group assigned this member no partition.
    Partition,
}

impl Wait {
    /// The wait in words, for group `group`.
    pub fn describe(&self, group: &str) -> String {
        match self {
            Self::Broker => "a reachable broker (no broker connection is up)".into(),
            Self::Coordinator(state) => {
                format!("the coordinator of group {group} (group state {state})")
            }
            Self::Rebalance(join_state) => {
                format!("a rebalance of group {group} to finish (join state {join_state})")
            }
            Self::Partition => format!(
                "a partition: group {group} assigned none to this member (more members than partitions?)"
            ),
        }
    }

    /// What usually causes a long wait of this kind.
    fn hint(&self) -> &'static str {
        match self {
            Self::Rebalance(_) => {
                "a rebalance completes when every member has rejoined or been evicted: a member \
                 that died without leaving holds it until the broker evicts it \
                 (session.timeout.ms), a busy one for up to max.poll.interval.ms"
            }
            Self::Broker => "check --brokers and the broker's advertised listeners",
            Self::Coordinator(_) | Self::Partition => "the job consumes as soon as this clears",
        }
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
    current: Option<(Wait, Instant)>,
    /// When the current wait was last logged.
    logged: Option<Instant>,
}

impl WaitWatch {
    /// Records the latest wait of group `group` (`None`: consuming); returns
    /// it in words with how long it has lasted, for the status line.
    pub fn update(&self, waiting: Option<Wait>, group: &str, now: Instant) -> Option<String> {
        let mut state = self.state.lock().expect("wait watch poisoned");
        let Some(wait) = waiting else {
            *state = WaitState::default();
            return None;
        };
        let since = match &state.current {
            Some((current, since)) if *current == wait => *since,
            _ => {
                state.logged = None;
                now
            }
        };
        let waited = now.duration_since(since);
        let what = wait.describe(group);
        let due = state
            .logged
            .is_none_or(|logged| now.duration_since(logged) >= WARN_EVERY);
        if waited >= WARN_AFTER && due {
            state.logged = Some(now);
            tracing::warn!(
                waited_secs = waited.as_secs(),
                "waiting for {what}; {}",
                wait.hint()
            );
        }
        state.current = Some((wait, since));
        Some(format!("waiting for {what}, {} s", waited.as_secs()))
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
        let waiting = |v: GroupView| v.waiting_for().map(|w| w.describe("g"));
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
        let what = || Some(Wait::Rebalance("wait-join".into()));
        assert!(watch.update(what(), "g", start).unwrap().ends_with(", 0 s"));
        let later = start + Duration::from_secs(45);
        assert!(
            watch
                .update(what(), "g", later)
                .unwrap()
                .ends_with(", 45 s")
        );
        assert_eq!(watch.update(None, "g", later), None);
        let again = later + Duration::from_secs(5);
        assert!(watch.update(what(), "g", again).unwrap().ends_with(", 0 s"));
        let other = again + Duration::from_secs(10);
        let text = watch.update(Some(Wait::Broker), "g", other).unwrap();
        assert_eq!(
            text,
            "waiting for a reachable broker (no broker connection is up), 0 s"
        );
    }
}
