//! Which events made an alert: a bounded list of their ids and times, and how many there were,
//! so an investigator goes from a page to the CloudTrail records (`trailwatch show`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Most events an alert lists: the first and last half of them in event-time order, which
/// show how an incident began and how it ended.
pub const LISTED: usize = 20;

/// One event behind an alert.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventRef {
    /// `eventTime` (first, so references sort by time).
    #[serde(rename = "eventTime")]
    pub event_time: Option<String>,
    /// `eventID`.
    #[serde(rename = "eventID")]
    pub event_id: String,
}

/// The events behind an alert.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lineage {
    /// At most [`LISTED`] of them, in event-time order, without repeats.
    pub events: Vec<EventRef>,
    /// How many there were.
    pub total: u64,
}

impl Lineage {
    /// The lineage of `refs` out of `total` events.
    pub fn of(refs: impl IntoIterator<Item = EventRef>, total: u64) -> Lineage {
        let mut l = Lineage {
            events: refs.into_iter().collect(),
            total,
        };
        l.tidy();
        l.total = l.total.max(l.events.len() as u64);
        l
    }

    /// Adds the events of `other` to the list (the total is left to [`Merged`]).
    fn merge_events(&mut self, other: &Lineage) {
        self.events.extend(other.events.iter().cloned());
        self.tidy();
    }

    /// Whether every event is listed.
    fn is_complete(&self) -> bool {
        self.total == self.events.len() as u64
    }

    /// Sorts, drops repeats and keeps the first and last half of [`LISTED`].
    fn tidy(&mut self) {
        self.events.sort();
        self.events.dedup();
        let n = self.events.len();
        if n > LISTED {
            self.events.drain(LISTED / 2..n - LISTED / 2);
        }
    }

    /// Whether no event is named.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Distinct events a merge counts exactly.
const DISTINCT: usize = 256;

/// The lineages of merged alerts (a roll-up's, a storm's). Windows of one group that overlap
/// (a correlation that fires per event) share events, so the total counts distinct events
/// exactly while every merged list is complete and they number at most [`DISTINCT`]; beyond
/// that it adds up each alert's total. Neither the list nor the total depends on the order
/// alerts are merged in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Merged {
    listed: Lineage,
    ids: BTreeSet<String>,
    counted_per_alert: bool,
    sum: u64,
}

impl Merged {
    /// Merges one alert's lineage.
    pub fn add(&mut self, l: &Lineage) {
        self.sum = self.sum.saturating_add(l.total);
        self.listed.merge_events(l);
        self.counted_per_alert |= !l.is_complete();
        if !self.counted_per_alert {
            self.ids.extend(l.events.iter().map(|e| e.event_id.clone()));
            if self.ids.len() > DISTINCT {
                self.counted_per_alert = true;
            }
        }
        if self.counted_per_alert {
            self.ids.clear();
        }
    }

    /// The merged lineage.
    pub fn lineage(&self) -> Lineage {
        Lineage {
            events: self.listed.events.clone(),
            total: if self.counted_per_alert {
                self.sum
            } else {
                self.ids.len() as u64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(t: u32, id: u32) -> EventRef {
        EventRef {
            event_time: Some(format!("2026-01-01T00:{:02}:{:02}Z", t / 60 % 60, t % 60)),
            event_id: format!("id-{id}"),
        }
    }

    #[test]
    fn long_lists_keep_their_beginning_and_end() {
        let l = Lineage::of((0..30).map(|i| r(i, i)), 30);
        assert_eq!(l.total, 30);
        assert_eq!(l.events.len(), LISTED);
        assert_eq!(l.events[0], r(0, 0));
        assert_eq!(l.events[9], r(9, 9));
        assert_eq!(l.events[10], r(20, 20));
        assert_eq!(l.events[19], r(29, 29));
    }

    proptest! {
        /// Merging in any order gives the same lineage; its total is the number of distinct
        /// events when every part is complete and few, else the parts' totals added.
        #[test]
        fn merging_is_order_independent(
            parts in prop::collection::vec(prop::collection::vec((0u32..100, 0u32..400), 0..30), 1..12),
            seed in any::<u64>(),
        ) {
            let lineages: Vec<Lineage> = parts
                .iter()
                .map(|p| Lineage::of(p.iter().map(|&(t, i)| r(t, i)), p.len() as u64))
                .collect();
            let mut forward = Merged::default();
            for l in &lineages {
                forward.add(l);
            }
            let mut order: Vec<usize> = (0..lineages.len()).collect();
            order.sort_by_key(|&i| (i as u64).wrapping_mul(seed | 1).rotate_left(17));
            let mut shuffled = Merged::default();
            for &i in &order {
                shuffled.add(&lineages[i]);
            }
            let (f, s) = (forward.lineage(), shuffled.lineage());
            prop_assert_eq!(&f, &s);
            prop_assert!(f.events.len() <= LISTED);
            let distinct: BTreeSet<(u32, u32)> = parts.iter().flatten().copied().collect();
            let ids: BTreeSet<u32> = distinct.iter().map(|&(_, i)| i).collect();
            let sum: u64 = lineages.iter().map(|l| l.total).sum();
            let complete = lineages.iter().all(|l| l.is_complete());
            let want = if complete && ids.len() <= DISTINCT { ids.len() as u64 } else { sum };
            prop_assert_eq!(f.total, want);
        }
    }
}
