//! The `trailwatch run` configuration file (TOML), raw then validated.
//!
//! Endpoints and credentials come from the AWS SDK's standard environment (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, the default credential chain); the file names the queue and topic.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rule files and directories.
    pub rules: RulesConfig,
    /// Where events come from: exactly one of the two sources.
    pub source: SourceConfig,
    /// Where alerts go: SNS, a JSON-lines file, or both.
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
    /// Start-up, readiness and shutdown time limits of `trailwatch run`.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The file this configuration was read from (for messages).
    #[serde(skip)]
    pub file: PathBuf,
}

/// `[service]`: how long `trailwatch run` waits for things before it says so.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// At start, the source and the sinks must answer within this (SQS GetQueueAttributes,
    /// SNS GetTopicAttributes, Kafka metadata), else `run` exits with code 2. 1s to 10m.
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout: String,
    /// `/readyz` answers 503 once receiving or delivering has failed continuously for this
    /// long, and 200 again when it works. 1s to 1h.
    #[serde(default = "default_unready_after")]
    pub unready_after: String,
    /// After SIGTERM or SIGINT, what is in flight gets this long to be delivered and
    /// acknowledged; what is not by then is left unacknowledged (redelivered later). 1s to 10m.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            startup_timeout: default_startup_timeout(),
            unready_after: default_unready_after(),
            shutdown_timeout: default_shutdown_timeout(),
        }
    }
}

fn default_startup_timeout() -> String {
    "30s".into()
}
fn default_unready_after() -> String {
    "60s".into()
}
fn default_shutdown_timeout() -> String {
    "30s".into()
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// An SQS queue fed by EventBridge.
    pub sqs: Option<SqsConfig>,
    /// A Kafka topic read by a consumer group.
    pub kafka: Option<KafkaConfig>,
}

/// `[source.kafka]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The events topic, keyed by account (`recipientAccountId`).
    pub topic: String,
    /// The consumer group: instances in one group share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// The compacted topic partition state is kept in (created if missing). A state larger
    /// than 512 KiB is written as pieces of 512 KiB under keys of their own, so no record
    /// exceeds the default 1 MB limit of brokers and clients.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Largest message accepted, bytes; larger ones are counted and skipped. 1024 to 16777216.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Messages processed (and their alerts delivered) per batch at most; 1 to 10000.
    #[serde(default = "default_kafka_batch")]
    pub max_batch: usize,
    /// librdkafka properties passed through as they are: TLS (`security.protocol`,
    /// `ssl.ca.location`, ...), SASL (`sasl.mechanism`, `sasl.username`, `sasl.password`), ...
    /// Against a broker that holds a fetch for its whole wait even with data ready (tansu),
    /// `fetch.wait.max.ms = "10"` takes event-to-alert latency from about 400 ms to 30 ms.
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqsConfig {
    /// The queue URL.
    pub queue_url: String,
    /// Overrides the SQS endpoint (VPC endpoints, proxies, tests); else the SDK's environment.
    pub endpoint_url: Option<String>,
    /// Concurrent long-polling receivers (batches of 10); 1 to 64.
    #[serde(default = "default_pollers")]
    pub pollers: usize,
    /// Long-poll wait, seconds; 1 to 20.
    #[serde(default = "default_wait")]
    pub wait_seconds: i32,
    /// Largest message body accepted, bytes; larger ones are counted and left for redrive.
    /// 1024 to 16777216.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long received messages stay invisible, seconds; extended while still in work.
    /// 2 to 43200.
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Publish alerts to an SNS topic.
    pub sns: Option<SnsConfig>,
    /// Append alerts as JSON lines to a file (`-` for stdout).
    pub jsonl: Option<PathBuf>,
    /// Keep every alert and a record of every batch in a tamper-evident archive.
    pub archive: Option<ArchiveConfig>,
}

/// `[sink.archive]`: the audit archive (docs/archive.md). Set `bucket`, `dir`, or neither for
/// `archive` beside `windows.state_file`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// File holding the archive key (at least 16 bytes, e.g. `openssl rand -hex 32`): it signs
    /// each day's manifest and encrypts the spool. `verify-archive` needs the same file.
    pub key_file: PathBuf,
    /// The local spool directory: a batch is acknowledged once its records are here, and
    /// objects wait here while the store is down.
    pub spool: PathBuf,
    /// The archive as a local directory (without `bucket`). With neither `dir` nor `bucket`:
    /// `archive` in the directory of `windows.state_file` (the service's state directory).
    pub dir: Option<PathBuf>,
    /// The S3 bucket, created with Object Lock enabled (ops/cloudformation has it).
    pub bucket: Option<String>,
    /// Key prefix in the bucket.
    #[serde(default = "default_archive_prefix")]
    pub prefix: String,
    /// Overrides the S3 endpoint (VPC endpoints, tests); else the SDK's environment.
    pub endpoint_url: Option<String>,
    /// KMS key id or ARN for SSE-KMS on every object; else the bucket's default encryption.
    pub kms_key_id: Option<String>,
    /// Object Lock retention set on every object, days; 0 leaves the bucket's default.
    /// 0 to 36500.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// `compliance` (nobody can shorten or lift it) or `governance`.
    #[serde(default)]
    pub retention_mode: RetentionMode,
    /// This instance's chain name, different for every running instance (letters, digits,
    /// `.`, `_`, `-`); default: the host name.
    pub writer: Option<String>,
    /// An object is sealed this often, a heartbeat when nothing happened; 1s to 1h.
    #[serde(default = "default_seal_every")]
    pub seal_every: String,
    /// An object is sealed as soon as its records reach this many bytes; 4096 to 268435456.
    #[serde(default = "default_object_bytes")]
    pub object_bytes: u64,
    /// Largest spool, bytes: while it is full (the store down for long), batches are not
    /// acknowledged and the source backs up, and no heartbeat is sealed. It holds at most this
    /// plus the last batch taken. 1048576 to 1099511627776.
    #[serde(default = "default_spool_max")]
    pub spool_max_bytes: u64,
}

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    /// Nobody can delete the object or shorten its retention, root included.
    #[default]
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can.
    Governance,
}

