//! `trailwatch run`: the always-on service. SQS in, alerts out, at least once in and no
//! duplicates out: a message is deleted only after every alert it caused is confirmed by the
//! sinks; an undecodable message is counted and left for the queue's redrive policy.

use crate::alert::{Alert, SummaryFields};
use crate::config::Config;
use crate::engine::{MatchScratch, RuleSet};
use crate::event::{Decoder, Limits};
use crate::metrics::Metrics;
use crate::sink::{JsonlSink, SnsSink};
use crate::source::sqs::{self, Received};
use crate::window::{CorrelationHit, Correlator, Origin};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How many recently published alert ids are remembered to drop redelivered duplicates.
const REMEMBERED_ALERTS: usize = 100_000;

/// Runs the service until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

fn compile(config: &Config) -> Result<RuleSet> {
    let placeholders = match &config.rules.placeholders {
        Some(p) => crate::rule::value::load_placeholders(p)?,
        None => Default::default(),
    };
    let (rules, mut errors) = crate::rule::load_paths(&config.rules.paths, &placeholders);
    let set = match RuleSet::compile(rules) {
        Ok(set) => Some(set),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    if let Some(first) = errors.first() {
        bail!("{} rule error(s); the first: {first}", errors.len());
    }
    set.context("no rules")
}

async fn serve(config: Config) -> Result<()> {
    let mut set = compile(&config)?;
    let summaries = SummaryFields::register(&mut set);
    let set = Arc::new(set);
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind(&config.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics endpoint {}", config.metrics.listen))?;
    tokio::spawn(metrics.clone().serve(listener));

    let aws = aws_config::load_from_env().await;
    let mut sqs_config = aws_sdk_sqs::config::Builder::from(&aws);
    if let Some(url) = config
        .source
        .sqs
        .as_ref()
        .and_then(|s| s.endpoint_url.as_ref())
    {
        sqs_config = sqs_config.endpoint_url(url);
    }
    let sqs_client = aws_sdk_sqs::Client::from_conf(sqs_config.build());
    let sns = config.sink.sns.as_ref().map(|s| {
        let mut c = aws_sdk_sns::config::Builder::from(&aws);
        if let Some(url) = &s.endpoint_url {
            c = c.endpoint_url(url);
        }
        SnsSink::new(
            aws_sdk_sns::Client::from_conf(c.build()),
            s.topic_arn.clone(),
        )
    });
    let jsonl = config.sink.jsonl.clone().map(JsonlSink::new);
    let source = config.source.sqs.clone().context("no source")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight messages");
        let _ = stop_tx.send(true);
    });
    let (tx, mut rx) = mpsc::channel::<Vec<Received>>(source.pollers * 2);
    for _ in 0..source.pollers {
        let (c, url, tx, stop, m) = (
            sqs_client.clone(),
            source.queue_url.clone(),
            tx.clone(),
            stop_rx.clone(),
            metrics.clone(),
        );
        tokio::spawn(sqs::poll(c, url, source.wait_seconds, tx, stop, m));
    }
    drop(tx);

    let locator = open_locator(&config, &set)?;
    let mut worker = Worker::new(&set, &config, summaries, metrics.clone(), locator)?;
    let out = Outputs {
        sns,
        jsonl,
        sqs: sqs_client,
        queue_url: source.queue_url.clone(),
    };
    metrics.set_ready(true);
    tracing::info!(
        rules = set.rules().len(),
        correlations = set.correlations().len(),
        "running"
    );
    let mut tick =
        tokio::time::interval(Duration::from_secs(config.snapshot_interval().max(1) as u64));
    let mut stop = stop_rx.clone();
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => worker.batch(batch, &out, &stop_rx).await,
                None => break,
            },
            _ = tick.tick() => worker.snapshot(),
            _ = stop.changed() => {
                // Pollers stop on the same signal; what they already received is processed below.
                while let Some(batch) = rx.recv().await {
                    worker.batch(batch, &out, &stop_rx).await;
                }
                break;
            }
        }
    }
    worker.finish(&out).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn open_locator(config: &Config, set: &RuleSet) -> Result<Option<Arc<dyn crate::geo::Locate>>> {
    if config.geoip.cities.is_empty() {
        if set.correlations().iter().any(|c| c.kind.is_geo()) {
            tracing::warn!("geo rules are inactive: no [geoip] cities configured");
        }
        return Ok(None);
    }
    let paths: Vec<&std::path::Path> = config.geoip.cities.iter().map(|p| p.as_path()).collect();
    Ok(Some(Arc::new(crate::geo::MmdbLocator::open(
        &paths,
        config.geoip.asn.as_deref(),
    )?)))
}

