//! The SQS source: long-polling receivers, and deletion once a message's alerts are confirmed.

use crate::metrics::Metrics;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use aws_sdk_sqs::Client;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS message id.
    pub id: String,
    /// Receipt handle, for deletion.
    pub receipt: String,
    /// The body.
    pub body: String,
}

/// One received batch. While it exists its messages are kept invisible: a slow batch (a sink
/// outage, a long queue behind it) is not redelivered to another consumer meanwhile.
#[derive(Debug)]
pub struct Batch {
    /// The messages.
    pub messages: Vec<Received>,
    _heartbeat: Option<Heartbeat>,
}

impl Batch {
    /// A batch without a heartbeat (tests, other sources).
    pub fn new(messages: Vec<Received>) -> Self {
        Batch {
            messages,
            _heartbeat: None,
        }
    }
}

/// Extends the visibility of a batch's messages every half timeout until dropped.
#[derive(Debug)]
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Heartbeat {
    fn start(source: &Queue, receipts: Vec<String>, metrics: Metrics) -> Self {
        let (client, url, timeout) = (
            source.client.clone(),
            source.url.clone(),
            source.visibility_timeout,
        );
        Heartbeat(tokio::spawn(async move {
            let period = Duration::from_millis(timeout as u64 * 500);
            loop {
                tokio::time::sleep(period).await;
                for chunk in receipts.chunks(10) {
                    let entries: Vec<_> = chunk
                        .iter()
                        .enumerate()
                        .filter_map(|(i, r)| {
                            ChangeMessageVisibilityBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(r)
                                .visibility_timeout(timeout)
                                .build()
                                .ok()
                        })
                        .collect();
                    let result = client
                        .change_message_visibility_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await;
                    match result {
                        Ok(_) => metrics.visibility_extensions.inc_by(chunk.len() as u64),
                        Err(e) => {
                            metrics.source_failed();
                            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "extending message visibility failed; they may be redelivered and deduplicated")
                        }
                    }
                }
            }
        }))
    }
}

/// First and longest wait before receiving again after a failure (doubling in between).
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The queue a poller reads.
#[derive(Debug, Clone)]
pub struct Queue {
    /// The client.
    pub client: Client,
    /// The queue URL.
    pub url: String,
    /// Long-poll wait, seconds.
    pub wait_seconds: i32,
    /// Visibility timeout asked for on receive and renewed while a batch is in work, seconds.
    pub visibility_timeout: i32,
}

/// Long-polls the queue (batches of 10) and hands batches on until `shutdown` turns true.
///
/// The channel is bounded: when processing falls behind, receiving waits (backpressure).
pub async fn poll(
    queue: Queue,
    tx: mpsc::Sender<Batch>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Metrics,
) {
    let (client, queue_url) = (&queue.client, &queue.url);
    let mut backoff = RETRY_MIN;
    while !*shutdown.borrow() {
        let request = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(queue.wait_seconds)
            .visibility_timeout(queue.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send();
        let response = tokio::select! {
            r = request => r,
            _ = shutdown.changed() => break,
        };
        let messages = match response {
            Ok(out) => {
                metrics.source_ok();
                backoff = RETRY_MIN;
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                metrics.source_failed();
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), retry_in_ms = backoff.as_millis() as u64, "receiving from SQS failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        metrics.source_lag.set(oldest_age(&messages));
        let batch: Vec<Received> = messages
            .into_iter()
            .filter_map(|m| {
                Some(Received {
                    id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                })
            })
            .collect();
        metrics.messages_received.inc_by(batch.len() as u64);
        metrics.sqs_in_flight.add(batch.len() as i64);
        let receipts = batch.iter().map(|m| m.receipt.clone()).collect();
        let batch = Batch {
            messages: batch,
            _heartbeat: Some(Heartbeat::start(&queue, receipts, metrics.clone())),
        };
        if tx.send(batch).await.is_err() {
            break;
        }
    }
}

/// Seconds the oldest message of a batch waited in the queue (0 if no timestamp came back).
fn oldest_age(messages: &[aws_sdk_sqs::types::Message]) -> f64 {
    crate::metrics::oldest_age_seconds(
        messages
            .iter()
            .filter_map(|m| {
                m.attributes()?
                    .get(&MessageSystemAttributeName::SentTimestamp)
            })
            .filter_map(|t| t.parse::<i64>().ok()),
    )
}

/// Deletes messages, ten a call, retrying failures a few times.
pub async fn delete(
    client: &Client,
    queue_url: &str,
    messages: &[&Received],
) -> Result<(), String> {
    for chunk in messages.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&m.receipt)
                    .build()
                    .ok()
            })
            .collect();
        let mut attempt = 0;
        loop {
            let result = client
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await;
            match result {
                Ok(out) if out.failed.is_empty() => break,
                Ok(out) => {
                    let reasons: Vec<String> = out.failed.iter().map(|f| f.code.clone()).collect();
                    if attempt >= 3 {
                        return Err(format!(
                            "SQS refused to delete {} messages: {}",
                            reasons.len(),
                            reasons.join(", ")
                        ));
                    }
                }
                Err(e) if attempt >= 3 => {
                    return Err(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
                }
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
    Ok(())
}
