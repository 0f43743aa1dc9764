//! Event-level de-duplication: a CloudTrail record delivered twice (EventBridge and SQS deliver
//! at least once, CloudTrail itself documents duplicate events) is recognised by its `eventID`
//! (a content hash when it has none) and does nothing the second time.
//!
//! Ids are kept as 64-bit hashes in sets by slot of event time: a 1440th of the horizon, a
//! minute for the default day. A redelivered record carries the same `eventTime`, so one small
//! set is searched, and the sets of the minutes being processed stay in the processor's cache
//! however many ids are remembered. A slot is forgotten whole once the stream's event time has
//! moved past it by the horizon, and the oldest slots go first when the cap is reached, so
//! memory stays bounded: about 15 bytes an id (docs/PERFORMANCE.md). Records without a usable
//! event time share one set, which only the cap empties (first).

use crate::keyed::Set;
use std::collections::VecDeque;

/// How long and how many ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Seconds of event time an id is remembered after the newest event time seen.
    pub horizon: i64,
    /// Most ids remembered; the oldest are forgotten first.
    pub max_ids: usize,
}

impl Default for Options {
    fn default() -> Self {
        // CloudTrail delivers within minutes, SQS redelivers after a visibility timeout and a
        // dead-letter redrive comes within hours: a day covers them, the cap bounds memory.
        Options {
            horizon: 24 * 3600,
            max_ids: 1_000_000,
        }
    }
}

/// Slots of the horizon: how finely event time is split.
const SLOTS: i64 = 1440;
/// The time written in a snapshot for an id without one.
const UNTIMED: i64 = i64::MIN;

/// The ids of recently seen events.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    opts: Options,
    /// Seconds of event time a slot covers.
    width: i64,
    /// Ids by slot (event time divided by `width`): `slots[i]` is slot `base + i`.
    slots: VecDeque<Set<u64>>,
    base: i64,
    /// Ids of records without an event time.
    untimed: Set<u64>,
    len: usize,
    newest: Option<i64>,
    /// The oldest slot within the horizon of `newest`.
    first_kept: i64,
}

/// The id of a record: its `eventID`, else a hash of its whole text.
pub fn record_id(event_id: Option<&str>, whole_text: Option<&str>) -> u64 {
    match event_id {
        Some(id) => xxhash_rust::xxh3::xxh3_64(id.as_bytes()),
        // A different seed keeps a content hash from ever equalling an eventID's hash.
        None => xxhash_rust::xxh3::xxh3_64_with_seed(whole_text.unwrap_or("").as_bytes(), 1),
    }
}

impl Dedup {
    /// Empty memory with these bounds.
    pub fn new(opts: Options) -> Self {
        let horizon = opts.horizon.max(0);
        Dedup {
            opts: Options {
                horizon,
                max_ids: opts.max_ids,
            },
            width: (horizon / SLOTS).max(1),
            first_kept: i64::MIN,
            ..Dedup::default()
        }
    }

    /// The same bounds, nothing remembered.
    pub fn emptied(&self) -> Dedup {
        Dedup::new(self.opts)
    }

    /// Whether `id` is new (then it is remembered); `time` is the record's event time.
    pub fn first_time(&mut self, id: u64, time: Option<i64>) -> bool {
        if self.opts.max_ids == 0 {
            return true;
        }
        let new = match time {
            Some(t) => {
                self.saw(t);
                // Older than the horizon: nothing that old is remembered, so it cannot be told.
                let Some(set) = self.slot(t) else {
                    return true;
                };
                set.insert(id)
            }
            None => self.untimed.insert(id),
        };
        if new {
            self.len += 1;
            self.cap();
        }
        new
    }

    /// Moves the newest event time on to `t` if it is later, forgetting the slots the horizon
    /// leaves behind.
    #[inline]
    fn saw(&mut self, t: i64) {
        if self.newest.is_some_and(|n| t <= n) {
            return;
        }
        self.saw_later(t);
    }

    fn saw_later(&mut self, t: i64) {
        self.newest = Some(t);
        let first_kept = t.saturating_sub(self.opts.horizon).div_euclid(self.width);
        if first_kept <= self.first_kept {
            return;
        }
        self.first_kept = first_kept;
        if first_kept.saturating_sub(self.base) >= self.slots.len() as i64 {
            self.len -= self.slots.iter().map(Set::len).sum::<usize>();
            self.slots.clear();
        }
        while self.base < first_kept {
            let Some(gone) = self.slots.pop_front() else {
                break;
            };
            self.len -= gone.len();
            self.base += 1;
        }
        if self.slots.is_empty() {
            self.base = first_kept;
        }
    }

