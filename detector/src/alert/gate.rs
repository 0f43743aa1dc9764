//! Between detection and the sinks: suppression windows merge an incident's repeats into one
//! alert and a roll-up count, and rate limits (`governor`) hold back floods, which one storm
//! alert then summarises. Nothing is dropped silently: every repeat is counted in a roll-up and
//! every held-back alert in a storm.
//!
//! Everything runs on event time. Suppression windows are aligned to the epoch (a 1h window is
//! the clock hour of the event), the rate limiter's clock is the latest event time seen, and a
//! window closes once that time, less the allowed lateness, passes its end. So a replay of
//! history gives the alerts live processing gives, an alert's id is the same however often its
//! input is redelivered, and the state is small enough to save after every batch.

use super::lineage::Merged;
use super::{alert_id, Alert, AlertKind, AlertRule};
use crate::window::format_time;
use governor::clock::FakeRelativeClock;
use governor::state::{keyed::DefaultKeyedStateStore, InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

/// Held-back alerts are summarised per this many seconds of event time.
pub const STORM_PERIOD: i64 = 300;

/// Longest step (seconds) the rate limiter's clock takes at once.
const STEP_CAP: i64 = 3600;

/// The rule id storm alerts carry.
pub const STORM_RULE_ID: &str = "trailwatch-alert-storm";

/// At most this many held-back alert ids are listed in one storm alert.
const STORM_IDS: usize = 100;

/// An alert as detection made it, before suppression and rate limits.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The alert (its id is the per-hit id, replaced when suppressed).
    pub alert: Alert,
    /// What repeats are merged by (JSON text).
    pub key: String,
    /// Event time, seconds since the epoch (without one, the alert is not suppressed).
    pub time: Option<i64>,
    /// Suppression window, seconds; 0 publishes every alert.
    pub suppress: i64,
    /// The suppression window's alert id, when made ahead ([`Candidate::with_window_id`]):
    /// parallel replay's workers make it, so the thread that keeps state does not hash it.
    /// Kept with the window start it was made for, and used only while that still holds.
    window_id: Option<(i64, String)>,
}

impl Candidate {
    /// A candidate whose window id the gate makes when it takes it.
    pub fn new(alert: Alert, key: String, time: Option<i64>, suppress: i64) -> Self {
        Candidate {
            alert,
            key,
            time,
            suppress,
            window_id: None,
        }
    }

    /// The start of the suppression window the alert falls in, when it is suppressed.
    fn window_start(&self) -> Option<i64> {
        let t = self.time.filter(|_| self.suppress > 0)?;
        Some(t.div_euclid(self.suppress) * self.suppress)
    }

    /// The id the alert takes when suppressed: from its rule, key and window.
    fn make_window_id(&self, start: i64) -> String {
        alert_id(&self.alert.rule.id, &self.key, &format_time(start))
    }

    /// Makes the suppression window's alert id now rather than in [`Gate::offer`].
    pub fn with_window_id(mut self) -> Self {
        self.window_id = self
            .window_start()
            .map(|start| (start, self.make_window_id(start)));
        self
    }
}

/// Alert rate caps per minute of event time; 0 means no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per rule.
    pub per_rule_per_minute: u32,
    /// Over all rules.
    pub global_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_rule_per_minute: 60,
            global_per_minute: 600,
        }
    }
}

/// Counters since the gate was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Repeats merged into an open suppression window.
    pub suppressed: u64,
    /// Alerts held back by a rate limit.
    pub rate_limited: u64,
    /// Roll-up alerts made.
    pub rollups: u64,
    /// Storm alerts made.
    pub storms: u64,
}

/// One open suppression window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    end: i64,
    /// What a roll-up needs of the window's first alert ([`rollup_head`]).
    first: Alert,
    repeats: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    /// The events of the first alert and every repeat.
    #[serde(default)]
    lineage: Merged,
}

/// Alerts held back within one storm period.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Storm {
    held: BTreeMap<String, u64>,
    ids: Vec<String>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    /// The events of the held-back alerts.
    #[serde(default)]
    lineage: Merged,
}

