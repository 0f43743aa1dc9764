//! Event-time state for correlation rules.
//!
//! Hits of the rules a correlation refers to are held in a reorder buffer and processed in
//! event-time order once the watermark (latest event time seen minus the allowed lateness) has
//! passed them, so the same events give the same correlation hits whatever order they arrive
//! in within the lateness. Events later than that are counted and left out of correlations
//! (their own rules still match them). Each correlation keeps one sliding window per group key;
//! a window that fires is reset, and the number of keys per correlation is capped, evicting the
//! least recently updated first.
//!
//! Correlations whose condition more events can only make true skip the reorder buffer and
//! fire the moment it holds (see [`early`]).

use crate::engine::RuleSet;
use crate::event::{Event, FieldValue};
use crate::rule::correlation::Kind;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

/// Limits of the correlation state.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How late (seconds of event time) an event may arrive and still be correlated.
    pub lateness: i64,
    /// Most group keys tracked per correlation rule; the least recently updated are evicted.
    pub max_keys: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lateness: 300,
            max_keys: 100_000,
        }
    }
}

/// Counters of the correlation state (exported as metrics by the live pipeline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Events that arrived later than the allowed lateness.
    pub late: u64,
    /// Events whose `eventTime` could not be read.
    pub no_time: u64,
    /// Group keys evicted because a correlation hit its key cap.
    pub evicted: u64,
    /// Correlation hits.
    pub fired: u64,
    /// Most group keys tracked at once, over all correlations.
    pub peak_keys: u64,
    /// Public addresses a geo rule could not place (not in the database).
    pub unlocated: u64,
}

/// The event that completed a correlation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Origin {
    /// Its 0-based position in the input.
    pub input_index: u64,
    /// Its `eventID`.
    pub event_id: Option<String>,
    /// Its `eventTime` as written.
    pub event_time: Option<String>,
}

/// A correlation that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationHit {
    /// Index of the correlation in the rule set.
    pub correlation: u32,
    /// Event time (Unix seconds) of the completing event.
    pub time: i64,
    /// Event time of the earliest event in the fired window.
    pub window_start: i64,
    /// The value that met the condition (count, distinct values, sum, ...).
    pub value: f64,
    /// The group: each group-by name with the value it had.
    pub group: Vec<(String, Option<String>)>,
    /// The completing event.
    pub origin: Origin,
    /// What a geo detector saw (countries, distance, speed).
    pub detail: Option<String>,
    /// The group's events in the fired window that the correlation still remembers:
    /// (event time, eventID), in event-time order.
    pub lineage: Vec<(i64, String)>,
    /// How many events the fired window holds (at least `lineage.len()`).
    pub events: u64,
}

impl CorrelationHit {
    /// The group as a JSON object: `{"<group-by>": "<value>" or null, ...}`.
    pub fn group_json(&self) -> serde_json::Value {
        let map = self
            .group
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone()
                        .map_or(serde_json::Value::Null, serde_json::Value::String),
                )
            })
            .collect();
        serde_json::Value::Object(map)
    }
}

/// A group key and input prepared for one correlation from one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Feed {
    corr: u32,
    pos: u16,
    /// 128-bit hash of the group values: the state stores no key text (and keeps its first 64
    /// bits, see [`table`]).
    key: Key,
    /// The group values as JSON text (read back only when the correlation fires).
    values: Box<str>,
    value: Option<Box<str>>,
    /// First-seen detectors: the hash of the event's account, whose learning it counts in.
    #[serde(default)]
    scope: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Pending {
    time: i64,
    rule: u32,
    seq: u64,
    /// Inline for one: a hit nearly always feeds one correlation, and a `Vec` of one would
    /// allocate room for four (a quarter of a buffered hit's memory).
    feeds: Feeds,
    origin: Origin,
}

type Feeds = smallvec::SmallVec<[Feed; 1]>;

