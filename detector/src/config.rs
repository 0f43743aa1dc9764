//! The `trailwatch run` configuration file (TOML), raw then validated.
//!
//! Endpoints and credentials come from the AWS SDK's standard environment (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, the default credential chain); the file names the queue and topic.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rule files and directories.
    pub rules: RulesConfig,
    /// Where events come from.
    pub source: SourceConfig,
    /// Where alerts go.
    #[serde(default)]
    pub sink: SinkConfig,
    /// Correlation windows and state.
    #[serde(default)]
    pub windows: WindowsConfig,
    /// IP geolocation for geo rules.
    #[serde(default)]
    pub geoip: GeoipConfig,
    /// The HTTP endpoint for metrics and health.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Alert format, rate limits and the secret for allow-listed fields.
    #[serde(default)]
    pub alerts: AlertsConfig,
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// `native` (docs/alert-schema.md) or `ocsf` (Detection Finding, class 2004).
    #[serde(default)]
    pub format: crate::alert::Format,
    /// Most alerts per rule per minute of event time; 0 for no cap.
    #[serde(default = "default_per_rule")]
    pub per_rule_per_minute: u32,
    /// Most alerts over all rules per minute of event time; 0 for no cap.
    #[serde(default = "default_global")]
    pub global_per_minute: u32,
    /// File holding the secret that keys the hashes of allow-listed fields.
    pub hmac_key_file: Option<PathBuf>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            format: Default::default(),
            per_rule_per_minute: default_per_rule(),
            global_per_minute: default_global(),
            hmac_key_file: None,
        }
    }
}

impl AlertsConfig {
    /// The rate limits.
    pub fn limits(&self) -> crate::alert::gate::Limits {
        crate::alert::gate::Limits {
            per_rule_per_minute: self.per_rule_per_minute,
            global_per_minute: self.global_per_minute,
        }
    }
}

fn default_per_rule() -> u32 {
    crate::alert::gate::Limits::default().per_rule_per_minute
}
fn default_global() -> u32 {
    crate::alert::gate::Limits::default().global_per_minute
}

/// `[rules]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files or directories.
    pub paths: Vec<PathBuf>,
    /// YAML file of placeholder values for `expand`.
    pub placeholders: Option<PathBuf>,
    /// Reload when a rule file changes (SIGHUP always reloads).
    #[serde(default = "yes")]
    pub watch: bool,
}

fn yes() -> bool {
    true
}

/// `[source]`: exactly one source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// An SQS queue fed by EventBridge.
    pub sqs: Option<SqsConfig>,
    /// A Kafka topic read by a consumer group.
    pub kafka: Option<KafkaConfig>,
}

/// `[source.kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The events topic, keyed by account (`recipientAccountId`).
    pub topic: String,
    /// The consumer group: instances in one group share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// The compacted topic partition state is kept in.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Largest message accepted, bytes; larger ones are counted and skipped.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Messages processed (and their alerts delivered) per batch at most.
    #[serde(default = "default_kafka_batch")]
    pub max_batch: usize,
    /// librdkafka properties passed through as they are: TLS (`security.protocol`,
    /// `ssl.ca.location`, ...), SASL (`sasl.mechanism`, `sasl.username`, `sasl.password`), ...
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

fn default_group() -> String {
    "trailwatch".into()
}
fn default_state_topic() -> String {
    "trailwatch-state".into()
}
fn default_kafka_batch() -> usize {
    500
}

/// `[source.sqs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// The queue URL.
    pub queue_url: String,
    /// Overrides the SQS endpoint (VPC endpoints, proxies, tests); else the SDK's environment.
    pub endpoint_url: Option<String>,
    /// Concurrent long-polling receivers.
    #[serde(default = "default_pollers")]
    pub pollers: usize,
    /// Long-poll wait, seconds (at most 20).
    #[serde(default = "default_wait")]
    pub wait_seconds: i32,
    /// Largest message body accepted, bytes; larger ones are counted and left for redrive.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long received messages stay invisible, seconds; extended while still in work.
    #[serde(default = "default_visibility")]
    pub visibility_timeout_seconds: i32,
}

fn default_visibility() -> i32 {
    30
}

fn default_pollers() -> usize {
    2
}
fn default_wait() -> i32 {
    20
}
fn default_max_body() -> usize {
    1 << 20
}

/// `[sink]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Publish alerts to an SNS topic.
    pub sns: Option<SnsConfig>,
    /// Append alerts as JSON lines to a file (`-` for stdout).
    pub jsonl: Option<PathBuf>,
}

/// `[sink.sns]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// The topic ARN.
    pub topic_arn: String,
    /// Overrides the SNS endpoint (VPC endpoints, proxies, tests); else the SDK's environment.
    pub endpoint_url: Option<String>,
}