/// What is saved between runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    watermark: Option<i64>,
    open: Vec<Open>,
    storms: BTreeMap<i64, Storm>,
}

type KeyedLimiter = RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;
type DirectLimiter = RateLimiter<
    NotKeyed,
    InMemoryState,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// Rate limits on an event-time clock.
struct Limiter {
    clock: FakeRelativeClock,
    origin: Option<i64>,
    advanced: i64,
    per_rule: Option<KeyedLimiter>,
    global: Option<DirectLimiter>,
}

impl Limiter {
    fn new(limits: Limits) -> Self {
        let clock = FakeRelativeClock::default();
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        Limiter {
            per_rule: quota(limits.per_rule_per_minute)
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            global: quota(limits.global_per_minute)
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            clock,
            origin: None,
            advanced: 0,
        }
    }

    /// Moves the clock forward to event time `t` (it never goes back).
    fn at(&mut self, t: i64) {
        let origin = *self.origin.get_or_insert(t);
        let since = t.saturating_sub(origin);
        if since > self.advanced {
            // A quota refills within a minute, so a longer step changes nothing but could
            // overflow the limiter's nanosecond clock (an event time centuries away).
            let step = (since - self.advanced).min(STEP_CAP);
            self.clock.advance(Duration::from_secs(step as u64));
            self.advanced = since;
        }
    }

    fn allows(&self, rule: &str) -> bool {
        let rule_ok = self
            .per_rule
            .as_ref()
            .is_none_or(|l| l.check_key(&rule.to_string()).is_ok());
        rule_ok && self.global.as_ref().is_none_or(|l| l.check().is_ok())
    }
}

/// Suppression and rate limits between detection and the sinks.
pub struct Gate {
    open: HashMap<String, Open>,
    closing: BTreeSet<(i64, String)>,
    storms: BTreeMap<i64, Storm>,
    watermark: Option<i64>,
    /// Where a quiet stream's watermark was advanced to without events.
    floor: Option<i64>,
    lateness: i64,
    limits: Limits,
    limiter: Limiter,
    /// Counters.
    pub stats: GateStats,
}

impl Gate {
    /// A gate whose windows wait `lateness` seconds for late events before closing.
    pub fn new(limits: Limits, lateness: i64) -> Self {
        Gate {
            open: HashMap::new(),
            closing: BTreeSet::new(),
            storms: BTreeMap::new(),
            watermark: None,
            floor: None,
            lateness: lateness.max(0),
            limits,
            limiter: Limiter::new(limits),
            stats: GateStats::default(),
        }
    }

    /// The rate caps in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether nothing waits for a window to close (then event times need not be observed).
    pub fn is_idle(&self) -> bool {
        self.open.is_empty() && self.storms.is_empty()
    }

    /// Open suppression windows.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Notes an event time; windows it closes are reported by [`Gate::advance`].
    pub fn observe(&mut self, t: i64) {
        if self.watermark.is_none_or(|w| t > w) {
            self.watermark = Some(t);
            self.limiter.at(t);
        }
    }

    /// Takes one candidate; what is to be published now is pushed to `out`.
    pub fn offer(&mut self, mut c: Candidate, out: &mut Vec<Alert>) {
        let (Some(time), Some(start)) = (c.time, c.window_start()) else {
            c.time.inspect(|&t| self.observe(t));
            self.admit(c.alert, out);
            return;
        };
        self.observe(time);
        let id = match c.window_id.take() {
            Some((made_for, id)) if made_for == start => {
                debug_assert_eq!(id, c.make_window_id(start), "a stale window id");
                id
            }
            _ => c.make_window_id(start),
        };
        let mut alert = c.alert;
        alert.alert_id = id;
        alert.group_key = c.key;
        if let Some(open) = self.open.get_mut(&alert.alert_id) {
            open.repeats += 1;
            open.lineage.add(&alert.lineage);
            widen(&mut open.first_seen, &alert.first_seen, true);
            widen(&mut open.last_seen, &alert.last_seen, false);
            self.stats.suppressed += 1;
            return;
        }
        let end = start + c.suppress;
        self.closing.insert((end, alert.alert_id.clone()));
        self.open.insert(
            alert.alert_id.clone(),
            Open {
                end,
                first: rollup_head(&alert),
                repeats: 0,
                first_seen: alert.first_seen.clone(),
                last_seen: alert.last_seen.clone(),
                lineage: {
                    let mut m = Merged::default();
                    m.add(&alert.lineage);
                    m
                },
            },
        );
        self.admit(alert, out);
    }

