//! Windows of the correlations that fire early ([`crate::engine::CompiledCorrelation::early`]).
//!
//! Such a correlation's condition (a count, a number of distinct values, a number of distinct
//! inputs, bounded from below) can only become true as events arrive, so it is checked on
//! arrival instead of after the reorder buffer. To keep the result independent of arrival order
//! the window slides without reset: an event *meets* the condition when the events of its group
//! in the `timespan` ending at its time do, which depends only on the set of events. Each event
//! that meets it is reported once, when the last of the events that make it true arrives
//! (an event arriving late within the lateness can make later events meet it too). The alert
//! gate merges what one group reports within a suppression window into one alert and a roll-up.

use crate::keyed::{Map, Set};
use crate::rule::correlation::Range;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What the condition is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The number of events (event_count).
    Count,
    /// The number of distinct values (value_count: of the field; temporal: of the input).
    Distinct,
}

/// One input event in a group's window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Item {
    t: i64,
    /// Hash of the counted value (the field's value, or the input position).
    v: u64,
    /// Whether the window ending at this event has met the condition (reported already).
    met: bool,
}

/// A group's events in event-time order, with the newest window's value counts kept up to date
/// so in-order arrivals are checked in constant time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Window {
    items: VecDeque<Item>,
    /// Occurrences of each value in the newest window (the items from `tail_from` on).
    #[serde(with = "crate::keyed::sorted")]
    tail: Map<u64, u32>,
    tail_from: usize,
}

/// An event whose window met the condition: (its time, the measured value, the window's
/// earliest event time).
pub type Met = (i64, f64, i64);

impl Window {
    /// The latest event time in the window.
    pub fn last(&self) -> i64 {
        self.items.back().map_or(i64::MIN, |i| i.t)
    }

    /// Whether a window read back from a snapshot keeps the invariants `add` relies on: items
    /// sorted by time, `tail_from` inside them, and `tail` counting exactly the values from
    /// `tail_from` on (a damaged count would underflow when the value leaves the window).
    pub fn is_consistent(&self, time_ok: impl Fn(i64) -> bool) -> bool {
        if !self.items.iter().all(|i| time_ok(i.t))
            || !self
                .items
                .iter()
                .zip(self.items.iter().skip(1))
                .all(|(a, b)| a.t <= b.t)
        {
            return false;
        }
        if self.items.is_empty() {
            return self.tail_from == 0 && self.tail.is_empty();
        }
        if self.tail_from >= self.items.len() {
            return false;
        }
        let mut tail: Map<u64, u32> = Map::default();
        for i in self.items.iter().skip(self.tail_from) {
            *tail.entry(i.v).or_default() += 1;
        }
        tail == self.tail
    }

    /// Events held.
    pub fn held(&self) -> usize {
        self.items.len()
    }

    /// Forgets events before `lo`: no window that can still change reaches them.
    pub fn forget_before(&mut self, lo: i64) {
        while self.items.front().is_some_and(|i| i.t < lo) {
            if let Some(old) = self.items.pop_front() {
                if self.tail_from == 0 {
                    uncount(&mut self.tail, old.v);
                } else {
                    self.tail_from -= 1;
                }
            }
        }
    }

    /// Adds an event at time `t` with value hash `v`; appends to `out` every event whose window
    /// meets `cond` now and did not before.
    pub fn add(
        &mut self,
        t: i64,
        v: u64,
        span: i64,
        measure: Measure,
        cond: &Range,
        out: &mut Vec<Met>,
    ) {
        let newest = self.last();
        let at = self.items.partition_point(|i| i.t <= t);
        self.items.insert(at, Item { t, v, met: false });
        if t >= newest {
            *self.tail.entry(v).or_default() += 1;
            let lo = t.saturating_sub(span);
            while self.items[self.tail_from].t < lo {
                let old = self.items[self.tail_from].v;
                uncount(&mut self.tail, old);
                self.tail_from += 1;
            }
        } else if t >= newest.saturating_sub(span) {
            *self.tail.entry(v).or_default() += 1;
        } else {
            self.tail_from += 1;
        }
        // The windows the new event falls in end at events from its time to a span later.
        let first = self.items.partition_point(|i| i.t < t);
        let until = t.saturating_add(span);
        let mut j = first;
        while j < self.items.len() && self.items[j].t <= until {
            if !self.items[j].met {
                let (value, start) = self.measure(j, span, measure);
                if cond.holds(value) {
                    self.items[j].met = true;
                    out.push((self.items[j].t, value, start));
                }
            }
            j += 1;
        }
    }

