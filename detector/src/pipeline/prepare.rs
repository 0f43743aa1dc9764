//! The stateless stages: a record's identity and event time, and the rules it matches.
//!
//! Nothing here depends on other records, so parallel replay runs it on worker threads while
//! the stages that keep state take the results in input order ([`super::Stages::prepared`]).

use super::dedup;
use crate::engine::{MatchScratch, RuleSet};
use crate::event::Event;

/// How far (seconds) an event time may lie ahead of this machine's clock: CloudTrail's own
/// clocks and ours disagree by seconds, never by a day.
pub const FUTURE_SKEW: i64 = 86_400;

/// Seconds since the epoch by the wall clock.
fn unix_now() -> i64 {
    crate::window::unix_ms() / 1000
}

/// What de-duplication and the event-time stages need of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The de-duplication id: the eventID's hash, or the record text's without one.
    pub id: u64,
    /// The event time, unless missing, unreadable or in the future.
    pub time: Option<i64>,
    /// The event time lies beyond the clock's skew (a broken record).
    pub future: bool,
}

/// The stateless stages, with the scratch space and caches they reuse between records.
pub struct Prepare<'s> {
    set: &'s RuleSet,
    scratch: MatchScratch,
    /// The rules the last [`Prepare::matches`] call matched.
    pub hits: Vec<u32>,
    /// Event times up to this are certainly not in the future: the clock is read only when an
    /// event passes it, not once an event.
    future_after: i64,
    /// The last `eventTime` text read and its time: records come in bursts of the same second,
    /// which are then parsed once.
    last_time: (String, Option<i64>),
    /// The date part (`YYYY-MM-DDT`) of the last canonical `eventTime` and its midnight.
    last_day: ([u8; 11], i64),
}

impl<'s> Prepare<'s> {
    /// Stages for `set`.
    pub fn new(set: &'s RuleSet) -> Self {
        Prepare {
            set,
            scratch: MatchScratch::default(),
            hits: Vec::new(),
            future_after: i64::MIN,
            last_time: (String::new(), None),
            last_day: ([0; 11], 0),
        }
    }

    /// The record's de-duplication id and event time.
    #[inline]
    pub fn identity(&mut self, ev: &Event<'_>) -> Identity {
        let set = self.set;
        let time = ev
            .get(set.event_time)
            .text()
            .and_then(|t| self.parse_time(t));
        // CloudTrail cannot record the future: a time beyond the clock's skew is a broken
        // record (a typo in a year) and must not move any event-time clock or window.
        let future = time.is_some_and(|t| self.is_future(t));
        let event_id = ev.get(set.event_id).text();
        let whole = if event_id.is_none() {
            ev.raw_text()
        } else {
            None
        };
        Identity {
            id: dedup::record_id(event_id, whole),
            time: time.filter(|_| !future),
            future,
        }
    }

    /// Matches the record against every rule, into [`Prepare::hits`].
    #[inline]
    pub fn matches(&mut self, ev: &Event<'_>) {
        self.set.matches(ev, &mut self.scratch, &mut self.hits);
    }

    /// The Unix seconds of an `eventTime` text.
    pub(super) fn parse_time(&mut self, text: &str) -> Option<i64> {
        let b = text.as_bytes();
        let clock = |b: &[u8]| -> Option<i64> {
            if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
                return None;
            }
            let two = |i: usize| {
                let (a, b) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
                (a < 10 && b < 10).then_some(i64::from(a) * 10 + i64::from(b))
            };
            let (h, m, s) = (two(11)?, two(14)?, two(17)?);
            (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
        };
        if b.len() == 20 && b[..11] == self.last_day.0 {
            if let Some(c) = clock(b) {
                return Some(self.last_day.1 + c);
            }
        }
        let t = self.parse_time_slow(text);
        if let (Some(t), Some(c)) = (t, clock(b)) {
            self.last_day.0.copy_from_slice(&b[..11]);
            self.last_day.1 = t - c;
        }
        t
    }

    #[inline(never)]
    fn parse_time_slow(&mut self, text: &str) -> Option<i64> {
        let (last, time) = &mut self.last_time;
        if text != last.as_str() {
            *time = crate::window::event_time(text);
            last.clear();
            last.push_str(text);
        }
        *time
    }

    /// Whether `t` is later than the clock allows a CloudTrail record to be.
    fn is_future(&mut self, t: i64) -> bool {
        if t > self.future_after {
            self.future_after = unix_now().saturating_add(FUTURE_SKEW);
        }
        t > self.future_after
    }
}
