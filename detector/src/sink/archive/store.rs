//! Where sealed objects and manifests end up: an S3 bucket (Object Lock retention and SSE-KMS
//! set per object) or a local directory. Both refuse to replace an object with other bytes.

use std::path::{Path, PathBuf};

/// Object Lock retention set on every object put to S3.
#[derive(Debug, Clone)]
pub struct Retention {
    /// `COMPLIANCE` (nobody can shorten it, root included) or `GOVERNANCE`.
    pub mode: aws_sdk_s3::types::ObjectLockMode,
    /// Days from the put.
    pub days: u32,
}

/// An S3 bucket and the protection of what is put there.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The client (endpoint and credentials from the environment or configuration).
    pub client: aws_sdk_s3::Client,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, without a trailing slash (empty: the bucket's root).
    pub prefix: String,
    /// KMS key for SSE-KMS; `None`: the bucket's default encryption.
    pub kms_key_id: Option<String>,
    /// `None`: the bucket's default retention applies.
    pub retention: Option<Retention>,
}

/// An archive store.
#[derive(Debug, Clone)]
pub enum Store {
    /// S3.
    S3(Bucket),
    /// A local directory: the embedded default, and what tests and small sites use.
    Dir(PathBuf),
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store failed (down, denied, full).
    #[error("{what} {name}: {message}")]
    Failed {
        /// The operation.
        what: &'static str,
        /// The object.
        name: String,
        /// The store's message.
        message: String,
    },
    /// An object of that name exists with other bytes: something else writes into this
    /// writer's chain (two instances with one writer name?).
    #[error("{name} exists in the archive with other content; is another instance writing with the same writer name?")]
    Conflict {
        /// The object.
        name: String,
    },
}

impl Store {
    /// A human name for logs and reports: `s3://bucket/prefix` or the directory.
    pub fn describe(&self) -> String {
        match self {
            Store::S3(b) if b.prefix.is_empty() => format!("s3://{}", b.bucket),
            Store::S3(b) => format!("s3://{}/{}", b.bucket, b.prefix),
            Store::Dir(d) => d.display().to_string(),
        }
    }

    /// Puts an object under `name` (below the prefix). Putting the same bytes again is a
    /// success: a restart after a put whose confirmation was lost puts it again.
    pub async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::S3(b) => b.put(name, bytes).await,
            Store::Dir(d) => put_file(&d.join(name), name, bytes),
        }
    }

    /// Every name below the prefix, sorted.
    pub async fn list(&self) -> Result<Vec<String>, StoreError> {
        let mut names = match self {
            Store::S3(b) => b.list().await?,
            Store::Dir(d) => list_dir(d)?,
        };
        names.sort();
        Ok(names)
    }

    /// Whether an object of that name exists.
    pub async fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Store::S3(b) => Ok(b.existing(name).await?.is_some()),
            Store::Dir(d) => Ok(std::fs::symlink_metadata(d.join(name)).is_ok()),
        }
    }

    /// An object's bytes.
    pub async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Store::S3(b) => b.get(name).await,
            Store::Dir(d) => read_regular(&d.join(name)).map_err(|e| StoreError::Failed {
                what: "reading",
                name: name.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

impl Bucket {
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        use aws_sdk_s3::primitives::{ByteStream, DateTime};
        use aws_sdk_s3::types::{ChecksumAlgorithm, ServerSideEncryption};
        let failed = |message: String| StoreError::Failed {
            what: "putting",
            name: name.to_string(),
            message,
        };
        if let Some(existing) = self.existing(name).await? {
            return if existing == bytes {
                Ok(())
            } else {
                Err(StoreError::Conflict { name: name.into() })
            };
        }
        // Object Lock puts need a checksum; SHA-256 is also what the chain uses.
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .body(ByteStream::from(bytes.to_vec()))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .content_type(if name.ends_with(".gz") {
                "application/gzip"
            } else {
                "application/json"
            });
        if let Some(kms) = &self.kms_key_id {
            put = put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms);
        }
        if let Some(r) = &self.retention {
            let until = std::time::SystemTime::now()
                + std::time::Duration::from_secs(u64::from(r.days) * 86_400);
            put = put
                .object_lock_mode(r.mode.clone())
                .object_lock_retain_until_date(DateTime::from(until));
        }
        put.send()
            .await
            .map_err(|e| failed(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }

    /// The bytes stored under `name`, if any.
    async fn existing(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(name))
            .send()
            .await;
        match got {
            Ok(o) => {
                let body = o.body.collect().await.map_err(|e| StoreError::Failed {
                    what: "reading",
                    name: name.to_string(),
                    message: e.to_string(),
                })?;
                Ok(Some(body.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(StoreError::Failed {
                what: "checking",
                name: name.to_string(),
                message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            }),
        }
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.existing(name)
            .await?
            .ok_or_else(|| StoreError::Failed {
                what: "reading",
                name: name.to_string(),
                message: "no such object".into(),
            })
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::Failed {
                what: "listing",
                name: format!("s3://{}/{prefix}", self.bucket),
                message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&prefix)) {
                    names.push(k.to_string());
                }
            }
        }
        Ok(names)
    }
}

fn put_file(path: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| StoreError::Failed {
        what: "writing",
        name: name.to_string(),
        message: format!("{}: {e}", path.display()),
    };
    match read_regular(path) {
        Ok(existing) if existing == bytes => return Ok(()),
        Ok(_) => return Err(StoreError::Conflict { name: name.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    crate::durable::save_atomically(path, bytes).map_err(failed)
}

/// A regular file's bytes: never through a symlink (to /dev/zero, out of the archive) or from
/// a pipe that would never end.
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    std::fs::read(path)
}

fn list_dir(root: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    if !root.exists() {
        return Ok(names);
    }
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(|e| StoreError::Failed {
            what: "listing",
            name: root.display().to_string(),
            message: e.to_string(),
        })?;
        // Symlinks, pipes and the like are listed (and refused when read), not skipped: a
        // symlink in an object's place must show; so must a folder named like an object.
        let named_like_a_file = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".jsonl.gz") || n == "manifest.json");
        if entry.file_type().is_dir() && !named_like_a_file {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(root) {
            let name: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            names.push(name.join("/"));
        }
    }
    Ok(names)
}
