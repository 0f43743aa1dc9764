//! The engine side of the service: decoding, matching, correlation, suppression and rate
//! limits, delivery, and the order of acknowledgement that makes a crash lose nothing.

use super::detect::Detect;
use crate::alert::gate::{Candidate, Gate, GateStats};
use crate::alert::ledger::Ledger;
use crate::alert::{Alert, AlertKind, Format, SummaryFields};
use crate::config::Config;
use crate::engine::RuleSet;
use crate::event::{Decoder, Limits};
use crate::metrics::Metrics;
use crate::sink::{JsonlSink, SnsSink};
use crate::source::sqs::{self, Batch, Received};
use crate::window::Correlator;
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many recently handled hit and alert ids are remembered to drop redelivered duplicates.
const REMEMBERED_ALERTS: usize = 100_000;

/// Where alerts go.
pub(super) struct Sinks {
    pub sns: Option<SnsSink>,
    pub jsonl: Option<JsonlSink>,
    pub format: Format,
}

/// The sinks and the queue messages are acknowledged to.
pub(super) struct Outputs {
    pub sinks: Sinks,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Sinks {
    /// Delivers alerts to every sink, retrying with backoff and jitter until they confirm.
    /// While a sink is down nothing is acknowledged, so the source backs up: nothing is lost.
    pub async fn deliver(&self, alerts: &[Alert], metrics: &Metrics) {
        if alerts.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let mut result = Ok(());
            if let Some(sns) = &self.sns {
                result = sns.publish(alerts, self.format).await;
            }
            if let (Ok(()), Some(jsonl)) = (&result, &self.jsonl) {
                result = jsonl.publish(alerts, self.format);
            }
            match result {
                Ok(()) => return,
                Err(e) => {
                    metrics.sink_errors.inc();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "delivering alerts failed");
                    let jitter = Duration::from_millis(
                        rand::random::<u64>() % (delay.as_millis() as u64 / 2 + 1),
                    );
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// What outlives one rule set: handled ids, suppression windows, correlation state.
pub(super) struct Carry {
    ledger: Ledger,
    gate: Gate,
    reported: GateStats,
    /// What the suppression state file holds now.
    gate_saved: Vec<u8>,
    events: u64,
    correlation: Option<Vec<u8>>,
    state_file: Option<PathBuf>,
}

impl Carry {
    /// Restores what the last run left beside `windows.state_file`: the correlation snapshot,
    /// the suppression windows (`.alerts`) and the handled-ids ledger (`.published`).
    pub fn open(config: &Config) -> Result<Carry> {
        let state_file = config.windows.state_file.clone();
        let mut gate = Gate::new(config.alerts.limits(), config.lateness());
        let mut correlation = None;
        if let Some(path) = state_file.as_ref().filter(|p| p.exists()) {
            correlation =
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
        }
        if let Some(path) = state_file
            .as_ref()
            .map(|p| p.with_extension("alerts"))
            .filter(|p| p.exists())
        {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            gate.restore(&bytes)
                .with_context(|| format!("{}: damaged suppression state", path.display()))?;
            tracing::info!(
                open_windows = gate.open_windows(),
                "suppression windows restored"
            );
        }
        let ledger_path = state_file.as_ref().map(|p| p.with_extension("published"));
        let ledger = Ledger::open(ledger_path.as_deref(), REMEMBERED_ALERTS)
            .context("opening the published-alerts ledger")?;
        Ok(Carry {
            ledger,
            gate,
            reported: GateStats::default(),
            gate_saved: Vec::new(),
            events: 0,
            correlation,
            state_file,
        })
    }
}

/// Decoding, matching and correlation for one rule set, with the carried state.
pub(super) struct Worker<'s> {
    detect: Detect<'s>,
    decoder: Decoder<'s>,
    correlator: Correlator<'s>,
    candidates: Vec<Candidate>,
    batch_time: Option<i64>,
    metrics: Metrics,
    carry: Carry,
}

impl<'s> Worker<'s> {
    pub fn new(
        set: &'s RuleSet,
        summaries: SummaryFields,
        mut carry: Carry,
        config: &Config,
        metrics: Metrics,
        locator: Option<Arc<dyn crate::geo::Locate>>,
    ) -> Result<Self> {
        let max_body = config
            .source
            .sqs
            .as_ref()
            .map_or(1 << 20, |s| s.max_body_bytes);
        let opts = crate::window::Options {
            lateness: config.lateness(),
            max_keys: config.windows.max_keys.max(1),
        };
        let mut correlator = Correlator::new(set, opts);
        if let Some(l) = locator {
            correlator = correlator.with_locator(l);
        }
        if let Some(bytes) = carry.correlation.take() {
            let report = correlator.restore(&bytes).with_context(|| {
                let file = carry.state_file.as_ref().map(|p| p.display().to_string());
                file.unwrap_or_else(|| "correlation state".into())
            })?;
            tracing::info!(groups = report.groups, pending = report.pending, dropped = ?report.dropped, "correlation state restored");
        }
        Ok(Worker {
            detect: Detect::new(set, summaries, metrics.clone()),
            decoder: Decoder::new(
                set.fields(),
                Limits {
                    max_document_bytes: max_body,
                    ..Limits::default()
                },
            ),
            correlator,
            candidates: Vec::new(),
            batch_time: None,
            metrics,
            carry,
        })
    }

    /// Hands the carried state on to the next rule set.
    pub fn into_carry(mut self) -> Carry {
        self.carry.correlation = Some(self.correlator.snapshot());
        self.carry
    }

    /// Processes one received batch: alerts confirmed first, then the decodable messages deleted.
    pub async fn batch(&mut self, batch: Batch, out: &Outputs) {
        let started = Instant::now();
        let mut done = Vec::with_capacity(batch.messages.len());
        for msg in &batch.messages {
            match self.message(msg) {
                Ok(()) => done.push(msg.clone()),
                Err(kind) => {
                    // Left on the queue: it comes back after its visibility timeout and, after the
                    // queue's maxReceiveCount, moves to the dead-letter queue.
                    self.metrics.decode_errors.with_label_values(&[kind]).inc();
                    tracing::warn!(message_id = %msg.id, reason = kind, "undecodable message left for redrive");
                }
            }
        }
        self.publish(out).await;
        self.metrics
            .sink_latency
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = sqs::delete(&out.sqs, &out.queue_url, &done).await {
            tracing::warn!(error = %e, "deleting processed messages failed; they will be redelivered and deduplicated");
        } else {
            self.metrics.messages_deleted.inc_by(done.len() as u64);
        }
        self.metrics.sqs_in_flight.sub(batch.messages.len() as i64);
        self.update_window_metrics();
    }

    /// Gates the candidates, delivers what passes, then records it all durably: suppression
    /// state first and handled ids second, so a crash between them can only over-count a
    /// roll-up, never repeat an alert or lose a count.
    async fn publish(&mut self, out: &Outputs) {
        self.detect.correlations(&mut self.candidates);
        let (alerts, handled) = self.gate();
        out.sinks.deliver(&alerts, &self.metrics).await;
        self.metrics.alerts_published.inc_by(alerts.len() as u64);
        observe_latency(&self.metrics, &alerts);
        self.save_gate();
        let ids = handled
            .iter()
            .map(String::as_str)
            .chain(alerts.iter().map(|a| a.alert_id.as_str()));
        if let Err(e) = self.carry.ledger.record(ids) {
            tracing::warn!(error = %e, "recording handled alert ids failed; a crash now could repeat them");
        }
    }

    /// Decodes and evaluates one message; `Err` names why it is undecodable.
    fn message(&mut self, msg: &Received) -> Result<(), &'static str> {
        let (detect, correlator, candidates) =
            (&mut self.detect, &mut self.correlator, &mut self.candidates);
        let (events, batch_time) = (&mut self.carry.events, &mut self.batch_time);
        let mut bad_record = None;
        let result = self
            .decoder
            .decode(msg.body.as_bytes(), &mut |item| match item {
                Ok(ev) => {
                    *events += 1;
                    if let Some(t) = detect.event(ev, *events - 1, correlator, candidates) {
                        *batch_time = Some(batch_time.map_or(t, |b: i64| b.max(t)));
                    }
                }
                Err(e) => bad_record = Some(e.kind()),
            });
        match (result, bad_record) {
            (Err(e), _) => Err(e.kind()),
            (Ok(()), Some(kind)) => {
                // A bad record inside a good message: the rest was processed; count it and go on.
                self.metrics.decode_errors.with_label_values(&[kind]).inc();
                Ok(())
            }
            (Ok(()), None) => Ok(()),
        }
    }

    /// Runs the candidates through suppression and rate limits. Returns the alerts to publish
    /// and the per-hit ids handled; hits already handled (redelivered input) are dropped.
    fn gate(&mut self) -> (Vec<Alert>, Vec<String>) {
        let mut seen = HashSet::new();
        let mut handled = Vec::new();
        let mut alerts = Vec::new();
        let mut repeats = 0;
        for c in self.candidates.drain(..) {
            let hit = c.alert.alert_id.clone();
            if self.carry.ledger.contains(&hit) || !seen.insert(hit.clone()) {
                repeats += 1;
                continue;
            }
            handled.push(hit);
            self.carry.gate.offer(c, &mut alerts);
        }
        if let Some(t) = self.batch_time.take() {
            self.carry.gate.observe(t);
        }
        self.carry.gate.advance(&mut alerts);
        // An alert published just before a crash whose window state was not yet saved.
        let before = alerts.len();
        alerts.retain(|a| {
            !self.carry.ledger.contains(&a.alert_id) && seen.insert(a.alert_id.clone())
        });
        repeats += before - alerts.len();
        self.metrics.alerts_deduplicated.inc_by(repeats as u64);
        self.report_gate_stats();
        (alerts, handled)
    }

    fn report_gate_stats(&mut self) {
        let (now, was) = (self.carry.gate.stats, self.carry.reported);
        self.metrics
            .alerts_suppressed
            .inc_by(now.suppressed - was.suppressed);
        self.metrics
            .alerts_rate_limited
            .inc_by(now.rate_limited - was.rate_limited);
        self.carry.reported = now;
    }

    fn update_window_metrics(&self) {
        let s = self.correlator.stats;
        self.metrics.late_events.set(s.late as i64);
        self.metrics.window_evictions.set(s.evicted as i64);
        self.metrics.window_keys.set(self.correlator.keys() as i64);
    }

    /// Saves the suppression windows beside the state file (after every batch: they decide
    /// whether a redelivered or repeated hit pages again).
    fn save_gate(&mut self) {
        let Some(path) = &self.carry.state_file else {
            return;
        };
        let bytes = self.carry.gate.save();
        // Most batches change nothing here: spare them the write and the fsync.
        if bytes == self.carry.gate_saved {
            return;
        }
        let path = path.with_extension("alerts");
        match crate::durable::save_atomically(&path, &bytes) {
            Ok(()) => self.carry.gate_saved = bytes,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "writing the suppression state failed")
            }
        }
    }

    /// Writes the correlation state snapshot.
    pub fn snapshot(&self) {
        let Some(path) = &self.carry.state_file else {
            return;
        };
        match crate::durable::save_atomically(path, &self.correlator.snapshot()) {
            Ok(()) => self.metrics.snapshots.inc(),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "writing the state snapshot failed")
            }
        }
    }

    /// At shutdown: the events still buffered for correlation are kept in the snapshot, not
    /// flushed, so a restart continues the same windows.
    pub async fn finish(&mut self, out: &Outputs) {
        self.publish(out).await;
        self.snapshot();
        tracing::info!(events = self.carry.events, "stopped");
    }
}

/// Event-to-alert latency of first alerts (roll-ups and storms wait for windows by design).
pub(super) fn observe_latency(metrics: &Metrics, alerts: &[Alert]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for a in alerts.iter().filter(|a| a.kind == AlertKind::Alert) {
        if let Some(t) = a.last_seen.as_deref().and_then(crate::window::event_time) {
            metrics.event_to_alert.observe((now - t as f64).max(0.0));
        }
    }
}
