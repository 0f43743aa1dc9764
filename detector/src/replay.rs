//! Replay: evaluate historical CloudTrail input and write hits or alerts as JSON lines.

use crate::alert::gate::{Gate, Limits as AlertLimits};
use crate::alert::{Alert, Format, SummaryFields};
use crate::engine::{MatchScratch, RuleSet};
use crate::event::{Decoder, Event, FieldValue, Limits};
use crate::source::file::{read_input, Input, InputError};
use crate::window::{CorrelationHit, Correlator, Origin};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What replay writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emit {
    /// One alert per distinct alert id (the live pipeline's output).
    #[default]
    Alerts,
    /// One line per rule hit, with the event's position in the input.
    Hits,
}

/// One rule hit, as `--emit hits` writes it.
#[derive(Debug, Serialize)]
pub struct Hit<'a> {
    /// Rule id.
    pub rule_id: &'a str,
    /// Rule title.
    pub rule_title: &'a str,
    /// Rule level.
    pub level: &'a str,
    /// Rule tags.
    pub tags: &'a [String],
    /// 0-based position of the event in input order.
    pub input_index: u64,
    /// The event's `eventID`.
    pub event_id: Option<&'a str>,
    /// The event's `eventTime`.
    pub event_time: Option<&'a str>,
}

/// Counts gathered during a replay.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Records decoded and evaluated.
    pub events: u64,
    /// Input errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Hits per rule index.
    pub hits: Vec<u64>,
    /// Hits per correlation index.
    pub correlation_hits: Vec<u64>,
    /// Correlation state counters (late events, evictions, ...).
    pub correlation: crate::window::Stats,
    /// Alerts written (after de-duplication).
    pub alerts: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// What was written.
    pub emit: Emit,
}

impl Summary {
    /// Total hits, correlation hits included.
    pub fn total_hits(&self) -> u64 {
        self.hits.iter().sum::<u64>() + self.correlation_hits.iter().sum::<u64>()
    }

    /// Total input errors.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Writes the human summary (to stderr, by the CLI).
    pub fn write(&self, set: &RuleSet, w: &mut dyn Write) -> io::Result<()> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            w,
            "replay: {} events in {:.2}s ({:.0} events/s), {} decode errors, {} hits",
            self.events,
            secs,
            self.events as f64 / secs,
            self.total_errors(),
            self.total_hits(),
        )?;
        match self.emit {
            Emit::Alerts => writeln!(w, ", {} alerts", self.alerts)?,
            Emit::Hits => writeln!(w)?,
        }
        for (kind, n) in &self.errors {
            writeln!(w, "  decode errors {kind:>18}: {n}")?;
        }
        let mut by_rule: Vec<(usize, u64)> = self
            .hits
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .collect();
        by_rule.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, n) in by_rule {
            let r = &set.rules()[i];
            writeln!(w, "  {n:>8}  {}  {}", r.id(), r.rule.title)?;
        }
        for (i, n) in self
            .correlation_hits
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
        {
            let c = &set.correlations()[i];
            writeln!(w, "  {n:>8}  {}  {} (correlation)", c.id(), c.rule.title)?;
        }
        let c = &self.correlation;
        if !self.correlation_hits.is_empty() {
            writeln!(
                w,
                "  correlation: {} events too late, {} without eventTime, {} group keys evicted, at most {} group keys tracked",
                c.late, c.no_time, c.evicted, c.peak_keys
            )?;
        }
        if c.late > 0 {
            writeln!(
                w,
                "  hint: {} events came later than --lateness allows and were left out of correlations; \
                 CloudTrail's S3 log files each span five minutes, so replay S3 layouts with --lateness 15m",
                c.late
            )?;
        }
        Ok(())
    }
}

/// Options of a replay.
#[derive(Debug, Clone)]
pub struct Options {
    /// What to write.
    pub emit: Emit,
    /// The fields alerts carry (registered with [`SummaryFields::register`]); needed for alerts.
    pub summaries: Option<SummaryFields>,
    /// Input limits.
    pub limits: Limits,
    /// Correlation window settings.
    pub windows: crate::window::Options,
    /// Correlation state carried between runs: restored before, saved after.
    pub state_file: Option<std::path::PathBuf>,
    /// IP geolocation for geo rules.
    pub locator: Option<Arc<dyn crate::geo::Locate>>,
    /// Alert rate limits (suppression is each rule's own).
    pub alert_limits: AlertLimits,
    /// How alerts are written.
    pub format: Format,
}

