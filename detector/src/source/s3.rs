//! History where it lives: CloudTrail log files in S3 (`s3://bucket/prefix`).
//!
//! The objects under a prefix are listed (the single-account `AWSLogs/<account>/...` and the
//! organization-trail `AWSLogs/<org>/<account>/...` layouts alike; `CloudTrail-Digest` objects
//! are skipped), ordered by the time in their names across accounts and regions, as a local
//! directory is, and downloaded a few at a time ahead of the one being read, so the replay
//! gives the alerts a replay of the same files on disk gives. Credentials come from the
//! default chain; `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) points at an S3-compatible
//! store.

use super::file::{cloudtrail_file_time, is_event_file, Input};
use super::select::{Listing, Selection};
use aws_sdk_s3::error::DisplayErrorContext;
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Objects downloaded at once.
const PARALLEL: usize = 4;
/// Folders listed at once.
const LIST_PARALLEL: usize = 16;
/// Objects downloaded ahead of the one being read (bounds memory to this many files).
const AHEAD: usize = 8;
/// Objects larger than this are not held whole: they are read from the network as replay
/// consumes them (CloudTrail's own log files are far smaller; an exported archive may not be).
const STREAM_ABOVE: u64 = 8 << 20;
/// Times a streamed object's download resumes, from where it broke, before it is given up.
const RESUMES: u32 = 3;

/// Why an S3 location could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// Not `s3://bucket[/prefix]`.
    #[error("'{0}' is not an S3 location (s3://bucket/prefix)")]
    BadLocation(String),
    /// The listing failed (permissions, bucket, endpoint).
    #[error(
        "listing s3://{bucket}/{prefix}: {message} (replay needs s3:ListBucket on the bucket)"
    )]
    List {
        /// The bucket.
        bucket: String,
        /// The prefix.
        prefix: String,
        /// What the service said.
        message: String,
    },
    /// The async runtime could not start.
    #[error("starting the S3 client: {0}")]
    Runtime(#[from] io::Error),
}

/// One object to replay.
#[derive(Clone)]
pub struct Object {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its position in the listing, which is the order it is read in.
    index: usize,
    fetcher: Arc<Fetcher>,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        (&self.bucket, &self.key) == (&other.bucket, &other.key)
    }
}

impl Eq for Object {}

impl Object {
    /// The object's bytes (compressed as stored): downloaded ahead when it was listed, or for
    /// a large object read from the network as it is consumed.
    pub fn reader(&self) -> io::Result<Box<dyn io::Read + Send>> {
        self.fetcher.take(self.index)
    }
}

/// Whether an input argument names an S3 location.
pub fn is_s3(arg: &str) -> bool {
    arg.starts_with("s3://")
}

/// `(bucket, prefix)` of `s3://bucket/prefix`.
pub fn parse(arg: &str) -> Result<(String, String), S3Error> {
    let rest = arg
        .strip_prefix("s3://")
        .ok_or_else(|| S3Error::BadLocation(arg.to_string()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(S3Error::BadLocation(arg.to_string()));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Lists the CloudTrail log files under `s3://bucket/prefix` that may hold events of
/// `selection`, in the order to read them. With a selection, the listing descends folder by
/// folder and skips the accounts, regions and dates outside it, so a one-day backtest over
/// years of history lists one day.
pub fn list(arg: &str, selection: &Selection) -> Result<Vec<Input>, S3Error> {
    let (bucket, prefix) = parse(arg)?;
    let fetcher = Arc::new(Fetcher::new(selection.s3_endpoint.as_deref())?);
    let client = &fetcher.client;
    let mut keys = fetcher
        .runtime
        .block_on(walk(client, &bucket, &prefix, selection))?;
    keys.retain(|(k, _)| selection.may_hold(k.rsplit('/').next().unwrap_or_default()));
    // As for a local directory: by the time in the file name, across accounts and regions.
    keys.sort_by_cached_key(|(k, _)| (cloudtrail_file_time(std::path::Path::new(k)), k.clone()));
    fetcher.plan(&bucket, keys.clone());
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(index, (key, size))| {
            Input::S3(Object {
                bucket: bucket.clone(),
                key,
                size,
                index,
                fetcher: fetcher.clone(),
            })
        })
        .collect())
}

/// The event files under `prefix` that `selection` may need: folder by folder where that
/// prunes or splits the listing ([`Selection::listing`]), several folders at a time.
async fn walk(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    selection: &Selection,
) -> Result<Vec<(String, u64)>, S3Error> {
    let mut keys = Vec::new();
    let mut folders = vec![prefix.to_string()];
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < LIST_PARALLEL {
            let Some(folder) = folders.pop() else { break };
            let flat = match selection.listing(&folder) {
                // The prefix asked for is listed even when it looks like no trail's folder.
                Listing::Skip if folder != prefix => continue,
                Listing::Flat => true,
                _ => false,
            };
            let (client, bucket) = (client.clone(), bucket.to_string());
            running.spawn(async move {
                let mut sub = Vec::new();
                let found = list_keys(&client, &bucket, &folder, (!flat).then_some(&mut sub));
                Ok::<_, S3Error>((found.await?, sub))
            });
        }
        let Some(done) = running.join_next().await else {
            return Ok(keys);
        };
        let (found, sub) = done.map_err(|e| S3Error::List {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            message: e.to_string(),
        })??;
        keys.extend(found);
        folders.extend(sub);
    }
}

