//! Which events made an alert: a bounded list of their ids and times, and how many there were,
//! so an investigator goes from a page to the CloudTrail records (`trailwatch show`).

use serde::{Deserialize, Serialize};

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
    /// How many there were (a roll-up or storm adds up the alerts it merges, so overlapping
    /// windows of one group count an event once per alert).
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

    /// Adds what another alert merged into this one was made of. The result does not depend on
    /// the order alerts are merged in.
    pub fn merge(&mut self, other: &Lineage) {
        self.events.extend(other.events.iter().cloned());
        self.total = self.total.saturating_add(other.total);
        self.tidy();
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
        /// Merging in any order and any grouping gives the same lineage.
        #[test]
        fn merging_is_order_independent(
            parts in prop::collection::vec(prop::collection::vec((0u32..100, 0u32..60), 0..15), 1..6),
            seed in any::<u64>(),
        ) {
            let lineages: Vec<Lineage> = parts
                .iter()
                .map(|p| Lineage::of(p.iter().map(|&(t, i)| r(t, i)), p.len() as u64))
                .collect();
            let mut forward = Lineage::default();
            for l in &lineages {
                forward.merge(l);
            }
            let mut order: Vec<usize> = (0..lineages.len()).collect();
            order.sort_by_key(|&i| (i as u64).wrapping_mul(seed | 1).rotate_left(17));
            let mut shuffled = Lineage::default();
            for &i in &order {
                shuffled.merge(&lineages[i]);
            }
            prop_assert_eq!(&forward, &shuffled);
            prop_assert!(forward.events.len() <= LISTED);
            prop_assert_eq!(forward.total, parts.iter().map(|p| p.len() as u64).sum::<u64>());
        }
    }
}
