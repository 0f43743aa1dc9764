//! Replay: evaluate historical CloudTrail input and write hits or alerts as JSON lines.

mod parallel;

use crate::alert::gate::Limits as AlertLimits;
use crate::alert::{Alert, Format, SummaryFields};
use crate::engine::RuleSet;
use crate::event::Decoder;
use crate::event::{Event, FieldValue, Limits};
use crate::pipeline::Stages;
use crate::pipeline::{Output, Pipeline, Settings};
use crate::source::file::{open, read_lines, Input, InputError};
use crate::source::select::{Selection, SelectionFields};
use crate::window::CorrelationHit;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Records decoded, duplicates included.
    pub events: u64,
    /// Records delivered more than once (same `eventID`): evaluated only the first time.
    pub duplicates: u64,
    /// Records read but outside `--since`/`--until`/`--account`/`--region` (not evaluated).
    pub unselected: u64,
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
    /// Events by account, region and hour of event time, when [`Options::count_hours`].
    pub hours: Vec<crate::sink::archive::Coverage>,
}

impl Summary {
    /// Total hits, correlation hits included.
    pub fn total_hits(&self) -> u64 {
        self.hits.iter().sum::<u64>() + self.correlation_hits.iter().sum::<u64>()
    }

    /// What was reported: alerts written, or with `--emit hits` the hits and correlation hits
    /// of the rules that report (not those that only feed correlations).
    pub fn reported(&self, set: &RuleSet) -> u64 {
        if self.emit == Emit::Alerts {
            return self.alerts;
        }
        let links = set.links();
        let rules = self.hits.iter().zip(&links.rule_reported);
        let corrs = self.correlation_hits.iter().zip(&links.corr_reported);
        rules
            .chain(corrs)
            .filter(|(_, &r)| r)
            .map(|(&n, _)| n)
            .sum()
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
            "replay: {} events in {:.2}s ({:.0} events/s), {} duplicates, {} decode errors, {} hits",
            self.events,
            secs,
            self.events as f64 / secs,
            self.duplicates,
            self.total_errors(),
            self.total_hits(),
        )?;
        if self.unselected > 0 {
            write!(w, ", {} outside the selection", self.unselected)?;
        }
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

/// Alerts written for a person instead of as JSON lines: held until the end, then written in
/// event-time order with a timeline ([`crate::alert::human`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Human {
    /// Aligned columns; level colours when `colour` (a terminal without `NO_COLOR`).
    Table {
        /// Colour the levels.
        colour: bool,
    },
    /// CSV with a header line.
    Csv,
}

/// Default piece size: each piece's decoded records wait in memory for their turn (a few times
/// the piece's bytes when most records match), so pieces are kept small; 512 KiB and 2 MiB
/// replay at the same speed on two cores.
pub const PIECE_BYTES: u64 = 512 << 10;

/// Options of a replay.
#[derive(Debug, Clone)]
pub struct Options {
    /// Alerts as a table or CSV instead of JSON lines.
    pub human: Option<Human>,
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
    /// Event de-duplication memory (`max_ids: 0` evaluates every record).
    pub dedup: crate::pipeline::dedup::Options,
    /// IP geolocation for geo rules.
    pub locator: Option<Arc<dyn crate::geo::Locate>>,
    /// Alert rate limits (suppression is each rule's own).
    pub alert_limits: AlertLimits,
    /// How alerts are written.
    pub format: Format,
    /// Write alerts as they are made instead of holding them for event-time order.
    pub unordered: bool,
    /// Which records to evaluate (none: all), with the fields it reads.
    pub select: Option<(Selection, SelectionFields)>,
    /// Threads that decode and match (state is kept on the calling thread, in input order, so
    /// the output is the same for any number); 1 does everything on the calling thread.
    pub threads: usize,
    /// Size of the pieces a plain file is cut into for the threads, in bytes ([`PIECE_BYTES`]).
    pub piece_bytes: u64,
    /// Count events by account, region and hour of event time ([`Summary::hours`]); the rule
    /// set must track delivery (`RuleSet::track_delivery`).
    pub count_hours: bool,
}

