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
                // One call deletes the lot: one call per alert fell behind at 1,000 events/s.
                let mut delete = sqs.delete_message_batch().queue_url(&queue);
                let mut deletes = 0;
                for (i, m) in msgs.into_iter().enumerate() {
                    if let Some(v) = m.body.as_deref().and_then(|b| serde_json::from_str(b).ok()) {
                        got.push((at, v));
                    }
                    if let Some(r) = m.receipt_handle {
                        delete = delete.entries(
                            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(r)
                                .build()?,
                        );
                        deletes += 1;
                    }
                }
                if deletes > 0 {
                    delete.send().await?;
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

/// Checks `alerts` against the ground truth of `generate --truth` (`geoip`: the run had a
/// database placing the scenario addresses, so geo expectations count).
pub fn check(
    truth: &std::path::Path,
    rules: &std::path::Path,
    alerts: &[Received],
    geoip: bool,
) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("alerts.jsonl");
    let lines: Vec<String> = alerts.iter().map(|(_, a)| a.to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    Ok(crate::check::check(truth, &file, rules, geoip)?.to_json())
}

/// Latency percentiles of first alerts whose event load-test sent (`sent`: eventID → seconds
/// since the start when it was handed over).
pub fn latency(sent: &HashMap<String, f64>, alerts: &[Received]) -> Value {
    let ms: Vec<f64> = alerts
        .iter()
        .filter(|(_, a)| a["kind"] == "alert")
        .filter_map(|(at, a)| {
            let id = a["events"][0]["eventID"].as_str()?;
            Some((at - sent.get(id)?) * 1000.0)
        })
        .collect();
    percentiles(ms)
}

/// How many, the smallest, the 50th, 90th and 99th percentile (nearest rank) and the largest of
/// `ms`, in milliseconds.
fn percentiles(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| -> Option<f64> {
        let i = ((ms.len() as f64 - 1.0) * p).round() as usize;
        ms.get(i).copied().map(tenth)
    };
    json!({
        "measured": ms.len(),
        "min_ms": q(0.0),
        "p50_ms": q(0.5),
        "p90_ms": q(0.9),
        "p99_ms": q(0.99),
        "max_ms": q(1.0),
    })
}

fn tenth(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// When a correlation pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// On the event that completes it (event_count, value_count, temporal with gt/gte).
    Early,
    /// Once the watermark passes the completing event (ordered temporal, geo rules, ...).
    Buffered,
}

impl Firing {
    fn name(self) -> &'static str {
        match self {
            Firing::Early => "early",
            Firing::Buffered => "buffered",
        }
    }
}

