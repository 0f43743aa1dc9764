//! Prometheus metrics and the HTTP endpoint that serves them with `/healthz` and `/readyz`.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Most connections served at once; more are closed unanswered until one finishes.
const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last, request and response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest request head read (hyper's minimum buffer).
const MAX_REQUEST_HEAD: usize = 8192;

/// Seconds the oldest of `sent` (epoch milliseconds) has waited until now; 0 if there is none.
pub fn oldest_age_seconds(sent: impl Iterator<Item = i64>) -> f64 {
    let now_ms = crate::window::unix_ms();
    sent.map(|t| (now_ms - t).max(0) as f64 / 1000.0)
        .fold(0.0, f64::max)
}

/// Every metric trailwatch exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Source messages received.
    pub messages_received: IntCounter,
    /// CloudTrail records decoded, duplicates included.
    pub events: IntCounter,
    /// Records delivered again (same `eventID` within the de-duplication horizon): they did
    /// nothing else.
    pub events_duplicate: IntCounter,
    /// Undecodable messages or records, by kind.
    pub decode_errors: IntCounterVec,
    /// Rule hits, by rule id.
    pub rule_hits: IntCounterVec,
    /// Alerts confirmed by the sinks.
    pub alerts_published: IntCounter,
    /// Alerts not sent again because their id was already published.
    pub alerts_deduplicated: IntCounter,
    /// Failed sink calls (each is retried). Use [`Metrics::sink_failed`].
    pub sink_errors: IntCounter,
    /// Failed calls to the source: receiving, acknowledging (deleting, committing), broker
    /// errors (each is retried). Use [`Metrics::source_failed`].
    pub source_errors: IntCounter,
    /// Time from a batch being ready to its alerts being confirmed.
    pub sink_latency: Histogram,
    /// Messages received and not yet deleted.
    pub sqs_in_flight: IntGauge,
    /// Source messages deleted after their alerts were confirmed.
    pub messages_deleted: IntCounter,
    /// Events later than the allowed lateness (left out of correlations).
    pub late_events: IntGauge,
    /// Group keys evicted by the key cap.
    pub window_evictions: IntGauge,
    /// Group keys tracked now.
    pub window_keys: IntGauge,
    /// Correlation state snapshots written.
    pub snapshots: IntCounter,
    /// Bytes in the archive spool: the journal and the objects the store has not taken yet.
    pub archive_spool_bytes: IntGauge,
    /// Archive objects sealed (records and heartbeats).
    pub archive_objects_sealed: IntCounter,
    /// Archive objects and manifests the store confirmed.
    pub archive_objects_stored: IntCounter,
    /// Failed puts to the archive store (and failed seals).
    pub archive_store_failures: IntCounter,
    /// Repeats merged into an open suppression window (reported later in a roll-up).
    pub alerts_suppressed: IntCounter,
    /// Alerts held back by rate limits (reported in a storm alert).
    pub alerts_rate_limited: IntCounter,
    /// Time from an event (its eventTime) to its alert being confirmed by the sinks.
    pub event_to_alert: Histogram,
    /// Visibility timeouts extended for messages still being processed.
    pub visibility_extensions: IntCounter,
    /// Rule reloads, by result (`ok`, `rejected`).
    pub rule_reloads: IntCounterVec,
    /// Rules (and correlations) running now.
    pub rules_loaded: IntGauge,
    /// How long the oldest message of the latest batch waited in the source, seconds.
    pub source_lag: prometheus::Gauge,
    /// Kafka consumer lag (messages behind the partition's end), by partition.
    pub kafka_lag: prometheus::IntGaugeVec,
    /// Wall-clock seconds since the latest event time of each account and region.
    pub source_age: prometheus::GaugeVec,
    /// Kafka consumer group rebalances, by kind (`assign`, `revoke`).
    pub kafka_rebalances: IntCounterVec,
    /// Kafka offset commits made.
    pub kafka_commits: IntCounter,
    health: Arc<Health>,
}

