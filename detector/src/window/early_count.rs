//! The window of an early `event_count` correlation, kept as small as the buffered one: the
//! times of its events, sorted, each with whether its window met the condition in the lowest
//! bit, inline for up to two events (most groups of a busy correlation hold one or two).

use super::early::Met;
use crate::rule::correlation::Range;
use smallvec::SmallVec;

/// Event times shifted left by one, the lowest bit set once the event's window met the condition.
pub type Counts = SmallVec<[i64; 2]>;

fn time(x: i64) -> i64 {
    x >> 1
}

fn met(x: i64) -> bool {
    x & 1 == 1
}

/// The latest event time held.
pub fn last(w: &Counts) -> i64 {
    w.last().map_or(i64::MIN, |&x| time(x))
}

/// Forgets events before `lo`: no window that can still change reaches them.
pub fn forget_before(w: &mut Counts, lo: i64) {
    let n = w.partition_point(|&x| time(x) < lo);
    w.drain(..n);
}

/// Adds an event at `t`; appends to `out` every event whose window of `span` seconds now holds
/// a count meeting `cond` and did not before.
pub fn add(w: &mut Counts, t: i64, span: i64, cond: &Range, out: &mut Vec<Met>) {
    // Event times are far inside ±2^62 (snapshot restore bounds them), so the shift is exact.
    let at = w.partition_point(|&x| time(x) <= t);
    w.insert(at, t << 1);
    let first = w.partition_point(|&x| time(x) < t);
    let until = t.saturating_add(span);
    let mut j = first;
    while j < w.len() && time(w[j]) <= until {
        if !met(w[j]) {
            let end = time(w[j]);
            let lo = w.partition_point(|&x| time(x) < end.saturating_sub(span));
            let hi = w.partition_point(|&x| time(x) <= end);
            let value = (hi - lo) as f64;
            if cond.holds(value) {
                w[j] |= 1;
                out.push((end, value, time(w[lo])));
            }
        }
        j += 1;
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

    fn run(times: &[i64]) -> Vec<Met> {
        let mut w = Counts::new();
        let mut out = Vec::new();
        for &t in times {
            add(&mut w, t, 60, &gte(3.0), &mut out);
        }
        out.sort_by_key(|m| m.0);
        out
    }

    #[test]
    fn counts_meet_the_condition_on_the_same_events_in_any_order() {
        assert_eq!(run(&[0, 10, 20, 30]), vec![(20, 3.0, 0), (30, 4.0, 0)]);
        let late: Vec<i64> = run(&[20, 30, 0, 10]).iter().map(|m| m.0).collect();
        assert_eq!(late, vec![20, 30]);
        assert!(
            run(&[0, 50, 100]).is_empty(),
            "the window slides past old events"
        );
        let mut w = Counts::new();
        let mut out = Vec::new();
        add(&mut w, 5, 60, &gte(3.0), &mut out);
        assert!(!w.spilled(), "one event stays inline");
        forget_before(&mut w, 6);
        assert!(w.is_empty());
        assert_eq!(last(&w), i64::MIN);
    }
}
