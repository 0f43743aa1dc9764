//! The SQS source: long-polling receivers, and deletion once a message's alerts are confirmed.

use crate::metrics::Metrics;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
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

/// Long-polls `queue_url` (batches of 10) and hands batches on until `shutdown` turns true.
///
/// The channel is bounded: when processing falls behind, receiving waits (backpressure).
pub async fn poll(
    client: Client,
    queue_url: String,
    wait_seconds: i32,
    tx: mpsc::Sender<Vec<Received>>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Metrics,
) {
    while !*shutdown.borrow() {
        let request = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .send();
        let response = tokio::select! {
            r = request => r,
            _ = shutdown.changed() => break,
        };
        let messages = match response {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receiving from SQS failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
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
        if tx.send(batch).await.is_err() {
            break;
        }
    }
}

/// Deletes messages, ten a call, retrying failures a few times.
pub async fn delete(client: &Client, queue_url: &str, messages: &[Received]) -> Result<(), String> {
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
