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

    /// Publishes the alerts `sent` does not mark yet, ten a call, with `rule_id` and `level`
    /// as message attributes for subscription filter policies, and marks those SNS accepted.
    /// A retry with the same marks sends only the rest: a call that failed after earlier ones
    /// succeeded must not page twice through a standard topic, which has no deduplication.
    /// The first call with a failure ends the attempt, so alerts keep their order. On a FIFO
    /// topic the alert id is the deduplication id as well.
    pub async fn publish(
        &self,
        alerts: &[Alert],
        sent: &mut [bool],
        format: Format,
    ) -> Result<(), String> {
        debug_assert_eq!(sent.len(), alerts.len());
        let pending: Vec<usize> = (0..alerts.len())
            .filter(|&i| !sent.get(i).copied().unwrap_or(false))
            .collect();
        for chunk in pending.chunks(10) {
            let entries = chunk
                .iter()
                .map(|&i| self.entry(i, &alerts[i], format))
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .publish_batch()
                .topic_arn(&self.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_sdk_sns::error::DisplayErrorContext(&e).to_string())?;
            for ok in out.successful.unwrap_or_default() {
                // Only an id this call sent: an endpoint answering with others marks nothing.
                let id = ok.id.and_then(|id| id.parse::<usize>().ok());
                if let Some(i) = id.filter(|i| chunk.contains(i)) {
                    if let Some(mark) = sent.get_mut(i) {
                        *mark = true;
                    }
                }
            }
            if let Some(failed) = out.failed.filter(|f| !f.is_empty()) {
                return Err(format!(
                    "SNS refused {} alerts: {}",
                    failed.len(),
                    failed[0].code
                ));
            }
            let unanswered = chunk.iter().filter(|&&i| sent.get(i) != Some(&true));
            if let n @ 1.. = unanswered.count() {
                return Err(format!(
                    "SNS confirmed neither the success nor the failure of {n} alerts"
                ));
            }
        }
        Ok(())
    }

    /// The batch entry of alert `i` (its index is the entry id, to mark what SNS accepted).
    fn entry(
        &self,
        i: usize,
        alert: &Alert,
        format: Format,
    ) -> Result<PublishBatchRequestEntry, String> {
        let body = format.render(alert).map_err(|e| e.to_string())?;
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| e.to_string())
        };
        let mut entry = PublishBatchRequestEntry::builder()
            .id(i.to_string())
            .message(body)
            .message_attributes("rule_id", attr(&alert.rule.id)?)
            .message_attributes("level", attr(&alert.rule.level)?);
        if self.fifo {
            entry = entry
                .message_group_id(&alert.rule.id)
                .message_deduplication_id(&alert.alert_id);
        }
        entry.build().map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::body::Bytes;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// What the fake SNS endpoint does with one PublishBatch call.
    #[derive(Clone, Copy)]
    enum Answer {
        /// Accepts every entry.
        Accept,
        /// Fails the whole call (HTTP 500), accepting nothing.
        Fail,
        /// Accepts every entry but the one with this id.
        Refuse(&'static str),
        /// Answers success for ids it numbers itself from 0, not those the call sent.
        Renumber,
    }

    /// Per call, the entries it carried (id, alert id), and the alert ids accepted in all.
    #[derive(Default)]
    struct Seen {
        calls: Vec<Vec<(String, String)>>,
        accepted: Vec<String>,
    }

    /// The entries of a PublishBatch form body, by member number: (entry id, alert id).
    fn entries(body: &[u8]) -> Vec<(String, String)> {
        let mut members: BTreeMap<u32, (String, String)> = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            let Some(rest) = k.strip_prefix("PublishBatchRequestEntries.member.") else {
                continue;
            };
            let (n, field) = rest.split_once('.').unwrap();
            let member = members.entry(n.parse().unwrap()).or_default();
            match field {
                "Id" => member.0 = v.into_owned(),
                "Message" => {
                    let alert: serde_json::Value = serde_json::from_str(&v).unwrap();
                    member.1 = alert["alert_id"].as_str().unwrap().to_string();
                }
                _ => {}
            }
        }
        members.into_values().collect()
    }

    /// Answers the n-th PublishBatch call with `script[n]` (then accepts), recording it.
    async fn fake_sns(script: Vec<Answer>, seen: Arc<Mutex<Seen>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, seen) = (script.clone(), seen.clone());
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (script, seen) = (script.clone(), seen.clone());
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let entries = entries(&body);
                            let mut seen = seen.lock().unwrap();
                            let answer = *script.get(seen.calls.len()).unwrap_or(&Answer::Accept);
                            seen.calls.push(entries.clone());
                            let (status, xml) = respond(answer, &entries, &mut seen.accepted);
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "text/xml")
                                    .body(http_body_util::Full::new(Bytes::from(xml)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        format!("http://{addr}")
    }

    /// SNS's query-protocol answer to a PublishBatch call.
    fn respond(
        answer: Answer,
        entries: &[(String, String)],
        accepted: &mut Vec<String>,
    ) -> (u16, String) {
        if let Answer::Fail = answer {
            let xml = "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>\
                <Message>down</Message></Error><RequestId>r</RequestId></ErrorResponse>";
            return (500, xml.to_string());
        }
        let (mut ok, mut failed) = (String::new(), String::new());
        if let Answer::Renumber = answer {
            for n in 0..entries.len() {
                ok.push_str(&format!(
                    "<member><Id>{n}</Id><MessageId>m</MessageId></member>"
                ));
            }
        }
        for (id, alert) in entries
            .iter()
            .filter(|_| !matches!(answer, Answer::Renumber))
        {
            if matches!(answer, Answer::Refuse(r) if r == id) {
                failed.push_str(&format!(
                    "<member><Id>{id}</Id><Code>InternalError</Code><SenderFault>false</SenderFault></member>"
                ));
            } else {
                accepted.push(alert.clone());
                ok.push_str(&format!(
                    "<member><Id>{id}</Id><MessageId>m-{id}</MessageId></member>"
                ));
            }
        }
        let xml = format!(
            "<PublishBatchResponse><PublishBatchResult><Successful>{ok}</Successful>\
             <Failed>{failed}</Failed></PublishBatchResult>\
             <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishBatchResponse>"
        );
        (200, xml)
    }

    fn sink(url: &str) -> SnsSink {
        let config = aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .endpoint_url(url)
            .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
            .build();
        SnsSink::new(
            aws_sdk_sns::Client::from_conf(config),
            "arn:aws:sns:us-east-1:123456789012:alerts".into(),
        )
    }

    /// A call failing after others succeeded, an entry SNS refused, and an answer naming ids
    /// the call did not send: the retries send only what SNS has not accepted, in order, so
    /// every alert is accepted exactly once.
    #[tokio::test]
    async fn retries_send_only_what_sns_did_not_accept() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let script = vec![
            Answer::Accept,
            Answer::Fail,
            Answer::Refuse("12"),
            Answer::Renumber,
        ];
        let sns = sink(&fake_sns(script, seen.clone()).await);
        let alerts: Vec<Alert> = (0..25)
            .map(|i| Alert::bare("r1", &format!("a{i:02}"), "2026-01-01T00:00:00Z"))
            .collect();
        let mut sent = vec![false; alerts.len()];

        let first = sns.publish(&alerts, &mut sent, Format::Native).await;
        assert!(first.is_err(), "the second call failed");
        assert_eq!(sent.iter().filter(|s| **s).count(), 10);

        let second = sns.publish(&alerts, &mut sent, Format::Native).await;
        assert_eq!(
            second,
            Err("SNS refused 1 alerts: InternalError".to_string())
        );
        assert!(!sent[12] && sent.iter().filter(|s| **s).count() == 19);

        // Ids 0 to 5 in the answer, which the call (12, 20 to 24) did not send.
        let third = sns.publish(&alerts, &mut sent, Format::Native).await;
        let unanswered = "SNS confirmed neither the success nor the failure of 6 alerts";
        assert_eq!(third, Err(unanswered.to_string()));
        assert_eq!(sent.iter().filter(|s| **s).count(), 19, "nothing marked");

        sns.publish(&alerts, &mut sent, Format::Native)
            .await
            .unwrap();
        assert!(sent.iter().all(|s| *s));

        let seen = seen.lock().unwrap();
        let sizes: Vec<usize> = seen.calls.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            [10, 10, 10, 6, 6],
            "calls after a failure carry only the rest"
        );
        let ids: Vec<&str> = seen.calls[4].iter().map(|(_, a)| a.as_str()).collect();
        assert_eq!(ids, ["a12", "a20", "a21", "a22", "a23", "a24"], "in order");
        let mut accepted = seen.accepted.clone();
        accepted.sort();
        let want: Vec<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
        assert_eq!(accepted, want, "each alert accepted once");
    }
}
