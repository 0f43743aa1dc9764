//! Reading alerts back from the queue subscribed to trailwatch's SNS topic while a run goes on,
//! and the event-to-alert latency they show: from the moment load-test handed an event to the
//! source to the moment its alert arrived through SNS.

use anyhow::Result;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One alert as received: seconds since the run started, and the alert.
pub type Received = (f64, Value);

/// A background reader of the alerts queue.
pub struct Reader {
    stop: watch::Sender<bool>,
    /// Seconds without alerts after which a stopped reader ends (0: at the first empty read).
    quiet: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<Result<Vec<Received>>>,
}

impl Reader {
    /// Starts reading (and deleting) alerts from `queue`, timing them from `t0`.
    pub fn start(queue: String, t0: Instant) -> Reader {
        let (stop, mut stopped) = watch::channel(false);
        let quiet = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let quiet_for = quiet.clone();
        let task = tokio::spawn(async move {
            let mut last_alert = Instant::now();
            let aws = aws_config::load_from_env().await;
            let sqs = aws_sdk_sqs::Client::new(&aws);
            let mut got = Vec::new();
            loop {
                let out = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await?;
                let msgs = out.messages.unwrap_or_default();
                let at = t0.elapsed().as_secs_f64();
                let wait =
                    Duration::from_secs(quiet_for.load(std::sync::atomic::Ordering::Relaxed));
                if msgs.is_empty() && *stopped.borrow_and_update() && last_alert.elapsed() >= wait {
                    return Ok(got);
                }
                if !msgs.is_empty() {
                    last_alert = Instant::now();
                }
                for m in msgs {
                    if let Some(v) = m.body.as_deref().and_then(|b| serde_json::from_str(b).ok()) {
                        got.push((at, v));
                    }
                    if let Some(r) = m.receipt_handle {
                        sqs.delete_message()
                            .queue_url(&queue)
                            .receipt_handle(r)
                            .send()
                            .await?;
                    }
                }
            }
        });
        Reader { stop, quiet, task }
    }

    /// Stops once the queue is empty; returns every alert read.
    pub async fn finish(self) -> Result<Vec<Received>> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(120), self.task).await??
    }

    /// Stops once no alert arrived for `quiet` seconds (the consumer has caught up).
    pub async fn finish_after_quiet(self, quiet: u64) -> Result<Vec<Received>> {
        let _ = self.stop.send(true);
        self.quiet
            .store(quiet, std::sync::atomic::Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(600), self.task).await??
    }
}

/// Checks `alerts` against the ground truth of `generate --truth`.
pub fn check(
    truth: &std::path::Path,
    rules: &std::path::Path,
    alerts: &[Received],
) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("alerts.jsonl");
    let lines: Vec<String> = alerts.iter().map(|(_, a)| a.to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    Ok(crate::check::check(truth, &file, rules, false)?.to_json())
}

/// Latency percentiles of first alerts whose event load-test sent (`sent`: eventID → seconds
/// since the start when it was handed over).
pub fn latency(sent: &HashMap<String, f64>, alerts: &[Received]) -> Value {
    let mut ms: Vec<f64> = alerts
        .iter()
        .filter(|(_, a)| a["kind"] == "alert")
        .filter_map(|(at, a)| {
            let id = a["events"][0]["eventID"].as_str()?;
            Some((at - sent.get(id)?) * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| -> Option<f64> {
        let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
        ms.get(i).map(|v| (v * 10.0).round() / 10.0)
    };
    json!({
        "measured": ms.len(),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "max_ms": q(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_first_alerts_of_sent_events() {
        let sent: HashMap<String, f64> = [("a".to_string(), 1.0), ("b".to_string(), 2.0)].into();
        let alert = |id: &str, kind: &str| json!({"kind": kind, "events": [{"eventID": id}]});
        let got = vec![
            (1.5, alert("a", "alert")),
            (2.25, alert("b", "alert")),
            (9.0, alert("a", "rollup")),
            (3.0, alert("unknown", "alert")),
        ];
        let r = latency(&sent, &got);
        assert_eq!(r["measured"], 2);
        assert_eq!(r["p50_ms"], 500.0);
        assert_eq!(r["max_ms"], 500.0);
        assert_eq!(latency(&sent, &[])["p50_ms"], Value::Null);
    }
}