/// Rule file (relative to `rules`) → (rule id, when it pages) for every correlation of the pack,
/// as trailwatch compiles it.
pub fn correlation_firing(
    rules: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, (String, Firing)>> {
    let (loaded, errors) =
        trailwatch::rule::load_paths(&[rules.to_path_buf()], &Default::default());
    if let Some(e) = errors.first() {
        anyhow::bail!("{e}");
    }
    let set = trailwatch::engine::RuleSet::compile(loaded).map_err(|errors| {
        anyhow::anyhow!(
            "{}",
            errors.first().map(|e| e.to_string()).unwrap_or_default()
        )
    })?;
    Ok(set
        .correlations()
        .iter()
        .filter_map(|c| {
            let rel = c.rule.file.strip_prefix(rules).ok()?;
            let firing = if c.early {
                Firing::Early
            } else {
                Firing::Buffered
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            Some((rel, (c.id().to_string(), firing)))
        })
        .collect())
}

/// Event-to-page latency by kind of rule. Single-event rules: as [`latency`]. Each correlation
/// the ground truth expects (a line with a group and `completed_by`): from the handover of the
/// event that completes it to the arrival of its first alert for that group, summed up over the
/// correlations that fire early and over those that wait for the watermark, and listed one by
/// one (`latency_ms` null: no alert arrived).
pub fn latency_by_kind(
    sent: &HashMap<String, f64>,
    alerts: &[Received],
    truth: &[Value],
    firing: &std::collections::BTreeMap<String, (String, Firing)>,
) -> Value {
    let (mut early, mut buffered, mut each) = (Vec::new(), Vec::new(), Vec::new());
    for x in truth {
        let (Some(completing), Some(rule)) = (x["completed_by"].as_str(), x["rule"].as_str())
        else {
            continue;
        };
        let Some((id, how)) = firing.get(rule) else {
            continue;
        };
        let arrived = alerts
            .iter()
            .filter(|(_, a)| {
                a["kind"] == "alert"
                    && a["rule"]["id"] == id.as_str()
                    && crate::check::group_of(a) == x["group"]
            })
            .map(|(at, _)| *at)
            .min_by(f64::total_cmp);
        let ms = sent
            .get(completing)
            .zip(arrived)
            .map(|(handed, at)| (at - handed) * 1000.0);
        match how {
            Firing::Early => early.extend(ms),
            Firing::Buffered => buffered.extend(ms),
        }
        each.push(json!({
            "scenario": x["scenario"],
            "rule": rule,
            "firing": how.name(),
            "latency_ms": ms.map(tenth),
        }));
    }
    json!({
        "single_event": latency(sent, alerts),
        "early_correlation": percentiles(early),
        "buffered_correlation": percentiles(buffered),
        "correlations": each,
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

    #[test]
    fn correlations_are_timed_from_their_completing_event_by_kind() {
        // Handed over at these seconds: single-event "s", the completing events "c1", "c2", "c3".
        let sent: HashMap<String, f64> = [("s", 1.0), ("c1", 2.0), ("c2", 3.0), ("c3", 4.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let firing = [
            ("burst.yml", ("burst", Firing::Early)),
            ("spray.yml", ("spray", Firing::Early)),
            ("then.yml", ("then", Firing::Buffered)),
            ("geo.yml", ("geo", Firing::Buffered)),
        ]
        .map(|(f, (id, how))| (f.to_string(), (id.to_string(), how)))
        .into();
        let truth = vec![
            json!({"scenario": "one", "rule": "single.yml", "event_ids": ["s"], "group": null, "completed_by": null}),
            json!({"scenario": "bf", "rule": "burst.yml", "group": {"u": "a"}, "completed_by": "c1"}),
            json!({"scenario": "ps", "rule": "spray.yml", "group": {"ip": "b"}, "completed_by": "c2"}),
            json!({"scenario": "rt", "rule": "then.yml", "group": {"u": "r"}, "completed_by": "c3"}),
            json!({"scenario": "tr", "rule": "geo.yml", "group": {"u": "t"}, "completed_by": "c9"}),
        ];
        let corr = |rule: &str, group: Value, kind: &str| json!({"kind": kind, "rule": {"id": rule}, "group_key": group.to_string(), "events": []});
        let got = vec![
            (
                1.25,
                json!({"kind": "alert", "rule": {"id": "single"}, "events": [{"eventID": "s"}]}),
            ),
            // Another group of the same rule first, then the expected one, then its roll-up.
            (2.1, corr("burst", json!({"u": "other"}), "alert")),
            (2.5, corr("burst", json!({"u": "a"}), "alert")),
            (9.0, corr("burst", json!({"u": "a"}), "rollup")),
            (3.75, corr("spray", json!({"ip": "b"}), "alert")),
            // The first of two alerts of one group counts.
            (16.0, corr("then", json!({"u": "r"}), "alert")),
            (15.0, corr("then", json!({"u": "r"}), "alert")),
        ];
        let r = latency_by_kind(&sent, &got, &truth, &firing);
        assert_eq!(r["single_event"]["measured"], 1);
        assert_eq!(r["single_event"]["max_ms"], 250.0);
        assert_eq!(r["early_correlation"]["measured"], 2);
        assert_eq!(r["early_correlation"]["min_ms"], 500.0);
        assert_eq!(r["early_correlation"]["max_ms"], 750.0);
        assert_eq!(r["buffered_correlation"]["measured"], 1);
        assert_eq!(r["buffered_correlation"]["max_ms"], 11000.0);
        let each = r["correlations"].as_array().unwrap();
        assert_eq!(each.len(), 4, "the single-event line is not a correlation");
        assert_eq!(each[0]["firing"], "early");
        assert_eq!(each[2]["firing"], "buffered");
        assert_eq!(
            each[3]["latency_ms"],
            Value::Null,
            "never handed over, never raised"
        );
    }
}
