//! The representatives of one input partition, and which of them a message
//! is compared with.
//!
//! A representative `r` is in the window of a message `m` (offsets `o`,
//! timestamps `t`) when `r` came first (`o(r) < o(m)`), is at most
//! `--window-messages` offsets behind (`o(m) - o(r) <= N`) and at most
//! `--window` older than both `m` and every earlier representative
//! (`t(r) >= max(t(m), W(m)) - age`, where `W(m)` is the newest timestamp of
//! the representatives before `m`). Both bounds only ever exclude more
//! representatives as offsets grow, so one that leaves the window never comes
//! back, and the window of a message depends on the representatives before it
//! and nothing else: restored state decides a message as the uninterrupted
//! run did (see [`super::changelog`]).

use std::collections::BTreeMap;

use crate::dedupe::normalize::normalize;

/// How far back a message looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Offsets (messages of the partition) a representative stays for.
    pub messages: Option<i64>,
    /// Milliseconds of message time a representative stays for.
    pub age_ms: Option<i64>,
}

/// A message that was not a duplicate, as the later messages of its
/// partition are compared with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Representative {
    pub offset: i64,
    /// The message's timestamp (or, without one, the watermark before it).
    pub timestamp_ms: i64,
    /// The newest timestamp among the representatives up to this one.
    pub watermark_ms: i64,
    /// The message's id, as `duplicate_of` names it.
    pub id: serde_json::Value,
    pub text: String,
    /// The text normalised: an exact copy has the same.
    pub key: String,
    /// The bi-encoder's L2-normalised vector of the text.
    pub vector: Vec<f32>,
}

/// The committed position of a partition and the watermark there: what a
/// restore needs besides the representatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The next offset to consume.
    pub position: i64,
    pub watermark_ms: i64,
}

/// Changes of the state to record, once their batch is committed.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub checkpoint: Option<Checkpoint>,
    /// Representatives that left the window (their records are deleted).
    pub removed: Vec<i64>,
}

/// The representatives of one partition.
#[derive(Debug)]
pub struct Window {
    bounds: Bounds,
    representatives: BTreeMap<i64, Representative>,
    /// The newest timestamp among representatives no longer held.
    base_watermark_ms: i64,
    /// Left the window in batches not committed yet.
    pruned: Vec<i64>,
    /// What committed batches changed, not recorded yet.
    changes: Changes,
}

impl Window {
    /// A window holding `representatives`, restored at `checkpoint` (`None`:
    /// a partition with no committed batch).
    pub fn new(
        bounds: Bounds,
        representatives: impl IntoIterator<Item = Representative>,
        checkpoint: Option<Checkpoint>,
    ) -> Self {
        Self {
            bounds,
            representatives: representatives.into_iter().map(|r| (r.offset, r)).collect(),
            base_watermark_ms: checkpoint.map_or(i64::MIN, |c| c.watermark_ms),
            pruned: Vec::new(),
            changes: Changes::default(),
        }
    }

    /// Representatives held.
    pub fn len(&self) -> usize {
        self.representatives.len()
    }

    /// Whether no representative is held.
    pub fn is_empty(&self) -> bool {
        self.representatives.is_empty()
    }

    /// The representative at `offset`, if held.
    pub fn get(&self, offset: i64) -> Option<&Representative> {
        self.representatives.get(&offset)
    }

    /// The newest timestamp among the representatives before `offset`.
    fn watermark_before(&self, offset: i64) -> i64 {
        let latest = self
            .representatives
            .range(..offset)
            .next_back()
            .map_or(i64::MIN, |(_, r)| r.watermark_ms);
        latest.max(self.base_watermark_ms)
    }

    /// The oldest timestamp a representative may have to be in the window
    /// of a message at `offset` stamped `timestamp_ms`.
    pub fn oldest_allowed(&self, offset: i64, timestamp_ms: Option<i64>) -> i64 {
        let newest = self
            .watermark_before(offset)
            .max(timestamp_ms.unwrap_or(i64::MIN));
        self.bounds
            .age_ms
            .map_or(i64::MIN, |age| newest.saturating_sub(age))
    }

    /// The first offset in the window of a message at `offset`.
    pub fn first_offset(&self, offset: i64) -> i64 {
        self.bounds
            .messages
            .map_or(i64::MIN, |n| offset.saturating_sub(n))
    }

    /// The representatives in the window of the message at `offset` stamped
    /// `timestamp_ms`, oldest first.
    pub fn in_window(
        &self,
        offset: i64,
        timestamp_ms: Option<i64>,
    ) -> impl Iterator<Item = &Representative> {
        let oldest = self.oldest_allowed(offset, timestamp_ms);
        self.representatives
            .range(self.first_offset(offset)..offset)
            .map(|(_, r)| r)
            .filter(move |r| r.timestamp_ms >= oldest)
    }

    /// Whether the representative at `offset` is held and in the window of
    /// the message at `message` stamped `timestamp_ms`.
    pub fn holds_in_window(&self, offset: i64, message: i64, timestamp_ms: Option<i64>) -> bool {
        offset < message
            && offset >= self.first_offset(message)
            && self
                .representatives
                .get(&offset)
                .is_some_and(|r| r.timestamp_ms >= self.oldest_allowed(message, timestamp_ms))
    }