fn default_archive_prefix() -> String {
    "trailwatch".into()
}
fn default_retention_days() -> u32 {
    // Six years (HIPAA's documentation retention), plus a year of margin.
    2557
}
fn default_seal_every() -> String {
    "5m".into()
}
fn default_object_bytes() -> u64 {
    8 << 20
}
fn default_spool_max() -> u64 {
    1 << 30
}

/// The archive of a `[sink.archive]` that names no store: beside the service's state.
fn default_archive_dir(state_file: &Path) -> PathBuf {
    state_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("archive")
}

impl ArchiveConfig {
    /// The writer name: configured, or the host name made safe for a key.
    pub fn writer_name(&self) -> String {
        if let Some(w) = &self.writer {
            return w.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        let safe: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if safe.is_empty() {
            "trailwatch".into()
        } else {
            safe
        }
    }

    /// How often an object is sealed.
    pub fn seal_every(&self) -> std::time::Duration {
        let secs = crate::rule::correlation::parse_timespan(&self.seal_every).unwrap_or(300);
        std::time::Duration::from_secs(secs.max(1) as u64)
    }
}

/// `[sink.sns]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// The topic ARN.
    pub topic_arn: String,
    /// Overrides the SNS endpoint (VPC endpoints, proxies, tests); else the SDK's environment.
    pub endpoint_url: Option<String>,
}

/// `[windows]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// How late (event time) an event may arrive and still count in correlations; 0s to 1d.
    #[serde(default = "default_lateness")]
    pub lateness: String,
    /// Most group keys per correlation rule (the least recently updated are evicted, and
    /// counted); 1 to 100000000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Where correlation state is snapshotted (restored on start).
    pub state_file: Option<PathBuf>,
    /// How often the state is snapshotted while running; 1s to 1h. Each snapshot serialises
    /// every owned partition's whole state (with the default 1,000,000 remembered ids, about
    /// 16 MB a partition once they fill up), so seconds cost CPU on a busy instance. A Kafka
    /// partition taken away is written at that moment, whatever this says.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: String,
    /// How long (event time) a record's `eventID` is remembered to drop redeliveries; 0s to
    /// 30d.
    #[serde(default = "default_dedup_horizon")]
    pub dedup_horizon: String,
    /// Most `eventID`s remembered (about 15 bytes each); the oldest minutes of event time are
    /// forgotten first. 0 turns de-duplication off; at most 100000000.
    #[serde(default = "default_dedup_max_ids")]
    pub dedup_max_ids: usize,
    /// How long after the newest event a quiet stream (or Kafka partition) waits before its
    /// event time follows the wall clock, closing correlation and suppression windows without
    /// a newer event. Defaults to the lateness; 0s to 1d. Quiet time seen before a Kafka
    /// hand-over, a restart from the state file or a rule reload counts (snapshots carry it);
    /// the time in between, when nobody read the stream, does not.
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// City databases (MaxMind format).
    #[serde(default)]
    pub cities: Vec<PathBuf>,
    /// ASN database.
    pub asn: Option<PathBuf>,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// What kind of problem a configuration has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file cannot be read.
    Unreadable,
    /// Not TOML of the expected shape (unknown or missing keys, wrong types).
    Syntax,
    /// A value that cannot work: an empty or malformed URL, ARN, broker list or duration.
    Invalid,
    /// A number or duration outside its bounds.
    OutOfRange,
    /// A file or directory that is missing, unreadable or not writable.
    Path,
    /// The rules do not load, or there are none.
    Rules,
    /// A source or sink did not answer within `service.startup_timeout` (or refused).
    Unreachable,
}

