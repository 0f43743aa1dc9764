//! Where alerts go; each sink confirms delivery before the source acknowledges anything.

pub mod archive;

use crate::alert::{Alert, Format};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use std::io::Write;
use std::path::PathBuf;

/// An SNS topic (standard, or FIFO when the ARN ends in `.fifo`).
#[derive(Debug, Clone)]
pub struct SnsSink {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    fifo: bool,
}

impl SnsSink {
    /// A sink publishing to `topic_arn`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: String) -> Self {
        let fifo = topic_arn.ends_with(".fifo");
        SnsSink {
            client,
            topic_arn,
            fifo,
        }
    }

    /// Publishes alerts, ten a call, with `rule_id` and `level` as message attributes for
    /// subscription filter policies. On a FIFO topic the alert id is the deduplication id.
    pub async fn publish(&self, alerts: &[Alert], format: Format) -> Result<(), String> {
        for chunk in alerts.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, a) in chunk.iter().enumerate() {
                let body = format.render(a).map_err(|e| e.to_string())?;
                let attr = |v: &str| {
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(v)
                        .build()
                };
                let mut entry = PublishBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message(body)
                    .message_attributes("rule_id", attr(&a.rule.id).map_err(|e| e.to_string())?)
                    .message_attributes("level", attr(&a.rule.level).map_err(|e| e.to_string())?);
                if self.fifo {
                    entry = entry
                        .message_group_id(&a.rule.id)
                        .message_deduplication_id(&a.alert_id);
                }
                entries.push(entry.build().map_err(|e| e.to_string())?);
            }
            let out = self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(&e).to_string())?;
            if let Some(failed) = out.failed.filter(|f| !f.is_empty()) {
                return Err(format!(
                    "SNS refused {} alerts: {}",
                    failed.len(),
                    failed[0].code
                ));
            }
        }
        Ok(())
    }
}

/// Alerts as JSON lines, appended to a file or written to stdout (`-`).
#[derive(Debug, Clone)]
pub struct JsonlSink {
    path: PathBuf,
}

impl JsonlSink {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> Self {
        JsonlSink { path }
    }

    /// Writes and flushes the alerts.
    pub fn publish(&self, alerts: &[Alert], format: Format) -> Result<(), String> {
        let mut text = String::new();
        for a in alerts {
            text.push_str(&format.render(a).map_err(|e| e.to_string())?);
            text.push('\n');
        }
        if self.path.as_os_str() == "-" {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| e.to_string())
        } else {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_data())
                .map_err(|e| format!("{}: {e}", self.path.display()))
        }
    }
}