/// How far a replay has come, for a progress display on another thread.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes read from files or S3 objects (compressed, as stored).
    pub bytes: Arc<AtomicU64>,
    /// Inputs finished.
    pub files: AtomicU64,
    /// Records read.
    pub events: AtomicU64,
    /// Rule and correlation hits.
    pub hits: AtomicU64,
    /// Alerts written.
    pub alerts: AtomicU64,
}

/// Replays `inputs` through `set`, writing to `out`; `on_error` sees every input error.
///
/// `progress` is kept up to date as inputs are read. Stops early only when `out` fails
/// (a closed pipe included), returning that error.
pub fn replay(
    set: &RuleSet,
    inputs: &[Input],
    out: &mut dyn Write,
    opts: &Options,
    progress: &Progress,
    on_error: &mut dyn FnMut(&InputError),
) -> io::Result<Summary> {
    let start = Instant::now();
    let settings = Settings {
        limits: opts.limits,
        windows: opts.windows,
        alert_limits: opts.alert_limits,
        dedup: opts.dedup,
        ..Settings::default()
    };
    let summaries = match opts.emit {
        Emit::Alerts => opts.summaries.clone(),
        Emit::Hits => None,
    };
    let mut pipeline = Pipeline::new(set, summaries, &settings, opts.locator.clone());
    if opts.count_hours {
        pipeline.count_hours();
    }
    if let Some(path) = opts.state_file.as_deref().filter(|p| p.exists()) {
        let bytes = std::fs::read(path)?;
        pipeline.restore(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    let mut writer = Writer {
        set,
        out,
        format: opts.format,
        emit: opts.emit,
        alerts: 0,
        held: opts.human.map(|_| Vec::new()),
        ordered: (opts.human.is_none() && !opts.unordered)
            .then(|| crate::alert::order::Ordered::new(crate::alert::order::BUDGET)),
        source: Vec::new(),
        line_no: 0,
        record: 0,
        error: None,
        line: Vec::with_capacity(512),
        hit_prefixes: hit_prefixes(set),
    };
    let mut unselected = 0;
    if opts.threads > 1 {
        parallel::replay(
            &mut pipeline,
            &mut writer,
            inputs,
            opts,
            progress,
            &mut unselected,
            on_error,
        )?;
    } else {
        for input in inputs {
            writer.start(input);
            match open(input, progress.bytes.clone()) {
                Ok(reader) => {
                    let (decoder, stages) = pipeline.parts();
                    let mut reading = InOrder {
                        stages,
                        writer: &mut writer,
                        select: opts.select.as_ref(),
                        unselected: &mut unselected,
                        on_error: &mut *on_error,
                    };
                    reading.read(&input.name(), reader, decoder);
                }
                Err(e) => unreadable(pipeline.stages(), input, &e, on_error),
            }
            finished(&pipeline, &mut writer, unselected, progress)?;
        }
    }
    pipeline.flush(&mut writer);
    if let Some(ordered) = writer.ordered.take() {
        if writer.error.is_none() {
            writer.error = ordered.finish(&mut writer.out).err();
        }
    }
    if let (Some(human), Some(held)) = (opts.human, writer.held.take()) {
        let text = match human {
            Human::Table { colour } => crate::alert::human::table(&held, colour),
            Human::Csv => crate::alert::human::csv(&held),
        };
        if writer.error.is_none() {
            writer.error = writer.out.write_all(text.as_bytes()).err();
        }
    }
    if let Some(path) = &opts.state_file {
        crate::durable::save_atomically(path, &pipeline.snapshot())?;
    }
    if let Some(e) = writer.error.take() {
        return Err(e);
    }
    let stats = pipeline.stats().clone();
    Ok(Summary {
        events: stats.events,
        duplicates: stats.duplicates,
        unselected,
        errors: stats.errors,
        hits: stats.hits,
        correlation_hits: stats.correlation_hits,
        correlation: pipeline.correlation_stats(),
        alerts: writer.alerts,
        elapsed: start.elapsed(),
        emit: opts.emit,
        hours: pipeline.take_hours(),
    })
}

pub(crate) fn error_kind(e: &InputError) -> &'static str {
    match &e.kind {
        crate::source::file::InputErrorKind::Decode(d) => d.kind(),
        crate::source::file::InputErrorKind::Io(_) => "io",
    }
}

/// An input that could not be opened: counted, and told to `on_error`.
fn unreadable(
    stages: &mut Stages<'_>,
    input: &Input,
    e: &io::Error,
    on_error: &mut dyn FnMut(&InputError),
) {
    let err = InputError::unreadable(input, e);
    stages.count_error(error_kind(&err));
    on_error(&err);
}

/// After each input: the progress counters, and a stop when the output failed.
fn finished(
    pipeline: &Pipeline<'_>,
    writer: &mut Writer<'_, '_>,
    unselected: u64,
    progress: &Progress,
) -> io::Result<()> {
    if let Some(e) = writer.error.take() {
        return Err(e);
    }
    let stats = pipeline.stats();
    let hits = stats.hits.iter().chain(&stats.correlation_hits).sum();
    progress.files.fetch_add(1, Ordering::Relaxed);
    progress
        .events
        .store(stats.events + unselected, Ordering::Relaxed);
    progress.hits.store(hits, Ordering::Relaxed);
    progress.alerts.store(writer.alerts, Ordering::Relaxed);
    Ok(())
}

/// Reads an input record by record on this thread, every stage in turn.
struct InOrder<'a, 'p, 's, 'o> {
    stages: &'a mut Stages<'p>,
    writer: &'a mut Writer<'s, 'o>,
    select: Option<&'a (Selection, SelectionFields)>,
    unselected: &'a mut u64,
    on_error: &'a mut dyn FnMut(&InputError),
}

impl InOrder<'_, '_, '_, '_> {
    /// Reads `reader`, an input from its start, to its end.
    fn read(&mut self, name: &str, reader: impl io::BufRead, decoder: &mut Decoder<'_>) {
        read_lines(name, reader, true, decoder, &mut |item, loc| {
            let w = &mut *self.writer;
            (w.line_no, w.record) = (loc.line, w.record + 1);
            match item {
                Ok(ev) => {
                    if self.select.is_some_and(|(s, f)| !s.keeps(ev, f)) {
                        *self.unselected += 1;
                    } else if w.error.is_none() {
                        self.stages.event(ev, w);
                    }
                }
                Err(e) => {
                    self.stages.count_error(error_kind(&e));
                    (self.on_error)(&e);
                }
            }
        });
    }
}

/// Writes what the pipeline outputs as JSON lines: hits or alerts.
struct Writer<'s, 'o> {
    set: &'s RuleSet,
    out: &'o mut dyn Write,
    format: Format,
    emit: Emit,
    alerts: u64,
    /// Alerts kept for a table or CSV, written at the end.
    held: Option<Vec<Alert>>,
    /// Alert lines held to be written in event-time order at the end.
    ordered: Option<crate::alert::order::Ordered>,
    /// Where the record being processed is: input name (as a JSON string, `"input":` before
    /// it), line, 1-based record in the input.
    source: Vec<u8>,
    line_no: usize,
    record: u64,
    error: Option<io::Error>,
    line: Vec<u8>,
    hit_prefixes: Vec<Vec<u8>>,
}

/// Appends `text` as a JSON string (`null` for none). Ids and times need no escaping: they are
/// copied as they are, anything else goes through serde_json.
fn json_string(line: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) if !crate::event::text::needs_escape(t.as_bytes()) => {
            line.push(b'"');
            line.extend_from_slice(t.as_bytes());
            line.push(b'"');
        }
        Some(t) => {
            let _ = serde_json::to_writer(&mut *line, t);
        }
        None => line.extend_from_slice(b"null"),
    }
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

