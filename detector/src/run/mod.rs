//! `trailwatch run`: the always-on service. SQS in, alerts out, at least once in and no
//! duplicates out: a message is deleted only after every alert it caused is confirmed by the
//! sinks; an undecodable message is counted and left for the queue's redrive policy.
//!
//! Rules reload on SIGHUP and when a rule file changes. A rule set that does not compile is
//! rejected with its reason and the running set stays; a good one takes over between batches,
//! keeping correlation state (of correlations whose definition is unchanged), suppression
//! windows and the published-alerts ledger.

mod check;
mod kafka;
mod reload;
mod report;
mod worker;

use crate::alert::SummaryFields;
use crate::config::{Config, ConfigError, SnsConfig, SqsConfig};
use crate::engine::RuleSet;
use crate::metrics::Metrics;
use crate::sink::archive::{self, Archive, RuleSetId};
use crate::sink::{JsonlSink, SnsSink};
use crate::source::sqs::{self, Batch, Queue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use worker::{Carry, Outputs, Sinks, Worker};

/// Runs CPU-bound pipeline work (decoding, matching, correlating) without holding up the
/// executor: meanwhile the runtime moves this worker thread's other tasks (polling, Kafka
/// heartbeats, the metrics endpoint) to another thread, so a slow rule set stalls none of them.
fn compute<R>(work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// [`compute`] for work on `bytes` of input: a few events are processed in place, because
/// handing the thread's other tasks over wakes other threads, which costs more than the work
/// (about 40 us for 32 KiB of CloudTrail) holds them up.
fn compute_on<R>(bytes: usize, work: impl FnOnce() -> R) -> R {
    const IN_PLACE: usize = 32 * 1024;
    if bytes <= IN_PLACE {
        work()
    } else {
        compute(work)
    }
}

/// Why `run` (or `run --check`) stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration cannot work: a bad value, path or rule set, or a source or sink
    /// that does not answer at start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file beside `windows.state_file` cannot be read.
    #[error("reading {path}")]
    StateUnreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The state left by the last run (or rule set) cannot be used.
    #[error("{path}: {what} (move the file away to start without it)")]
    StateDamaged {
        /// The file (or `state` when carried over in memory).
        path: String,
        /// Which state.
        what: &'static str,
        /// What is wrong with it.
        source: crate::pipeline::StateError,
    },
    /// The published-alerts ledger (`<state_file>.published`) cannot be opened.
    #[error("opening the published-alerts ledger {path}")]
    Ledger {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A GeoIP database cannot be opened.
    #[error("[geoip]")]
    Geo(#[from] crate::geo::GeoDbError),
    /// Kafka refused something the service needs (the consumer, the state topic).
    #[error("{what}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// Kafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// The rule files cannot be watched for changes (set `rules.watch = false` to do without).
    #[error("watching {path} for rule changes")]
    Watch {
        /// The path, if the watcher itself did not start.
        path: String,
        /// Why.
        source: notify::Error,
    },
    /// The async runtime did not start.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The service task ended abnormally (a panic).
    #[error("the service stopped unexpectedly: {0}")]
    Aborted(String),
}

/// How long past `service.shutdown_timeout` a shutdown stuck in a call that cannot be
/// abandoned (a blocking Kafka client call) may take before the process exits anyway.
const HARD_EXIT_GRACE: Duration = Duration::from_secs(3);

/// Runs the service until SIGTERM or SIGINT.
///
/// Before it starts, everything [`check`] checks must pass. After the signal, in-flight work
/// gets `service.shutdown_timeout` to be delivered and acknowledged; what is not by then is
/// left unacknowledged (SQS messages undeleted, Kafka offsets uncommitted) for redelivery,
/// and the state is not snapshotted past it.
pub fn run(config: Config) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let shutdown_timeout = config.shutdown_timeout();
    let (stop_tx, stop_rx) = watch::channel(false);
    let result = runtime.block_on(async move {
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                timeout_s = shutdown_timeout.as_secs(),
                "shutting down: finishing in-flight messages"
            );
            let _ = stop_tx.send(true);
            hard_exit_after(shutdown_timeout + HARD_EXIT_GRACE);
            // A second signal does not hurry it: the bound above holds either way.
            wait_for_signal().await;
        });
        let metrics = Metrics::new();
        let mut service = tokio::spawn(serve(config, stop_rx.clone(), metrics.clone()));
        let mut stop = stop_rx;
        let deadline = async {
            if stop.wait_for(|s| *s).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(shutdown_timeout).await;
        };
        tokio::select! {
            done = &mut service => match done {
                Ok(result) => result,
                Err(e) => Err(RunError::Aborted(e.to_string())),
            },
            () = deadline => {
                service.abort();
                tracing::warn!(
                    timeout_s = shutdown_timeout.as_secs(),
                    unacknowledged = metrics.sqs_in_flight.get(),
                    "shutdown_timeout reached: what was not delivered stays unacknowledged and will be redelivered; the state is not snapshotted past it"
                );
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Exits the process after `after`, whatever is still running: the last resort that keeps a
/// shutdown bounded when a call cannot be cancelled.
fn hard_exit_after(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::error!(
            after_s = after.as_secs(),
            "shutdown did not finish in time; exiting with work unacknowledged (it will be redelivered)"
        );
        std::process::exit(1);
    });
}

/// What `run --check` does: the paths, the rules, and the source and sinks answering within
/// `service.startup_timeout`, without running. Returns a line per thing checked.
pub fn check(config: &Config) -> Result<Vec<String>, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let lines = runtime.block_on(async {
        let aws = aws_config::load_from_env().await;
        check::preflight(config, &aws).await.map(|c| c.lines)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(lines)
}

/// A compiled rule set with the fields its alerts take, ready to run.
pub(super) struct Prepared {
    set: RuleSet,
    summaries: SummaryFields,
    /// What the archive records as the rules in force.
    id: RuleSetId,
}

/// Loads and compiles the configured rules; any error rejects the whole set.
fn prepare(config: &Config, hmac_key: &Option<Vec<u8>>) -> Result<Prepared, PrepareError> {
    let placeholders = match &config.rules.placeholders {
        Some(p) => crate::rule::value::load_placeholders(p)
            .map_err(|e| PrepareError::Placeholders(e.to_string()))?,
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
        return Err(PrepareError::Rules(format!(
            "{} rule error(s); the first: {first}",
            errors.len()
        )));
    }
    let paths = || {
        let paths: Vec<String> = config
            .rules
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        PrepareError::NoRules(paths.join(", "))
    };
    let mut set = set.ok_or_else(paths)?;
    if set.rules().is_empty() && set.correlations().is_empty() {
        return Err(paths());
    }
    // Every event's account and region, for trailwatch_source_last_event_age_seconds.
    set.track_delivery();
    let summaries = SummaryFields::register(&mut set).with_hmac_key(hmac_key.clone());
    if !summaries.has_hmac_key() {
        if let Some(r) = summaries.rules_with_hashed_fields().next() {
            return Err(PrepareError::NeedsKey(set.rules()[r].id().to_string()));
        }
    }
    let id = RuleSetId {
        hash: crate::rule::parse::rules_digest(
            &config.rules.paths,
            config.rules.placeholders.as_deref(),
        ),
        rules: set.rules().len(),
        correlations: set.correlations().len(),
    };
    Ok(Prepared { set, summaries, id })
}

/// Why a rule set cannot run.
#[derive(Debug, thiserror::Error)]
pub(super) enum PrepareError {
    /// The placeholders file does not load.
    #[error("{0}")]
    Placeholders(String),
    /// Rules that do not parse or compile.
    #[error("{0}")]
    Rules(String),
    /// Nothing to run.
    #[error("no rules found in {0}")]
    NoRules(String),
    /// A rule hashes allow-listed fields and there is no key.
    #[error("rule {0} allow-lists hashed fields, but no secret is configured: set [alerts] hmac_key_file")]
    NeedsKey(String),
}

impl PrepareError {
    /// The configuration key to change.
    pub(super) fn key(&self) -> &'static str {
        match self {
            PrepareError::Placeholders(_) => "rules.placeholders",
            PrepareError::Rules(_) | PrepareError::NoRules(_) => "rules.paths",
            PrepareError::NeedsKey(_) => "alerts.hmac_key_file",
        }
    }
}

/// How often a quiet stream is checked for windows the wall clock has closed.
pub(super) const QUIET_CHECK: Duration = Duration::from_secs(1);

/// Why a rule set stopped running.
enum Next {
    Stop,
    Reload(Box<Prepared>),
}

async fn serve(
    config: Config,
    stop_rx: watch::Receiver<bool>,
    metrics: Metrics,
) -> Result<(), RunError> {
    metrics.set_unready_after(config.unready_after());
    let check::Checked {
        mut lines,
        prepared,
        hmac_key,
    } = check::local(&config)?;
    // Up before the services are checked: /healthz answers (and /readyz says "starting")
    // while a slow service is waited for.
    let listener = tokio::net::TcpListener::bind(&config.metrics.listen)
        .await
        .map_err(|e| {
            ConfigError::new(
                &config.file,
                "metrics.listen",
                crate::config::ConfigErrorKind::Unreachable,
                format!("cannot listen on {}: {e}", config.metrics.listen),
            )
        })?;
    tokio::spawn(metrics.clone().serve(listener));
    let aws = aws_config::load_from_env().await;
    let mut stop = stop_rx.clone();
    tokio::select! {
        reached = check::reach(&config, &aws, &mut lines) => reached?,
        _ = stop.wait_for(|s| *s) => return Ok(()),
    };
    for line in &lines {
        tracing::info!("checked {line}");
    }
    serve_checked(config, stop_rx, metrics, aws, prepared, hmac_key).await
}

/// The service, once its checks passed and the metrics endpoint is up.
async fn serve_checked(
    config: Config,
    stop_rx: watch::Receiver<bool>,
    metrics: Metrics,
    aws: aws_config::SdkConfig,
    prepared: Prepared,
    hmac_key: Option<Vec<u8>>,
) -> Result<(), RunError> {
    let locator = open_locator(&config, &prepared.set)?;
    let (reload_tx, reload_rx) = mpsc::channel(8);
    reload::on_sighup(reload_tx.clone());
    let _watcher = if config.rules.watch {
        Some(reload::watch_files(&config, reload_tx)?)
    } else {
        None
    };
    let archive = open_archive(&config, &aws, &metrics)?;
    if let Some(a) = &archive {
        let found = a.conflicting_chain().await.map_err(|e| {
            ConfigError::new(
                &config.file,
                "sink.archive",
                crate::config::ConfigErrorKind::Unreachable,
                e.to_string(),
            )
        })?;
        if let Some(found) = found {
            return Err(RunError::Config(ConfigError::new(
                &config.file,
                "sink.archive.spool",
                crate::config::ConfigErrorKind::Path,
                format!("the archive already holds {found}, past where this spool's chain ends (a new or restored spool under an old writer name): keep the spool this writer last ran with, or move this one away and set another writer"),
            )));
        }
    }
    let (archive_stop, archive_task) = match &archive {
        Some(a) => {
            let (tx, rx) = watch::channel(false);
            let a = a.clone();
            let deadline = config.shutdown_timeout() / 2;
            (
                Some(tx),
                Some(tokio::spawn(async move { a.drive(rx, deadline).await })),
            )
        }
        None => (None, None),
    };
    let served = if let Some(k) = &config.source.kafka {
        let out = sinks(&config, &aws, archive);
        let ctx = Drive {
            config: &config,
            hmac_key: &hmac_key,
            out: &out,
            metrics: &metrics,
        };
        ctx.archive_rules("start", &prepared).await;
        let served = kafka::serve(&ctx, k, prepared, locator, stop_rx, reload_rx).await;
        ctx.archive_stop().await;
        served
    } else {
        serve_sqs(
            &config, &aws, &metrics, archive, prepared, locator, stop_rx, reload_rx, &hmac_key,
        )
        .await
    };
    // The archive seals what is left and puts what it can before the process ends.
    if let (Some(tx), Some(task)) = (archive_stop, archive_task) {
        let _ = tx.send(true);
        let _ = task.await;
    }
    served
}

/// The SQS side of [`serve_checked`].
#[allow(clippy::too_many_arguments)]
async fn serve_sqs(
    config: &Config,
    aws: &aws_config::SdkConfig,
    metrics: &Metrics,
    archive: Option<Arc<Archive>>,
    mut prepared: Prepared,
    locator: Option<Arc<dyn crate::geo::Locate>>,
    stop_rx: watch::Receiver<bool>,
    mut reload_rx: mpsc::Receiver<&'static str>,
    hmac_key: &Option<Vec<u8>>,
) -> Result<(), RunError> {
    let Some(sqs_config) = &config.source.sqs else {
        return Ok(()); // validation makes this unreachable: one source is configured
    };
    let (out, queue) = connect(config, sqs_config, aws, archive);
    let pollers = config.source.sqs.as_ref().map_or(1, |s| s.pollers);
    let (tx, mut rx) = mpsc::channel::<Batch>(pollers * 2);
    for _ in 0..pollers {
        tokio::spawn(sqs::poll(
            queue.clone(),
            tx.clone(),
            stop_rx.clone(),
            metrics.clone(),
        ));
    }
    drop(tx);

    let mut carry = Carry::open(config)?;
    metrics.set_ready(true);
    let mut stop = stop_rx.clone();
    let mut reason = "start";
    loop {
        let next = {
            let Prepared { set, summaries, id } = &prepared;
            metrics
                .rules_loaded
                .set((set.rules().len() + set.correlations().len()) as i64);
            let mut worker = Worker::new(
                set,
                summaries.clone(),
                id.hash.clone(),
                carry,
                config,
                metrics.clone(),
                locator.clone(),
            )?;
            tracing::info!(
                rules = set.rules().len(),
                correlations = set.correlations().len(),
                "running"
            );
            let ctx = Drive {
                config,
                hmac_key,
                out: &out.sinks,
                metrics,
            };
            ctx.archive_rules(reason, &prepared).await;
            match ctx
                .drive(&mut worker, &out, &mut rx, &mut stop, &mut reload_rx)
                .await
            {
                Next::Stop => {
                    worker.finish(&out).await;
                    ctx.archive_stop().await;
                    return Ok(());
                }
                Next::Reload(p) => {
                    carry = worker.into_carry();
                    *p
                }
            }
        };
        prepared = next;
        reason = "reload";
    }
}

/// The archive of `[sink.archive]`, its spool opened (and what a crash left finished).
fn open_archive(
    config: &Config,
    aws: &aws_config::SdkConfig,
    metrics: &Metrics,
) -> Result<Option<Arc<Archive>>, RunError> {
    let Some(a) = &config.sink.archive else {
        return Ok(None);
    };
    let fail = |key: &str, message: String| {
        RunError::Config(ConfigError::new(
            &config.file,
            key,
            crate::config::ConfigErrorKind::Path,
            message,
        ))
    };
    let key = crate::alert::read_hmac_key(&a.key_file)
        .map_err(|e| fail("sink.archive.key_file", e.to_string()))?;
    let store = archive_store(a, aws);
    let settings = archive::Settings {
        spool: a.spool.clone(),
        writer: a.writer_name(),
        key,
        spool_max_bytes: a.spool_max_bytes,
        every: a.seal_every(),
        object_bytes: a.object_bytes,
        store,
    };
    let writer = settings.writer.clone();
    let opened = Archive::open(settings, metrics.clone())
        .map_err(|e| fail("sink.archive.spool", e.to_string()))?;
    tracing::info!(store = %opened.store().describe(), writer = %writer, "archiving");
    Ok(Some(Arc::new(opened)))
}

/// The store `[sink.archive]` names: its S3 bucket (with the protection set on each object)
/// or its directory.
pub fn archive_store(
    a: &crate::config::ArchiveConfig,
    aws: &aws_config::SdkConfig,
) -> archive::store::Store {
    use archive::store::{Bucket, Retention, Store};
    let Some(bucket) = &a.bucket else {
        return Store::Dir(a.dir.clone().unwrap_or_default());
    };
    // Bounded calls: a put that hangs on a dead connection would hold up every seal after it.
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build();
    // One attempt a call: the archive's own loop retries with its backoff, and sealing waits
    // while a put is out, so the SDK's retries (seconds of backoff against a refusing store)
    // held up the seals of an outage.
    let mut c = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(true)
        .timeout_config(timeouts)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled());
    if let Some(url) = &a.endpoint_url {
        c = c.endpoint_url(url);
    }
    let mode = match a.retention_mode {
        crate::config::RetentionMode::Compliance => aws_sdk_s3::types::ObjectLockMode::Compliance,
        crate::config::RetentionMode::Governance => aws_sdk_s3::types::ObjectLockMode::Governance,
    };
    Store::S3(Bucket {
        client: aws_sdk_s3::Client::from_conf(c.build()),
        bucket: bucket.clone(),
        prefix: a.prefix.clone(),
        kms_key_id: a.kms_key_id.clone(),
        retention: (a.retention_days > 0).then_some(Retention {
            mode,
            days: a.retention_days,
        }),
    })
}

/// What the processing loop needs besides the worker and its channels.
pub(super) struct Drive<'a> {
    config: &'a Config,
    hmac_key: &'a Option<Vec<u8>>,
    out: &'a Sinks,
    metrics: &'a Metrics,
}