/// `[windows]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// Allowed lateness of events (event time), e.g. `5m`.
    #[serde(default = "default_lateness")]
    pub lateness: String,
    /// Most group keys per correlation rule.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Where correlation state is snapshotted (restored on start).
    pub state_file: Option<PathBuf>,
    /// How often the state is snapshotted while running, e.g. `60s`.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: String,
    /// How long (event time) a record's `eventID` is remembered to drop redeliveries, e.g. `24h`.
    #[serde(default = "default_dedup_horizon")]
    pub dedup_horizon: String,
    /// Most `eventID`s remembered (about 24 bytes each); the oldest are forgotten first.
    #[serde(default = "default_dedup_max_ids")]
    pub dedup_max_ids: usize,
    /// How long after the newest event a quiet stream (or Kafka partition) waits before its
    /// event time follows the wall clock, closing correlation and suppression windows without
    /// a newer event. Defaults to the lateness.
    pub max_delivery_delay: Option<String>,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            lateness: default_lateness(),
            max_keys: default_max_keys(),
            state_file: None,
            snapshot_interval: default_snapshot_interval(),
            dedup_horizon: default_dedup_horizon(),
            dedup_max_ids: default_dedup_max_ids(),
            max_delivery_delay: None,
        }
    }
}

fn default_lateness() -> String {
    "5m".into()
}
fn default_max_keys() -> usize {
    100_000
}
fn default_snapshot_interval() -> String {
    "60s".into()
}
fn default_dedup_horizon() -> String {
    "24h".into()
}
fn default_dedup_max_ids() -> usize {
    1_000_000
}

