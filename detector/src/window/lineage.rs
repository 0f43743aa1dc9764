//! The recent events of each correlation, so an alert can name the events that made it.
//!
//! Storing event ids in every group's window would cost memory per live group (a busy
//! correlation tracks a million). Instead each correlation keeps the last [`CAPACITY`] events
//! that fed it in one ring, indexed by group: memory is fixed whatever the number of groups, and
//! a group that fires has its recent events at hand. A group whose events were pushed out of the
//! ring by this many newer ones of other groups fires with a shorter list; its count stays exact.

use super::Key;
use smallvec::SmallVec;
use std::collections::VecDeque;

/// Events remembered per correlation.
pub const CAPACITY: usize = 8192;

/// An event's id, packed when it is a UUID (as CloudTrail's are).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Id {
    fn new(text: &str) -> Id {
        match parse_uuid(text) {
            Some(bytes) => Id::Uuid(bytes),
            None => Id::Text(text.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Id::Uuid(b) => format_uuid(b),
            Id::Text(t) => t.to_string(),
        }
    }
}

/// Lower-case hex UUID with dashes (8-4-4-4-12) to bytes; anything else is `None`, so the text
/// round-trips exactly.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = b.iter().filter(|&&c| c != b'-');
    for byte in &mut out {
        let hi = hex(*digits.next()?)?;
        let lo = hex(*digits.next()?)?;
        *byte = hi << 4 | lo;
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn format_uuid(b: &[u8; 16]) -> String {
    let h = crate::sink::archive::object::hex(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[derive(Debug, Clone)]
struct Entry {
    key: Key,
    time: i64,
    id: Id,
}

/// The last [`CAPACITY`] events fed to one correlation, by group.
#[derive(Debug, Default)]
pub struct Recent {
    ring: VecDeque<Entry>,
    /// Sequence number of the ring's front entry.
    base: u64,
    /// Each group's entries still in the ring, by sequence number, oldest first.
    index: crate::keyed::Map<Key, SmallVec<[u64; 2]>>,
}

/// A saved entry: group key, event time, event id.
pub type Saved = (Key, i64, String);

impl Recent {
    /// Notes that the event `id` at `time` fed group `key`.
    pub fn note(&mut self, key: Key, time: i64, id: &str) {
        if self.ring.len() >= CAPACITY {
            self.pop();
        }
        let seq = self.base + self.ring.len() as u64;
        self.ring.push_back(Entry {
            key,
            time,
            id: Id::new(id),
        });
        self.index.entry(key).or_default().push(seq);
    }

    fn pop(&mut self) {
        let Some(old) = self.ring.pop_front() else {
            return;
        };
        let seq = self.base;
        self.base += 1;
        if let Some(seqs) = self.index.get_mut(&old.key) {
            seqs.retain(|s| *s > seq);
            if seqs.is_empty() {
                self.index.remove(&old.key);
            }
        }
    }

    /// Forgets a group's events (its window was reset when it fired).
    pub fn forget(&mut self, key: &Key) {
        self.index.remove(key);
    }

    /// The group's remembered events with times in `lo..=hi`: (time, id), in event-time order.
    pub fn between(&self, key: &Key, lo: i64, hi: i64) -> Vec<(i64, String)> {
        let mut found: Vec<(i64, String)> = self
            .index
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|&s| self.ring.get((s - self.base) as usize))
            .filter(|e| (lo..=hi).contains(&e.time))
            .map(|e| (e.time, e.id.text()))
            .collect();
        found.sort();
        found.dedup();
        found
    }

    /// The entries still indexed, oldest first, for a snapshot.
    pub fn save(&self) -> Vec<Saved> {
        let mut seqs: Vec<u64> = self.index.values().flatten().copied().collect();
        seqs.sort_unstable();
        seqs.into_iter()
            .filter_map(|s| self.ring.get((s - self.base) as usize))
            .map(|e| (e.key, e.time, e.id.text()))
            .collect()
    }

    /// Rebuilds from a snapshot's entries (at most the newest [`CAPACITY`] are kept).
    pub fn restore(saved: Vec<Saved>) -> Recent {
        let mut recent = Recent::default();
        let skip = saved.len().saturating_sub(CAPACITY);
        for (key, time, id) in saved.into_iter().skip(skip) {
            recent.note(key, time, &id);
        }
        recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuids_pack_and_other_ids_stay_text() {
        let id = "3038ebd2-c98a-4c65-9b6e-e22506292313";
        assert!(matches!(Id::new(id), Id::Uuid(_)));
        assert_eq!(Id::new(id).text(), id);
        for other in [
            "3038EBD2-C98A-4C65-9B6E-E22506292313",
            "abc",
            "",
            "g038ebd2-c98a-4c65-9b6e-e22506292313",
        ] {
            assert!(matches!(Id::new(other), Id::Text(_)), "{other}");
            assert_eq!(Id::new(other).text(), other);
        }
    }

    #[test]
    fn a_group_gets_its_own_events_within_the_window() {
        let mut r = Recent::default();
        r.note((1, 1), 10, "a");
        r.note((2, 2), 11, "b");
        r.note((1, 1), 12, "c");
        r.note((1, 1), 30, "d");
        assert_eq!(
            r.between(&(1, 1), 10, 20),
            vec![(10, "a".to_string()), (12, "c".to_string())]
        );
        r.forget(&(1, 1));
        assert!(r.between(&(1, 1), 0, 100).is_empty());
        assert_eq!(r.between(&(2, 2), 0, 100), vec![(11, "b".to_string())]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever is noted, memory stays within the capacity, a group's list holds exactly
        /// its events among the newest CAPACITY noted, and a snapshot round-trips.
        #[test]
        fn the_ring_is_bounded_and_exact(
            events in prop::collection::vec((0u64..4, 0i64..100), 0..(CAPACITY + 300)),
        ) {
            let mut r = Recent::default();
            for (i, (g, t)) in events.iter().enumerate() {
                r.note((*g, 0), *t, &format!("e{i}"));
            }
            prop_assert!(r.ring.len() <= CAPACITY);
            let start = events.len().saturating_sub(CAPACITY);
            for g in 0..4u64 {
                let mut want: Vec<(i64, String)> = events
                    .iter()
                    .enumerate()
                    .skip(start)
                    .filter(|(_, (k, _))| *k == g)
                    .map(|(i, (_, t))| (*t, format!("e{i}")))
                    .collect();
                want.sort();
                prop_assert_eq!(r.between(&(g, 0), 0, 100), want);
            }
            let back = Recent::restore(r.save());
            for g in 0..4u64 {
                prop_assert_eq!(back.between(&(g, 0), 0, 100), r.between(&(g, 0), 0, 100));
            }
        }
    }
}