impl Drive<'_> {
    /// Archives the rule set taking over (at start, or after a reload).
    pub(super) async fn archive_rules(&self, reason: &str, prepared: &Prepared) {
        let record = archive::Record::Rules {
            at: archive::object::now_rfc3339(),
            reason,
            rules: &prepared.id,
            version: env!("CARGO_PKG_VERSION"),
        };
        self.out.archive(record, self.metrics).await;
    }

    /// Archives that the service stopped.
    pub(super) async fn archive_stop(&self) {
        let record = archive::Record::Stop {
            at: archive::object::now_rfc3339(),
        };
        self.out.archive(record, self.metrics).await;
    }

    /// Processes batches until a stop signal or an accepted rule reload.
    async fn drive(
        &self,
        worker: &mut Worker<'_>,
        out: &Outputs,
        rx: &mut mpsc::Receiver<Batch>,
        stop: &mut watch::Receiver<bool>,
        reload: &mut mpsc::Receiver<&'static str>,
    ) -> Next {
        let every = Duration::from_secs(self.config.snapshot_interval().max(1) as u64);
        let mut tick = tokio::time::interval(every);
        let mut quiet = tokio::time::interval(QUIET_CHECK);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => worker.batch(batch, out).await,
                    None => return Next::Stop,
                },
                _ = tick.tick() => worker.snapshot(),
                _ = quiet.tick() => worker.tick(out).await,
                _ = stop.changed() => {
                    // Pollers stop on the same signal; what they already received is processed.
                    while let Some(batch) = rx.recv().await {
                        worker.batch(batch, out).await;
                    }
                    return Next::Stop;
                }
                Some(why) = reload.recv() => {
                    if let Some(p) = self.try_reload(why, reload).await {
                        return Next::Reload(p);
                    }
                }
            }
        }
    }

    /// Compiles the rules again; a broken set is logged with its reason and rejected.
    pub(super) async fn try_reload(
        &self,
        why: &'static str,
        more: &mut mpsc::Receiver<&'static str>,
    ) -> Option<Box<Prepared>> {
        // Editors and deploy tools write several files in a burst: wait for it to settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while more.try_recv().is_ok() {}
        match prepare(self.config, self.hmac_key) {
            Ok(p) => {
                self.metrics.rule_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(trigger = why, "rules reloaded");
                Some(Box::new(p))
            }
            Err(e) => {
                self.metrics
                    .rule_reloads
                    .with_label_values(&["rejected"])
                    .inc();
                tracing::error!(trigger = why, reason = %crate::escape::line(&format!("{e:#}")), "rule reload rejected; the running rules stay");
                None
            }
        }
    }
}