/// Replays `inputs` through `set`, writing to `out`; `on_error` sees every input error.
///
/// `progress` is advanced by the bytes read from disk. Stops early only when `out` fails
/// (a closed pipe included), returning that error.
pub fn replay(
    set: &RuleSet,
    inputs: &[Input],
    out: &mut dyn Write,
    opts: &Options,
    progress: Arc<AtomicU64>,
    on_error: &mut dyn FnMut(&InputError),
) -> io::Result<Summary> {
    let start = Instant::now();
    let mut decoder = Decoder::new(set.fields(), opts.limits);
    let summaries = &opts.summaries;
    let mut state = State {
        set,
        summary: Summary {
            hits: vec![0; set.rules().len()],
            correlation_hits: vec![0; set.correlations().len()],
            emit: opts.emit,
            ..Summary::default()
        },
        correlator: match &opts.locator {
            Some(l) => Correlator::new(set, opts.windows).with_locator(l.clone()),
            None => Correlator::new(set, opts.windows),
        },
        fired: Vec::new(),
        scratch: MatchScratch::default(),
        hits: Vec::new(),
        summaries: summaries.clone(),
        seen_alerts: Seen::default(),
        seen_hits: Seen::default(),
        gate: Gate::new(opts.alert_limits, opts.windows.lateness),
        gated: Vec::new(),
        format: opts.format,
        emit: opts.emit,
        out_error: None,
        line: Vec::with_capacity(512),
        hit_prefixes: hit_prefixes(set),
    };
    if let Some(path) = opts.state_file.as_deref().filter(|p| p.exists()) {
        let bytes = std::fs::read(path)?;
        state.correlator.restore(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    for input in inputs {
        let result = read_input(
            input,
            progress.clone(),
            &mut decoder,
            &mut |item, _| match item {
                Ok(ev) => state.event(ev, out),
                Err(e) => {
                    state.count_error(&e);
                    on_error(&e);
                }
            },
        );
        if let Err(e) = result {
            let err = InputError {
                location: crate::source::file::Location {
                    source: input.name(),
                    line: 0,
                },
                kind: crate::source::file::InputErrorKind::Io(e.to_string()),
            };
            state.count_error(&err);
            on_error(&err);
        }
        if let Some(e) = state.out_error.take() {
            return Err(e);
        }
    }
    state.correlator.flush(&mut state.fired);
    state.write_correlations(out);
    state.gate.flush(&mut state.gated);
    state.write_gated(out);
    if let Some(path) = &opts.state_file {
        crate::durable::save_atomically(path, &state.correlator.snapshot())?;
    }
    if let Some(e) = state.out_error.take() {
        return Err(e);
    }
    state.summary.correlation = state.correlator.stats;
    state.summary.elapsed = start.elapsed();
    Ok(state.summary)
}

/// Ids already written or handled, the most recent million of them: duplicate deliveries of an
/// event sit close together in history, and a bound keeps long backtests in flat memory.
struct Seen(crate::alert::ledger::Ledger);

impl Default for Seen {
    fn default() -> Self {
        const REMEMBERED: usize = 1_000_000;
        // Without a file the ledger cannot fail to open.
        Seen(crate::alert::ledger::Ledger::in_memory(REMEMBERED))
    }
}

impl Seen {
    /// Whether `id` is new (and remembers it).
    fn insert(&mut self, id: &str) -> bool {
        if self.0.contains(id) {
            return false;
        }
        let _ = self.0.record([id]);
        true
    }
}

struct State<'s> {
    set: &'s RuleSet,
    summary: Summary,
    correlator: Correlator<'s>,
    fired: Vec<CorrelationHit>,
    scratch: MatchScratch,
    hits: Vec<u32>,
    summaries: Option<SummaryFields>,
    seen_alerts: Seen,
    seen_hits: Seen,
    gate: Gate,
    gated: Vec<Alert>,
    format: Format,
    emit: Emit,
    out_error: Option<io::Error>,
    line: Vec<u8>,
    hit_prefixes: Vec<Vec<u8>>,
}

/// `{"rule_id":…,"rule_title":…,"level":…,"tags":[…],"input_index":` for each rule.
fn hit_prefixes(set: &RuleSet) -> Vec<Vec<u8>> {
    set.rules()
        .iter()
        .map(|r| {
            let hit = Hit {
                rule_id: r.id(),
                rule_title: &r.rule.title,
                level: r.level().as_str(),
                tags: &r.rule.tags,
                input_index: 0,
                event_id: None,
                event_time: None,
            };
            let mut text = serde_json::to_vec(&hit).unwrap_or_default();
            let cut = memchr::memmem::find(&text, b"\"input_index\":0").unwrap_or(text.len());
            text.truncate(cut + b"\"input_index\":".len());
            text
        })
        .collect()
}

impl State<'_> {
    fn count_error(&mut self, e: &InputError) {
        let kind = match &e.kind {
            crate::source::file::InputErrorKind::Decode(d) => d.kind(),
            crate::source::file::InputErrorKind::Io(_) => "io",
        };
        *self.summary.errors.entry(kind).or_default() += 1;
    }

    fn event(&mut self, ev: &Event<'_>, out: &mut dyn Write) {
        let index = self.summary.events;
        self.summary.events += 1;
        if self.out_error.is_some() {
            return;
        }
        self.set.matches(ev, &mut self.scratch, &mut self.hits);
        if ev.had_unreadable_value() {
            *self.summary.errors.entry("unreadable_value").or_default() += 1;
        }
        let links = self.set.links();
        for k in 0..self.hits.len() {
            let i = self.hits[k] as usize;
            self.summary.hits[i] += 1;
            if !links.reach[i].is_empty() {
                let text = |f| ev.get(f).text().map(str::to_string);
                let origin = Origin {
                    input_index: index,
                    event_id: text(self.set.event_id),
                    event_time: text(self.set.event_time),
                };
                self.correlator.push(ev, i as u32, origin, &mut self.fired);
            }
            if links.rule_reported[i] {
                self.write_hit(i, ev, index, out);
            }
        }
        self.write_correlations(out);
        if !self.gate.is_idle() {
            // Open suppression windows and storms close as event time passes them.
            if let Some(t) = ev
                .get(self.set.event_time)
                .text()
                .and_then(crate::window::event_time)
            {
                self.gate.observe(t);
                self.gate.advance(&mut self.gated);
                self.write_gated(out);
            }
        }
    }

    fn write_hit(&mut self, i: usize, ev: &Event<'_>, index: u64, out: &mut dyn Write) {
        let rule = &self.set.rules()[i];
        self.line.clear();
        let written = match self.emit {
            Emit::Hits => {
                let text = |f| match ev.get(f) {
                    FieldValue::Text(t) => Some(t),
                    _ => None,
                };
                // The rule's part of the line never changes: write it pre-serialized.
                self.line.extend_from_slice(&self.hit_prefixes[i]);
                self.line.extend_from_slice(index.to_string().as_bytes());
                self.line.extend_from_slice(b",\"event_id\":");
                serde_json::to_writer(&mut self.line, &text(self.set.event_id))
                    .and_then(|_| {
                        self.line.extend_from_slice(b",\"event_time\":");
                        serde_json::to_writer(&mut self.line, &text(self.set.event_time))
                    })
                    .map(|_| {
                        self.line.push(b'}');
                        true
                    })
            }
            Emit::Alerts => {
                let Some(summaries) = &self.summaries else {
                    return;
                };
                let candidate = crate::alert::hit_candidate(rule, i, ev, summaries);
                // A duplicate delivery of one event is not a repeat: the live service's
                // ledger drops it, and so does replay.
                if !self.seen_hits.insert(&candidate.alert.alert_id) {
                    return;
                }
                self.gate.offer(candidate, &mut self.gated);
                self.write_gated(out);
                return;
            }
        };
        self.emit_line(written, out);
    }

    /// Writes the alerts the gate let through, each id once.
    fn write_gated(&mut self, out: &mut dyn Write) {
        let gated = std::mem::take(&mut self.gated);
        for alert in &gated {
            self.line.clear();
            let written = self.alert_line(alert);
            self.emit_line(written, out);
        }
        self.gated = gated;
        self.gated.clear();
    }

    /// Serialises an alert unless its id was already written.
    fn alert_line(&mut self, alert: &Alert) -> serde_json::Result<bool> {
        if self.seen_alerts.insert(&alert.alert_id) {
            self.summary.alerts += 1;
            let text = self.format.render(alert)?;
            self.line.extend_from_slice(text.as_bytes());
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn emit_line(&mut self, written: serde_json::Result<bool>, out: &mut dyn Write) {
        if let Ok(true) = written {
            self.line.push(b'\n');
            if let Err(e) = out.write_all(&self.line) {
                self.out_error = Some(e);
            }
        }
    }

    /// Writes the correlation hits gathered so far.
    fn write_correlations(&mut self, out: &mut dyn Write) {
        let fired = std::mem::take(&mut self.fired);
        for h in &fired {
            let c = h.correlation as usize;
            self.summary.correlation_hits[c] += 1;
            if !self.set.links().corr_reported[c] || self.out_error.is_some() {
                continue;
            }
            let corr = &self.set.correlations()[c];
            self.line.clear();
            let written = match self.emit {
                Emit::Hits => {
                    let line = serde_json::json!({
                        "rule_id": corr.id(),
                        "rule_title": corr.rule.title,
                        "level": corr.rule.level.unwrap_or(crate::rule::Level::Medium).as_str(),
                        "tags": corr.rule.tags,
                        "input_index": h.origin.input_index,
                        "event_id": h.origin.event_id,
                        "event_time": h.origin.event_time,
                        "group": h.group_json(),
                    });
                    let mut line = line;
                    if let (Some(d), Some(obj)) = (&h.detail, line.as_object_mut()) {
                        obj.insert("detail".into(), serde_json::Value::String(d.clone()));
                    }
                    serde_json::to_writer(&mut self.line, &line).map(|_| true)
                }
                Emit::Alerts => {
                    let candidate = crate::alert::correlation_candidate(corr, h);
                    if !self.seen_hits.insert(&candidate.alert.alert_id) {
                        continue;
                    }
                    self.gate.offer(candidate, &mut self.gated);
                    self.write_gated(out);
                    continue;
                }
            };
            self.emit_line(written, out);
        }
        self.fired = fired;
        self.fired.clear();
    }
}
