//! The one pipeline every mode drives — replay, `run` on SQS, `run` on Kafka (one per
//! partition) and `trailwatch test` fixtures:
//!
//! decode → de-duplicate → match (stateless) → correlate/geo (event-time state) → gate
//! (suppression, rate limits, handled ids) → [`Output`].
//!
//! A [`Pipeline`] is synchronous and owns one shard's state: the whole stream for replay and
//! SQS, one partition for Kafka. Sources hand it documents (or decoded events) and deliver what
//! it outputs; acknowledging the source after the sinks confirm is theirs, and so is calling
//! [`Pipeline::confirm`] then, which makes the handled ids durable. Its state is saved and
//! restored as one unit ([`Pipeline::snapshot`]), so a restart, a rule reload or a Kafka
//! rebalance continues with the same windows and remembers the same events.

pub mod dedup;
mod handled;
pub mod prepare;
pub mod seal;
mod state;

use crate::alert::gate::{Candidate, Gate, Limits as AlertLimits};
use crate::alert::ledger::Ledger;
use crate::alert::{Alert, SummaryFields};
use crate::engine::RuleSet;
use crate::event::{DecodeError, Decoder, Event, Limits};
use crate::window::{CorrelationHit, Correlator, Origin};
use dedup::Dedup;
use handled::Handled;
pub use prepare::{Identity, Prepare, FUTURE_SKEW};
pub use state::StateError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a pipeline is set up.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Input limits.
    pub limits: Limits,
    /// Correlation windows: lateness and key cap.
    pub windows: crate::window::Options,
    /// Alert rate caps.
    pub alert_limits: AlertLimits,
    /// Event de-duplication memory.
    pub dedup: dedup::Options,
    /// How many handled hit and alert ids are remembered.
    pub handled: usize,
    /// Live sources: after this many seconds without a newer event, a quiet stream's
    /// watermark follows the wall clock (events are assumed to arrive within this delay).
    pub max_delivery_delay: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            windows: crate::window::Options::default(),
            alert_limits: AlertLimits::default(),
            dedup: dedup::Options::default(),
            handled: 1_000_000,
            max_delivery_delay: None,
        }
    }
}

/// Where a pipeline's results go. Every method has a default that ignores the result.
pub trait Output {
    /// A reported detection rule matched event `ev`, the `index`th record of the stream.
    fn hit(&mut self, _rule: usize, _ev: &Event<'_>, _index: u64) {}
    /// A reported correlation fired.
    fn correlation(&mut self, _hit: &CorrelationHit) {}
    /// An alert passed the gate and was never handled before: deliver it.
    fn alert(&mut self, _alert: Alert) {}
}

/// Ignores everything (when only the counters matter).
impl Output for () {}

/// Collects alerts for delivery.
impl Output for Vec<Alert> {
    fn alert(&mut self, alert: Alert) {
        self.push(alert);
    }
}

/// Counters since the pipeline was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records decoded, duplicates included.
    pub events: u64,
    /// Records seen before within the de-duplication horizon (they did nothing else).
    pub duplicates: u64,
    /// Hits per rule index.
    pub hits: Vec<u64>,
    /// Hits per correlation index.
    pub correlation_hits: Vec<u64>,
    /// Hits and alerts dropped because their id was handled before (redelivery after a crash).
    pub repeats: u64,
    /// Input errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
}

/// One shard's pipeline: the decoder and the stages after it.
pub struct Pipeline<'s> {
    decoder: Decoder<'s>,
    stages: Stages<'s>,
    /// Seals the state it saves (derived from the HMAC secret, when there is one).
    seal: Option<seal::SealKey>,
}

/// Everything after decoding.
pub struct Stages<'s> {
    set: &'s RuleSet,
    summaries: Option<SummaryFields>,
    dedup: Dedup,
    correlator: Correlator<'s>,
    gate: Gate,
    handled: Handled,
    prepare: Prepare<'s>,
    fired: Vec<CorrelationHit>,
    gated: Vec<Alert>,
    quiet: Quiet,
    /// Events by account, region and hour, when asked for (the audit archive's coverage).
    hours: Option<Box<crate::sink::archive::Hours>>,
    /// Counters.
    pub stats: Stats,
}