struct Outputs {
    sns: Option<SnsSink>,
    jsonl: Option<JsonlSink>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Outputs {
    /// Delivers alerts to every sink, retrying with backoff and jitter until they confirm.
    /// While a sink is down nothing is acknowledged, so the source backs up: nothing is lost.
    async fn deliver(&self, alerts: &[Alert], metrics: &Metrics) {
        if alerts.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        loop {
            let mut result = Ok(());
            if let Some(sns) = &self.sns {
                result = sns.publish(alerts).await;
            }
            if let (Ok(()), Some(jsonl)) = (&result, &self.jsonl) {
                result = jsonl.publish(alerts);
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

/// The engine side of the service: decoding, matching, correlation, alert ids.
struct Worker<'s> {
    set: &'s RuleSet,
    decoder: Decoder<'s>,
    correlator: Correlator<'s>,
    scratch: MatchScratch,
    hits: Vec<u32>,
    fired: Vec<CorrelationHit>,
    summaries: SummaryFields,
    metrics: Metrics,
    published: crate::alert::ledger::Ledger,
    state_file: Option<std::path::PathBuf>,
    events: u64,
}

impl<'s> Worker<'s> {
    fn new(
        set: &'s RuleSet,
        config: &Config,
        summaries: SummaryFields,
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
        // Alert ids published before a crash live beside the state snapshot.
        let ledger_path = config
            .windows
            .state_file
            .as_ref()
            .map(|p| p.with_extension("published"));
        if let Some(path) = config.windows.state_file.as_ref().filter(|p| p.exists()) {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let report = correlator
                .restore(&bytes)
                .with_context(|| format!("{}", path.display()))?;
            tracing::info!(groups = report.groups, pending = report.pending, dropped = ?report.dropped, "correlation state restored");
        }
        Ok(Worker {
            set,
            decoder: Decoder::new(
                set.fields(),
                Limits {
                    max_document_bytes: max_body,
                    ..Limits::default()
                },
            ),
            correlator,
            scratch: MatchScratch::default(),
            hits: Vec::new(),
            fired: Vec::new(),
            summaries,
            metrics,
            published: crate::alert::ledger::Ledger::open(
                ledger_path.as_deref(),
                REMEMBERED_ALERTS,
            )
            .with_context(|| "opening the published-alerts ledger".to_string())?,
            state_file: config.windows.state_file.clone(),
            events: 0,
        })
    }

    /// Processes one received batch: alerts confirmed first, then the decodable messages deleted.
    async fn batch(&mut self, batch: Vec<Received>, out: &Outputs, _stop: &watch::Receiver<bool>) {
        let started = Instant::now();
        let mut alerts = Vec::new();
        let mut done = Vec::with_capacity(batch.len());
        for msg in &batch {
            match self.message(msg, &mut alerts) {
                Ok(()) => done.push(msg.clone()),
                Err(kind) => {
                    // Left on the queue: it comes back after its visibility timeout and, after the
                    // queue's maxReceiveCount, moves to the dead-letter queue.
                    self.metrics.decode_errors.with_label_values(&[kind]).inc();
                    tracing::warn!(message_id = %msg.id, reason = kind, "undecodable message left for redrive");
                }
            }
        }
        self.correlation_alerts(&mut alerts);
        let alerts = self.new_alerts(alerts);
        out.deliver(&alerts, &self.metrics).await;
        self.metrics.alerts_published.inc_by(alerts.len() as u64);
        self.remember(&alerts);
        self.metrics
            .sink_latency
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = sqs::delete(&out.sqs, &out.queue_url, &done).await {
            tracing::warn!(error = %e, "deleting processed messages failed; they will be redelivered and deduplicated");
        } else {
            self.metrics.messages_deleted.inc_by(done.len() as u64);
        }
        self.metrics.sqs_in_flight.sub(batch.len() as i64);
        self.update_window_metrics();
    }

    /// Decodes and evaluates one message; `Err` names why it is undecodable.
    fn message(&mut self, msg: &Received, alerts: &mut Vec<Alert>) -> Result<(), &'static str> {
        let set = self.set;
        let (scratch, hits, fired, correlator, summaries, metrics) = (
            &mut self.scratch,
            &mut self.hits,
            &mut self.fired,
            &mut self.correlator,
            &self.summaries,
            &self.metrics,
        );
        let events = &mut self.events;
        let mut bad_record = None;
        let result = self
            .decoder
            .decode(msg.body.as_bytes(), &mut |item| match item {
                Ok(ev) => {
                    metrics.events.inc();
                    let index = *events;
                    *events += 1;
                    set.matches(ev, scratch, hits);
                    for &r in hits.iter() {
                        let rule = &set.rules()[r as usize];
                        metrics.rule_hits.with_label_values(&[rule.id()]).inc();
                        if !set.links().reach[r as usize].is_empty() {
                            let text = |f| ev.get(f).text().map(str::to_string);
                            let origin = Origin {
                                input_index: index,
                                event_id: text(set.event_id),
                                event_time: text(set.event_time),
                            };
                            correlator.push(ev, r, origin, fired);
                        }
                        if set.links().rule_reported[r as usize] {
                            alerts.push(Alert::for_hit(rule, summaries.summarize(ev)));
                        }
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

    fn correlation_alerts(&mut self, alerts: &mut Vec<Alert>) {
        for h in self.fired.drain(..) {
            let c = h.correlation as usize;
            if self.set.links().corr_reported[c] {
                alerts.push(Alert::for_correlation(&self.set.correlations()[c], &h));
            }
        }
    }

    /// Drops alerts already published (redelivered input) and repeats within the batch.
    fn new_alerts(&self, alerts: Vec<Alert>) -> Vec<Alert> {
        let mut seen = HashSet::new();
        let (fresh, dup): (Vec<Alert>, Vec<Alert>) = alerts.into_iter().partition(|a| {
            !self.published.contains(&a.alert_id) && seen.insert(a.alert_id.clone())
        });
        self.metrics.alerts_deduplicated.inc_by(dup.len() as u64);
        fresh
    }

    /// Records delivered alerts before their messages are deleted.
    fn remember(&mut self, alerts: &[Alert]) {
        if let Err(e) = self
            .published
            .record(alerts.iter().map(|a| a.alert_id.as_str()))
        {
            tracing::warn!(error = %e, "recording published alert ids failed; a crash now could repeat them");
        }
    }

    fn update_window_metrics(&self) {
        let s = self.correlator.stats;
        self.metrics.late_events.set(s.late as i64);
        self.metrics.window_evictions.set(s.evicted as i64);
        self.metrics.window_keys.set(self.correlator.keys() as i64);
    }

    fn snapshot(&self) {
        let Some(path) = &self.state_file else { return };
        let tmp = path.with_extension("tmp");
        match std::fs::write(&tmp, self.correlator.snapshot())
            .and_then(|_| std::fs::rename(&tmp, path))
        {
            Ok(()) => self.metrics.snapshots.inc(),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "writing the state snapshot failed")
            }
        }
    }

    /// At shutdown: the events still buffered for correlation are kept in the snapshot, not
    /// flushed, so a restart continues the same windows.
    async fn finish(&mut self, out: &Outputs) {
        let mut alerts = Vec::new();
        self.correlation_alerts(&mut alerts);
        let alerts = self.new_alerts(alerts);
        out.deliver(&alerts, &self.metrics).await;
        self.metrics.alerts_published.inc_by(alerts.len() as u64);
        self.remember(&alerts);
        self.snapshot();
        tracing::info!(events = self.events, "stopped");
    }
}