/// A configuration that cannot be used: the file, the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {}{message}", key.as_deref().map(|k| format!("{k}: ")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// The key at fault (`source.sqs.queue_url`), when one is.
    pub key: Option<String>,
    /// What kind of problem.
    pub kind: ConfigErrorKind,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` of the configuration read from `file`.
    pub fn new(
        file: &Path,
        key: impl Into<String>,
        kind: ConfigErrorKind,
        message: impl Into<String>,
    ) -> Self {
        let key: String = key.into();
        ConfigError {
            path: file.display().to_string(),
            key: (!key.is_empty()).then_some(key),
            kind,
            message: message.into(),
        }
    }
}

/// A problem found by validation, before the file name is attached.
struct Problem(&'static str, ConfigErrorKind, String);

fn invalid(key: &'static str, message: impl Into<String>) -> Problem {
    Problem(key, ConfigErrorKind::Invalid, message.into())
}

fn validate_archive(a: &ArchiveConfig) -> Result<(), Problem> {
    match (&a.dir, &a.bucket) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "sink.archive",
                "takes one store: dir (a local directory) or bucket (S3)",
            ))
        }
        (None, None) => {
            return Err(invalid(
                "sink.archive",
                "needs a store: set bucket (S3) or dir (a local directory), or set windows.state_file and the archive goes to the directory archive beside it",
            ))
        }
        _ => {}
    }
    if let Some(dir) = &a.dir {
        // verify-archive would find the spool's files in the archive, or the archive's in the
        // spool.
        if dir.starts_with(&a.spool) || a.spool.starts_with(dir) {
            return Err(invalid(
                "sink.archive.dir",
                format!(
                    "{} and the spool {} must be separate directories",
                    dir.display(),
                    a.spool.display()
                ),
            ));
        }
    }
    if let Some(b) = &a.bucket {
        let ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
        if !ok {
            return Err(invalid(
                "sink.archive.bucket",
                format!(
                    "'{b}' is not an S3 bucket name (3 to 63 lower-case letters, digits, '.', '-')"
                ),
            ));
        }
    }
    if a.prefix.starts_with('/') || a.prefix.ends_with('/') {
        return Err(invalid(
            "sink.archive.prefix",
            "must not start or end with '/'",
        ));
    }
    if let Some(url) = &a.endpoint_url {
        http_url("sink.archive.endpoint_url", url, false)?;
    }
    if let Some(w) = &a.writer {
        let ok = !w.is_empty()
            && w.len() <= 128
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
            && w != "."
            && w != "..";
        if !ok {
            return Err(invalid(
                "sink.archive.writer",
                format!("'{w}' must be 1 to 128 letters, digits, '.', '_' or '-'"),
            ));
        }
    }
    bounded("sink.archive.retention_days", a.retention_days, 0, 36_500)?;
    duration("sink.archive.seal_every", &a.seal_every, 1, 3600)?;
    bounded("sink.archive.object_bytes", a.object_bytes, 4096, 256 << 20)?;
    bounded(
        "sink.archive.spool_max_bytes",
        a.spool_max_bytes,
        1 << 20,
        1 << 40,
    )
}

/// `value` within `min..=max`.
fn bounded<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Problem> {
    if value < min || value > max {
        return Err(Problem(
            key,
            ConfigErrorKind::OutOfRange,
            format!("{value} is out of bounds: use {min} to {max}"),
        ));
    }
    Ok(())
}

/// A duration such as `30s`, `5m`, `2h` (or `0s`), in seconds within `min..=max`.
fn duration(key: &'static str, value: &str, min: i64, max: i64) -> Result<i64, Problem> {
    let secs = match value.trim() {
        "0s" | "0m" | "0h" | "0" => Some(0),
        v => crate::rule::correlation::parse_timespan(v),
    }
    .ok_or_else(|| {
        invalid(
            key,
            format!("must be a duration such as 30s, 5m or 2h, not '{value}'"),
        )
    })?;
    if secs < min || secs > max {
        return Err(Problem(
            key,
            ConfigErrorKind::OutOfRange,
            format!(
                "'{value}' is out of bounds: use {} to {}",
                span_text(min),
                span_text(max)
            ),
        ));
    }
    Ok(secs)
}

fn span_text(secs: i64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An `http(s)://host[:port]/...` URL; `path` when it must name something (a queue).
fn http_url(key: &'static str, value: &str, needs_path: bool) -> Result<(), Problem> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| invalid(key, format!("'{v}' is not an http(s):// URL")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (name, port) = match host.strip_prefix('[') {
        // An IPv6 literal: [::1]:5000
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => (addr, rest.strip_prefix(':')),
            None => ("", None),
        },
        None => match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        },
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if name.is_empty() || !port_ok || v.chars().any(char::is_whitespace) {
        return Err(invalid(key, format!("'{v}' has no usable host[:port]")));
    }
    if needs_path && path.trim_matches('/').is_empty() {
        return Err(invalid(
            key,
            format!("'{v}' names no queue: expected https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"),
        ));
    }
    Ok(())
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:NAME`.
fn topic_arn(key: &'static str, value: &str) -> Result<(), Problem> {
    let v = value.trim();
    if v.is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    let parts: Vec<&str> = v.split(':').collect();
    let name_ok = |n: &str| {
        let n = n.strip_suffix(".fifo").unwrap_or(n);
        (1..=256).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let ok = matches!(parts[..], ["arn", partition, "sns", region, account, name]
        if !partition.is_empty() && !region.is_empty()
            && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && name_ok(name));
    if !ok {
        return Err(invalid(
            key,
            format!("'{v}' is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME, a 12-digit account)"),
        ));
    }
    Ok(())
}

/// `host:port[,host:port...]`, each optionally with a `proto://` prefix.
fn broker_list(key: &'static str, value: &str) -> Result<(), Problem> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must not be empty"));
    }
    for broker in value.split(',').map(str::trim) {
        let addr = broker.split_once("://").map_or(broker, |(_, a)| a);
        let good = match addr.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            }
            None => false,
        };
        if !good {
            return Err(invalid(
                key,
                format!("'{broker}' is not a broker address: expected HOST:PORT[,HOST:PORT...]"),
            ));
        }
    }
    Ok(())
}

