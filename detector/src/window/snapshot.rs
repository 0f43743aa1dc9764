//! Saving and restoring correlation state, so a restart does not forget a brute force in
//! progress.
//!
//! A snapshot is `TRAILWATCH-STATE <version> <xxh3-64 of the body, hex>\n` followed by a JSON
//! body. Rules are named by id, never by position, so a snapshot survives a changed rule set:
//! the state of a correlation whose definition changed is dropped (and reported), the rest is
//! kept. A snapshot that is corrupt, truncated or of another version is rejected whole.

use super::{Correlator, Feed, Groups, Pending, State, Stats};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;

/// The snapshot format this build writes and reads.
pub const VERSION: u32 = 1;
const MAGIC: &str = "TRAILWATCH-STATE";

/// Why a snapshot was not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Not a trailwatch state file.
    #[error("not a trailwatch state snapshot (no '{MAGIC}' header)")]
    NotASnapshot,
    /// Written by another format version.
    #[error("snapshot format version {found}; this trailwatch reads version {expected} (delete the file to start with empty state)")]
    Version {
        /// Found in the file.
        found: String,
        /// What this build reads.
        expected: u32,
    },
    /// The body does not match its checksum (truncated or altered).
    #[error("snapshot is corrupt: checksum mismatch (truncated or altered file)")]
    Checksum,
    /// The body is not valid.
    #[error("snapshot is corrupt: {0}")]
    Body(String),
}

#[derive(Serialize, Deserialize)]
struct Body {
    max_time: Option<i64>,
    seq: u64,
    stats: Stats,
    correlations: Vec<CorrelationState>,
    pending: Vec<PendingState>,
}

#[derive(Serialize, Deserialize)]
struct CorrelationState {
    id: String,
    fingerprint: String,
    groups: Vec<((u64, u64), State)>,
}

/// A buffered hit, with its rule and correlations named by id.
#[derive(Serialize, Deserialize)]
struct PendingState {
    rule: String,
    feeds: Vec<(String, Feed)>,
    entry: Pending,
}

/// What a restore kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Group keys restored.
    pub groups: usize,
    /// Buffered events restored.
    pub pending: usize,
    /// Correlations whose state was dropped because they changed or are gone.
    pub dropped: Vec<String>,
}

impl Correlator<'_> {
    /// The current state as snapshot bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let corrs = self.set.correlations();
        let body = Body {
            max_time: self.max_time,
            seq: self.seq,
            stats: self.stats,
            correlations: corrs
                .iter()
                .zip(&self.groups)
                .map(|(c, g)| CorrelationState {
                    id: c.id().to_string(),
                    fingerprint: fingerprint(c),
                    groups: g.map.iter().map(|(k, s)| (*k, s.clone())).collect(),
                })
                .collect(),
            pending: self
                .pending
                .iter()
                .map(|Reverse(p)| PendingState {
                    rule: self.set.rules()[p.rule as usize].id().to_string(),
                    feeds: p
                        .feeds
                        .iter()
                        .map(|f| (corrs[f.corr as usize].id().to_string(), f.clone()))
                        .collect(),
                    entry: p.clone(),
                })
                .collect(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let sum = xxhash_rust::xxh3::xxh3_64(&json);
        let mut out = format!("{MAGIC} {VERSION} {sum:016x}\n").into_bytes();
        out.extend_from_slice(&json);
        out
    }

    /// Replaces the state with a snapshot's; on error the state is left untouched.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        let body = parse(bytes)?;
        let corrs = self.set.correlations();
        let mut groups: Vec<Groups> = (0..corrs.len()).map(|_| Groups::default()).collect();
        let mut report = Restored::default();
        for saved in body.correlations {
            let Some(i) = corrs
                .iter()
                .position(|c| c.id() == saved.id && fingerprint(c) == saved.fingerprint)
            else {
                report.dropped.push(saved.id);
                continue;
            };
            let mut entries: Vec<((u64, u64), State)> = saved.groups;
            entries.sort_by_key(|(_, s)| s.last());
            for (k, s) in entries {
                groups[i].touched.push_back((k, s.last()));
                groups[i].map.insert(k, s);
                report.groups += 1;
            }
        }
        let mut pending = std::collections::BinaryHeap::new();
        for p in body.pending {
            let Some(rule) = self.set.rules().iter().position(|r| r.id() == p.rule) else {
                continue;
            };
            let mut entry = p.entry;
            entry.rule = rule as u32;
            entry.feeds = p
                .feeds
                .into_iter()
                .filter_map(|(id, mut f)| {
                    let c = corrs
                        .iter()
                        .position(|c| c.id() == id && !report.dropped.contains(&id))?;
                    f.corr = c as u32;
                    Some(f)
                })
                .collect();
            report.pending += 1;
            pending.push(Reverse(entry));
        }
        self.groups = groups;
        self.pending = pending;
        self.max_time = body.max_time;
        self.seq = body.seq;
        self.stats = body.stats;
        Ok(report)
    }
}

fn parse(bytes: &[u8]) -> Result<Body, SnapshotError> {
    let nl = memchr::memchr(b'\n', bytes).ok_or(SnapshotError::NotASnapshot)?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| SnapshotError::NotASnapshot)?;
    let mut parts = header.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = parts.next().unwrap_or_default();
    if version != VERSION.to_string() {
        return Err(SnapshotError::Version {
            found: version.to_string(),
            expected: VERSION,
        });
    }
    let sum = parts
        .next()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or(SnapshotError::NotASnapshot)?;
    let json = &bytes[nl + 1..];
    if xxhash_rust::xxh3::xxh3_64(json) != sum {
        return Err(SnapshotError::Checksum);
    }
    serde_json::from_slice(json).map_err(|e| SnapshotError::Body(e.to_string()))
}

/// What must not change for a correlation's state to stay meaningful.
fn fingerprint(c: &crate::engine::CompiledCorrelation) -> String {
    let s = c.spec();
    let text = format!(
        "{:?}|{:?}|{:?}|{}|{:?}|{:?}|{:?}",
        s.kind, s.rules, s.group_by, s.timespan, s.field, s.aliases, s.condition
    );
    // Early and buffered windows hold different state: a change of mode drops it.
    let text = if c.early { text + "|early" } else { text };
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}