impl Pending {
    /// Order of processing: event time, then a key independent of arrival order.
    fn order_key(&self) -> (i64, &str, u32, Option<Key>) {
        (
            self.time,
            self.origin.event_id.as_deref().unwrap_or_default(),
            self.rule,
            self.feeds.first().map(|f| f.key),
        )
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order_key()
            .cmp(&other.order_key())
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A group key: the 128-bit hash of the group values, as two words. The state table keys
/// groups by the first (see [`table`]); lineage by both.
type Key = (u64, u64);

/// A group's window. The common ones (an event_count or first-seen group of up to two events)
/// fit a table slot's 8 bytes; the rest live in the table's slab.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum State {
    /// event_count: times of the events in the window, sorted.
    Times(smallvec::SmallVec<[i64; 2]>),
    /// value_count, value_percentile.
    Values(Box<ValueWindow>),
    /// value_sum, value_avg.
    Numbers(Box<NumberWindow>),
    /// temporal: latest time each input was seen.
    Seen(Box<Marks>),
    /// temporal_ordered: per input position, the latest start of a chain completed up to it.
    Chain(Box<Marks>),
    /// new_country: a principal's countries.
    Countries(Box<Countries>),
    /// impossible_travel: a principal's last located event.
    Travel(Box<Travel>),
    /// A correlation that fires early: its events in event-time order.
    Early(Box<early::Window>),
    /// An event_count correlation that fires early: its events' times, inline for two.
    EarlyCount(early_count::Counts),
    /// first_seen: the latest time the combination was seen.
    Known(i64),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Countries {
    first: i64,
    events: u32,
    seen: Vec<String>,
    last: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Travel {
    at: i64,
    lat: f64,
    lon: f64,
    country: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct ValueWindow {
    /// (time, value) in arrival order.
    order: VecDeque<(i64, Arc<str>)>,
    /// How often each value occurs in the window.
    #[serde(with = "crate::keyed::sorted")]
    counts: crate::keyed::Map<Arc<str>, u32>,
    last: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct NumberWindow {
    items: VecDeque<(i64, f64)>,
    sum: f64,
    last: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Marks {
    at: Box<[Option<i64>]>,
    last: i64,
}

impl State {
    /// The latest event time the group has seen.
    fn last(&self) -> i64 {
        match self {
            State::Times(t) => t.last().copied().unwrap_or(i64::MIN),
            State::Values(v) => v.last,
            State::Numbers(n) => n.last,
            State::Seen(m) | State::Chain(m) => m.last,
            State::Countries(c) => c.last,
            State::Travel(t) => t.at,
            State::Early(w) => w.last(),
            State::EarlyCount(w) => early_count::last(w),
            State::Known(t) => *t,
        }
    }

    fn touch(&mut self, t: i64) {
        match self {
            State::Times(_) => {}
            State::Values(v) => v.last = v.last.max(t),
            State::Numbers(n) => n.last = n.last.max(t),
            State::Seen(m) | State::Chain(m) => m.last = m.last.max(t),
            State::Countries(c) => c.last = c.last.max(t),
            State::Known(last) => *last = (*last).max(t),
            State::Travel(_) | State::Early(_) | State::EarlyCount(_) => {}
        }
    }
}

#[derive(Debug, Default)]
struct Groups {
    table: table::Table,
    /// The events that fed the groups lately, for alert lineage.
    recent: lineage::Recent,
    /// First-seen detectors: the earliest event time seen of each account (by the hash of its
    /// `recipientAccountId`), from which the detector learns that account.
    started: crate::keyed::Map<u64, i64>,
}

/// The group values back from their JSON text.
fn group_values(text: &str) -> Vec<Option<String>> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Correlation state for one stream of events.
#[derive(Debug)]
pub struct Correlator<'s> {
    set: &'s RuleSet,
    opts: Options,
    pending: BinaryHeap<Reverse<Pending>>,
    max_time: Option<i64>,
    /// A watermark the stream reached without events (a quiet stream, advanced by the wall
    /// clock): never above what an event could still be late for.
    floor: Option<i64>,
    groups: Vec<Groups>,
    seq: u64,
    locator: Option<std::sync::Arc<dyn crate::geo::Locate>>,
    /// The accounts and regions that deliver events, for silence rules and the metric.
    sources: silence::Sources,
    silence_rules: Vec<silence::Rule>,
    /// The input index of the last event counted as left out (its other hits are not).
    counted: Option<u64>,
    /// Counters.
    pub stats: Stats,
}

impl<'s> Correlator<'s> {
    /// Empty state for the correlations of `set`.
    pub fn new(set: &'s RuleSet, opts: Options) -> Self {
        Correlator {
            set,
            opts,
            pending: BinaryHeap::new(),
            max_time: None,
            floor: None,
            groups: (0..set.correlations().len())
                .map(|_| Groups::default())
                .collect(),
            seq: 0,
            locator: None,
            sources: silence::Sources::default(),
            silence_rules: silence_rules(set),
            counted: None,
            stats: Stats::default(),
        }
    }

    /// Notes an event of `account` in `region` at `t` (every event, for silence rules).
    pub fn saw_source(&mut self, account: &str, region: &str, t: i64, event_id: Option<&str>) {
        self.sources.saw(account, region, t, event_id);
    }

    /// The accounts and regions seen delivering.
    pub fn sources(&self) -> impl Iterator<Item = &silence::Source> {
        self.sources.iter()
    }

    /// Reports the sources the watermark has found silent.
    fn check_silence(&mut self, out: &mut Vec<CorrelationHit>) {
        let Some(w) = self.watermark().filter(|_| !self.silence_rules.is_empty()) else {
            return;
        };
        let mut silent = Vec::new();
        self.sources.check(&self.silence_rules, w, &mut silent);
        for x in silent {
            self.stats.fired += 1;
            let s = &x.source;
            let detail = format!(
                "no events since {} ({} events from {}), while others still deliver",
                format_time(s.last),
                s.events,
                format_time(s.first)
            );
            out.push(CorrelationHit {
                correlation: x.correlation,
                time: x.since,
                window_start: s.last,
                value: 0.0,
                group: vec![
                    ("recipientAccountId".into(), Some(s.account.to_string())),
                    ("awsRegion".into(), Some(s.region.to_string())),
                ],
                origin: Origin {
                    input_index: 0,
                    event_id: None,
                    event_time: Some(format_time(x.since)),
                },
                detail: Some(detail),
                lineage: (!s.last_id.is_empty())
                    .then(|| (s.last, s.last_id.clone()))
                    .into_iter()
                    .collect(),
                events: 1,
            });
        }
    }

    /// Gives the geo rules their IP geolocation.
    pub fn with_locator(mut self, locator: std::sync::Arc<dyn crate::geo::Locate>) -> Self {
        self.locator = Some(locator);
        self
    }

    /// Group keys currently tracked, over all correlations.
    pub fn keys(&self) -> usize {
        self.groups.iter().map(|g| g.table.len()).sum()
    }

    /// How late (seconds of event time) an event may arrive and still be correlated.
    pub fn lateness(&self) -> i64 {
        self.opts.lateness
    }

    /// Events waiting in the reorder buffer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes a hit of detection rule `rule` on `ev`; appends correlations that fire. The hits of
    /// one event share `origin.input_index` (an event left out is counted once).
    pub fn push(
        &mut self,
        ev: &Event<'_>,
        rule: u32,
        origin: Origin,
        out: &mut Vec<CorrelationHit>,
    ) {
        let reach = &self.set.links().reach[rule as usize];
        if reach.is_empty() {
            return;
        }
        let Some(time) = ev.get(self.set.event_time).text().and_then(event_time) else {
            self.count_once(origin.input_index, |s| &mut s.no_time);
            return;
        };
        let watermark = self.watermark();
        if watermark.is_some_and(|w| time < w) {
            self.count_once(origin.input_index, |s| &mut s.late);
            return;
        }
        let set = self.set;
        let corrs = set.correlations();
        let (early, later): (Feeds, Feeds) = reach
            .iter()
            .map(|&(c, pos)| self.feed(ev, c, pos))
            .partition(|f| corrs[f.corr as usize].early);
        for feed in &early {
            self.update_early(feed, time, watermark, &origin, out);
        }
        let mut later = later;
        later.retain(|f| !self.known_on_arrival(f, time));
        let max = self.max_time.map_or(time, |m| m.max(time));
        if later.is_empty() {
            self.observe(max, out);
            return;
        }
        let feeds = later;
        self.seq += 1;
        self.pending.push(Reverse(Pending {
            time,
            rule,
            seq: self.seq,
            feeds,
            origin,
        }));
        self.max_time = Some(max);
        if let Some(w) = self.watermark() {
            self.release(w, out);
        }
    }

    /// Notes the event time of any event, a hit or not: the stream's event time moves on and
    /// buffered hits it passes by more than the lateness are processed.
    pub fn observe(&mut self, time: i64, out: &mut Vec<CorrelationHit>) {
        if self.max_time.is_some_and(|m| m >= time) {
            return;
        }
        self.max_time = Some(time);
        if let Some(w) = self.watermark() {
            self.release(w, out);
        }
        self.check_silence(out);
    }

    /// Event time before which nothing is accepted any more: the newest event time less the
    /// lateness, or the floor a quiet stream was advanced to, whichever is later.
    pub fn watermark(&self) -> Option<i64> {
        let by_events = self.max_time.map(|m| m - self.opts.lateness);
        by_events.max(self.floor)
    }

    /// Advances the watermark to `w` without an event (a quiet stream): hits before it are
    /// processed now and later events before it count as late.
    pub fn advance_to(&mut self, w: i64, out: &mut Vec<CorrelationHit>) {
        if self.floor.is_none_or(|f| w > f) {
            self.floor = Some(w);
            self.release(w, out);
            self.check_silence(out);
        }
    }

    /// Counts an event left out (late, or without a time) once, however many of its rules' hits
    /// reach correlations.
    fn count_once(&mut self, input_index: u64, counter: fn(&mut Stats) -> &mut u64) {
        if self.counted != Some(input_index) {
            self.counted = Some(input_index);
            *counter(&mut self.stats) += 1;
        }
    }

    /// Processes everything still buffered (end of input).
    pub fn flush(&mut self, out: &mut Vec<CorrelationHit>) {
        self.release(i64::MAX, out);
    }

    fn release(&mut self, watermark: i64, out: &mut Vec<CorrelationHit>) {
        while self.pending.peek().is_some_and(|p| p.0.time < watermark) {
            if let Some(Reverse(p)) = self.pending.pop() {
                self.process(&p, out);
            }
        }
    }

    fn feed(&self, ev: &Event<'_>, c: u32, pos: u16) -> Feed {
        let corr = &self.set.correlations()[c as usize];
        // Borrowed from the event: the text is the same as of owned strings, without a copy
        // of each value.
        let values: smallvec::SmallVec<[Option<&str>; 4]> = corr.group_fields[pos as usize]
            .iter()
            .map(|&f| match ev.get(f) {
                FieldValue::Text(t) => Some(t),
                _ => None,
            })
            .collect();
        let text = serde_json::to_string(&values[..]).unwrap_or_default();
        let hash = xxhash_rust::xxh3::xxh3_128(text.as_bytes());
        let key = ((hash >> 64) as u64, hash as u64);
        let value = corr.value_field[pos as usize].and_then(|f| ev.get(f).text().map(Into::into));
        let scope = match (corr.kind, self.set.account) {
            (Kind::FirstSeen, Some(f)) => ev
                .get(f)
                .text()
                .map_or(0, |a| xxhash_rust::xxh3::xxh3_64(a.as_bytes())),
            _ => 0,
        };
        Feed {
            corr: c,
            pos,
            key,
            values: text.into(),
            value,
            scope,
        }
    }

    fn process(&mut self, p: &Pending, out: &mut Vec<CorrelationHit>) {
        let links = self.set.links();
        let mut queue: VecDeque<(u32, u16)> =
            links.rule_feeds[p.rule as usize].iter().copied().collect();
        while let Some((c, pos)) = queue.pop_front() {
            let Some(feed) = p.feeds.iter().find(|f| f.corr == c && f.pos == pos) else {
                continue;
            };
            let corr = &self.set.correlations()[c as usize];
            if corr.early {
                continue; // fed on arrival
            }
            let kind = corr.kind;
            self.note(feed, p.time, &p.origin);
            let fired = match kind {
                Kind::FirstSeen => self.update_first_seen(feed, p.time),
                _ if kind.is_geo() => self
                    .update_geo(feed, p.time)
                    .map(|(s, v, d)| (s, v, d, None)),
                _ => self.update(feed, p.time).map(|(s, v)| (s, v, None, None)),
            };
            if let Some((window_start, value, detail, place)) = fired {
                self.stats.fired += 1;
                let recent = &mut self.groups[c as usize].recent;
                let lineage = recent.between(&feed.key, window_start, p.time);
                if !kind.is_baseline() {
                    recent.forget(&feed.key); // the window was reset
                }
                let corr = &self.set.correlations()[c as usize];
                let mut group: Vec<(String, Option<String>)> = corr
                    .spec()
                    .group_by
                    .iter()
                    .cloned()
                    .zip(group_values(&feed.values))
                    .collect();
                group.extend(place);
                out.push(CorrelationHit {
                    correlation: c,
                    time: p.time,
                    window_start,
                    value,
                    group,
                    origin: p.origin.clone(),
                    detail,
                    events: events_in_window(corr.kind, value, lineage.len()),
                    lineage,
                });
                queue.extend(links.corr_feeds[c as usize].iter().copied());
            }
        }
        self.stats.peak_keys = self.stats.peak_keys.max(self.keys() as u64);
    }

    /// Feeds a correlation that fires early, on the event's arrival.
    fn update_early(
        &mut self,
        feed: &Feed,
        t: i64,
        watermark: Option<i64>,
        origin: &Origin,
        out: &mut Vec<CorrelationHit>,
    ) {
        let set = self.set;
        let corr = &set.correlations()[feed.corr as usize];
        let (kind, span, condition) = (corr.kind, corr.timespan, corr.spec().condition);
        let (measure, v) = match kind {
            Kind::EventCount => (early::Measure::Count, 0),
            Kind::Temporal => (early::Measure::Distinct, u64::from(feed.pos)),
            _ => match feed.value.as_deref() {
                Some(value) => (
                    early::Measure::Distinct,
                    xxhash_rust::xxh3::xxh3_64(value.as_bytes()),
                ),
                None => return,
            },
        };
        // Events still to come are at or after the watermark; their windows reach a span back.
        let keep_from = watermark.map_or(i64::MIN, |w| w.saturating_sub(span));
        let fresh = || match measure {
            early::Measure::Count => State::EarlyCount(early_count::Counts::new()),
            early::Measure::Distinct => State::Early(Box::default()),
        };
        let mut met = Vec::new();
        let groups = &mut self.groups[feed.corr as usize];
        let ((), evicted) =
            groups
                .table
                .update(&feed.key, keep_from, self.opts.max_keys, fresh, |state| {
                    if !matches!(
                        (&*state, measure),
                        (State::EarlyCount(_), early::Measure::Count)
                            | (State::Early(_), early::Measure::Distinct)
                    ) {
                        // State of another shape (restored from an older build): start over.
                        *state = fresh();
                    }
                    match state {
                        State::EarlyCount(w) => {
                            early_count::forget_before(w, keep_from);
                            early_count::add(w, t, span, &condition, &mut met);
                        }
                        State::Early(w) => {
                            w.forget_before(keep_from);
                            w.add(t, v, span, measure, &condition, &mut met);
                        }
                        _ => {}
                    }
                });
        self.stats.evicted += evicted;
        self.note(feed, t, origin);
        for (time, value, window_start) in met {
            self.stats.fired += 1;
            let lineage =
                self.groups[feed.corr as usize]
                    .recent
                    .between(&feed.key, window_start, time);
            out.push(CorrelationHit {
                correlation: feed.corr,
                time,
                window_start,
                value,
                group: corr
                    .spec()
                    .group_by
                    .iter()
                    .cloned()
                    .zip(group_values(&feed.values))
                    .collect(),
                origin: origin.clone(),
                detail: None,
                events: events_in_window(kind, value, lineage.len()),
                lineage,
            });
        }
        self.stats.peak_keys = self.stats.peak_keys.max(self.keys() as u64);
    }

    /// Remembers that the event `origin` fed the feed's group, for alert lineage.
    fn note(&mut self, feed: &Feed, t: i64, origin: &Origin) {
        if let Some(id) = origin.event_id.as_deref() {
            self.groups[feed.corr as usize].recent.note(feed.key, t, id);
        }
    }

    /// Applies a first-seen hit whose combination is already known at once, instead of through
    /// the reorder buffer: it can only move the last-seen time on. Exact, because the map holds
    /// only combinations processed in event-time order up to the watermark, which every
    /// accepted event is at or after, so such a hit would find its combination known when
    /// processed too. Most hits of a busy first-seen rule are of known combinations.
    fn known_on_arrival(&mut self, feed: &Feed, t: i64) -> bool {
        let corr = &self.set.correlations()[feed.corr as usize];
        let Some(spec) = corr.spec().first_seen.as_ref() else {
            return false;
        };
        if spec.location.is_some() {
            return false; // the key includes the place, found when processed
        }
        let retention = corr.timespan;
        let groups = &mut self.groups[feed.corr as usize];
        let known = groups.table.modify(&feed.key, |state| match state {
            State::Known(last) if *last >= t.saturating_sub(retention) => {
                *last = (*last).max(t);
                true
            }
            _ => false,
        });
        if known != Some(true) {
            return false;
        }
        learning_from(groups, feed.scope, t);
        true
    }

    /// Feeds a first-seen detector; returns (its time, 1, what it saw, the place added to the
    /// group) when the combination is new and the learning period is over.
    fn update_first_seen(&mut self, feed: &Feed, t: i64) -> Option<Fired> {
        let corr = &self.set.correlations()[feed.corr as usize];
        let spec = corr.spec().first_seen.as_ref()?;
        let names = &corr.spec().group_by;
        if !spec.exceptions.is_empty() {
            let values = group_values(&feed.values);
            let exempt = names.iter().zip(&values).any(|(name, v)| {
                let list = spec.exceptions.get(name);
                v.as_ref()
                    .is_some_and(|v| list.is_some_and(|l| l.contains(v)))
            });
            if exempt {
                return None;
            }
        }
        let (key, place) = match spec.location {
            None => (feed.key, None),
            Some(kind) => {
                let ip = crate::geo::Exceptions::default().address(feed.value.as_deref()?)?;
                let Some(loc) = self.locator.as_ref().and_then(|l| l.locate(ip)) else {
                    self.stats.unlocated += 1;
                    return None;
                };
                let text = match kind {
                    crate::rule::first_seen::Place::Country => loc.country,
                    crate::rule::first_seen::Place::Asn => format!("AS{}", loc.asn?),
                };
                let mut bytes = feed.values.as_bytes().to_vec();
                bytes.push(0x1f);
                bytes.extend_from_slice(text.as_bytes());
                let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
                let key = ((hash >> 64) as u64, hash as u64);
                (key, Some((kind.name().to_string(), Some(text))))
            }
        };
        let (history, retention) = (spec.history, corr.timespan);
        let groups = &mut self.groups[feed.corr as usize];
        // Hits come in event-time order (the reorder buffer), so the first is the earliest.
        // Each account learns from its own first event: the same whether one stream holds
        // every account (replay) or each shard some (Kafka partitions, replay --shard), and an
        // account that joins later is learnt rather than alerting on every principal at once.
        let started = learning_from(groups, feed.scope, t);
        // Known: seen within the retention; a state of another shape (restored from an older
        // build) starts over.
        let recent = t.saturating_sub(retention);
        let (new, evicted) = groups.table.update(
            &key,
            recent,
            self.opts.max_keys,
            || State::Known(i64::MIN),
            |state| match state {
                State::Known(last) if *last >= recent => {
                    *last = (*last).max(t);
                    false
                }
                _ => {
                    *state = State::Known(t);
                    true
                }
            },
        );
        self.stats.evicted += evicted;
        let learnt = t >= started.saturating_add(history);
        (new && learnt).then(|| {
            let detail = format!(
                "first seen since learning the account began at {}",
                format_time(started)
            );
            (t, 1.0, Some(detail), place)
        })
    }

    /// Feeds a geo detector; returns (window start, value, what it saw) when it fires.
    fn update_geo(&mut self, feed: &Feed, t: i64) -> Option<(i64, f64, Option<String>)> {
        let corr = &self.set.correlations()[feed.corr as usize];
        let spec = corr.spec().geo.as_ref()?;
        let ip = spec.exceptions.address(feed.value.as_deref()?)?;
        let Some(loc) = self.locator.as_ref().and_then(|l| l.locate(ip)) else {
            self.stats.unlocated += 1;
            return None;
        };
        if spec.exceptions.exempt(&loc) {
            return None;
        }
        let kind = corr.kind;
        let groups = &mut self.groups[feed.corr as usize];
        let lo = t - corr.timespan;
        let (fired, evicted) = groups.table.update(
            &feed.key,
            lo,
            self.opts.max_keys,
            || new_state(kind, 0),
            |state| {
                if !fits(kind, state) {
                    *state = new_state(kind, 0);
                }
                match state {
                    State::Countries(c) => {
                        if c.events == 0 {
                            c.first = t;
                        }
                        let new = !c.seen.contains(&loc.country);
                        let seasoned = c.events >= spec.min_history && t - c.first >= spec.baseline;
                        let fired = (new && seasoned).then(|| {
                            let detail = format!(
                                "first event from {}; seen before: {}",
                                loc.country,
                                c.seen.join(", ")
                            );
                            (c.first, 1.0, Some(detail))
                        });
                        if new {
                            c.seen.push(loc.country.clone());
                        }
                        c.events = c.events.saturating_add(1);
                        c.last = c.last.max(t);
                        fired
                    }
                    State::Travel(prev) => {
                        let fired = (prev.at != i64::MIN).then(|| {
                            let km = crate::geo::distance_km(prev.lat, prev.lon, loc.lat, loc.lon);
                            let hours = (t - prev.at).max(1) as f64 / 3600.0;
                            let speed = km / hours;
                            (km >= spec.min_distance_km && speed > spec.max_speed_kmh).then(|| {
                                let detail = format!(
                                    "{} to {}: {km:.0} km in {:.2} h = {speed:.0} km/h",
                                    prev.country, loc.country, hours
                                );
                                (prev.at, speed.round(), Some(detail))
                            })
                        });
                        **prev = Travel {
                            at: t,
                            lat: loc.lat,
                            lon: loc.lon,
                            country: loc.country.clone(),
                        };
                        fired.flatten()
                    }
                    _ => None,
                }
            },
        );
        self.stats.evicted += evicted;
        fired
    }

    /// Adds one input to its group's window; returns (window start, value) when it fires.
    fn update(&mut self, feed: &Feed, t: i64) -> Option<(i64, f64)> {
        let corr = &self.set.correlations()[feed.corr as usize];
        let (kind, span, n_inputs) = (corr.kind, corr.timespan, corr.inputs.len());
        let condition = corr.spec().condition;
        let groups = &mut self.groups[feed.corr as usize];
        let lo = t - span;
        let fresh = || new_state(kind, n_inputs);
        let (window, evicted) =
            groups
                .table
                .update(&feed.key, lo, self.opts.max_keys, fresh, |state| {
                    if !fits(kind, state) {
                        // A state of another shape (restored from an older build or a damaged
                        // file) would never fire and never expire: start over.
                        *state = fresh();
                    }
                    state.touch(t);
                    let (start, value) = match state {
                        State::Times(times) => {
                            // Late-but-allowed events may arrive out of order: keep the list sorted.
                            let at = times.partition_point(|&x| x <= t);
                            times.insert(at, t);
                            let expired = times.partition_point(|&x| x < lo);
                            times.drain(..expired);
                            (times.first().copied().unwrap_or(t), times.len() as f64)
                        }
                        State::Values(vw) => {
                            let ValueWindow { order, counts, .. } = &mut **vw;
                            let v: Arc<str> = feed.value.as_deref()?.into();
                            order.push_back((t, v.clone()));
                            *counts.entry(v.clone()).or_default() += 1;
                            while order.front().is_some_and(|(x, _)| *x < lo) {
                                if let Some((_, old)) = order.pop_front() {
                                    if let Some(n) = counts.get_mut(&old) {
                                        *n -= 1;
                                        if *n == 0 {
                                            counts.remove(&old);
                                        }
                                    }
                                }
                            }
                            let start = order.front().map_or(t, |x| x.0);
                            match kind {
                                Kind::ValuePercentile => {
                                    let share = counts.get(&v).copied().unwrap_or(0) as f64 * 100.0
                                        / order.len() as f64;
                                    (start, share)
                                }
                                _ => (start, counts.len() as f64),
                            }
                        }
                        State::Numbers(nw) => {
                            let NumberWindow { items, sum, .. } = &mut **nw;
                            let x: f64 = feed
                                .value
                                .as_deref()?
                                .trim()
                                .parse()
                                .ok()
                                .filter(|x: &f64| x.is_finite())?;
                            items.push_back((t, x));
                            *sum += x;
                            while items.front().is_some_and(|(y, _)| *y < lo) {
                                if let Some((_, old)) = items.pop_front() {
                                    *sum -= old;
                                }
                            }
                            let start = items.front().map_or(t, |x| x.0);
                            match kind {
                                Kind::ValueAvg => (start, *sum / items.len() as f64),
                                _ => (start, *sum),
                            }
                        }
                        State::Seen(marks) => {
                            let seen = &mut marks.at;
                            seen[feed.pos as usize] = Some(t);
                            let live: Vec<i64> = seen
                                .iter()
                                .flatten()
                                .copied()
                                .filter(|&x| x >= lo)
                                .collect();
                            (live.iter().copied().min().unwrap_or(t), live.len() as f64)
                        }
                        State::Chain(marks) => {
                            let chain = &mut marks.at;
                            let pos = feed.pos as usize;
                            let start = if pos == 0 {
                                Some(t)
                            } else {
                                chain[pos - 1].filter(|&s| s >= lo)
                            };
                            if let Some(s) = start {
                                chain[pos] = Some(chain[pos].map_or(s, |old| old.max(s)));
                            }
                            // How many inputs, in order, a chain that started inside the window has completed.
                            let done = chain
                                .iter()
                                .take_while(|c| c.is_some_and(|s| s >= lo))
                                .count();
                            (
                                chain
                                    .get(done.saturating_sub(1))
                                    .copied()
                                    .flatten()
                                    .unwrap_or(t),
                                done as f64,
                            )
                        }
                        // Baselines are fed by update_geo and update_first_seen, early windows by
                        // update_early.
                        State::Countries(_)
                        | State::Travel(_)
                        | State::Early(_)
                        | State::EarlyCount(_)
                        | State::Known(_) => return None,
                    };
                    Some((start, value))
                });
        self.stats.evicted += evicted;
        let (start, value) = window?;
        if condition.holds(value) {
            groups.table.remove(&feed.key);
            return Some((start, value));
        }
        None
    }
}

/// How many events a fired window holds: an event count is the value itself; otherwise the
/// events the lineage remembers.
fn events_in_window(kind: Kind, value: f64, remembered: usize) -> u64 {
    match kind {
        Kind::EventCount => (value.max(0.0) as u64).max(remembered as u64),
        _ => remembered as u64,
    }
}

/// Whether `state` has the shape a correlation of `kind` keeps.
fn fits(kind: Kind, state: &State) -> bool {
    match kind {
        Kind::EventCount => matches!(state, State::Times(_)),
        Kind::ValueCount | Kind::ValuePercentile => matches!(state, State::Values(_)),
        Kind::ValueSum | Kind::ValueAvg => matches!(state, State::Numbers(_)),
        Kind::Temporal => matches!(state, State::Seen(_)),
        Kind::TemporalOrdered => matches!(state, State::Chain(_)),
        Kind::NewCountry => matches!(state, State::Countries(_)),
        Kind::ImpossibleTravel => matches!(state, State::Travel(_)),
        Kind::FirstSeen | Kind::Silence => matches!(state, State::Known(_)),
    }
}

fn new_state(kind: Kind, n_inputs: usize) -> State {
    match kind {
        Kind::EventCount => State::Times(smallvec::SmallVec::new()),
        Kind::ValueCount | Kind::ValuePercentile => State::Values(Box::new(ValueWindow {
            last: i64::MIN,
            ..Default::default()
        })),
        Kind::ValueSum | Kind::ValueAvg => State::Numbers(Box::new(NumberWindow {
            last: i64::MIN,
            ..Default::default()
        })),
        Kind::Temporal => State::Seen(Box::new(Marks {
            at: vec![None; n_inputs].into_boxed_slice(),
            last: i64::MIN,
        })),
        Kind::NewCountry => State::Countries(Box::new(Countries {
            first: i64::MIN,
            events: 0,
            seen: Vec::new(),
            last: i64::MIN,
        })),
        Kind::ImpossibleTravel => State::Travel(Box::new(Travel {
            at: i64::MIN,
            lat: 0.0,
            lon: 0.0,
            country: String::new(),
        })),
        Kind::FirstSeen | Kind::Silence => State::Known(i64::MIN),
        Kind::TemporalOrdered => State::Chain(Box::new(Marks {
            at: vec![None; n_inputs].into_boxed_slice(),
            last: i64::MIN,
        })),
    }
}

/// Notes an event of the account `scope` at `t`; returns when its learning began (its earliest
/// event, whatever the order they came in).
fn learning_from(groups: &mut Groups, scope: u64, t: i64) -> i64 {
    let started = groups.started.entry(scope).or_insert(t);
    *started = (*started).min(t);
    *started
}

/// The thresholds of the set's silence rules.
fn silence_rules(set: &RuleSet) -> Vec<silence::Rule> {
    set.correlations()
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let spec = c.spec().silence?;
            Some(silence::Rule {
                correlation: i as u32,
                after: spec.after,
                min_events: spec.min_events,
                baseline: spec.baseline,
                retention: c.timespan,
            })
        })
        .collect()
}

/// What a baseline or window update gives when it fires: (window start, value, what it saw,
/// a group entry it adds).
type Fired = (i64, f64, Option<String>, Option<(String, Option<String>)>);

pub mod early;
mod lineage;
pub mod silence;
mod time;
pub use time::{event_time, format_time, unix_ms};
mod early_count;
mod snapshot;
mod table;
pub use snapshot::{Restored, SnapshotError};

#[cfg(test)]
mod tests;