/// The event files directly under `prefix` (all below it when `folders` is None; else the
/// sub-folders are appended to it).
async fn list_keys(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    mut folders: Option<&mut Vec<String>>,
) -> Result<Vec<(String, u64)>, S3Error> {
    let mut request = client.list_objects_v2().bucket(bucket).prefix(prefix);
    if folders.is_some() {
        request = request.delimiter("/");
    }
    let mut pages = request.into_paginator().send();
    let mut keys = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| S3Error::List {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
        if let Some(folders) = folders.as_deref_mut() {
            let found = page.common_prefixes().iter().filter_map(|p| p.prefix());
            folders.extend(
                found
                    .filter(|p| !p.ends_with("CloudTrail-Digest/"))
                    .map(String::from),
            );
        }
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let digest = key.split('/').any(|part| part == "CloudTrail-Digest");
            if !digest && is_event_file(std::path::Path::new(key)) {
                keys.push((key.to_string(), o.size().unwrap_or(0).max(0) as u64));
            }
        }
    }
    Ok(keys)
}

/// A whole object being downloaded.
type Download = JoinHandle<io::Result<Vec<u8>>>;

/// Downloads objects in listing order, a bounded number ahead of the reader.
pub struct Fetcher {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    limit: Arc<tokio::sync::Semaphore>,
    ahead: Mutex<Ahead>,
}

#[derive(Default)]
struct Ahead {
    bucket: String,
    /// Keys and sizes in reading order.
    keys: Vec<(String, u64)>,
    /// Downloads started, by index, oldest first (`None`: a large object, streamed when read).
    started: VecDeque<(usize, Option<Download>)>,
    next: usize,
}

impl Fetcher {
    fn new(endpoint: Option<&str>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        let config = runtime.block_on(loader.load());
        // S3-compatible stores (and moto) address buckets by path, not by host name.
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        Ok(Fetcher {
            runtime,
            client: aws_sdk_s3::Client::from_conf(s3),
            limit: Arc::new(tokio::sync::Semaphore::new(PARALLEL)),
            ahead: Mutex::new(Ahead::default()),
        })
    }

    fn plan(&self, bucket: &str, keys: Vec<(String, u64)>) {
        if let Ok(mut a) = self.ahead.lock() {
            a.bucket = bucket.to_string();
            a.keys = keys;
        }
    }

