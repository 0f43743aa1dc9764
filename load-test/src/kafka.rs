//! Producing events to Kafka for `trailwatch run` with a Kafka source.
//!
//! Records are keyed by account (`recipientAccountId`, else `userIdentity.accountId`): every
//! event of an account lands in one partition, so the correlations and geo rules, which group by
//! principal, address or account within an account, see all their events in one partition and
//! one instance owns their state.

use anyhow::{Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The partition key of an event.
pub fn key(event: &Value) -> String {
    let account = event["recipientAccountId"]
        .as_str()
        .or_else(|| event["userIdentity"]["accountId"].as_str());
    account.unwrap_or("unknown").to_string()
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    // tansu, after a few runs on a busy machine, has let a create time out now and then (the
    // benchmarks create a topic a run); the topic may exist by the next try, which is fine.
    use rdkafka::types::RDKafkaErrorCode::{
        OperationTimedOut, RequestTimedOut, TopicAlreadyExists,
    };
    let mut tries = 0;
    'create: loop {
        tries += 1;
        let again = tries < CREATE_TRIES;
        let results = match admin.create_topics([&new], &AdminOptions::new()).await {
            Err(rdkafka::error::KafkaError::AdminOp(OperationTimedOut)) if again => continue,
            other => other.with_context(|| format!("creating topic {topic}"))?,
        };
        for r in results {
            match r {
                Ok(_) | Err((_, TopicAlreadyExists)) => {}
                Err((_, RequestTimedOut)) if again => continue 'create,
                Err((t, e)) => anyhow::bail!("creating topic {t}: {e}"),
            }
        }
        return Ok(());
    }
}

/// How many times a topic's creation is asked for when the broker does not answer in time.
const CREATE_TRIES: u32 = 3;

/// Produces the events of a JSON-lines file at `rate` events/s (0: as fast as possible), quiet
/// for a while after the events `pauses` names (each delivered before the pause); returns the
/// report and when each event was handed over (eventID → seconds since `t0`).
pub async fn produce(
    brokers: &str,
    topic: &str,
    input: &std::path::Path,
    rate: u64,
    pauses: Option<&crate::pause::Pauses>,
    t0: Instant,
) -> Result<(Value, std::collections::HashMap<String, f64>)> {
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let mut handed = std::collections::HashMap::new();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // 0 was tried: no lower latency, and tansu's CPU per event rose by a third, which
        // capped the setup at about 2,900 events/s.
        .set("linger.ms", "5")
        .create()?;
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut sent = 0u64;
    // Wall time paused so far; event times after a pause move on by it.
    let mut paused = Duration::ZERO;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // A line that is not JSON goes out as it is, keyed "unknown" (tests send poison so).
        let mut event: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let key = key(&event);
        let retimed;
        let payload = if paused.is_zero() || event.is_null() {
            line
        } else {
            crate::pause::retime(&mut event, paused.as_secs() as i64);
            retimed = event.to_string();
            &retimed
        };
        if rate > 0 {
            let due = started + paused + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let record = FutureRecord::to(topic).key(&key).payload(payload);
        pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if let Some(id) = event["eventID"].as_str() {
            handed.insert(id.to_string(), t0.elapsed().as_secs_f64());
        }
        sent += 1;
        if let Some(p) = pauses.filter(|p| p.is_after(&event)) {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
            tokio::time::sleep(p.pause).await;
            paused += p.pause;
        }
        if pending.len() >= 1000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let secs = started.elapsed().as_secs_f64();
    let busy = secs - paused.as_secs_f64();
    let report = serde_json::json!({
        "produced": sent,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "paused_seconds": paused.as_secs(),
        "events_per_second": (sent as f64 / busy.max(1e-9)).round(),
    });
    Ok((report, handed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_accounts() {
        let e = serde_json::json!({"recipientAccountId": "1", "userIdentity": {"accountId": "2"}});
        assert_eq!(super::key(&e), "1");
        let e = serde_json::json!({"userIdentity": {"accountId": "2"}});
        assert_eq!(super::key(&e), "2");
        assert_eq!(super::key(&serde_json::json!({})), "unknown");
    }
}
