//! Which accounts and regions deliver events, and which went silent while others still
//! deliver: CloudTrail stopped without a `StopLogging` event, an EventBridge rule deleted, a
//! broken delivery path. Nothing in the events says so; only their absence does.
//!
//! Every event notes its source (`recipientAccountId`, `awsRegion`), cheaply: consecutive
//! events mostly share one, so the last is compared before any hashing. A source goes silent
//! for a `trailwatch: silence:` rule once the watermark passes its last event by the rule's
//! `after` and another source delivered after that moment (in replay, event time; live, the
//! watermark follows the wall clock on a quiet stream, so a stream that stops whole does not
//! page per source). Only sources that delivered normally (enough events over enough time)
//! count. Checks run only when the earliest deadline passes, so the per-event cost stays flat.

use crate::keyed::Map;
use serde::{Deserialize, Serialize};

/// Most sources tracked; beyond, the one silent longest is forgotten.
pub const MAX_SOURCES: usize = 10_000;

/// One account and region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    /// `recipientAccountId`.
    pub account: Box<str>,
    /// `awsRegion`.
    pub region: Box<str>,
    /// Earliest event time seen.
    pub first: i64,
    /// Latest event time seen.
    pub last: i64,
    /// Events seen.
    pub events: u64,
    /// The eventID of the latest event (what a silence alert names).
    #[serde(default)]
    pub last_id: String,
    /// Silence rules (bit per rule) that reported the current silence.
    #[serde(default)]
    reported: u64,
}

/// A silence rule's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Index of the rule among the correlations.
    pub correlation: u32,
    /// Seconds without events that make a silence.
    pub after: i64,
    /// Events a source must have delivered to count as delivering normally.
    pub min_events: u64,
    /// Seconds of event time it must have delivered over.
    pub baseline: i64,
    /// A source silent this long is forgotten (and not reported again).
    pub retention: i64,
}

/// A source that went silent, for rule `rule` (an index into the rules given to `check`).
#[derive(Debug, Clone, PartialEq)]
pub struct Silent {
    /// The rule's correlation index.
    pub correlation: u32,
    /// The source, as it stands.
    pub source: Source,
    /// When the silence began to count: its last event plus the rule's `after`.
    pub since: i64,
}

/// The sources of one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sources {
    table: Vec<Source>,
    /// Account, then region, to the source's place in `table`: nested so that a lookup by the
    /// event's two strings builds no key (this runs for most events).
    #[serde(skip)]
    index: Map<Box<str>, Map<Box<str>, u32>>,
    #[serde(skip)]
    recent: Option<u32>,
    /// No rule can report anything before the watermark reaches this.
    #[serde(skip, default = "check_now")]
    next_check: i64,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            table: Vec::new(),
            index: Map::default(),
            recent: None,
            next_check: check_now(),
        }
    }
}

impl Sources {
    /// Notes an event of `account` in `region` at `t`. Values that are no account id or
    /// region name (a forged record) are not sources.
    pub fn saw(&mut self, account: &str, region: &str, t: i64, event_id: Option<&str>) {
        let i = match self.recent {
            Some(i) if self.is(i, account, region) => i,
            _ if !plausible(account, region) => return,
            _ => self.find_or_add(account, region, t),
        };
        self.recent = Some(i);
        let s = &mut self.table[i as usize];
        if t >= s.last {
            // Reused, not reallocated: this runs for every event.
            s.last_id.clear();
            s.last_id.push_str(event_id.unwrap_or_default());
        }
        if t > s.last {
            s.last = t;
            if s.reported != 0 {
                s.reported = 0; // it delivers again: a later silence is a new one
                self.next_check = i64::MIN;
            }
        }
        s.first = s.first.min(t);
        s.events = s.events.saturating_add(1);
    }

    fn is(&self, i: u32, account: &str, region: &str) -> bool {
        let s = &self.table[i as usize];
        *s.account == *account && *s.region == *region
    }

    fn find_or_add(&mut self, account: &str, region: &str, t: i64) -> u32 {
        if let Some(&i) = self.index.get(account).and_then(|r| r.get(region)) {
            return i;
        }
        if self.table.len() >= MAX_SOURCES {
            self.forget_quietest();
        }
        self.table.push(Source {
            account: account.into(),
            region: region.into(),
            first: t,
            last: t,
            events: 0,
            last_id: String::new(),
            reported: 0,
        });
        let i = self.table.len() as u32 - 1;
        self.index
            .entry(account.into())
            .or_default()
            .insert(region.into(), i);
        self.next_check = i64::MIN;
        i
    }

    /// Forgets the eighth of the sources silent longest (in one go, so a flood of forged
    /// sources costs a sort per thousand, not a scan per event).
    fn forget_quietest(&mut self) {
        self.table.sort_by_key(|s| std::cmp::Reverse(s.last));
        self.table.truncate(self.table.len() - self.table.len() / 8);
        self.reindex();
    }

    fn reindex(&mut self) {
        self.index = Map::default();
        for (i, s) in self.table.iter().enumerate() {
            self.index
                .entry(s.account.clone())
                .or_default()
                .insert(s.region.clone(), i as u32);
        }
        self.recent = None;
        self.next_check = i64::MIN;
    }

    /// The sources tracked.
    pub fn iter(&self) -> impl Iterator<Item = &Source> {
        self.table.iter()
    }

