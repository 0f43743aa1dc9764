//! `trailwatch verify-archive`: checks the audit archive's chains, manifests and continuity,
//! for a scheduled job (exit 0 intact, 1 tampered or damaged, 3 gaps only, 2 not checked).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use trailwatch::sink::archive::store::{Bucket, Store};
use trailwatch::sink::archive::verify::{self, Report, Scope};

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The service's configuration: the archive and key of its `[sink.archive]`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key_file", "archive"])]
    pub(crate) config: Option<PathBuf>,
    /// The archive key file (the one `[sink.archive] key_file` names).
    #[arg(long, value_name = "FILE", requires = "archive")]
    pub(crate) key_file: Option<PathBuf>,
    /// The archive: a directory, or `s3://bucket/prefix`.
    #[arg(value_name = "ARCHIVE")]
    pub(crate) archive: Option<String>,
    /// The endpoint of an S3-compatible store (else `AWS_ENDPOINT_URL` or AWS's own).
    #[arg(long, value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// Only days from this one (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DAY", value_parser = day)]
    pub(crate) since: Option<String>,
    /// Only days up to this one (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DAY", value_parser = day)]
    pub(crate) until: Option<String>,
    /// Longest silence allowed between two objects of a chain (the service seals one every
    /// `seal_every`, a heartbeat when idle).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = super::parse_span)]
    pub(crate) max_gap: i64,
    /// A chain's newest object must be younger than this (each instance seals one every
    /// `seal_every`): older means the service stopped or the newest objects were removed.
    /// `0` for an archive whose writers are retired.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = super::parse_span)]
    pub(crate) max_age: i64,
    /// `text` (one line per finding) or `json` (the whole report).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) format: String,
}

fn day(s: &str) -> Result<String, String> {
    let ok = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not a day such as 2026-12-01"))
    }
}

pub(crate) fn cmd_verify(a: VerifyArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let (store, key) = store_and_key(&a).await?;
        let scope = Scope {
            key,
            max_gap: std::time::Duration::from_secs(a.max_gap.max(0) as u64),
            since: a.since.clone(),
            until: a.until.clone(),
            max_age: (a.max_age > 0).then(|| std::time::Duration::from_secs(a.max_age as u64)),
        };
        verify::verify(&store, &scope)
            .await
            .with_context(|| format!("checking {}", store.describe()))
    })?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::from(report.exit_code() as u8))
}

async fn store_and_key(a: &VerifyArgs) -> Result<(Store, Vec<u8>)> {
    let aws = aws_config::load_from_env().await;
    if let Some(path) = &a.config {
        return configured(path, &aws);
    }
    let (Some(location), Some(key_file)) = (&a.archive, &a.key_file) else {
        bail!("name the archive and --key-file, or --config");
    };
    let key = trailwatch::alert::read_hmac_key(key_file)?;
    Ok((store_at(location, a.s3_endpoint.as_deref(), &aws)?, key))
}

/// The archive and key a service configuration's `[sink.archive]` names.
pub(crate) fn configured(
    path: &std::path::Path,
    aws: &aws_config::SdkConfig,
) -> Result<(Store, Vec<u8>)> {
    let config = trailwatch::config::Config::load(path)?;
    let Some(archive) = &config.sink.archive else {
        bail!("{} has no [sink.archive]", path.display());
    };
    let key = trailwatch::alert::read_hmac_key(&archive.key_file)?;
    Ok((trailwatch::run::archive_store(archive, aws), key))
}

/// The archive at a directory or `s3://bucket/prefix` (read only: no protection settings).
pub(crate) fn store_at(
    location: &str,
    endpoint: Option<&str>,
    aws: &aws_config::SdkConfig,
) -> Result<Store> {
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let mut c = aws_sdk_s3::config::Builder::from(aws).force_path_style(true);
        if let Some(url) = endpoint {
            c = c.endpoint_url(url);
        }
        return Ok(Store::S3(Bucket {
            client: aws_sdk_s3::Client::from_conf(c.build()),
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
            kms_key_id: None,
            retention: None,
        }));
    }
    let dir = PathBuf::from(location);
    if !dir.is_dir() {
        bail!("{location}: no such directory");
    }
    Ok(Store::Dir(dir))
}

fn print_text(r: &Report) {
    for f in &r.findings {
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_uppercase))
            .unwrap_or_default();
        println!(
            "{kind} {}: {}",
            trailwatch::escape::line(&f.name),
            trailwatch::escape::line(&f.detail)
        );
    }
    for d in &r.days_open {
        println!("OPEN {d}: the last day of its chain; its manifest is written when the next day's first object is sealed");
    }
    let verdict = match r.exit_code() {
        0 => "intact".to_string(),
        3 => format!(
            "intact, with {} gap(s) in monitoring or stale chain(s)",
            r.findings.len()
        ),
        _ => format!("{} problem(s)", r.findings.len()),
    };
    println!(
        "{}: {} object(s) of {} writer(s), {} signed day(s), {} to {}: {verdict}",
        r.store,
        r.objects,
        r.writers.len(),
        r.days_signed,
        r.first.as_deref().unwrap_or("-"),
        r.last.as_deref().unwrap_or("-"),
    );
}