/// The SQS client of `[source.sqs]`.
pub(super) fn sqs_client(source: &SqsConfig, aws: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let mut c = aws_sdk_sqs::config::Builder::from(aws);
    if let Some(url) = &source.endpoint_url {
        c = c.endpoint_url(url);
    }
    aws_sdk_sqs::Client::from_conf(c.build())
}

/// The SNS client of `[sink.sns]`.
pub(super) fn sns_client(sink: &SnsConfig, aws: &aws_config::SdkConfig) -> aws_sdk_sns::Client {
    let mut c = aws_sdk_sns::config::Builder::from(aws);
    if let Some(url) = &sink.endpoint_url {
        c = c.endpoint_url(url);
    }
    aws_sdk_sns::Client::from_conf(c.build())
}

/// The AWS clients: the sinks and the queue.
fn connect(
    config: &Config,
    source: &SqsConfig,
    aws: &aws_config::SdkConfig,
    archive: Option<Arc<Archive>>,
) -> (Outputs, Queue) {
    let sqs_client = sqs_client(source, aws);
    let queue = Queue {
        client: sqs_client.clone(),
        url: source.queue_url.clone(),
        wait_seconds: source.wait_seconds,
        visibility_timeout: source.visibility_timeout_seconds,
    };
    let out = Outputs {
        sinks: sinks(config, aws, archive),
        sqs: sqs_client,
        queue_url: source.queue_url.clone(),
    };
    (out, queue)
}

/// The configured sinks.
fn sinks(config: &Config, aws: &aws_config::SdkConfig, archive: Option<Arc<Archive>>) -> Sinks {
    let sns = config
        .sink
        .sns
        .as_ref()
        .map(|s| SnsSink::new(sns_client(s, aws), s.topic_arn.clone()));
    Sinks {
        sns,
        jsonl: config.sink.jsonl.clone().map(JsonlSink::new),
        archive,
        format: config.alerts.format,
    }
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

fn open_locator(
    config: &Config,
    set: &RuleSet,
) -> Result<Option<Arc<dyn crate::geo::Locate>>, RunError> {
    if config.geoip.cities.is_empty() {
        if set.correlations().iter().any(|c| c.spec().needs_locator()) {
            tracing::warn!("geo rules are inactive, as are first_seen rules by location: no [geoip] cities configured");
        }
        return Ok(None);
    }
    let paths: Vec<&std::path::Path> = config.geoip.cities.iter().map(|p| p.as_path()).collect();
    Ok(Some(Arc::new(crate::geo::MmdbLocator::open(
        &paths,
        config.geoip.asn.as_deref(),
    )?)))
}