/// A record after the stateless stages ([`Prepare`]), as the stages that keep state take it.
pub struct Prepared<'e, 'a> {
    /// Its de-duplication id and event time.
    pub identity: Identity,
    /// The rules it matched.
    pub hits: &'e [u32],
    /// A value some rule read could not be parsed.
    pub unreadable: bool,
    /// The record itself: needed when it matched a rule.
    pub event: Option<&'e Event<'a>>,
    /// Its account and region, when the rules track delivery and it has an event time.
    pub source: Option<(&'e str, &'e str)>,
    /// Its `eventID`.
    pub event_id: Option<&'e str>,
    /// The gate candidates of its reported hits, in order, when they were made elsewhere
    /// ([`hit_candidate`]); taken from here. Empty: they are made here.
    pub candidates: &'e mut [Option<Candidate>],
}

/// The gate candidate of rule `r`'s hit on `ev` (alerts of future-dated records are published
/// on their own, outside any suppression window).
pub fn hit_candidate(
    set: &RuleSet,
    r: usize,
    ev: &Event<'_>,
    summaries: &SummaryFields,
    future: bool,
) -> Candidate {
    let mut c = crate::alert::hit_candidate(&set.rules()[r], r, ev, summaries);
    if future {
        c.time = None;
    }
    c
}

/// The state a pipeline hands on to one of another rule set (a reload).
pub struct Carried {
    correlation: Vec<u8>,
    gate: Gate,
    dedup: Dedup,
    handled: Handled,
    quiet: Quiet,
}

/// When the newest event time was first seen, to advance a quiet stream by the wall clock.
#[derive(Debug, Clone, Copy, Default)]
struct Quiet {
    delay: Option<i64>,
    newest: Option<(i64, Instant)>,
}

impl<'s> Pipeline<'s> {
    /// A pipeline with empty state. `summaries` (the fields alerts carry) turns alerts on;
    /// without them only hits and correlations are output.
    pub fn new(
        set: &'s RuleSet,
        summaries: Option<SummaryFields>,
        settings: &Settings,
        locator: Option<Arc<dyn crate::geo::Locate>>,
    ) -> Self {
        let mut correlator = Correlator::new(set, settings.windows);
        if let Some(l) = locator {
            correlator = correlator.with_locator(l);
        }
        let seal = summaries
            .as_ref()
            .and_then(SummaryFields::hmac_key)
            .map(seal::SealKey::derive);
        Pipeline {
            seal,
            decoder: Decoder::new(set.fields(), settings.limits),
            stages: Stages {
                set,
                summaries,
                dedup: Dedup::new(settings.dedup),
                correlator,
                gate: Gate::new(settings.alert_limits, settings.windows.lateness),
                handled: Handled::new(Ledger::in_memory(settings.handled)),
                prepare: Prepare::new(set),
                fired: Vec::new(),
                gated: Vec::new(),
                quiet: Quiet {
                    delay: settings.max_delivery_delay,
                    newest: None,
                },
                hours: None,
                stats: Stats {
                    hits: vec![0; set.rules().len()],
                    correlation_hits: vec![0; set.correlations().len()],
                    ..Stats::default()
                },
            },
        }
    }

    /// Continues from the state another pipeline handed on (a rule reload).
    pub fn with_carried(mut self, carried: Carried) -> Result<Self, StateError> {
        let s = &mut self.stages;
        s.correlator.restore(&carried.correlation)?;
        s.gate = carried.gate;
        s.dedup = carried.dedup;
        s.handled = carried.handled;
        s.quiet.newest = carried.quiet.newest;
        Ok(self)
    }