    /// Drops the representatives no message at or after `offset` can have
    /// in its window; they are recorded as removed once their batch commits.
    pub fn prune(&mut self, offset: i64) {
        let first = self.first_offset(offset);
        let oldest = self.oldest_allowed(offset, None);
        let gone: Vec<i64> = self
            .representatives
            .range(..offset)
            .filter(|(o, r)| **o < first || r.timestamp_ms < oldest)
            .map(|(&o, _)| o)
            .collect();
        for o in gone {
            let r = self.representatives.remove(&o).expect("held");
            self.base_watermark_ms = self.base_watermark_ms.max(r.watermark_ms);
            self.pruned.push(o);
        }
    }

    /// Adds the message at `offset` as a representative (kept as it is if
    /// already held: a message consumed again after a restart). Returns the
    /// new representative, `None` if it was held.
    pub fn insert(
        &mut self,
        offset: i64,
        timestamp_ms: Option<i64>,
        id: serde_json::Value,
        text: &str,
        vector: &[f32],
    ) -> Option<&Representative> {
        if self.representatives.contains_key(&offset) {
            return None;
        }
        let before = self.watermark_before(offset);
        let timestamp_ms = timestamp_ms.unwrap_or(before);
        let representative = Representative {
            offset,
            timestamp_ms,
            watermark_ms: before.max(timestamp_ms),
            id,
            text: text.to_string(),
            key: normalize(text),
            vector: vector.to_vec(),
        };
        Some(self.representatives.entry(offset).or_insert(representative))
    }

    /// The batch that ends before `position` is committed: what it pruned
    /// is recorded as removed, with a checkpoint at `position`.
    pub fn committed(&mut self, position: i64) {
        self.changes.removed.append(&mut self.pruned);
        self.changes.checkpoint = Some(Checkpoint {
            position,
            watermark_ms: self.watermark_before(position),
        });
    }

    /// The committed changes not recorded yet (taken: recorded next).
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(messages: Option<i64>, age_ms: Option<i64>) -> Window {
        Window::new(Bounds { messages, age_ms }, [], None)
    }

    fn add(w: &mut Window, offset: i64, ts: i64) {
        w.insert(offset, Some(ts), offset.into(), "t", &[1.0]);
    }

    fn offsets(w: &Window, offset: i64, ts: i64) -> Vec<i64> {
        w.in_window(offset, Some(ts)).map(|r| r.offset).collect()
    }

    #[test]
    fn a_representative_stays_for_n_offsets() {
        let mut w = window(Some(3), None);
        add(&mut w, 10, 0);
        assert_eq!(offsets(&w, 13, 0), [10]);
        assert_eq!(offsets(&w, 14, 0), [] as [i64; 0]);
        w.prune(14);
        assert_eq!(w.len(), 0);
        assert_eq!(w.take_changes(), Changes::default(), "not committed yet");
        w.committed(15);
        let changes = w.take_changes();
        assert_eq!(changes.removed, [10]);
        assert_eq!(changes.checkpoint.unwrap().position, 15);
    }

    #[test]
    fn age_counts_from_the_newest_earlier_representative_so_nothing_comes_back() {
        let mut w = window(None, Some(100));
        add(&mut w, 1, 1_000);
        add(&mut w, 2, 1_200);
        // A message stamped in the past still has 1 out of its window:
        // representative 2 is 200 ms newer.
        assert_eq!(offsets(&w, 3, 900), [2]);
        w.prune(3);
        assert_eq!(w.len(), 1);
        // Its own timestamp counts too.
        assert_eq!(offsets(&w, 4, 1_350), [] as [i64; 0]);
    }

    #[test]
    fn restored_state_gives_the_windows_of_the_uninterrupted_run() {
        let bounds = Bounds {
            messages: Some(5),
            age_ms: Some(50),
        };
        let stamps = [100, 170, 120, 130, 240, 180, 260, 250, 300];
        let mut live = Window::new(bounds, [], None);
        let mut windows = Vec::new();
        for (o, &ts) in stamps.iter().enumerate() {
            let o = o as i64;
            live.prune(o);
            windows.push(offsets(&live, o, ts));
            if o % 2 == 0 {
                add(&mut live, o, ts);
            }
            if o == 4 {
                live.committed(5);
            }
        }
        // Restored at the checkpoint after offset 4, with representatives
        // the changelog holds (all but those removed, plus later ones).
        let changes = live.take_changes();
        let checkpoint = changes.checkpoint;
        let mut held: Vec<Representative> = live.representatives.values().cloned().collect();
        let mut all = Window::new(bounds, [], None);
        for (o, &ts) in stamps.iter().enumerate() {
            if o % 2 == 0 {
                add(&mut all, o as i64, ts);
            }
        }
        for o in [0, 2, 4] {
            if !changes.removed.contains(&o) && live.get(o).is_none() {
                held.push(all.get(o).unwrap().clone());
            }
        }
        let mut restored = Window::new(bounds, held, checkpoint);
        for (o, &ts) in stamps.iter().enumerate().skip(5) {
            let o = o as i64;
            restored.prune(o);
            assert_eq!(offsets(&restored, o, ts), windows[o as usize], "offset {o}");
            if o % 2 == 0 {
                add(&mut restored, o, ts);
            }
        }
    }
}