    /// Publishes `alert` if the rate limits allow, else holds it for the storm summary.
    fn admit(&mut self, alert: Alert, out: &mut Vec<Alert>) {
        if self.limiter.allows(&alert.rule.id) {
            out.push(alert);
            return;
        }
        self.stats.rate_limited += 1;
        let w = self.watermark.unwrap_or(0);
        let storm = self
            .storms
            .entry(w.div_euclid(STORM_PERIOD) * STORM_PERIOD)
            .or_default();
        *storm.held.entry(alert.rule.id.clone()).or_default() += 1;
        if storm.ids.len() < STORM_IDS {
            storm.ids.push(alert.alert_id.clone());
        }
        widen(&mut storm.first_seen, &alert.first_seen, true);
        widen(&mut storm.last_seen, &alert.last_seen, false);
        storm.lineage.add(&alert.lineage);
    }

    /// Closes the windows and storm periods the watermark has passed.
    pub fn advance(&mut self, out: &mut Vec<Alert>) {
        let by_events = self.watermark.map(|w| w.saturating_sub(self.lateness));
        if let Some(h) = by_events.max(self.floor) {
            self.close_until(h, out);
        }
    }

    /// Advances a quiet stream's watermark to `w` without an event and closes what it passes.
    pub fn advance_to(&mut self, w: i64, out: &mut Vec<Alert>) {
        if self.floor.is_none_or(|f| w > f) {
            self.floor = Some(w);
            self.advance(out);
        }
    }

    /// Closes everything (the end of a replay).
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        self.close_until(i64::MAX, out);
    }

    fn close_until(&mut self, horizon: i64, out: &mut Vec<Alert>) {
        while let Some((end, id)) = self.closing.first().cloned() {
            if end > horizon {
                break;
            }
            self.closing.pop_first();
            if let Some(open) = self.open.remove(&id).filter(|o| o.repeats > 0) {
                self.stats.rollups += 1;
                let rollup = rollup(open);
                self.admit(rollup, out);
            }
        }
        while let Some((&start, _)) = self.storms.first_key_value() {
            if start.saturating_add(STORM_PERIOD) > horizon {
                break;
            }
            if let Some((start, storm)) = self.storms.pop_first() {
                self.stats.storms += 1;
                out.push(storm_alert(start, storm));
            }
        }
    }

    /// The open windows and held-back alerts, for a restart to continue from.
    pub fn save(&self) -> Vec<u8> {
        let mut open: Vec<Open> = self.open.values().cloned().collect();
        open.sort_by(|a, b| (a.end, &a.first.alert_id).cmp(&(b.end, &b.first.alert_id)));
        let saved = Saved {
            watermark: self.watermark,
            open,
            storms: self.storms.clone(),
        };
        serde_json::to_vec(&saved).unwrap_or_default()
    }

    /// Continues from what [`Gate::save`] wrote; a damaged file is an error, and nothing is
    /// restored from it.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), serde_json::Error> {
        let saved: Saved = serde_json::from_slice(bytes)?;
        if let Some(w) = saved.watermark {
            self.observe(w);
        }
        for o in saved.open {
            self.closing.insert((o.end, o.first.alert_id.clone()));
            self.open.insert(o.first.alert_id.clone(), o);
        }
        self.storms.extend(saved.storms);
        Ok(())
    }
}

/// Widens a first-seen (`earliest`) or last-seen bound; RFC 3339 UTC times sort as text.
fn widen(bound: &mut Option<String>, t: &Option<String>, earliest: bool) {
    if let Some(t) = t {
        let wider = match bound {
            None => true,
            Some(b) => (t < b) == earliest && t != b,
        };
        if wider {
            *bound = Some(t.clone());
        }
    }
}