    /// Remembers handled ids in `ledger` (durable when it has a file) instead of in memory.
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.stages.handled = Handled::new(ledger);
        self
    }

    /// Hands the state on to a pipeline of another rule set.
    pub fn into_carried(self) -> Carried {
        let s = self.stages;
        Carried {
            correlation: s.correlator.snapshot(),
            gate: s.gate,
            dedup: s.dedup,
            handled: s.handled,
            quiet: s.quiet,
        }
    }

    /// The decoder and the stages, for sources that decode themselves (files).
    pub fn parts(&mut self) -> (&mut Decoder<'s>, &mut Stages<'s>) {
        (&mut self.decoder, &mut self.stages)
    }

    /// The stages after decoding.
    pub fn stages(&mut self) -> &mut Stages<'s> {
        &mut self.stages
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stages.stats
    }

    /// Decodes one document (a message, a line) and processes its records. Returns how many
    /// records in it were bad (each counted); `Err` when the document as a whole is unreadable
    /// (counted too; records before the failure were processed).
    pub fn decode(&mut self, bytes: &[u8], out: &mut dyn Output) -> Result<usize, DecodeError> {
        let stages = &mut self.stages;
        let mut bad = 0;
        let result = self.decoder.decode(bytes, &mut |item| match item {
            Ok(ev) => stages.event(ev, out),
            Err(e) => {
                bad += 1;
                stages.count_error(e.kind());
            }
        });
        match result {
            Ok(()) => Ok(bad),
            Err(e) => {
                stages.count_error(e.kind());
                Err(e)
            }
        }
    }

    /// Closes what a quiet stream's wall clock has passed (call it periodically when live).
    pub fn tick(&mut self, out: &mut dyn Output) {
        self.stages.tick(Instant::now(), out);
    }

    /// End of input (replay, fixtures): every buffered hit is processed and every window
    /// closed. Live sources do not flush: they snapshot, and a restart continues.
    pub fn flush(&mut self, out: &mut dyn Output) {
        let s = &mut self.stages;
        s.correlator.flush(&mut s.fired);
        s.drain_fired(out);
        s.gate.flush(&mut s.gated);
        s.release(out);
    }

    /// Counts events by account, region and hour of event time from now on, for
    /// [`Pipeline::take_hours`]; the rule set must track delivery (`RuleSet::track_delivery`).
    pub fn count_hours(&mut self) {
        self.stages.hours.get_or_insert_with(Default::default);
    }

    /// The events by account, region and hour counted since the last call (none unless
    /// [`Pipeline::count_hours`]).
    pub fn take_hours(&mut self) -> Vec<crate::sink::archive::Coverage> {
        self.stages
            .hours
            .as_mut()
            .map(|h| h.take())
            .unwrap_or_default()
    }

    /// Makes the ids of what was output since the last call durable: call it after the sinks
    /// confirmed delivery and before acknowledging the source.
    pub fn confirm(&mut self) -> std::io::Result<()> {
        self.stages.handled.confirm()
    }

    /// The suppression state alone (small; the SQS source saves it after every batch),
    /// sealed when an HMAC secret is set.
    pub fn gate_state(&self) -> Vec<u8> {
        self.sealed(self.stages.gate.save())
    }

    /// Suppression windows, de-duplication ids and correlation state as one snapshot, sealed
    /// when an HMAC secret is set.
    pub fn snapshot(&self) -> Vec<u8> {
        let s = &self.stages;
        self.sealed(state::encode(
            &s.correlator.snapshot_quiet(s.quiet.quiet_ms()),
            &s.gate.save(),
            &s.dedup.save(),
        ))
    }

    /// The key state is sealed with (with an HMAC secret), for what travels beside the state.
    pub fn seal_key(&self) -> Option<&seal::SealKey> {
        self.seal.as_ref()
    }

    fn sealed(&self, plain: Vec<u8>) -> Vec<u8> {
        match &self.seal {
            Some(key) => key.seal(&plain),
            None => plain,
        }
    }

    /// Continues from a [`Pipeline::snapshot`] (or a correlation snapshot of older versions).
    /// On error nothing is restored.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Restored, StateError> {
        let bytes = seal::open(self.seal.as_ref(), bytes)?;
        let parts = state::decode(&bytes)?;
        let s = &mut self.stages;
        let mut gate = Gate::new(s.gate_limits(), s.correlator_lateness());
        if let Some(g) = parts.gate {
            gate.restore(g)
                .map_err(|e| StateError::Gate(e.to_string()))?;
        }
        let mut dedup = s.dedup.emptied();
        let ids = match parts.dedup {
            Some(d) => dedup.restore(d).map_err(StateError::Dedup)?,
            None => 0,
        };
        let correlation = s.correlator.restore(parts.correlation)?;
        s.quiet.restore(correlation.newest);
        s.gate = gate;
        s.dedup = dedup;
        Ok(Restored {
            correlation,
            event_ids: ids,
            open_windows: s.gate.open_windows(),
        })
    }

    /// Restores the suppression state alone (newer than a snapshot's when both exist).
    pub fn restore_gate(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let bytes = seal::open(self.seal.as_ref(), bytes)?;
        let s = &mut self.stages;
        let mut gate = Gate::new(s.gate_limits(), s.correlator_lateness());
        gate.restore(&bytes)
            .map_err(|e| StateError::Gate(e.to_string()))?;
        s.gate = gate;
        Ok(())
    }

    /// Correlation state counters.
    pub fn correlation_stats(&self) -> crate::window::Stats {
        self.stages.correlator.stats
    }

    /// Group keys tracked by correlations.
    pub fn correlation_keys(&self) -> usize {
        self.stages.correlator.keys()
    }

    /// Suppression and rate-limit counters.
    pub fn gate_stats(&self) -> crate::alert::gate::GateStats {
        self.stages.gate.stats
    }

    /// Open suppression windows.
    pub fn open_windows(&self) -> usize {
        self.stages.gate.open_windows()
    }

    /// The accounts and regions seen delivering (with [`RuleSet::track_delivery`]).
    pub fn sources(&self) -> impl Iterator<Item = &crate::window::silence::Source> {
        self.stages.correlator.sources()
    }

    /// Event ids remembered for de-duplication.
    pub fn remembered_events(&self) -> usize {
        self.stages.dedup.len()
    }
}