    /// The value and earliest event time of the window ending at item `j`.
    fn measure(&self, j: usize, span: i64, measure: Measure) -> (f64, i64) {
        let end = self.items[j].t;
        if end == self.last() {
            let start = self.items[self.tail_from].t;
            let value = match measure {
                Measure::Count => self.items.len() - self.tail_from,
                Measure::Distinct => self.tail.len(),
            };
            return (value as f64, start);
        }
        let lo = self
            .items
            .partition_point(|i| i.t < end.saturating_sub(span));
        let hi = self.items.partition_point(|i| i.t <= end);
        let value = match measure {
            Measure::Count => hi - lo,
            Measure::Distinct => self
                .items
                .range(lo..hi)
                .map(|i| i.v)
                .collect::<Set<u64>>()
                .len(),
        };
        (value as f64, self.items[lo].t)
    }
}

fn uncount(tail: &mut Map<u64, u32>, v: u64) {
    if let Some(n) = tail.get_mut(&v) {
        *n -= 1;
        if *n == 0 {
            tail.remove(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gte(n: f64) -> Range {
        Range {
            gte: Some(n),
            ..Range::default()
        }
    }

    fn run(events: &[(i64, u64)], measure: Measure, cond: &Range) -> Vec<Met> {
        let mut w = Window::default();
        let mut out = Vec::new();
        for &(t, v) in events {
            w.add(t, v, 60, measure, cond, &mut out);
        }
        out.sort_by_key(|m| m.0);
        out
    }

    #[test]
    fn counts_fire_on_the_event_that_completes_them_and_on_each_later_one() {
        let ev: Vec<(i64, u64)> = (0..5).map(|i| (i * 10, 0)).collect();
        let met = run(&ev, Measure::Count, &gte(3.0));
        assert_eq!(met, vec![(20, 3.0, 0), (30, 4.0, 0), (40, 5.0, 0)]);
    }

    #[test]
    fn the_window_slides_past_old_events() {
        let met = run(&[(0, 0), (50, 0), (100, 0)], Measure::Count, &gte(3.0));
        assert!(met.is_empty(), "{met:?}");
        let met = run(
            &[(0, 0), (50, 0), (100, 0), (105, 0)],
            Measure::Count,
            &gte(3.0),
        );
        assert_eq!(met, vec![(105, 3.0, 50)]);
    }

    #[test]
    fn a_late_event_makes_the_events_after_it_meet_the_condition() {
        // In order, 10 meets it with {0, 5, 10}; out of order the same events meet it.
        let ordered = run(
            &[(0, 0), (5, 0), (10, 0), (20, 0)],
            Measure::Count,
            &gte(3.0),
        );
        let late = run(
            &[(10, 0), (20, 0), (0, 0), (5, 0)],
            Measure::Count,
            &gte(3.0),
        );
        let times = |m: &[Met]| m.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(times(&ordered), vec![10, 20]);
        assert_eq!(times(&late), times(&ordered));
    }

    #[test]
    fn distinct_values_ignore_repeats() {
        let ev = [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)];
        let met = run(&ev, Measure::Distinct, &gte(3.0));
        assert_eq!(met, vec![(4, 3.0, 0)]);
        let mut w = Window::default();
        let mut out = Vec::new();
        for (t, v) in ev {
            w.add(t, v, 60, Measure::Distinct, &gte(3.0), &mut out);
        }
        w.forget_before(2);
        assert_eq!(w.held(), 3);
        w.add(70, 4, 60, Measure::Distinct, &gte(3.0), &mut out);
        assert_eq!(
            out.len(),
            1,
            "only 4 and 70 are within the minute before 70: {out:?}"
        );
    }

    #[test]
    fn every_arrival_order_meets_the_same_events() {
        let ev: Vec<(i64, u64)> = vec![(0, 1), (3, 2), (3, 1), (9, 3), (40, 2), (61, 4), (62, 5)];
        let base = run(&ev, Measure::Distinct, &gte(3.0));
        let times = |m: &[Met]| m.iter().map(|x| x.0).collect::<Vec<_>>();
        for rot in 1..ev.len() {
            let mut e = ev.clone();
            e.rotate_left(rot);
            let n = e.len();
            e.swap(0, (rot * 3) % n);
            assert_eq!(times(&run(&e, Measure::Distinct, &gte(3.0))), times(&base));
        }
    }
}