impl Output for Writer<'_, '_> {
    fn hit(&mut self, rule: usize, ev: &Event<'_>, index: u64) {
        if self.emit != Emit::Hits {
            return;
        }
        let set = self.set;
        let text = |f| match ev.get(f) {
            FieldValue::Text(t) => Some(t),
            _ => None,
        };
        self.line.clear();
        // The rule's part of the line never changes: write it pre-serialized.
        self.line.extend_from_slice(&self.hit_prefixes[rule]);
        // One line a hit: no allocation and no formatting machinery on this path.
        let mut number = itoa::Buffer::new();
        self.line.extend_from_slice(number.format(index).as_bytes());
        self.line.extend_from_slice(b",\"event_id\":");
        json_string(&mut self.line, text(set.event_id));
        self.line.extend_from_slice(b",\"event_time\":");
        json_string(&mut self.line, text(set.event_time));
        // Lineage: where the record is, to find it again (`trailwatch explain FILE`, an editor).
        self.line.extend_from_slice(&self.source);
        self.line.extend_from_slice(b",\"line\":");
        self.line
            .extend_from_slice(number.format(self.line_no).as_bytes());
        self.line.extend_from_slice(b",\"record\":");
        self.line
            .extend_from_slice(number.format(self.record).as_bytes());
        self.line.push(b'}');
        self.write_line();
    }