    /// The set of the slot of time `t`, made if need be; `None` before the horizon.
    fn slot(&mut self, t: i64) -> Option<&mut Set<u64>> {
        let slot = t.div_euclid(self.width);
        if slot < self.first_kept {
            return None;
        }
        if self.slots.is_empty() {
            self.base = slot;
        }
        // Bounded: every slot lies between the horizon and the newest time's slot, at most
        // SLOTS + 1 of them.
        while slot < self.base {
            self.slots.push_front(Set::default());
            self.base -= 1;
        }
        let at = (slot - self.base) as usize;
        if at >= self.slots.len() {
            // A new slot takes about as many ids as the last one: sized once, not grown.
            let hint = self.slots.back().map_or(0, Set::len);
            self.slots.resize_with(at, Set::default);
            self.slots
                .push_back(Set::with_capacity_and_hasher(hint, Default::default()));
        }
        self.slots.get_mut(at)
    }

    /// Forgets beyond the cap: the ids without a time, then the oldest slots.
    fn cap(&mut self) {
        if self.len <= self.opts.max_ids {
            return;
        }
        self.len -= self.untimed.len();
        self.untimed = Set::default();
        while self.len > self.opts.max_ids {
            let Some(gone) = self.slots.pop_front() else {
                break;
            };
            self.len -= gone.len();
            self.base += 1;
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The remembered ids as bytes: `u64 count`, then `(u64 id, i64 time)` pairs, little-endian;
    /// the time is the start of the id's slot, `i64::MIN` for a record without one.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.len);
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        let mut put = |ids: &Set<u64>, t: i64| {
            // In order: the same memory is the same bytes in any process, whatever the seed.
            let mut ids: Vec<u64> = ids.iter().copied().collect();
            ids.sort_unstable();
            for id in ids {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&t.to_le_bytes());
            }
        };
        put(&self.untimed, UNTIMED);
        for (i, ids) in self.slots.iter().enumerate() {
            put(ids, (self.base + i as i64).saturating_mul(self.width));
        }
        out
    }