/// `[geoip]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// City databases (MaxMind format).
    #[serde(default)]
    pub cities: Vec<PathBuf>,
    /// ASN database.
    pub asn: Option<PathBuf>,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; loopback by default.
    #[serde(default = "default_listen")]
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9898".into()
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// Reads and validates a configuration file; relative paths are taken from its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |m: String| ConfigError {
            path: path.display().to_string(),
            message: m,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && p.as_os_str() != "-" {
                *p = base.join(&*p);
            }
        };
        c.rules.paths.iter_mut().for_each(fix);
        c.rules.placeholders.iter_mut().for_each(fix);
        c.sink.jsonl.iter_mut().for_each(fix);
        c.windows.state_file.iter_mut().for_each(fix);
        c.geoip.cities.iter_mut().for_each(fix);
        c.geoip.asn.iter_mut().for_each(fix);
        c.alerts.hmac_key_file.iter_mut().for_each(fix);
        c.validate().map_err(err)?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        let sqs = match (&self.source.sqs, &self.source.kafka) {
            (Some(sqs), None) => sqs,
            (None, Some(k)) => return self.validate_kafka(k),
            (Some(_), Some(_)) => {
                return Err("[source] takes one source: [source.sqs] or [source.kafka]".into())
            }
            (None, None) => {
                return Err("[source] needs a source: [source.sqs] or [source.kafka]".into())
            }
        };
        if !(1..=20).contains(&sqs.wait_seconds) {
            return Err("source.sqs.wait_seconds must be 1 to 20".into());
        }
        if !(2..=43_200).contains(&sqs.visibility_timeout_seconds) {
            return Err("source.sqs.visibility_timeout_seconds must be 2 to 43200".into());
        }
        if sqs.pollers == 0 {
            return Err("source.sqs.pollers must be at least 1".into());
        }
        self.validate_common()
    }

    fn validate_kafka(&self, k: &KafkaConfig) -> Result<(), String> {
        for (name, v) in [
            ("brokers", &k.brokers),
            ("topic", &k.topic),
            ("group_id", &k.group_id),
        ] {
            if v.trim().is_empty() {
                return Err(format!("source.kafka.{name} must not be empty"));
            }
        }
        if k.max_batch == 0 {
            return Err("source.kafka.max_batch must be at least 1".into());
        }
        for managed in ["group.id", "enable.auto.offset.store", "enable.auto.commit"] {
            if k.properties.contains_key(managed) {
                return Err(format!(
                    "source.kafka.properties: '{managed}' is managed by trailwatch (offsets are stored only after alerts are delivered)"
                ));
            }
        }
        self.validate_common()
    }

    fn validate_common(&self) -> Result<(), String> {
        if self.sink.sns.is_none() && self.sink.jsonl.is_none() {
            return Err(
                "[sink] needs somewhere to send alerts: [sink.sns] and/or sink.jsonl".into(),
            );
        }
        let delay = self.windows.max_delivery_delay.as_ref();
        for (name, v) in [
            ("windows.lateness", &self.windows.lateness),
            ("windows.snapshot_interval", &self.windows.snapshot_interval),
            ("windows.dedup_horizon", &self.windows.dedup_horizon),
            (
                "windows.max_delivery_delay",
                delay.unwrap_or(&self.windows.lateness),
            ),
        ] {
            if crate::rule::correlation::parse_timespan(v).is_none() && v != "0s" {
                return Err(format!("{name} must be a duration such as 5m, not '{v}'"));
            }
        }
        Ok(())
    }

    /// The allowed lateness, seconds.
    pub fn lateness(&self) -> i64 {
        crate::rule::correlation::parse_timespan(&self.windows.lateness).unwrap_or(0)
    }

    /// How a pipeline of the live service is set up; `max_body` limits one message.
    pub fn pipeline_settings(&self, max_body: usize) -> crate::pipeline::Settings {
        let span = |s: &str| crate::rule::correlation::parse_timespan(s).unwrap_or(0);
        crate::pipeline::Settings {
            limits: crate::event::Limits {
                max_document_bytes: max_body,
                ..crate::event::Limits::default()
            },
            windows: crate::window::Options {
                lateness: self.lateness(),
                max_keys: self.windows.max_keys.max(1),
            },
            alert_limits: self.alerts.limits(),
            dedup: crate::pipeline::dedup::Options {
                horizon: span(&self.windows.dedup_horizon),
                max_ids: self.windows.dedup_max_ids,
            },
            max_delivery_delay: Some(
                self.windows
                    .max_delivery_delay
                    .as_deref()
                    .map_or(self.lateness(), span),
            ),
            ..crate::pipeline::Settings::default()
        }
    }

    /// The snapshot interval, seconds.
    pub fn snapshot_interval(&self) -> i64 {
        crate::rule::correlation::parse_timespan(&self.windows.snapshot_interval).unwrap_or(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    const OK: &str = "[rules]\npaths = [\"rules\"]\n[source.sqs]\nqueue_url = \"http://q\"\n[sink.sns]\ntopic_arn = \"arn:aws:sns:us-east-1:1:t\"\n";

    #[test]
    fn defaults_and_relative_paths() {
        let c = load(OK).unwrap();
        assert_eq!(c.source.sqs.as_ref().unwrap().pollers, 2);
        assert_eq!(c.lateness(), 300);
        assert_eq!(c.metrics.listen, "127.0.0.1:9898");
        assert!(c.rules.paths[0].is_absolute());
        assert!(c.rules.watch);
        assert_eq!(c.alerts.format, crate::alert::Format::Native);
        assert_eq!(c.alerts.limits(), crate::alert::gate::Limits::default());
        let c = load(&format!(
            "{OK}[alerts]\nformat = \"ocsf\"\nper_rule_per_minute = 0\nhmac_key_file = \"k\"\n"
        ))
        .unwrap();
        assert_eq!(c.alerts.format, crate::alert::Format::Ocsf);
        assert_eq!(c.alerts.per_rule_per_minute, 0);
        assert!(c.alerts.hmac_key_file.unwrap().is_absolute());
    }

    #[test]
    fn mistakes_are_named() {
        let e = load(&format!("{OK}[sink]\nwebhook = 1\n")).unwrap_err();
        assert!(
            e.message.contains("duplicate key") || e.message.contains("unknown field"),
            "{e}"
        );
        let e = load("[rules]\npaths = []\n[source]\n[sink]\njsonl = \"-\"\n").unwrap_err();
        assert!(e.message.contains("[source.sqs]"), "{e}");
        let kafka = "[source.kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"cloudtrail\"\n";
        let e = load(&format!("{OK}{kafka}")).unwrap_err();
        assert!(e.message.contains("one source"), "{e}");
        let only_kafka = format!(
            "[rules]\npaths = []\n{kafka}[source.kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n[sink]\njsonl = \"-\"\n"
        );
        let c = load(&only_kafka).unwrap();
        let k = c.source.kafka.unwrap();
        assert_eq!(
            (k.group_id.as_str(), k.state_topic.as_str()),
            ("trailwatch", "trailwatch-state")
        );
        assert_eq!(k.properties["security.protocol"], "SASL_SSL");
        let e =
            load(&only_kafka.replace("security.protocol", "enable.auto.offset.store")).unwrap_err();
        assert!(e.message.contains("managed by trailwatch"), "{e}");
        let e = load(&OK.replace(
            "[sink.sns]\ntopic_arn = \"arn:aws:sns:us-east-1:1:t\"\n",
            "",
        ))
        .unwrap_err();
        assert!(e.message.contains("somewhere to send alerts"), "{e}");
        let e = load(&format!("{OK}[windows]\nlateness = \"soon\"\n")).unwrap_err();
        assert!(e.message.contains("windows.lateness"), "{e}");
        let e = load(&format!("{OK}[alerts]\nformat = \"xml\"\n")).unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = load(&OK.replace("queue_url", "queue")).unwrap_err();
        assert!(
            e.message.contains("unknown field") || e.message.contains("missing field"),
            "{e}"
        );
    }
}