    /// Reports the sources gone silent for `rules` by `watermark`, each silence once.
    pub fn check(&mut self, rules: &[Rule], watermark: i64, out: &mut Vec<Silent>) {
        if rules.is_empty() || watermark < self.next_check {
            return;
        }
        self.forget_retired(rules, watermark);
        // The two latest deliveries: "another source delivered after" compares with the
        // latest of the others.
        let mut newest = [i64::MIN; 2];
        for s in &self.table {
            if s.last > newest[0] {
                newest = [s.last, newest[0]];
            } else if s.last > newest[1] {
                newest[1] = s.last;
            }
        }
        let mut next = i64::MAX;
        for s in &mut self.table {
            let others = if s.last == newest[0] {
                newest[1]
            } else {
                newest[0]
            };
            for (bit, r) in rules.iter().enumerate().take(64) {
                let flag = 1u64 << bit;
                if s.reported & flag != 0 {
                    continue;
                }
                let since = s.last.saturating_add(r.after);
                if watermark < since {
                    next = next.min(since); // may go silent then (or deliver first)
                    continue;
                }
                // Silent: a source that did not deliver normally cannot become normal without
                // delivering, which starts the count again.
                if s.events < r.min_events || s.last - s.first < r.baseline {
                    continue;
                }
                if others >= since {
                    s.reported |= flag;
                    out.push(Silent {
                        correlation: r.correlation,
                        source: s.clone(),
                        since,
                    });
                } else {
                    next = next.min(since); // until another source delivers past it
                }
            }
        }
        self.next_check = next;
    }

    /// Forgets sources silent longer than every rule's retention.
    fn forget_retired(&mut self, rules: &[Rule], watermark: i64) {
        let keep = rules.iter().map(|r| r.retention).max().unwrap_or(i64::MAX);
        let before = self.table.len();
        self.table
            .retain(|s| watermark.saturating_sub(s.last) <= keep);
        if self.table.len() != before {
            self.reindex();
        }
    }

    /// Rebuilds the index after a restore; `false` when the saved table is not sane.
    pub fn restored(&mut self, time_ok: impl Fn(i64) -> bool) -> bool {
        let sane = self.table.len() <= MAX_SOURCES
            && self
                .table
                .iter()
                .all(|s| time_ok(s.first) && time_ok(s.last) && s.first <= s.last);
        self.reindex();
        sane && self.index.values().map(Map::len).sum::<usize>() == self.table.len()
    }
}

fn check_now() -> i64 {
    i64::MIN
}

/// A twelve-digit account id and a region name (`us-east-1`, `us-gov-west-1`).
fn plausible(account: &str, region: &str) -> bool {
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (2..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        correlation: 0,
        after: 3600,
        min_events: 3,
        baseline: 600,
        retention: 30 * 86_400,
    };

    fn run(events: &[(&str, i64)], lateness: i64) -> Vec<(String, i64)> {
        let mut s = Sources::default();
        let mut out = Vec::new();
        let mut max = i64::MIN;
        for &(account, t) in events {
            // a, b, c: accounts 111111111111, 222222222222, 333333333333.
            let digit = (account.as_bytes()[0] - b'a' + b'1') as char;
            s.saw(&digit.to_string().repeat(12), "us-east-1", t, None);
            max = max.max(t);
            s.check(&[RULE], max - lateness, &mut out);
        }
        out.iter()
            .map(|x| {
                let letter = (x.source.account.as_bytes()[0] - b'1' + b'a') as char;
                (letter.to_string(), x.since)
            })
            .collect()
    }

    #[test]
    fn a_source_that_stops_while_others_deliver_is_reported_once() {
        let mut events = Vec::new();
        for i in 0..20 {
            events.push(("a", i * 300));
            events.push(("b", i * 300 + 1));
        }
        // b stops at 5701; a goes on for three more hours.
        for i in 20..56 {
            events.push(("a", i * 300));
        }
        assert_eq!(run(&events, 0), [("b".to_string(), 5701 + 3600)]);
        assert_eq!(
            run(&events, 300),
            [("b".to_string(), 5701 + 3600)],
            "with lateness"
        );
    }

    #[test]
    fn no_report_for_a_new_source_or_when_everything_stops() {
        // c sent two events only: not a normal source.
        let mut events: Vec<(&str, i64)> = (0..40).map(|i| ("a", i * 300)).collect();
        events.push(("c", 10));
        events.push(("c", 20));
        assert!(run(&events, 0).is_empty());
        // Both stop together: nothing to compare with, nothing reported (a watermark moving on
        // with the wall clock alone does not page per source).
        let mut s = Sources::default();
        let mut out = Vec::new();
        for i in 0..10 {
            s.saw("111111111111", "us-east-1", i * 100, None);
            s.saw("222222222222", "us-east-1", i * 100, None);
        }
        s.check(&[RULE], 1_000_000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn forged_sources_are_ignored_and_a_flood_stays_bounded() {
        let mut s = Sources::default();
        s.saw("not-an-account", "us-east-1", 1, None);
        s.saw("111111111111", "US EAST\u{1b}", 1, None);
        assert_eq!(s.iter().count(), 0);
        for i in 0..(MAX_SOURCES as i64 + 5_000) {
            s.saw(&format!("{i:012}"), "us-east-1", i, None);
        }
        assert!(s.iter().count() <= MAX_SOURCES);
        let newest = s.iter().map(|x| x.last).max();
        assert_eq!(
            newest,
            Some(MAX_SOURCES as i64 + 4_999),
            "the quietest go first"
        );
    }

    #[test]
    fn a_source_that_resumes_and_stops_again_is_reported_again() {
        let mut events = Vec::new();
        for i in 0..10 {
            events.push(("a", i * 300));
            events.push(("b", i * 300));
        }
        for i in 10..30 {
            events.push(("a", i * 300)); // b silent from 2700
        }
        events.push(("b", 9000));
        for i in 31..60 {
            events.push(("a", i * 300)); // b silent again from 9000
        }
        assert_eq!(
            run(&events, 0),
            [
                ("b".to_string(), 2700 + 3600),
                ("b".to_string(), 9000 + 3600)
            ]
        );
    }
}