    /// The bytes of object `index`, starting the downloads of the ones after it.
    fn take(self: &Arc<Self>, index: usize) -> io::Result<Box<dyn io::Read + Send>> {
        let (bucket, key, handle) = {
            let mut a = self
                .ahead
                .lock()
                .map_err(|_| io::Error::other("S3 downloader poisoned"))?;
            // Read out of order (not by replay): drop what was fetched for other positions.
            if a.started.front().is_some_and(|(i, _)| *i != index) || a.next <= index {
                a.started.clear();
                a.next = index;
            }
            while a.next < a.keys.len() && a.next <= index + AHEAD {
                let (key, size) = a.keys[a.next].clone();
                let handle = (size <= STREAM_ABOVE).then(|| {
                    let (client, limit) = (self.client.clone(), self.limit.clone());
                    self.runtime
                        .spawn(download(client, limit, a.bucket.clone(), key))
                });
                let at = a.next;
                a.started.push_back((at, handle));
                a.next += 1;
            }
            let (_, handle) = a
                .started
                .pop_front()
                .ok_or_else(|| io::Error::other("no such object in the listing"))?;
            (a.bucket.clone(), a.keys[index].0.clone(), handle)
        };
        match handle {
            Some(handle) => {
                let bytes = self
                    .runtime
                    .block_on(handle)
                    .map_err(|e| io::Error::other(e.to_string()))??;
                Ok(Box::new(io::Cursor::new(bytes)))
            }
            None => {
                let mut streamed = Streamed {
                    fetcher: self.clone(),
                    bucket,
                    key,
                    body: None,
                    chunk: bytes::Bytes::new(),
                    offset: 0,
                    resumes: RESUMES,
                };
                streamed.open()?;
                Ok(Box::new(streamed))
            }
        }
    }
}

/// A large object read from the network as it is consumed, resuming from where a broken
/// download stopped.
struct Streamed {
    fetcher: Arc<Fetcher>,
    bucket: String,
    key: String,
    body: Option<aws_sdk_s3::primitives::ByteStream>,
    chunk: bytes::Bytes,
    /// Bytes handed out so far.
    offset: u64,
    resumes: u32,
}

impl Streamed {
    /// Requests the object from `offset` on.
    fn open(&mut self) -> io::Result<()> {
        let f = &self.fetcher;
        let mut request = f.client.get_object().bucket(&self.bucket).key(&self.key);
        if self.offset > 0 {
            request = request.range(format!("bytes={}-", self.offset));
        }
        let out = f
            .runtime
            .block_on(request.send())
            .map_err(|e| object_error(&self.bucket, &self.key, &DisplayErrorContext(&e)))?;
        self.body = Some(out.body);
        Ok(())
    }
}

impl io::Read for Streamed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            let Some(body) = self.body.as_mut() else {
                return Ok(0);
            };
            match self.fetcher.runtime.block_on(body.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                None => self.body = None,
                Some(Err(e)) if self.resumes == 0 => {
                    return Err(object_error(&self.bucket, &self.key, &e))
                }
                Some(Err(e)) => {
                    tracing::warn!("s3://{}/{}: {e}; resuming", self.bucket, self.key);
                    self.resumes -= 1;
                    self.open()?;
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        self.offset += n as u64;
        Ok(n)
    }
}

/// A download's error, with what replay needs to be allowed to read it.
fn object_error(bucket: &str, key: &str, e: &dyn std::fmt::Display) -> io::Error {
    io::Error::other(format!(
        "s3://{bucket}/{key}: {e} (replay needs s3:GetObject, and kms:Decrypt for SSE-KMS trails)"
    ))
}

async fn download(
    client: aws_sdk_s3::Client,
    limit: Arc<tokio::sync::Semaphore>,
    bucket: String,
    key: String,
) -> io::Result<Vec<u8>> {
    let _permit = limit.acquire_owned().await.map_err(io::Error::other)?;
    let mut attempts = 0;
    loop {
        let out = client
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| object_error(&bucket, &key, &DisplayErrorContext(&e)))?;
        // The SDK retries failed requests, not a body that breaks off: that is retried here.
        match out.body.collect().await {
            Ok(body) => return Ok(body.into_bytes().to_vec()),
            Err(e) if attempts == RESUMES => return Err(object_error(&bucket, &key, &e)),
            Err(e) => tracing::warn!("s3://{bucket}/{key}: {e}; downloading it again"),
        }
        attempts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_into_bucket_and_prefix() {
        assert_eq!(
            parse("s3://trail-bucket/AWSLogs/o-abc/").unwrap(),
            ("trail-bucket".to_string(), "AWSLogs/o-abc/".to_string())
        );
        assert_eq!(parse("s3://b").unwrap(), ("b".to_string(), String::new()));
        assert!(parse("s3:///x").is_err());
        assert!(parse("/tmp/x").is_err());
    }
}