/// A pipeline state from a correlation snapshot and a suppression state saved apart (older
/// formats), with no remembered event ids.
pub fn state_of(correlation: &[u8], gate: &[u8]) -> Vec<u8> {
    state::encode(correlation, gate, &Dedup::default().save())
}

/// What a restore brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Correlation state.
    pub correlation: crate::window::Restored,
    /// Event ids remembered for de-duplication.
    pub event_ids: usize,
    /// Open suppression windows.
    pub open_windows: usize,
}

impl<'s> Stages<'s> {
    /// Counts an input error of `kind`.
    pub fn count_error(&mut self, kind: &'static str) {
        *self.stats.errors.entry(kind).or_default() += 1;
    }

    /// Processes one decoded record. A bug that panics on some record is contained here: the
    /// record is counted (`panic`) and its batch-mates go on, never a crash loop.
    pub fn event(&mut self, ev: &Event<'_>, out: &mut dyn Output) {
        let run = std::panic::AssertUnwindSafe(|| self.process(ev, out));
        if std::panic::catch_unwind(run).is_err() {
            self.count_error("panic");
            tracing::error!(
                "processing a record panicked; it was skipped and counted (a bug: please report)"
            );
        }
    }

    fn process(&mut self, ev: &Event<'_>, out: &mut dyn Output) {
        let who = self.prepare.identity(ev);
        let Some(index) = self.admit(who) else {
            return;
        };
        self.prepare.matches(ev);
        let hits = std::mem::take(&mut self.prepare.hits);
        let set = self.set;
        let source = match set.delivery {
            Some((a, r)) if who.time.is_some() => ev.get(a).text().zip(ev.get(r).text()),
            _ => None,
        };
        let record = Prepared {
            identity: who,
            hits: &hits,
            unreadable: ev.had_unreadable_value(),
            event: Some(ev),
            source,
            event_id: ev.get(set.event_id).text(),
            candidates: &mut [],
        };
        self.matched(index, record, out);
        self.prepare.hits = hits;
    }

    /// Processes a record whose stateless stages ran elsewhere (parallel replay), in the same
    /// order and with the same panic containment as [`Stages::event`].
    pub fn prepared(&mut self, record: Prepared<'_, '_>, out: &mut dyn Output) {
        let run = std::panic::AssertUnwindSafe(|| {
            if let Some(index) = self.admit(record.identity) {
                self.matched(index, record, out);
            }
        });
        if std::panic::catch_unwind(run).is_err() {
            self.count_error("panic");
            tracing::error!(
                "processing a record panicked; it was skipped and counted (a bug: please report)"
            );
        }
    }

    /// Counts a record and de-duplicates it: its input index, or `None` for a repeat.
    #[inline]
    fn admit(&mut self, who: Identity) -> Option<u64> {
        let index = self.stats.events;
        self.stats.events += 1;
        if who.future {
            self.count_error("future_event_time");
        }
        if !self.dedup.first_time(who.id, who.time) {
            self.stats.duplicates += 1;
            return None;
        }
        Some(index)
    }

    /// The stages after matching, for a record admitted as the `index`th of the stream.
    fn matched(&mut self, index: u64, record: Prepared<'_, '_>, out: &mut dyn Output) {
        let set = self.set;
        let (time, future) = (record.identity.time, record.identity.future);
        if record.unreadable {
            self.count_error("unreadable_value");
        }
        let links = set.links();
        let mut made = record.candidates.iter_mut();
        if let Some(ev) = record.event {
            for &r in record.hits {
                let r = r as usize;
                self.stats.hits[r] += 1;
                if !links.reach[r].is_empty() && !future {
                    let text = |f| ev.get(f).text().map(str::to_string);
                    let origin = Origin {
                        input_index: index,
                        event_id: text(set.event_id),
                        event_time: text(set.event_time),
                    };
                    self.correlator.push(ev, r as u32, origin, &mut self.fired);
                }
                if links.rule_reported[r] {
                    out.hit(r, ev, index);
                    if let Some(summaries) = &self.summaries {
                        let c = made.next().and_then(Option::take);
                        let c = c.unwrap_or_else(|| hit_candidate(set, r, ev, summaries, future));
                        self.offer(c);
                    }
                }
            }
        } else {
            debug_assert!(record.hits.is_empty(), "hits without their event");
        }
        if let (Some(t), Some((account, region))) = (time, record.source) {
            self.correlator
                .saw_source(account, region, t, record.event_id);
            if let Some(hours) = &mut self.hours {
                hours.add(account, region, t);
            }
        }
        if let Some(t) = time {
            self.correlator.observe(t, &mut self.fired);
            self.gate.observe(t);
            self.quiet.saw(t);
        }
        self.drain_fired(out);
        if !self.gate.is_idle() {
            // Open suppression windows and storms close as event time passes them.
            self.gate.advance(&mut self.gated);
        }
        self.release(out);
    }