/// What `/readyz` answers from: started, and neither receiving nor delivering failing for
/// longer than `unready_after`.
#[derive(Debug)]
struct Health {
    ready: AtomicBool,
    unready_after_ms: AtomicU64,
    /// Since when receiving (or acknowledging) has failed without a success in between.
    source_failing: Mutex<Option<Instant>>,
    /// Since when delivering has failed without a success in between.
    sink_failing: Mutex<Option<Instant>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            ready: AtomicBool::new(false),
            unready_after_ms: AtomicU64::new(60_000),
            source_failing: Mutex::new(None),
            sink_failing: Mutex::new(None),
        }
    }
}

fn mark(streak: &Mutex<Option<Instant>>, failing: bool) {
    let mut s = streak.lock().unwrap_or_else(|e| e.into_inner());
    match (failing, s.is_some()) {
        (true, false) => *s = Some(Instant::now()),
        (false, true) => *s = None,
        _ => {}
    }
}

fn failing_for(streak: &Mutex<Option<Instant>>) -> Option<Duration> {
    streak
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map(|since| since.elapsed())
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let r = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let vec = |name: &str, help: &str, label: &str| {
            let v = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            r.register(Box::new(v.clone())).expect("unique metric");
            v
        };
        let sink_latency = Histogram::with_opts(
            HistogramOpts::new(
                "trailwatch_sink_latency_seconds",
                "Time from a batch being ready to its alerts being confirmed",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(sink_latency.clone()))
            .expect("unique metric");
        let event_to_alert = Histogram::with_opts(
            HistogramOpts::new(
                "trailwatch_event_to_alert_seconds",
                "Time from an event's eventTime to its alert being confirmed",
            )
            .buckets(vec![
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(event_to_alert.clone()))
            .expect("unique metric");
        let source_lag = prometheus::Gauge::new(
            "trailwatch_source_lag_seconds",
            "How long the oldest message of the latest batch waited in the source",
        )
        .expect("valid metric");
        r.register(Box::new(source_lag.clone()))
            .expect("unique metric");
        let kafka_lag = prometheus::IntGaugeVec::new(
            Opts::new(
                "trailwatch_kafka_consumer_lag",
                "Messages behind the end of each owned partition",
            ),
            &["partition"],
        )
        .expect("valid metric");
        r.register(Box::new(kafka_lag.clone()))
            .expect("unique metric");
        let source_age = prometheus::GaugeVec::new(
            Opts::new(
                "trailwatch_source_last_event_age_seconds",
                "Seconds of wall-clock time since the latest event time of each account and region",
            ),
            &["account", "region"],
        )
        .expect("valid metric");
        r.register(Box::new(source_age.clone()))
            .expect("unique metric");
        Metrics {
            kafka_lag,
            source_age,
            kafka_rebalances: vec(
                "trailwatch_kafka_rebalances_total",
                "Consumer group rebalances, by kind",
                "kind",
            ),
            kafka_commits: counter(
                "trailwatch_kafka_commits_total",
                "Kafka offset commits made (at once after alerts are delivered, else about once a second)",
            ),
            source_lag,
            event_to_alert,
            alerts_suppressed: counter(
                "trailwatch_alerts_suppressed_total",
                "Repeats merged into an open suppression window",
            ),
            alerts_rate_limited: counter(
                "trailwatch_alerts_rate_limited_total",
                "Alerts held back by rate limits (summarised in a storm alert)",
            ),
            visibility_extensions: counter(
                "trailwatch_sqs_visibility_extensions_total",
                "Visibility timeouts extended for messages still being processed",
            ),
            rule_reloads: vec(
                "trailwatch_rule_reloads_total",
                "Rule reloads, by result",
                "result",
            ),
            rules_loaded: gauge("trailwatch_rules_loaded", "Rules and correlations running"),
            messages_received: counter(
                "trailwatch_messages_received_total",
                "Source messages received",
            ),
            events_duplicate: counter(
                "trailwatch_events_duplicate_total",
                "CloudTrail records seen before (same eventID) and ignored",
            ),
            events: counter(
                "trailwatch_events_total",
                "CloudTrail records decoded and evaluated",
            ),
            decode_errors: vec(
                "trailwatch_decode_errors_total",
                "Undecodable messages or records",
                "kind",
            ),
            rule_hits: vec("trailwatch_rule_hits_total", "Rule hits", "rule"),
            alerts_published: counter(
                "trailwatch_alerts_published_total",
                "Alerts confirmed by the sinks",
            ),
            alerts_deduplicated: counter(
                "trailwatch_alerts_deduplicated_total",
                "Alerts not sent again: same alert id",
            ),
            sink_errors: counter(
                "trailwatch_sink_errors_total",
                "Failed sink calls (retried)",
            ),
            source_errors: counter(
                "trailwatch_source_errors_total",
                "Failed source calls: receive, delete or commit, broker errors (retried)",
            ),
            sink_latency,
            sqs_in_flight: gauge(
                "trailwatch_sqs_in_flight",
                "Messages received and not yet deleted",
            ),
            messages_deleted: counter(
                "trailwatch_messages_deleted_total",
                "Messages deleted after their alerts were confirmed",
            ),
            late_events: gauge(
                "trailwatch_window_late_events",
                "Events later than the allowed lateness",
            ),
            window_evictions: gauge(
                "trailwatch_window_evictions",
                "Group keys evicted by the key cap",
            ),
            window_keys: gauge("trailwatch_window_keys", "Group keys tracked"),
            snapshots: counter(
                "trailwatch_state_snapshots_total",
                "Correlation state snapshots written",
            ),
            archive_spool_bytes: gauge(
                "trailwatch_archive_spool_bytes",
                "Bytes in the archive spool (journal and objects not yet in the store)",
            ),
            archive_objects_sealed: counter(
                "trailwatch_archive_objects_sealed_total",
                "Archive objects sealed",
            ),
            archive_objects_stored: counter(
                "trailwatch_archive_objects_stored_total",
                "Archive objects and manifests confirmed by the store",
            ),
            archive_store_failures: counter(
                "trailwatch_archive_store_failures_total",
                "Failed puts to the archive store and failed seals",
            ),
            registry: r,
            health: Arc::new(Health::default()),
        }
    }

    /// The name of every metric exported, for checking dashboards and alerting rules against.
    pub fn names() -> Vec<String> {
        let m = Metrics::new();
        // Labelled families appear once they have a child.
        for v in [
            &m.decode_errors,
            &m.rule_hits,
            &m.rule_reloads,
            &m.kafka_rebalances,
        ] {
            v.with_label_values(&["x"]);
        }
        m.kafka_lag.with_label_values(&["0"]);
        m.source_age.with_label_values(&["0", "0"]);
        m.registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }

    /// Reads another instance's `/metrics` at `addr` (load tests, end-to-end tests); empty if
    /// it does not answer.
    pub fn scrape(addr: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            return String::new();
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: trailwatch\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The value of the unlabelled counter or gauge `name` in scraped metrics text.
    pub fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Marks the service started (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.health.ready.store(ready, Ordering::Relaxed);
    }

    /// How long receiving or delivering may fail continuously before `/readyz` says 503.
    pub fn set_unready_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.health.unready_after_ms.store(ms, Ordering::Relaxed);
    }

    /// A source call failed (it is retried): counted, and the failure streak starts.
    pub fn source_failed(&self) {
        self.source_errors.inc();
        mark(&self.health.source_failing, true);
    }

    /// A source call succeeded: the failure streak, if any, ends.
    pub fn source_ok(&self) {
        mark(&self.health.source_failing, false);
    }

    /// A sink call failed (it is retried): counted, and the failure streak starts.
    pub fn sink_failed(&self) {
        self.sink_errors.inc();
        mark(&self.health.sink_failing, true);
    }

    /// Alerts were delivered: the failure streak, if any, ends.
    pub fn sink_ok(&self) {
        mark(&self.health.sink_failing, false);
    }

    /// Whether the service is ready; if not, why.
    pub fn readiness(&self) -> Result<(), String> {
        let h = &self.health;
        if !h.ready.load(Ordering::Relaxed) {
            return Err("starting".into());
        }
        let limit = Duration::from_millis(h.unready_after_ms.load(Ordering::Relaxed));
        for (what, streak) in [
            ("receiving from the source", &h.source_failing),
            ("delivering alerts", &h.sink_failing),
        ] {
            if let Some(d) = failing_for(streak).filter(|d| *d > limit) {
                return Err(format!("{what} has failed for {}s", d.as_secs()));
            }
        }
        Ok(())
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The answer to one request: `/metrics`, `/healthz`, `/readyz`; 404 elsewhere.
    fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let (status, body) = match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, self.render()),
            (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n".into()),
            (&Method::GET | &Method::HEAD, "/readyz") => match self.readiness() {
                Ok(()) => (StatusCode::OK, "ready\n".into()),
                Err(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            (_, "/metrics" | "/healthz" | "/readyz") => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            ),
            _ => (StatusCode::NOT_FOUND, "not found\n".into()),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
        }
        response
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` over HTTP/1.1 on `listener` until the task
    /// is dropped. Requests are bounded: at most [`MAX_CONNECTIONS`] at once (more are closed
    /// at once), 5 s to send the request head, 8 KiB of it, 15 s per connection, one request
    /// per connection.
    pub async fn serve(self, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue; // too many at once: this one is closed unanswered
            };
            let me = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = me.respond(&req);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .max_buf_size(MAX_REQUEST_HEAD)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_sample_is_read_by_its_whole_name() {
        let text = "# TYPE a_b counter\na_b_total 7\na_b{x=\"1\"} 5\na_b 3\n";
        assert_eq!(Metrics::sample(text, "a_b"), Some(3.0));
        assert_eq!(Metrics::sample(text, "a_b_total"), Some(7.0));
        assert_eq!(Metrics::sample(text, "a"), None);
    }

    async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out));
        read.await
            .expect("the server closes the connection")
            .unwrap_or(0);
        out
    }

    async fn serving(m: &Metrics) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(m.clone().serve(listener));
        addr
    }

    #[tokio::test]
    async fn requests_are_bounded_and_methods_checked() {
        let m = Metrics::new();
        let addr = serving(&m).await;
        let post = raw(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(
            post.to_ascii_lowercase().contains("allow: get, head"),
            "{post}"
        );
        let head = raw(addr, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(!head.ends_with("ok\n"), "no body for HEAD: {head}");
        let garbage = raw(addr, b"\x00\x01 not http\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
            "{garbage}"
        );
        // A head larger than the limit is refused, not buffered.
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let answer = raw(addr, huge.as_bytes()).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "{answer}"
        );
        // A client that sends nothing is dropped after the header timeout.
        let started = Instant::now();
        let silent = raw(addr, b"GET /metr").await;
        let waited = started.elapsed();
        assert!(
            silent.is_empty() || silent.starts_with("HTTP/1.1 408"),
            "{silent}"
        );
        assert!(
            waited >= Duration::from_secs(4) && waited < Duration::from_secs(9),
            "{waited:?}"
        );
        // Still serving.
        let ok = raw(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(
            ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"),
            "{ok}"
        );
        assert!(ok.contains("trailwatch_source_errors_total 0"), "{ok}");
    }

    #[tokio::test]
    async fn readyz_turns_503_after_failing_for_unready_after_and_back() {
        let m = Metrics::new();
        m.set_unready_after(Duration::from_millis(300));
        let addr = serving(&m).await;
        let get = |p: &'static str| {
            raw(
                addr,
                format!("GET {p} HTTP/1.1\r\nHost: x\r\n\r\n")
                    .leak()
                    .as_bytes(),
            )
        };
        m.set_ready(true);
        m.source_failed();
        m.source_failed();
        assert!(
            get("/readyz").await.starts_with("HTTP/1.1 200"),
            "not yet: within unready_after"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let r = get("/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.ends_with("not ready: receiving from the source has failed for 0s\n"),
            "{r}"
        );
        m.source_ok();
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        m.sink_failed();
        tokio::time::sleep(Duration::from_millis(400)).await;
        m.source_ok(); // the source working does not hide a failing sink
        let r = get("/readyz").await;
        assert!(r.contains("not ready: delivering alerts has failed"), "{r}");
        m.sink_ok();
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        let text = get("/metrics").await;
        assert!(
            text.contains("trailwatch_source_errors_total 2\n"),
            "{text}"
        );
        assert!(text.contains("trailwatch_sink_errors_total 1\n"), "{text}");
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let m = Metrics::new();
        m.events.inc_by(3);
        m.decode_errors.with_label_values(&["syntax"]).inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(m.clone().serve(listener));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let body = get("/metrics").await;
        assert!(body.contains("trailwatch_events_total 3"), "{body}");
        assert!(
            body.contains("trailwatch_decode_errors_total{kind=\"syntax\"} 1"),
            "{body}"
        );
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        m.set_ready(true);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    }
}