/// What a roll-up takes from the first alert of its window (rule, group, id): its events and
/// lineage are merged apart, so copying them for every window opened was wasted (the state
/// thread's largest cost in the gate).
fn rollup_head(alert: &Alert) -> Alert {
    Alert {
        alert_id: alert.alert_id.clone(),
        kind: alert.kind,
        rule: alert.rule.clone(),
        first_seen: None,
        last_seen: None,
        count: alert.count,
        group_key: alert.group_key.clone(),
        events: Vec::new(),
        related_alert_id: None,
        held_back: None,
        held_alert_ids: None,
        lineage: Default::default(),
    }
}

/// The roll-up of a window that merged repeats: counts the first alert and every repeat.
fn rollup(open: Open) -> Alert {
    let first = open.first;
    Alert {
        alert_id: alert_id(
            &first.rule.id,
            &first.group_key,
            &format!("{}/rollup", first.alert_id),
        ),
        kind: AlertKind::Rollup,
        rule: first.rule,
        first_seen: open.first_seen,
        last_seen: open.last_seen,
        count: open.repeats + 1,
        group_key: first.group_key,
        events: Vec::new(),
        related_alert_id: Some(first.alert_id),
        held_back: None,
        held_alert_ids: None,
        lineage: open.lineage.lineage(),
    }
}