    /// Advances a quiet stream: `delay` seconds after the newest event time was first seen,
    /// event time is taken to move on with the wall clock.
    fn tick(&mut self, now: Instant, out: &mut dyn Output) {
        let Some(w) = self.quiet.watermark(now) else {
            return;
        };
        self.correlator.advance_to(w, &mut self.fired);
        self.drain_fired(out);
        self.gate.advance_to(w, &mut self.gated);
        self.release(out);
    }

    /// Turns the correlations that fired into output and gate candidates.
    #[inline]
    fn drain_fired(&mut self, out: &mut dyn Output) {
        if !self.fired.is_empty() {
            self.drain_fired_cold(out);
        }
    }

    #[inline(never)]
    fn drain_fired_cold(&mut self, out: &mut dyn Output) {
        let mut fired = std::mem::take(&mut self.fired);
        for h in fired.drain(..) {
            let c = h.correlation as usize;
            self.stats.correlation_hits[c] += 1;
            if !self.set.links().corr_reported[c] {
                continue;
            }
            out.correlation(&h);
            if self.summaries.is_some() {
                let corr = &self.set.correlations()[c];
                self.offer(crate::alert::correlation_candidate(corr, &h));
            }
        }
        self.fired = fired;
    }

    /// Offers a candidate to the gate unless the same hit was handled before.
    fn offer(&mut self, c: Candidate) {
        if self.handled.first_hit(&c.alert.alert_id) {
            self.gate.offer(c, &mut self.gated);
        } else {
            self.stats.repeats += 1;
        }
    }

    /// Outputs what the gate let through, each alert id once.
    #[inline]
    fn release(&mut self, out: &mut dyn Output) {
        if !self.gated.is_empty() {
            self.release_cold(out);
        }
    }

    #[inline(never)]
    fn release_cold(&mut self, out: &mut dyn Output) {
        for alert in self.gated.drain(..) {
            if self.handled.first_alert(&alert.alert_id) {
                out.alert(alert);
            } else {
                self.stats.repeats += 1;
            }
        }
    }

    fn gate_limits(&self) -> AlertLimits {
        self.gate.limits()
    }

    fn correlator_lateness(&self) -> i64 {
        self.correlator.lateness()
    }
}

impl Quiet {
    /// How long (milliseconds) the stream has been quiet since its newest event time, for a
    /// snapshot.
    fn quiet_ms(&self) -> Option<i64> {
        let (_, at) = self.newest?;
        Some(i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX))
    }

    /// Goes on from a snapshot's newest event time and how long its stream had been quiet:
    /// a stream quiet at its previous owner (before a hand-over, a restart or a reload) has its
    /// windows closed without another event, that much sooner. The time in between, when
    /// nobody read the stream, does not count (what queued then is read, not taken as late).
    /// Without it (an older snapshot) the clock starts at the restore: late, never lost.
    fn restore(&mut self, newest: Option<(i64, Option<i64>)>) {
        let now = Instant::now();
        self.newest = newest.filter(|_| self.delay.is_some()).map(|(t, quiet)| {
            let quiet = Duration::from_millis(quiet.unwrap_or(0).max(0) as u64);
            (t, now.checked_sub(quiet).unwrap_or(now))
        });
    }

    fn saw(&mut self, t: i64) {
        if self.delay.is_some() && self.newest.is_none_or(|(n, _)| t > n) {
            self.newest = Some((t, Instant::now()));
        }
    }

    /// The event time a quiet stream has certainly passed: the newest event time plus the wall
    /// time since it was seen, less the delivery delay.
    fn watermark(&self, now: Instant) -> Option<i64> {
        let (newest, at) = self.newest?;
        let quiet = now.saturating_duration_since(at).as_secs() as i64;
        Some(newest.saturating_add(quiet).saturating_sub(self.delay?))
    }
}

#[cfg(test)]
mod tests;
