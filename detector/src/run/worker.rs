//! The SQS side of the service: one pipeline over the whole stream, delivery, and the order of
//! acknowledgement that makes a crash lose nothing.

use super::report::Reported;
use super::RunError;
use crate::alert::ledger::Ledger;
use crate::alert::{Alert, AlertKind, Format, SummaryFields};
use crate::config::Config;
use crate::engine::RuleSet;
use crate::metrics::Metrics;
use crate::pipeline::{Carried, Pipeline};
use crate::sink::archive::{self, Archive};
use crate::sink::{JsonlSink, SnsSink};
use crate::source::sqs::{self, Batch};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many recently handled hit and alert ids are remembered to drop redelivered duplicates.
const REMEMBERED_ALERTS: usize = 100_000;

/// Where alerts go.
pub(super) struct Sinks {
    pub sns: Option<SnsSink>,
    pub jsonl: Option<JsonlSink>,
    pub archive: Option<Arc<Archive>>,
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
        self.deliver_with(alerts, None, metrics).await;
    }

    /// [`Sinks::deliver`], with the archive's record of the batch behind the alerts (archived
    /// even when the batch raised none). Each sink gets everything once: a retry repeats only
    /// the sinks that failed, and of SNS only the alerts it did not accept.
    pub async fn deliver_with(&self, alerts: &[Alert], record: Option<Vec<u8>>, metrics: &Metrics) {
        let archived = self
            .archive
            .as_ref()
            .filter(|_| record.is_some() || !alerts.is_empty());
        if alerts.is_empty() && archived.is_none() {
            return;
        }
        let mut archive_records = Vec::new();
        if archived.is_some() {
            archive_records = alerts.iter().map(archive::alert_record).collect();
            archive_records.extend(record);
        }
        let mut done = [
            archived.is_none(),
            self.sns.is_none() || alerts.is_empty(),
            self.jsonl.is_none() || alerts.is_empty(),
        ];
        let mut sns_sent = vec![false; alerts.len()];
        let mut delay = Duration::from_millis(100);
        loop {
            let mut failed = None;
            if let (false, Some(archive)) = (done[0], archived) {
                match tokio::task::block_in_place(|| archive.append(&archive_records)) {
                    Ok(()) => done[0] = true,
                    Err(e) => failed = Some(format!("archive: {e}")),
                }
            }
            if let (false, Some(sns)) = (done[1], &self.sns) {
                match sns.publish(alerts, &mut sns_sent, self.format).await {
                    Ok(()) => done[1] = true,
                    Err(e) => failed = Some(e),
                }
            }
            if let (false, Some(jsonl)) = (done[2], &self.jsonl) {
                match jsonl.publish(alerts, self.format) {
                    Ok(()) => done[2] = true,
                    Err(e) => failed = Some(e),
                }
            }
            let Some(e) = failed else {
                metrics.sink_ok();
                return;
            };
            metrics.sink_failed();
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "delivering alerts failed");
            let jitter =
                Duration::from_millis(rand::random::<u64>() % (delay.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(delay + jitter).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Archives a record that belongs to no batch (the rules in force, a stop), retrying like
    /// any delivery.
    pub async fn archive(&self, record: archive::Record<'_>, metrics: &Metrics) {
        if self.archive.is_some() {
            self.deliver_with(&[], Some(record.to_bytes()), metrics)
                .await;
        }
    }
}

/// What outlives one rule set: the pipeline's state (correlation and suppression windows,
/// remembered event ids, handled ids), or at start what the last run left on disk.
pub(super) struct Carry {
    carried: Option<Carried>,
    /// At start: the snapshot (`state_file`), the suppression state (`.alerts`, newer) and
    /// the handled-ids ledger (`.published`).
    snapshot: Option<Vec<u8>>,
    gate: Option<Vec<u8>>,
    ledger: Option<Ledger>,
    /// What the suppression state file holds now.
    gate_saved: Vec<u8>,
    events: u64,
    state_file: Option<PathBuf>,
}

impl Carry {
    /// Reads what the last run left beside `windows.state_file`.
    pub fn open(config: &Config) -> Result<Carry, RunError> {
        let state_file = config.windows.state_file.clone();
        let read = |path: Option<PathBuf>| -> Result<Option<Vec<u8>>, RunError> {
            match path.filter(|p| p.exists()) {
                Some(p) => {
                    std::fs::read(&p)
                        .map(Some)
                        .map_err(|source| RunError::StateUnreadable {
                            path: p.display().to_string(),
                            source,
                        })
                }
                None => Ok(None),
            }
        };
        let snapshot = read(state_file.clone())?;
        let gate = read(state_file.as_ref().map(|p| p.with_extension("alerts")))?;
        let ledger_path = state_file.as_ref().map(|p| p.with_extension("published"));
        let ledger = Ledger::open(ledger_path.as_deref(), REMEMBERED_ALERTS).map_err(|source| {
            RunError::Ledger {
                path: ledger_path
                    .as_ref()
                    .map_or_else(|| "(in memory)".into(), |p| p.display().to_string()),
                source,
            }
        })?;
        Ok(Carry {
            carried: None,
            snapshot,
            gate,
            ledger: Some(ledger),
            gate_saved: Vec::new(),
            events: 0,
            state_file,
        })
    }
}

/// The SQS stream's pipeline and what its batches need around it.
pub(super) struct Worker<'s> {
    set: &'s RuleSet,
    pipeline: Pipeline<'s>,
    reported: Reported,
    metrics: Metrics,
    carry: Carry,
    /// The rule set's hash, for the archive's batch records.
    rules_hash: String,
}

impl<'s> Worker<'s> {
    pub fn new(
        set: &'s RuleSet,
        summaries: SummaryFields,
        rules_hash: String,
        mut carry: Carry,
        config: &Config,
        metrics: Metrics,
        locator: Option<Arc<dyn crate::geo::Locate>>,
    ) -> Result<Self, RunError> {
        let max_body = config
            .source
            .sqs
            .as_ref()
            .map_or(1 << 20, |s| s.max_body_bytes);
        let settings = config.pipeline_settings(max_body);
        let mut pipeline = Pipeline::new(set, Some(summaries), &settings, locator);
        if config.sink.archive.is_some() {
            pipeline.count_hours();
        }
        let file = carry.state_file.as_ref().map(|p| p.display().to_string());
        let damaged = |what: &'static str| {
            let path = file.clone().unwrap_or_else(|| "state".into());
            move |source| RunError::StateDamaged { path, what, source }
        };
        if let Some(ledger) = carry.ledger.take() {
            pipeline = pipeline.with_ledger(ledger);
        }
        if let Some(c) = carry.carried.take() {
            pipeline = pipeline
                .with_carried(c)
                .map_err(damaged("state carried over from the last rule set"))?;
        }
        if let Some(bytes) = carry.snapshot.take() {
            let r = pipeline
                .restore(&bytes)
                .map_err(damaged("damaged state snapshot"))?;
            tracing::info!(groups = r.correlation.groups, pending = r.correlation.pending, dropped = ?r.correlation.dropped, event_ids = r.event_ids, "state restored");
        }
        if let Some(bytes) = carry.gate.take() {
            pipeline
                .restore_gate(&bytes)
                .map_err(damaged("damaged suppression state"))?;
            carry.gate_saved = bytes;
            tracing::info!(
                open_windows = pipeline.open_windows(),
                "suppression windows restored"
            );
        }
        Ok(Worker {
            set,
            pipeline,
            reported: Reported::default(),
            metrics,
            carry,
            rules_hash,
        })
    }

    /// Hands the carried state on to the next rule set.
    pub fn into_carry(mut self) -> Carry {
        self.reported.retire(&self.metrics);
        self.carry.carried = Some(self.pipeline.into_carried());
        self.carry
    }

    /// Processes one received batch: alerts confirmed first, then the decodable messages deleted.
    pub async fn batch(&mut self, batch: Batch, out: &Outputs) {
        let started = Instant::now();
        let mut done = Vec::with_capacity(batch.messages.len());
        let mut alerts = Vec::new();
        let before = self.pipeline.stats().events;
        let bytes = batch.messages.iter().map(|m| m.body.len()).sum();
        super::compute_on(bytes, || {
            for msg in &batch.messages {
                match self.pipeline.decode(msg.body.as_bytes(), &mut alerts) {
                    Ok(_) => done.push(msg),
                    Err(e) => {
                        // Left on the queue: it comes back after its visibility timeout and,
                        // after the queue's maxReceiveCount, moves to the dead-letter queue.
                        tracing::warn!(message_id = %msg.id, reason = e.kind(), "undecodable message left for redrive");
                    }
                }
            }
        });
        let events = self.pipeline.stats().events - before;
        self.carry.events += events;
        let record = out.sinks.archive.as_ref().map(|_| {
            archive::Record::Batch {
                at: archive::object::now_rfc3339(),
                source: "sqs",
                from: &out.queue_url,
                range: batch.messages.iter().map(|m| m.id.clone()).collect(),
                events,
                unreadable: (batch.messages.len() - done.len()) as u64,
                rules: &self.rules_hash,
                coverage: self.pipeline.take_hours(),
                alerts: alerts.len(),
            }
            .to_bytes()
        });
        self.publish_with(alerts, record, out).await;
        self.metrics
            .sink_latency
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = sqs::delete(&out.sqs, &out.queue_url, &done).await {
            self.metrics.source_failed();
            tracing::warn!(error = %e, "deleting processed messages failed; they will be redelivered and deduplicated");
        } else {
            self.metrics.messages_deleted.inc_by(done.len() as u64);
        }
        self.metrics.sqs_in_flight.sub(batch.messages.len() as i64);
    }

    /// Closes what a quiet stream's wall clock has passed and delivers it.
    pub async fn tick(&mut self, out: &Outputs) {
        let mut alerts = Vec::new();
        super::compute(|| self.pipeline.tick(&mut alerts));
        self.publish(alerts, out).await;
    }

    /// Delivers alerts, then records it all durably: suppression state first and handled ids
    /// second, so a crash between them can only over-count a roll-up, never repeat an alert
    /// or lose a count.
    async fn publish(&mut self, alerts: Vec<Alert>, out: &Outputs) {
        self.publish_with(alerts, None, out).await;
    }

    /// [`Worker::publish`] with the archive's record of the batch.
    async fn publish_with(&mut self, alerts: Vec<Alert>, record: Option<Vec<u8>>, out: &Outputs) {
        out.sinks.deliver_with(&alerts, record, &self.metrics).await;
        self.metrics.alerts_published.inc_by(alerts.len() as u64);
        observe_latency(&self.metrics, &alerts);
        self.save_gate();
        if let Err(e) = self.pipeline.confirm() {
            tracing::warn!(error = %e, "recording handled alert ids failed; a crash now could repeat them");
        }
        self.reported
            .report(self.set, &self.pipeline, &self.metrics);
    }

    /// Saves the suppression windows beside the state file (after every batch: they decide
    /// whether a redelivered or repeated hit pages again).
    fn save_gate(&mut self) {
        let Some(path) = &self.carry.state_file else {
            return;
        };
        let bytes = self.pipeline.gate_state();
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

    /// Writes the state snapshot.
    pub fn snapshot(&self) {
        let Some(path) = &self.carry.state_file else {
            return;
        };
        match crate::durable::save_atomically(path, &self.pipeline.snapshot()) {
            Ok(()) => self.metrics.snapshots.inc(),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "writing the state snapshot failed")
            }
        }
    }

    /// At shutdown: the events still buffered for correlation are kept in the snapshot, not
    /// flushed, so a restart continues the same windows.
    pub async fn finish(&mut self, out: &Outputs) {
        self.publish(Vec::new(), out).await;
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
