//! Prometheus metrics and the HTTP endpoint that serves them with `/healthz` and `/readyz`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Seconds the oldest of `sent` (epoch milliseconds) has waited until now; 0 if there is none.
pub fn oldest_age_seconds(sent: impl Iterator<Item = i64>) -> f64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
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
    /// Failed sink calls (each is retried).
    pub sink_errors: IntCounter,
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
    /// Kafka consumer group rebalances, by kind (`assign`, `revoke`).
    pub kafka_rebalances: IntCounterVec,
    ready: Arc<AtomicBool>,
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
        Metrics {
            kafka_lag,
            kafka_rebalances: vec(
                "trailwatch_kafka_rebalances_total",
                "Consumer group rebalances, by kind",
                "kind",
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
            registry: r,
            ready: Arc::new(AtomicBool::new(false)),
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

    /// Marks the service ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", me.render()),
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    "/readyz" if me.ready.load(Ordering::Relaxed) => {
                        ("200 OK", "ready\n".to_string())
                    }
                    "/readyz" => ("503 Service Unavailable", "starting\n".to_string()),
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
