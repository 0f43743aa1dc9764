//! What `trailwatch run` checks before it starts, and all that `run --check` does: the
//! configuration's files and directories, the rules, and that the source and sinks answer
//! within `service.startup_timeout`. Each failure names the key and the file to fix.

use super::Prepared;
use crate::config::{Config, ConfigError, ConfigErrorKind};
use aws_sdk_sqs::error::SdkError;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// What the checks found: one line per thing checked, and what `run` goes on with.
pub(super) struct Checked {
    pub lines: Vec<String>,
    pub prepared: Prepared,
    pub hmac_key: Option<Vec<u8>>,
}

/// First and longest pause between attempts to reach a service that did not answer.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// Checks paths, rules and services; the services get `service.startup_timeout` in all.
pub(super) async fn preflight(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Checked, ConfigError> {
    let mut checked = local(config)?;
    reach(config, aws, &mut checked.lines).await?;
    Ok(checked)
}

/// The checks that need no service: paths, the HMAC key, the rules.
pub(super) fn local(config: &Config) -> Result<Checked, ConfigError> {
    let mut lines = config.check_paths()?;
    let hmac_key = match &config.alerts.hmac_key_file {
        Some(p) => Some(crate::alert::read_hmac_key(p).map_err(|e| {
            ConfigError::new(
                &config.file,
                "alerts.hmac_key_file",
                ConfigErrorKind::Path,
                e.to_string(),
            )
        })?),
        None => None,
    };
    let prepared = super::prepare(config, &hmac_key).map_err(|e| {
        ConfigError::new(&config.file, e.key(), ConfigErrorKind::Rules, e.to_string())
    })?;
    lines.push(format!(
        "rules.paths: {} rules and {} correlations compiled",
        prepared.set.rules().len(),
        prepared.set.correlations().len()
    ));
    Ok(Checked {
        lines,
        prepared,
        hmac_key,
    })
}

/// Whether the source and the sinks answer within `service.startup_timeout`; a line per
/// service that did is added to `lines`.
pub(super) async fn reach(
    config: &Config,
    aws: &aws_config::SdkConfig,
    lines: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let timeout = config.startup_timeout();
    let deadline = Instant::now() + timeout;
    let unreachable = |key: &str, what: &str, why: String| {
        ConfigError::new(
            &config.file,
            key,
            ConfigErrorKind::Unreachable,
            format!("{what}: {why}"),
        )
    };
    if let Some(sqs) = &config.source.sqs {
        // One attempt a call: this loop retries, and keeps each attempt's error.
        let client = super::sqs_client(sqs, aws);
        let client = aws_sdk_sqs::Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_sqs::config::retry::RetryConfig::disabled())
                .build(),
        );
        let started = Instant::now();
        let what = format!("SQS queue {}{}", sqs.queue_url, via(&sqs.endpoint_url));
        answer(&what, deadline, timeout, || {
            client
                .get_queue_attributes()
                .queue_url(&sqs.queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
        })
        .await
        .map_err(|why| unreachable("source.sqs.queue_url", &what, why))?;
        lines.push(format!(
            "source.sqs.queue_url: {what} answered GetQueueAttributes in {} ms",
            started.elapsed().as_millis()
        ));
    }
    if let Some(k) = &config.source.kafka {
        let started = Instant::now();
        let what = format!("Kafka brokers {}", k.brokers);
        let probe = {
            let k = k.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::task::spawn_blocking(move || crate::source::kafka::probe(&k, left))
        };
        let found = match probe.await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                let why = format!("no metadata for topic {} within {timeout:?}: {e}", k.topic);
                return Err(unreachable("source.kafka.brokers", &what, why));
            }
            Err(e) => return Err(unreachable("source.kafka.brokers", &what, e.to_string())),
        };
        if found.partitions == 0 {
            tracing::warn!(topic = %k.topic, "the events topic does not exist yet; consuming starts once it is created");
        }
        lines.push(format!(
            "source.kafka.brokers: {what} answered with metadata in {} ms ({} brokers; topic {}: {} partitions)",
            started.elapsed().as_millis(),
            found.brokers,
            k.topic,
            found.partitions
        ));
    }
    if let Some(crate::sink::archive::store::Store::S3(b)) = config
        .sink
        .archive
        .as_ref()
        .map(|a| super::archive_store(a, aws))
    {
        let started = Instant::now();
        let what = format!("S3 bucket {}", b.bucket);
        answer(&what, deadline, timeout, || {
            b.client.head_bucket().bucket(&b.bucket).send()
        })
        .await
        .map_err(|why| unreachable("sink.archive.bucket", &what, why))?;
        lines.push(format!(
            "sink.archive.bucket: {what} answered HeadBucket in {} ms",
            started.elapsed().as_millis()
        ));
    }
    if let Some(sns) = &config.sink.sns {
        let client = super::sns_client(sns, aws);
        let client = aws_sdk_sns::Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled())
                .build(),
        );
        let started = Instant::now();
        let what = format!("SNS topic {}{}", sns.topic_arn, via(&sns.endpoint_url));
        answer(&what, deadline, timeout, || {
            client
                .get_topic_attributes()
                .topic_arn(&sns.topic_arn)
                .send()
        })
        .await
        .map_err(|why| unreachable("sink.sns.topic_arn", &what, why))?;
        lines.push(format!(
            "sink.sns.topic_arn: {what} answered GetTopicAttributes in {} ms",
            started.elapsed().as_millis()
        ));
    }
    Ok(())
}

/// Calls an AWS API until it answers or `deadline` passes. An error the service itself
/// returned (no such queue, access denied) is final at once; a connection that fails or
/// times out is tried again with backoff.
async fn answer<F, Fut, T, E, R>(
    what: &str,
    deadline: Instant,
    timeout: Duration,
    mut call: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    let mut pause = RETRY_MIN;
    let mut last = None;
    loop {
        let why = match tokio::time::timeout_at(deadline, call()).await {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(SdkError::ServiceError(e))) => {
                return Err(format!("the service refused: {}", causes(e.err())))
            }
            Ok(Err(e)) => causes(&e),
            Err(_) => last
                .take()
                .unwrap_or_else(|| "no answer to the first call".to_string()),
        };
        if Instant::now() + pause >= deadline {
            return Err(format!(
                "not reachable within service.startup_timeout ({}s): {why}",
                timeout.as_secs()
            ));
        }
        tracing::warn!(error = %why, retry_in_ms = pause.as_millis() as u64, "{what} does not answer yet; retrying until service.startup_timeout");
        last = Some(why);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// An error and its causes on one line, each once.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let t = cause.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        next = cause.source();
    }
    text
}

/// ` (endpoint URL)` when the configuration names one.
fn via(endpoint: &Option<String>) -> String {
    endpoint
        .as_ref()
        .map(|u| format!(" (endpoint {u})"))
        .unwrap_or_default()
}