/// A Kafka topic name: 1 to 249 of `[A-Za-z0-9._-]`.
fn kafka_topic(key: &'static str, value: &str) -> Result<(), Problem> {
    let ok = (1..=249).contains(&value.len())
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(invalid(
            key,
            format!("'{value}' is not a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)"),
        ));
    }
    Ok(())
}

/// Bounds of the numeric settings (documented in README.md, "Running the service").
pub mod limits {
    /// `source.sqs.pollers`.
    pub const POLLERS: (usize, usize) = (1, 64);
    /// `source.*.max_body_bytes`: 1 KiB to 16 MiB.
    pub const MAX_BODY_BYTES: (usize, usize) = (1024, 16 << 20);
    /// `source.kafka.max_batch`.
    pub const KAFKA_MAX_BATCH: (usize, usize) = (1, 10_000);
    /// `windows.max_keys`.
    pub const MAX_KEYS: (usize, usize) = (1, 100_000_000);
    /// `windows.dedup_max_ids` (0 turns de-duplication off).
    pub const DEDUP_MAX_IDS: (usize, usize) = (0, 100_000_000);
}

impl Config {
    /// Reads and validates a configuration file; relative paths are taken from its folder.
    ///
    /// This checks the file alone (shape, values, bounds); [`Config::check_paths`] checks the
    /// files and directories it names, and `run::check` the services.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", ConfigErrorKind::Unreadable, e.to_string()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| {
            ConfigError::new(path, "", ConfigErrorKind::Syntax, e.to_string().trim_end())
        })?;
        c.file = path.to_path_buf();
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
        if let Some(a) = &mut c.sink.archive {
            fix(&mut a.key_file);
            fix(&mut a.spool);
            a.dir.iter_mut().for_each(fix);
            if a.dir.is_none() && a.bucket.is_none() {
                a.dir = c.windows.state_file.as_deref().map(default_archive_dir);
            }
        }
        c.validate()
            .map_err(|Problem(key, kind, m)| ConfigError::new(path, key, kind, m))?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), Problem> {
        match (&self.source.sqs, &self.source.kafka) {
            (Some(sqs), None) => self.validate_sqs(sqs)?,
            (None, Some(k)) => self.validate_kafka(k)?,
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "source",
                    "[source] takes one source: [source.sqs] or [source.kafka]",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "source",
                    "[source] needs a source: [source.sqs] or [source.kafka]",
                ))
            }
        };
        self.validate_common()
    }

    fn validate_sqs(&self, sqs: &SqsConfig) -> Result<(), Problem> {
        http_url("source.sqs.queue_url", &sqs.queue_url, true)?;
        if let Some(url) = &sqs.endpoint_url {
            http_url("source.sqs.endpoint_url", url, false)?;
        }
        bounded("source.sqs.wait_seconds", sqs.wait_seconds, 1, 20)?;
        bounded(
            "source.sqs.visibility_timeout_seconds",
            sqs.visibility_timeout_seconds,
            2,
            43_200,
        )?;
        let (lo, hi) = limits::POLLERS;
        bounded("source.sqs.pollers", sqs.pollers, lo, hi)?;
        let (lo, hi) = limits::MAX_BODY_BYTES;
        bounded("source.sqs.max_body_bytes", sqs.max_body_bytes, lo, hi)
    }

    fn validate_kafka(&self, k: &KafkaConfig) -> Result<(), Problem> {
        broker_list("source.kafka.brokers", &k.brokers)?;
        kafka_topic("source.kafka.topic", &k.topic)?;
        kafka_topic("source.kafka.state_topic", &k.state_topic)?;
        if k.state_topic == k.topic {
            return Err(invalid(
                "source.kafka.state_topic",
                "must differ from source.kafka.topic",
            ));
        }
        if k.group_id.trim().is_empty() {
            return Err(invalid("source.kafka.group_id", "must not be empty"));
        }
        let (lo, hi) = limits::KAFKA_MAX_BATCH;
        bounded("source.kafka.max_batch", k.max_batch, lo, hi)?;
        let (lo, hi) = limits::MAX_BODY_BYTES;
        bounded("source.kafka.max_body_bytes", k.max_body_bytes, lo, hi)?;
        for managed in ["group.id", "enable.auto.offset.store", "enable.auto.commit"] {
            if k.properties.contains_key(managed) {
                return Err(invalid(
                    "source.kafka.properties",
                    format!("'{managed}' is managed by trailwatch (offsets are stored only after alerts are delivered)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_common(&self) -> Result<(), Problem> {
        if self.rules.paths.is_empty() {
            return Err(Problem(
                "rules.paths",
                ConfigErrorKind::Rules,
                "is empty: name at least one rule file or directory".into(),
            ));
        }
        if self.sink.sns.is_none() && self.sink.jsonl.is_none() && self.sink.archive.is_none() {
            return Err(invalid(
                "sink",
                "[sink] needs somewhere to send alerts: [sink.sns], sink.jsonl and/or [sink.archive]",
            ));
        }
        if let Some(sns) = &self.sink.sns {
            topic_arn("sink.sns.topic_arn", &sns.topic_arn)?;
            if let Some(url) = &sns.endpoint_url {
                http_url("sink.sns.endpoint_url", url, false)?;
            }
        }
        if let Some(p) = &self.sink.jsonl {
            if p.as_os_str().is_empty() || p.to_string_lossy().ends_with('/') {
                return Err(invalid("sink.jsonl", "must name a file (or - for stdout)"));
            }
        }
        if let Some(a) = &self.sink.archive {
            validate_archive(a)?;
        }
        if let Some(p) = &self.windows.state_file {
            if p.to_string_lossy().ends_with('/') {
                return Err(invalid("windows.state_file", "must name a file"));
            }
        }
        const DAY: i64 = 86_400;
        let w = &self.windows;
        duration("windows.lateness", &w.lateness, 0, DAY)?;
        if let Some(d) = &w.max_delivery_delay {
            duration("windows.max_delivery_delay", d, 0, DAY)?;
        }
        duration("windows.snapshot_interval", &w.snapshot_interval, 1, 3600)?;
        duration("windows.dedup_horizon", &w.dedup_horizon, 0, 30 * DAY)?;
        let (lo, hi) = limits::MAX_KEYS;
        bounded("windows.max_keys", w.max_keys, lo, hi)?;
        let (lo, hi) = limits::DEDUP_MAX_IDS;
        bounded("windows.dedup_max_ids", w.dedup_max_ids, lo, hi)?;
        if self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "metrics.listen",
                format!(
                    "'{}' is not an address such as 127.0.0.1:9898",
                    self.metrics.listen
                ),
            ));
        }
        let s = &self.service;
        duration("service.startup_timeout", &s.startup_timeout, 1, 600)?;
        duration("service.unready_after", &s.unready_after, 1, 3600)?;
        duration("service.shutdown_timeout", &s.shutdown_timeout, 1, 600)?;
        Ok(())
    }

    /// Checks the files and directories the configuration names: rule paths exist, the state
    /// file's and JSON-lines sink's directories are writable, the HMAC key and GeoIP databases
    /// are readable. Returns one line per thing checked.
    pub fn check_paths(&self) -> Result<Vec<String>, ConfigError> {
        let fail =
            |key: &str, m: String| ConfigError::new(&self.file, key, ConfigErrorKind::Path, m);
        let mut done = Vec::new();
        for p in self
            .rules
            .paths
            .iter()
            .chain(self.rules.placeholders.iter())
        {
            if !p.exists() {
                let key = if self.rules.placeholders.as_ref() == Some(p) {
                    "rules.placeholders"
                } else {
                    "rules.paths"
                };
                return Err(ConfigError::new(
                    &self.file,
                    key,
                    ConfigErrorKind::Rules,
                    format!("{} does not exist", p.display()),
                ));
            }
        }
        if let Some(p) = self.sink.jsonl.as_ref().filter(|p| p.as_os_str() != "-") {
            writable_file(p).map_err(|m| fail("sink.jsonl", m))?;
            done.push(format!("sink.jsonl: {} is writable", p.display()));
        }
        if let Some(p) = &self.windows.state_file {
            writable_file(p).map_err(|m| fail("windows.state_file", m))?;
            done.push(format!(
                "windows.state_file: {} is writable",
                p.parent().unwrap_or(Path::new(".")).display()
            ));
        }
        if let Some(p) = &self.alerts.hmac_key_file {
            crate::alert::read_hmac_key(p)
                .map_err(|e| fail("alerts.hmac_key_file", e.to_string()))?;
            done.push(format!("alerts.hmac_key_file: {} is readable", p.display()));
        }
        if let Some(a) = &self.sink.archive {
            crate::alert::read_hmac_key(&a.key_file)
                .map_err(|e| fail("sink.archive.key_file", e.to_string()))?;
            done.push(format!(
                "sink.archive.key_file: {} is readable",
                a.key_file.display()
            ));
            // Created at start when missing; its parent must take it then.
            for (key, dir) in [
                ("sink.archive.spool", Some(&a.spool)),
                ("sink.archive.dir", a.dir.as_ref()),
            ] {
                let Some(dir) = dir else { continue };
                if dir.exists() && !dir.is_dir() {
                    return Err(fail(key, format!("{} is not a directory", dir.display())));
                }
                let probe = if dir.is_dir() {
                    dir.join(".probe")
                } else {
                    dir.clone()
                };
                writable_file(&probe).map_err(|m| fail(key, m))?;
                done.push(format!("{key}: {} is writable", dir.display()));
            }
        }
        for (key, p) in self
            .geoip
            .cities
            .iter()
            .map(|p| ("geoip.cities", p))
            .chain(self.geoip.asn.iter().map(|p| ("geoip.asn", p)))
        {
            std::fs::File::open(p).map_err(|e| fail(key, format!("{}: {e}", p.display())))?;
        }
        Ok(done)
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

    /// `service.startup_timeout`.
    pub fn startup_timeout(&self) -> std::time::Duration {
        service_span(&self.service.startup_timeout, 30)
    }

    /// `service.unready_after`.
    pub fn unready_after(&self) -> std::time::Duration {
        service_span(&self.service.unready_after, 60)
    }

    /// `service.shutdown_timeout`.
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        service_span(&self.service.shutdown_timeout, 30)
    }

    /// The snapshot interval, seconds.
    pub fn snapshot_interval(&self) -> i64 {
        crate::rule::correlation::parse_timespan(&self.windows.snapshot_interval).unwrap_or(60)
    }
}

fn service_span(v: &str, default: u64) -> std::time::Duration {
    let secs = crate::rule::correlation::parse_timespan(v).map_or(default, |s| s.max(1) as u64);
    std::time::Duration::from_secs(secs)
}

/// Whether `path` can be written: an existing file opened for appending (nothing is
/// written), or else a probe file created and removed in its directory.
fn writable_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{} is a directory, not a file", path.display()));
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("{} cannot be written: {e}", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".trailwatch-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("directory {} is not writable: {e}", dir.display())),
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

    const OK: &str = "[rules]\npaths = [\"rules\"]\n[source.sqs]\nqueue_url = \"http://127.0.0.1:5000/123456789012/q\"\n[sink.sns]\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n";

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
            "[rules]\npaths = [\"r\"]\n{kafka}[source.kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n[sink]\njsonl = \"-\"\n"
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
            "[sink.sns]\ntopic_arn = \"arn:aws:sns:us-east-1:123456789012:t\"\n",
            "",
        ))
        .unwrap_err();
        assert!(e.message.contains("somewhere to send alerts"), "{e}");
        let e = load(&format!("{OK}[windows]\nlateness = \"soon\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("windows.lateness"), "{e}");
        let e = load(&format!("{OK}[alerts]\nformat = \"xml\"\n")).unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = load(&OK.replace("queue_url", "queue")).unwrap_err();
        assert!(
            e.message.contains("unknown field") || e.message.contains("missing field"),
            "{e}"
        );
    }

    /// Replaces `from` in the valid configuration and returns the error's key and kind.
    fn broken(from: &str, to: &str) -> (Option<String>, ConfigErrorKind, String) {
        let text = OK.replace(from, to);
        assert_ne!(text, OK, "{from} is not in the test configuration");
        let e = load(&text).expect_err(to);
        (e.key.clone(), e.kind, e.to_string())
    }

    fn with(extra: &str) -> (Option<String>, ConfigErrorKind, String) {
        let e = load(&format!("{OK}{extra}")).expect_err(extra);
        (e.key.clone(), e.kind, e.to_string())
    }

    #[test]
    fn each_impossible_value_names_its_key() {
        use ConfigErrorKind::*;
        let q = "\"http://127.0.0.1:5000/123456789012/q\"";
        for (bad, kind) in [
            ("\"\"", Invalid),
            ("\"  \"", Invalid),
            ("\"sqs.us-east-1.amazonaws.com/1/q\"", Invalid),
            ("\"http://127.0.0.1:5000/\"", Invalid),
            ("\"http://:5000/1/q\"", Invalid),
            ("\"http://host:0/1/q\"", Invalid),
            ("\"http://host:99999/1/q\"", Invalid),
        ] {
            let (key, k, text) = broken(q, bad);
            assert_eq!(
                key.as_deref(),
                Some("source.sqs.queue_url"),
                "{bad}: {text}"
            );
            assert_eq!(k, kind, "{bad}");
            assert!(text.contains("c.toml: source.sqs.queue_url: "), "{text}");
        }
        let arn = "\"arn:aws:sns:us-east-1:123456789012:t\"";
        for bad in [
            "\"\"",
            "\"arn:aws:sqs:us-east-1:123456789012:t\"",
            "\"arn:aws:sns:us-east-1:1:t\"",
            "\"arn:aws:sns::123456789012:t\"",
            "\"arn:aws:sns:us-east-1:123456789012:\"",
            "\"arn:aws:sns:us-east-1:123456789012:a b\"",
            "\"https://sns.us-east-1.amazonaws.com/t\"",
        ] {
            let (key, k, text) = broken(arn, bad);
            assert_eq!(key.as_deref(), Some("sink.sns.topic_arn"), "{bad}: {text}");
            assert_eq!(k, Invalid);
        }
        // A FIFO topic and an IPv6 endpoint are fine.
        load(&OK.replace(":t\"", ":t.fifo\"")).unwrap();
        load(&format!("{OK}endpoint_url = \"http://[::1]:4566\"\n")).unwrap();
        let (key, _, _) = with("endpoint_url = \"localhost:4566\"\n");
        assert_eq!(key.as_deref(), Some("sink.sns.endpoint_url"));

        for (extra, key, kind) in [
            ("[source.sqs]\n", "", Syntax), // a duplicate table
            (
                "[metrics]\nlisten = \"localhost\"\n",
                "metrics.listen",
                Invalid,
            ),
            (
                "[windows]\nsnapshot_interval = \"0s\"\n",
                "windows.snapshot_interval",
                OutOfRange,
            ),
            (
                "[windows]\nsnapshot_interval = \"2h\"\n",
                "windows.snapshot_interval",
                OutOfRange,
            ),
            (
                "[windows]\nlateness = \"8d\"\n",
                "windows.lateness",
                OutOfRange,
            ),
            (
                "[windows]\nlateness = \"-5m\"\n",
                "windows.lateness",
                Invalid,
            ),
            (
                "[windows]\ndedup_horizon = \"60d\"\n",
                "windows.dedup_horizon",
                OutOfRange,
            ),
            (
                "[windows]\nmax_delivery_delay = \"soon\"\n",
                "windows.max_delivery_delay",
                Invalid,
            ),
            ("[windows]\nmax_keys = 0\n", "windows.max_keys", OutOfRange),
            (
                "[windows]\ndedup_max_ids = 1000000000\n",
                "windows.dedup_max_ids",
                OutOfRange,
            ),
            (
                "[windows]\nstate_file = \"dir/\"\n",
                "windows.state_file",
                Invalid,
            ),
            (
                "[service]\nstartup_timeout = \"0s\"\n",
                "service.startup_timeout",
                OutOfRange,
            ),
            (
                "[service]\nstartup_timeout = \"1h\"\n",
                "service.startup_timeout",
                OutOfRange,
            ),
            (
                "[service]\nunready_after = \"2h\"\n",
                "service.unready_after",
                OutOfRange,
            ),
            (
                "[service]\nshutdown_timeout = \"forever\"\n",
                "service.shutdown_timeout",
                Invalid,
            ),
            (
                "[service]\nshutdown_timeout = \"11m\"\n",
                "service.shutdown_timeout",
                OutOfRange,
            ),
        ] {
            let (k, got, text) = with(extra);
            assert_eq!(k.as_deref().unwrap_or(""), key, "{extra}: {text}");
            assert_eq!(got, kind, "{extra}: {text}");
        }
        for (from, to, key) in [
            ("queue_url", "pollers = 0\nqueue_url", "source.sqs.pollers"),
            ("queue_url", "pollers = 65\nqueue_url", "source.sqs.pollers"),
            (
                "queue_url",
                "pollers = 100000\nqueue_url",
                "source.sqs.pollers",
            ),
            (
                "queue_url",
                "wait_seconds = 21\nqueue_url",
                "source.sqs.wait_seconds",
            ),
            (
                "queue_url",
                "visibility_timeout_seconds = 1\nqueue_url",
                "source.sqs.visibility_timeout_seconds",
            ),
            (
                "queue_url",
                "visibility_timeout_seconds = 43201\nqueue_url",
                "source.sqs.visibility_timeout_seconds",
            ),
            (
                "queue_url",
                "max_body_bytes = 10\nqueue_url",
                "source.sqs.max_body_bytes",
            ),
        ] {
            let (k, kind, text) = broken(from, to);
            assert_eq!(k.as_deref(), Some(key), "{to}: {text}");
            assert_eq!(kind, OutOfRange, "{to}");
            assert!(text.contains("out of bounds: use"), "{text}");
        }
        let (_, _, text) = broken("queue_url", "pollers = 100000\nqueue_url");
        assert!(
            text.ends_with("source.sqs.pollers: 100000 is out of bounds: use 1 to 64"),
            "{text}"
        );
        // At the bounds: accepted.
        let c = load(&OK.replace("queue_url", "pollers = 64\nqueue_url")).unwrap();
        assert_eq!(c.source.sqs.unwrap().pollers, 64);
        let c = load(&format!(
            "{OK}[service]\nshutdown_timeout = \"10m\"\nunready_after = \"1s\"\n"
        ))
        .unwrap();
        assert_eq!(c.shutdown_timeout(), std::time::Duration::from_secs(600));
        assert_eq!(c.unready_after(), std::time::Duration::from_secs(1));
        assert_eq!(c.startup_timeout(), std::time::Duration::from_secs(30));
    }

    #[test]
    fn impossible_kafka_settings_name_their_key() {
        use ConfigErrorKind::*;
        let kafka = |brokers: &str, topic: &str, extra: &str| {
            format!("[rules]\npaths = [\"r\"]\n[source.kafka]\nbrokers = {brokers:?}\ntopic = {topic:?}\n{extra}[sink]\njsonl = \"-\"\n")
        };
        load(&kafka("127.0.0.1:9092,b-2.kafka:9094", "cloudtrail", "")).unwrap();
        load(&kafka("SSL://b-1.kafka:9094", "cloudtrail", "")).unwrap();
        for (brokers, topic, extra, key, kind) in [
            ("", "t", "", "source.kafka.brokers", Invalid),
            (" ", "t", "", "source.kafka.brokers", Invalid),
            ("127.0.0.1", "t", "", "source.kafka.brokers", Invalid),
            ("127.0.0.1:9092,", "t", "", "source.kafka.brokers", Invalid),
            ("127.0.0.1:port", "t", "", "source.kafka.brokers", Invalid),
            ("a:1", "", "", "source.kafka.topic", Invalid),
            ("a:1", "bad topic", "", "source.kafka.topic", Invalid),
            (
                "a:1",
                "t",
                "state_topic = \"t\"\n",
                "source.kafka.state_topic",
                Invalid,
            ),
            (
                "a:1",
                "t",
                "group_id = \"\"\n",
                "source.kafka.group_id",
                Invalid,
            ),
            (
                "a:1",
                "t",
                "max_batch = 0\n",
                "source.kafka.max_batch",
                OutOfRange,
            ),
            (
                "a:1",
                "t",
                "max_batch = 100000\n",
                "source.kafka.max_batch",
                OutOfRange,
            ),
        ] {
            let e = load(&kafka(brokers, topic, extra)).expect_err(extra);
            assert_eq!(
                e.key.as_deref(),
                Some(key),
                "{brokers} {topic} {extra}: {e}"
            );
            assert_eq!(e.kind, kind, "{e}");
        }
    }

    #[test]
    fn an_archive_without_a_store_goes_beside_the_state_or_is_refused() {
        let archive = "[sink.archive]\nkey_file = \"archive.key\"\nspool = \"spool\"\n";
        let c = load(&format!(
            "{OK}{archive}[windows]\nstate_file = \"state/trailwatch.snap\"\n"
        ))
        .unwrap();
        let state_dir = c.windows.state_file.as_ref().unwrap().parent().unwrap();
        let a = c.sink.archive.as_ref().unwrap();
        assert_eq!(a.dir.as_deref(), Some(state_dir.join("archive").as_path()));
        assert!(a.dir.as_ref().unwrap().is_absolute());
        assert_eq!(a.bucket, None);

        let e = load(&format!("{OK}{archive}")).unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.kind),
            (Some("sink.archive"), ConfigErrorKind::Invalid),
            "{e}"
        );
        assert!(e.message.contains("bucket"), "{e}");
        assert!(e.message.contains("dir"), "{e}");
        assert!(e.message.contains("windows.state_file"), "{e}");

        // A store that is named wins over the default.
        let c = load(&format!(
            "{OK}{archive}bucket = \"audit-bucket\"\n[windows]\nstate_file = \"state.snap\"\n"
        ))
        .unwrap();
        assert_eq!(c.sink.archive.unwrap().dir, None);
        let e = load(&format!(
            "{OK}{archive}[windows]\nstate_file = \"spool/state.snap\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("sink.archive.dir"), "{e}");
        assert!(e.message.contains("separate directories"), "{e}");
    }

    #[test]
    fn paths_that_cannot_work_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            let p = dir.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            Config::load(&p).unwrap()
        };
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("key"), "0123456789abcdef0123").unwrap();
        let c = write(&format!(
            "{OK}[windows]\nstate_file = \"state.snap\"\n[alerts]\nhmac_key_file = \"key\"\n"
        ));
        let done = c.check_paths().unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(!dir
            .path()
            .join(format!(".trailwatch-write-check-{}", std::process::id()))
            .exists());

        let e = write(&OK.replace("\"rules\"", "\"no-such-rules\""))
            .check_paths()
            .unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.kind),
            (Some("rules.paths"), ConfigErrorKind::Rules),
            "{e}"
        );
        assert!(e.message.contains("no-such-rules does not exist"), "{e}");

        let e = write(&format!(
            "{OK}[windows]\nstate_file = \"missing/state.snap\"\n"
        ))
        .check_paths()
        .unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.kind),
            (Some("windows.state_file"), ConfigErrorKind::Path),
            "{e}"
        );
        assert!(e.message.contains("does not exist"), "{e}");

        let e = write(&format!("{OK}[windows]\nstate_file = \"rules\"\n"))
            .check_paths()
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("windows.state_file"), "{e}");

        let e = write(&format!("{OK}[alerts]\nhmac_key_file = \"nokey\"\n"))
            .check_paths()
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("alerts.hmac_key_file"), "{e}");

        // Under a file, not a directory.
        let e = write(&OK.replace(
            "[sink.sns]",
            "[sink]\njsonl = \"key/alerts.jsonl\"\n[sink.sns]",
        ))
        .check_paths()
        .unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.kind),
            (Some("sink.jsonl"), ConfigErrorKind::Path),
            "{e}"
        );

        // A read-only directory (root may write anyway: then there is nothing to test).
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let mut perms = std::fs::metadata(&ro).unwrap().permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&ro, perms).unwrap();
        let root_writes = std::fs::File::create(ro.join("x")).is_ok();
        let jsonl = OK.replace(
            "[sink.sns]",
            "[sink]\njsonl = \"ro/alerts.jsonl\"\n[sink.sns]",
        );
        let r = write(&jsonl).check_paths();
        if root_writes {
            assert!(r.is_ok());
        } else {
            let e = r.unwrap_err();
            assert_eq!(
                (e.key.as_deref(), e.kind),
                (Some("sink.jsonl"), ConfigErrorKind::Path),
                "{e}"
            );
            assert!(e.message.contains("not writable"), "{e}");
        }
        let mut perms = std::fs::metadata(&ro).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&ro, perms).unwrap();
    }
}