    fn correlation(&mut self, h: &CorrelationHit) {
        if self.emit != Emit::Hits {
            return;
        }
        let corr = &self.set.correlations()[h.correlation as usize];
        let mut line = serde_json::json!({
            "rule_id": corr.id(),
            "rule_title": corr.rule.title,
            "level": corr.rule.level.unwrap_or(crate::rule::Level::Medium).as_str(),
            "tags": corr.rule.tags,
            "input_index": h.origin.input_index,
            "event_id": h.origin.event_id,
            "event_time": h.origin.event_time,
            "group": h.group_json(),
            "window_start": crate::window::format_time(h.window_start),
            "window_end": crate::window::format_time(h.time),
            "value": h.value,
        });
        if let (Some(d), Some(obj)) = (&h.detail, line.as_object_mut()) {
            obj.insert("detail".into(), serde_json::Value::String(d.clone()));
        }
        self.line.clear();
        if serde_json::to_writer(&mut self.line, &line).is_ok() {
            self.write_line();
        }
    }

    fn alert(&mut self, alert: Alert) {
        self.alerts += 1;
        if let Some(held) = &mut self.held {
            held.push(alert);
            return;
        }
        self.line.clear();
        if let Ok(text) = self.format.render(&alert) {
            match &mut self.ordered {
                Some(o) if self.error.is_none() => {
                    self.error = o.push(&alert, text.as_bytes()).err();
                }
                Some(_) => {}
                None => {
                    self.line.extend_from_slice(text.as_bytes());
                    self.write_line();
                }
            }
        }
    }
}

impl Writer<'_, '_> {
    /// Begins an input: hit lines name it, records count from 1.
    fn start(&mut self, input: &Input) {
        self.source.clear();
        self.source.extend_from_slice(b",\"input\":");
        json_string(&mut self.source, Some(&input.name()));
        self.record = 0;
    }

    fn write_line(&mut self) {
        if self.error.is_some() {
            return;
        }
        self.line.push(b'\n');
        if let Err(e) = self.out.write_all(&self.line) {
            self.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn hit_line_strings_are_what_serde_json_writes() {
        for text in [
            "2023-11-14T22:13:20Z",
            "a\"b",
            "c\\d",
            "tab\there",
            "é€😀",
            "\u{7f}",
            "",
        ] {
            let mut line = Vec::new();
            json_string(&mut line, Some(text));
            assert_eq!(line, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        let mut line = Vec::new();
        json_string(&mut line, None);
        assert_eq!(line, b"null");
    }
}
