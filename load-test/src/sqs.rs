//! Driving trailwatch through SQS: resources set up, events sent at a target rate as
//! EventBridge envelopes, and a report of throughput and of the latency trailwatch adds.

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::json;
use std::time::{Duration, Instant};

/// The queue and topic a run uses.
pub struct Resources {
    /// Where events go.
    pub events_queue: String,
    /// Where trailwatch publishes.
    pub topic_arn: String,
    /// Subscribed to the topic (raw delivery): where alerts are read back.
    pub alerts_queue: String,
}

/// Creates (idempotently) an events queue, an alerts topic, and a queue subscribed to it.
pub async fn setup(name: &str) -> Result<Resources> {
    let aws = aws_config::load_from_env().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let sns = aws_sdk_sns::Client::new(&aws);
    let events_queue = sqs
        .create_queue()
        .queue_name(format!("{name}-events"))
        .send()
        .await?
        .queue_url
        .context("queue url")?;
    let alerts_queue = sqs
        .create_queue()
        .queue_name(format!("{name}-alerts"))
        .send()
        .await?
        .queue_url
        .context("queue url")?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&alerts_queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    let arn = attrs
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("queue arn")?;
    let topic_arn = sns
        .create_topic()
        .name(format!("{name}-alerts"))
        .send()
        .await?
        .topic_arn
        .context("topic arn")?;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await?;
    Ok(Resources {
        events_queue,
        topic_arn,
        alerts_queue,
    })
}

/// Sends `events` as EventBridge envelopes, ten a call, at `rate` events/s (0: as fast as
/// possible), quiet for a while after the events `pauses` names (each ends a call).
/// With `stretch`, an event more than that many seconds of event time after the first event
/// not yet processed waits until the queue is drained: concurrent receivers reorder messages by
/// a second or so, and where event time runs hours a wall-clock second (scenarios crowded
/// together), that reordering alone would make events later than any lateness.
/// Returns when each event was handed over (eventID → seconds since `start`).
pub async fn send(
    queue: &str,
    mut events: Vec<serde_json::Value>,
    rate: u64,
    pauses: Option<&crate::pause::Pauses>,
    stretch: Option<i64>,
    start: Instant,
) -> Result<std::collections::HashMap<String, f64>> {
    let aws = aws_config::load_from_env().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let mut sent = std::collections::HashMap::new();
    // Wall time paused so far; event times after a pause move on by it.
    let mut paused = Duration::ZERO;
    // Wall time spent waiting for stretches to drain, which the rate does not count.
    let mut drained_for = Duration::ZERO;
    // Event time the stretch being sent began at.
    let mut begun: Option<i64> = None;
    let mut from = 0;
    while from < events.len() {
        let mut to = (from + 10).min(events.len());
        if let Some(step) = stretch {
            let first = time_of(&events[from]);
            if begun.is_some_and(|b| first > b.saturating_add(step)) {
                let waited = Instant::now();
                drained(queue, Duration::from_secs(120)).await?;
                drained_for += waited.elapsed();
                begun = None;
            }
            let b = *begun.get_or_insert(first);
            let end = b.saturating_add(step);
            if let Some(k) = (from + 1..to).find(|&k| time_of(&events[k]) > end) {
                to = k;
            }
        }
        let pause = pauses.and_then(|p| {
            let k = (from..to).find(|&k| p.is_after(&events[k]))?;
            to = k + 1;
            Some(p.pause)
        });
        let chunk = &mut events[from..to];
        if !paused.is_zero() {
            chunk
                .iter_mut()
                .for_each(|ev| crate::pause::retime(ev, paused.as_secs() as i64));
        }
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, ev)| {
                let envelope = json!({"version": "0", "id": ev["eventID"], "detail-type": "AWS API Call via CloudTrail",
                    "source": "aws.cloudtrail", "account": ev["recipientAccountId"], "time": ev["eventTime"],
                    "region": ev["awsRegion"], "resources": [], "detail": ev});
                SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(envelope.to_string()).build().ok()
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await?;
        let at = start.elapsed().as_secs_f64();
        for ev in chunk.iter() {
            if let Some(id) = ev["eventID"].as_str() {
                sent.insert(id.to_string(), at);
            }
        }
        from = to;
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
            paused += pause;
        }
        if rate > 0 {
            let due = paused + drained_for + Duration::from_secs_f64(from as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(sent)
}

/// A jump of event time that starts a new stretch of history: between days of learning, not
/// within an hourly series (whose own reordering only ever makes a few events late, and source
/// tracking counts late events too).
const HISTORY_STEP: i64 = 6 * 3600;

/// Sends history (scenario events days before the traffic) a stretch at a time, each once the
/// one before is processed: concurrent receivers reorder messages, and a reordering across days
/// of event time would make the earlier events late, so left out of every baseline.
pub async fn send_history(
    queue: &str,
    events: Vec<serde_json::Value>,
    start: Instant,
) -> Result<std::collections::HashMap<String, f64>> {
    let mut sent = std::collections::HashMap::new();
    let mut stretch: Vec<serde_json::Value> = Vec::new();
    for ev in events {
        let at = time_of(&ev);
        stretch.push(ev);
        if stretch.len() > 1 && at - time_of(&stretch[stretch.len() - 2]) > HISTORY_STEP {
            // The new event starts a stretch of its own: send what came before it first.
            let first = stretch.pop().unwrap_or_default();
            sent.extend(send(queue, std::mem::take(&mut stretch), 0, None, None, start).await?);
            drained(queue, Duration::from_secs(120)).await?;
            stretch.push(first);
        }
    }
    if !stretch.is_empty() {
        sent.extend(send(queue, stretch, 0, None, None, start).await?);
        drained(queue, Duration::from_secs(120)).await?;
    }
    Ok(sent)
}

/// An event's `eventTime` in seconds since the epoch (0 when it has none).
fn time_of(event: &serde_json::Value) -> i64 {
    event["eventTime"]
        .as_str()
        .and_then(trailwatch::window::event_time)
        .unwrap_or(0)
}

/// Waits until the events queue is drained (every message processed and deleted); returns when.
pub async fn drained(queue: &str, timeout: Duration) -> Result<Instant> {
    let aws = aws_config::load_from_env().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let deadline = Instant::now() + timeout;
    loop {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let n = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if n(QueueAttributeName::ApproximateNumberOfMessages)
            + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            == 0
        {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the queue was not drained within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Quantile `q` of a Prometheus histogram `name` in `metrics` text, interpolated in its bucket.
pub fn histogram_quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("{name}_bucket{{le=\""))?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let share = if count > prev.1 {
                (rank - prev.1) / (count - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * share);
        }
        prev = (le, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_from_buckets() {
        let m = "x_bucket{le=\"0.1\"} 50\nx_bucket{le=\"0.2\"} 90\nx_bucket{le=\"+Inf\"} 100\n";
        assert!((histogram_quantile(m, "x", 0.5).unwrap() - 0.1).abs() < 1e-9);
        assert!((histogram_quantile(m, "x", 0.7).unwrap() - 0.15).abs() < 1e-9);
        assert_eq!(histogram_quantile(m, "x", 0.99), Some(0.2));
        assert_eq!(histogram_quantile("", "x", 0.5), None);
    }
}