fn storm_alert(start: i64, storm: Storm) -> Alert {
    let total = storm.held.values().sum();
    let window = format_time(start);
    Alert {
        alert_id: alert_id(STORM_RULE_ID, "", &window),
        kind: AlertKind::Storm,
        rule: std::sync::Arc::new(AlertRule {
            id: STORM_RULE_ID.into(),
            title: "Alert storm: alerts held back by rate limits".into(),
            level: "high".into(),
            tags: Vec::new(),
        }),
        first_seen: storm.first_seen,
        last_seen: storm.last_seen,
        count: total,
        group_key: window,
        events: Vec::new(),
        related_alert_id: None,
        held_back: Some(storm.held),
        held_alert_ids: Some(storm.ids),
        lineage: storm.lineage.lineage(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000 / 3600 * 3600;

    fn alert(rule: &str, id: &str, t: i64) -> Alert {
        Alert::bare(rule, id, &format_time(t))
    }

    fn cand(rule: &str, key: &str, t: i64, suppress: i64) -> Candidate {
        Candidate {
            alert: alert(rule, &format!("{rule}-{key}-{t}"), t),
            key: key.into(),
            time: Some(t),
            suppress,
            window_id: None,
        }
    }

    const NO_LIMITS: Limits = Limits {
        per_rule_per_minute: 0,
        global_per_minute: 0,
    };

    #[test]
    fn a_window_id_made_ahead_is_the_gates_own_and_a_moved_time_makes_it_anew() {
        let mut out = Vec::new();
        let mut g = Gate::new(NO_LIMITS, 60);
        g.offer(cand("r", "alice", T0 + 10, 3600).with_window_id(), &mut out);
        assert_eq!(out[0].alert_id, alert_id("r", "alice", &format_time(T0)));
        // Made for one window, then moved to the next hour: the id follows the time.
        let mut c = cand("r", "bob", T0 + 10, 3600).with_window_id();
        c.time = Some(T0 + 3610);
        g.offer(c, &mut out);
        let next = format_time(T0 + 3600);
        assert_eq!(out[1].alert_id, alert_id("r", "bob", &next));
    }

    #[test]
    fn repeats_merge_into_one_alert_and_a_rollup() {
        let mut g = Gate::new(NO_LIMITS, 60);
        let mut out = Vec::new();
        for i in 0..5 {
            g.offer(cand("r", "alice", T0 + 10 + i * 60, 3600), &mut out);
        }
        g.offer(cand("r", "bob", T0 + 20, 3600), &mut out);
        assert_eq!(out.len(), 2, "one alert per key");
        assert_eq!(out[0].group_key, "alice");
        let first = out[0].alert_id.clone();
        assert_eq!(first, alert_id("r", "alice", &format_time(T0)));
        assert_eq!(g.stats.suppressed, 4);
        // The window closes only once the watermark, less lateness, passes its end.
        g.observe(T0 + 3600 + 30);
        g.advance(&mut out);
        assert_eq!(out.len(), 2);
        g.observe(T0 + 3600 + 60);
        g.advance(&mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        let r = &out[2];
        assert_eq!(r.kind, AlertKind::Rollup);
        assert_eq!(r.count, 5);
        assert_eq!(r.related_alert_id.as_deref(), Some(first.as_str()));
        assert_eq!(r.first_seen, Some(format_time(T0 + 10)));
        assert_eq!(r.last_seen, Some(format_time(T0 + 250)));
        assert!(g.is_idle(), "bob had no repeats: no roll-up, nothing open");
        // The next hour is a new incident.
        g.offer(cand("r", "alice", T0 + 3700, 3600), &mut out);
        assert_eq!(out.len(), 4);
        assert_ne!(out[3].alert_id, first);
    }

    #[test]
    fn without_suppression_every_alert_passes_with_its_own_id() {
        let mut g = Gate::new(NO_LIMITS, 0);
        let mut out = Vec::new();
        g.offer(cand("r", "k", T0, 0), &mut out);
        g.offer(cand("r", "k", T0 + 1, 0), &mut out);
        g.flush(&mut out);
        let ids: Vec<&str> = out.iter().map(|a| a.alert_id.as_str()).collect();
        assert_eq!(ids, vec![format!("r-k-{T0}"), format!("r-k-{}", T0 + 1)]);
    }

    #[test]
    fn floods_are_held_back_and_summarised_in_one_storm() {
        let limits = Limits {
            per_rule_per_minute: 2,
            global_per_minute: 3,
        };
        let mut g = Gate::new(limits, 0);
        let mut out = Vec::new();
        for i in 0..5 {
            g.offer(cand("noisy", &i.to_string(), T0, 0), &mut out);
        }
        g.offer(cand("quiet", "x", T0, 0), &mut out);
        g.offer(cand("other", "y", T0, 0), &mut out);
        let passed: Vec<&str> = out.iter().map(|a| a.rule.id.as_str()).collect();
        assert_eq!(
            passed,
            vec!["noisy", "noisy", "quiet"],
            "per-rule then global cap"
        );
        assert_eq!(g.stats.rate_limited, 4);
        g.observe(T0 + STORM_PERIOD + 1);
        g.advance(&mut out);
        let storm = out.last().unwrap();
        assert_eq!(storm.kind, AlertKind::Storm);
        assert_eq!(storm.rule.id, STORM_RULE_ID);
        assert_eq!(storm.count, 4);
        let held = storm.held_back.as_ref().unwrap();
        assert_eq!((held["noisy"], held["other"]), (3, 1));
        assert_eq!(storm.held_alert_ids.as_ref().unwrap().len(), 4);
        // A minute later the per-rule budget has refilled.
        g.offer(cand("noisy", "late", T0 + STORM_PERIOD + 60, 0), &mut out);
        assert_eq!(out.last().unwrap().rule.id, "noisy");
    }

    #[test]
    fn event_times_centuries_apart_do_not_overflow_the_rate_limiter() {
        let mut g = Gate::new(Limits::default(), 0);
        let mut out = Vec::new();
        for (i, t) in [
            1_700_000_000,
            8_000_000_000_000,
            i64::MAX / 2,
            1_700_000_100,
        ]
        .into_iter()
        .enumerate()
        {
            g.offer(cand("r", &format!("k{i}"), t, 0), &mut out);
        }
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn state_survives_a_restart() {
        let mut g = Gate::new(NO_LIMITS, 0);
        let mut out = Vec::new();
        g.offer(cand("r", "k", T0 + 5, 3600), &mut out);
        g.offer(cand("r", "k", T0 + 6, 3600), &mut out);
        let saved = g.save();
        let mut again = Gate::new(NO_LIMITS, 0);
        again.restore(&saved).unwrap();
        again.offer(cand("r", "k", T0 + 7, 3600), &mut out);
        assert_eq!(out.len(), 1, "still suppressed after the restart");
        again.flush(&mut out);
        assert_eq!(out[1].count, 3);
        assert!(Gate::new(NO_LIMITS, 0).restore(b"{\"open\": 5}").is_err());
    }
}