    /// Remembers what [`Dedup::save`] wrote, in addition to what is remembered now.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let (count, body) = bytes
            .split_first_chunk::<8>()
            .ok_or("de-duplication state: truncated")?;
        let count = u64::from_le_bytes(*count);
        if body.len() as u64 != count.saturating_mul(16) {
            return Err(format!(
                "de-duplication state: {} bytes for {count} ids",
                body.len()
            ));
        }
        let pairs = body.chunks_exact(16).map(|pair| {
            let (id, t) = pair.split_at(8);
            let id = u64::from_le_bytes(id.try_into().unwrap_or_default());
            let t = i64::from_le_bytes(t.try_into().unwrap_or_default());
            (id, t)
        });
        // The newest time first, so no id is placed in a slot the horizon then drops.
        if let Some(newest) = pairs
            .clone()
            .map(|(_, t)| t)
            .filter(|&t| t != UNTIMED)
            .max()
        {
            self.saw(newest);
        }
        for (id, t) in pairs {
            self.first_time(id, (t != UNTIMED).then_some(t));
        }
        Ok(count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivered_event_is_a_duplicate_until_the_horizon_passes() {
        let mut d = Dedup::new(Options {
            horizon: 100,
            max_ids: 10,
        });
        let a = record_id(Some("a"), None);
        assert!(d.first_time(a, Some(1000)));
        assert!(!d.first_time(a, Some(1000)));
        assert!(d.first_time(record_id(Some("b"), None), Some(1100)));
        assert!(!d.first_time(a, Some(1000)), "exactly at the horizon");
        assert!(d.first_time(record_id(Some("c"), None), Some(1101)));
        assert!(d.first_time(a, Some(1000)), "forgotten past the horizon");
    }

    #[test]
    fn the_cap_forgets_the_oldest_minutes_first() {
        let mut d = Dedup::new(Options {
            horizon: 86_400,
            max_ids: 3,
        });
        // Arrival order is not event-time order: the cap goes by event time.
        for (id, minute) in [(0u64, 4), (1, 0), (2, 2), (3, 3), (4, 1)] {
            assert!(d.first_time(id, Some(minute * 60)));
        }
        assert_eq!(d.len(), 3);
        assert!(d.first_time(1, Some(0)), "minute 0 was forgotten");
        assert!(d.first_time(4, Some(60)), "then minute 1");
        assert!(!d.first_time(0, Some(240)), "minute 4 is kept");
    }

    #[test]
    fn a_minute_is_forgotten_whole_and_only_when_wholly_past_the_horizon() {
        let mut d = Dedup::new(Options::default());
        assert!(d.first_time(1, Some(59)) && d.first_time(2, Some(0)));
        assert!(d.first_time(3, Some(24 * 3600 + 59)));
        assert!(!d.first_time(2, Some(0)), "second 59 is within the horizon");
        assert!(d.first_time(4, Some(24 * 3600 + 60)));
        assert_eq!(d.len(), 2, "minute 0 went whole");
        assert!(d.first_time(1, Some(59)));
    }

    #[test]
    fn records_without_a_time_are_remembered_until_the_cap() {
        let mut d = Dedup::new(Options {
            horizon: 10,
            max_ids: 4,
        });
        assert!(d.first_time(1, None));
        assert!(d.first_time(2, Some(1_000_000)));
        assert!(
            !d.first_time(1, None),
            "event time passing does not forget it"
        );
        for id in 3..6 {
            d.first_time(id, Some(1_000_000));
        }
        assert!(d.first_time(1, None), "the cap empties them first");
    }

    #[test]
    fn records_without_event_id_fall_back_to_their_content() {
        assert_eq!(record_id(None, Some("{}")), record_id(None, Some("{}")));
        assert_ne!(record_id(None, Some("{}")), record_id(None, Some("{ }")));
        assert_ne!(record_id(Some("x"), None), record_id(None, Some("x")));
    }

    #[test]
    fn saved_ids_survive_a_restart_and_damage_is_rejected() {
        let mut d = Dedup::new(Options::default());
        d.first_time(7, Some(50));
        d.first_time(8, None);
        d.first_time(10, Some(-3));
        let bytes = d.save();
        let mut again = Dedup::new(Options::default());
        assert_eq!(again.restore(&bytes), Ok(3));
        assert!(!again.first_time(7, Some(50)) && !again.first_time(8, None));
        assert!(!again.first_time(10, Some(-3)));
        assert!(again.first_time(9, Some(60)));
        assert!(Dedup::default().restore(&bytes[..bytes.len() - 1]).is_err());
        assert!(Dedup::default().restore(&[1, 2]).is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(Dedup::default().restore(&huge).is_err());
    }

    #[test]
    fn where_an_id_is_kept_cannot_be_computed_from_the_id() {
        use std::hash::BuildHasher;
        // An id's hash is public (xxh3 of the eventID); its place in a set must not be, or
        // ids made to share a bucket would make every lookup scan them all.
        let memory = || {
            let mut d = Dedup::new(Options::default());
            d.first_time(1, Some(60));
            d
        };
        let (a, b) = (memory(), memory());
        let placed = |d: &Dedup, id: u64| d.slots[0].hasher().hash_one(id);
        let differ = (0..64u64)
            .filter(|&id| placed(&a, id) != placed(&b, id))
            .count();
        assert!(differ > 60, "{differ} of 64 ids placed alike");
    }

    #[test]
    fn the_same_memory_is_the_same_bytes_in_any_process() {
        // Each set has its own seed, so two memories of the same ids iterate differently.
        let fill = |order: &mut dyn Iterator<Item = u64>| {
            let mut d = Dedup::new(Options::default());
            for id in order {
                d.first_time(
                    id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    Some(60 + (id as i64 % 3) * 60),
                );
            }
            d.save()
        };
        assert_eq!(fill(&mut (0..3_000)), fill(&mut (0..3_000).rev()));
    }

    proptest::proptest! {
        /// Against a model without slots' machinery: an id is a duplicate exactly when it was
        /// seen before and its slot is still within the horizon of the newest time seen.
        #[test]
        fn agrees_with_the_model(
            events in proptest::collection::vec(0usize..40, 1..300),
            times in proptest::collection::vec(0i64..4000, 40),
            horizon in 0i64..3000,
        ) {
            let mut d = Dedup::new(Options { horizon, max_ids: usize::MAX });
            let width = (horizon / SLOTS).max(1);
            let mut seen = std::collections::HashSet::new();
            let mut newest = i64::MIN;
            for id in events {
                // A record's time is part of it: the same id always comes with the same time.
                let (t, id) = (times[id], id as u64);
                newest = newest.max(t);
                let kept = t.div_euclid(width) >= (newest - horizon).div_euclid(width);
                let expect_new = !(seen.contains(&id) && kept);
                proptest::prop_assert_eq!(d.first_time(id, Some(t)), expect_new);
                seen.insert(id);
                let mut again = Dedup::new(Options { horizon, max_ids: usize::MAX });
                again.restore(&d.save()).unwrap();
                proptest::prop_assert_eq!(again.len(), d.len());
            }
        }
    }
}
