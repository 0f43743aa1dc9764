//! Event-level de-duplication: a CloudTrail record delivered twice (EventBridge and SQS deliver
//! at least once, CloudTrail itself documents duplicate events) is recognised by its `eventID`
//! (a content hash when it has none) and does nothing the second time.
//!
//! Ids are kept as 64-bit hashes with the event time they were seen at, in arrival order. An
//! id is forgotten once the stream's event time has moved past it by the horizon, or when the
//! cap is reached (the oldest first), so memory stays bounded: about 43 bytes an id (the
//! set's and queue's spare capacity included; docs/PERFORMANCE.md).

use rustc_hash::FxHashSet;
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

/// The ids of recently seen events.
#[derive(Debug, Clone, Default)]
pub struct Dedup {
    opts: Options,
    ids: FxHashSet<u64>,
    /// (id, event time) in arrival order.
    order: VecDeque<(u64, i64)>,
    newest: Option<i64>,
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
        Dedup {
            opts: Options {
                horizon: opts.horizon.max(0),
                max_ids: opts.max_ids,
            },
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
        if self.ids.contains(&id) {
            return false;
        }
        let newest = match (self.newest, time) {
            (Some(n), Some(t)) => n.max(t),
            (n, t) => n.or(t).unwrap_or(0),
        };
        self.newest = Some(newest);
        self.ids.insert(id);
        self.order.push_back((id, time.unwrap_or(newest)));
        self.forget(newest.saturating_sub(self.opts.horizon));
        true
    }

    /// Forgets ids older than `before`, and the oldest beyond the cap.
    fn forget(&mut self, before: i64) {
        while let Some(&(id, t)) = self.order.front() {
            if t >= before && self.order.len() <= self.opts.max_ids {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&id);
        }
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The remembered ids as bytes: `u64 count`, then `(u64 id, i64 time)` pairs, little-endian.
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 16 * self.order.len());
        out.extend_from_slice(&(self.order.len() as u64).to_le_bytes());
        for (id, t) in &self.order {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&t.to_le_bytes());
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
        for pair in body.chunks_exact(16) {
            let (id, t) = pair.split_at(8);
            let id = u64::from_le_bytes(id.try_into().map_err(|_| "bad id")?);
            let t = i64::from_le_bytes(t.try_into().map_err(|_| "bad time")?);
            if self.ids.insert(id) {
                self.order.push_back((id, t));
                self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
            }
        }
        let newest = self.newest.unwrap_or(0);
        self.forget(newest.saturating_sub(self.opts.horizon));
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
    fn the_cap_forgets_the_oldest_first() {
        let mut d = Dedup::new(Options {
            horizon: i64::MAX,
            max_ids: 3,
        });
        for i in 0..5u64 {
            assert!(d.first_time(i, Some(0)));
        }
        assert_eq!(d.len(), 3);
        assert!(d.first_time(0, Some(0)), "the oldest was forgotten");
        assert!(!d.first_time(4, Some(0)));
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
        let bytes = d.save();
        let mut again = Dedup::new(Options::default());
        assert_eq!(again.restore(&bytes), Ok(2));
        assert!(!again.first_time(7, Some(60)) && !again.first_time(8, Some(60)));
        assert!(again.first_time(9, Some(60)));
        assert!(Dedup::default().restore(&bytes[..bytes.len() - 1]).is_err());
        assert!(Dedup::default().restore(&[1, 2]).is_err());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(Dedup::default().restore(&huge).is_err());
    }
}
