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

/// The snapshot format this build writes. Version 2 keys groups by the first word of their hash
/// only (the second is written as 0): a build that reads only version 1 must refuse it rather
/// than restore groups it would never find. Version 1 is still read.
pub const VERSION: u32 = 2;
/// Older formats this build reads.
const READS_ALSO: &[&str] = &["1"];
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
    /// The accounts and regions seen delivering (silence rules); absent in older snapshots.
    #[serde(default)]
    sources: super::silence::Sources,
    /// Live streams: how long (milliseconds) the stream had been quiet when the snapshot was
    /// taken, so the next owner's quiet clock goes on from there. Time between the snapshot and
    /// the restore, when nobody read the stream, does not count: its backlog is read, not
    /// taken as late. Absent in replay and older snapshots; older builds ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quiet_ms: Option<i64>,
    /// The watermark a quiet stream was advanced to without events (nothing before it is
    /// pending), so events its previous owner would count late are late here too; absent in
    /// older snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct CorrelationState {
    id: String,
    fingerprint: String,
    groups: Vec<((u64, u64), State)>,
    /// The events that fed the groups lately (alert lineage); absent in older snapshots.
    #[serde(default)]
    recent: Vec<super::lineage::Saved>,
    /// First-seen learning: the earliest event time of each account (by hash).
    #[serde(default)]
    started: Vec<(u64, i64)>,
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
    /// The newest event time, and how long (milliseconds) a live stream had been quiet since
    /// it when the snapshot was taken, if the snapshot says.
    pub newest: Option<(i64, Option<i64>)>,
}

impl Correlator<'_> {
    /// The current state as snapshot bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_quiet(None)
    }

    /// The current state as snapshot bytes, with how long (milliseconds) a live stream has been
    /// quiet since its newest event time was seen.
    pub fn snapshot_quiet(&self, quiet_ms: Option<i64>) -> Vec<u8> {
        let corrs = self.set.correlations();
        let body = Body {
            quiet_ms,
            floor: self.floor,
            max_time: self.max_time,
            seq: self.seq,
            stats: self.stats,
            sources: self.sources.clone(),
            correlations: corrs
                .iter()
                .zip(&self.groups)
                .map(|(c, g)| CorrelationState {
                    id: c.id().to_string(),
                    fingerprint: fingerprint(c),
                    groups: sorted(g.table.iter().collect()),
                    recent: g.recent.save(),
                    started: in_order(g.started.iter().map(|(a, t)| (*a, *t)).collect()),
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
    ///
    /// The checksum only proves the file is as written; what was written is checked too
    /// ([`check`]): times, counters and window invariants out of range reject the snapshot
    /// whole, so a damaged or hostile file cannot make later arithmetic overflow.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        let mut body = parse(bytes)?;
        check(&body, self.set)?;
        if !body.sources.restored(time_ok) {
            return Err(SnapshotError::Body(
                "a delivering source out of range".into(),
            ));
        }
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
            groups[i].recent = super::lineage::Recent::restore(saved.recent);
            groups[i].started = saved.started.into_iter().collect();
            for (k, s) in saved.groups {
                groups[i].table.insert(&k, s);
            }
            // Keys of an older snapshot that share their first word are one group now.
            report.groups += groups[i].table.len();
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
        // A hint only: one out of range starts the quiet clock at the restore.
        let quiet = body.quiet_ms.filter(|ms| *ms >= 0 && time_ok(ms / 1000));
        report.newest = body.max_time.map(|t| (t, quiet));
        self.floor = body.floor;
        self.groups = groups;
        self.pending = pending;
        self.max_time = body.max_time;
        self.seq = body.seq;
        self.stats = body.stats;
        self.sources = body.sources;
        Ok(report)
    }
}

/// Groups by key: where a group lies in the table is secret and differs between processes; the
/// snapshot of the same state is the same bytes.
fn sorted(mut groups: Vec<((u64, u64), State)>) -> Vec<((u64, u64), State)> {
    groups.sort_unstable_by_key(|(k, _)| *k);
    groups
}

/// First-seen learning starts by account, in account order (the map's order shows its seed).
fn in_order(mut started: Vec<(u64, i64)>) -> Vec<(u64, i64)> {
    started.sort_unstable();
    started
}

/// Event times a snapshot may hold (Unix seconds): ±2^43, about ±278,000 years, beyond any
/// `eventTime` the decoder reads (chrono's range ends at year ±262,143), so a snapshot the
/// correlator wrote always restores.
const TIME_LIMIT: i64 = 1 << 43;

/// Counters and sequence numbers a snapshot may hold: 2^53, more than a lifetime of events,
/// and far from the overflow of the `+= 1` that follows.
const COUNT_LIMIT: u64 = 1 << 53;

fn time_ok(t: i64) -> bool {
    (-TIME_LIMIT..=TIME_LIMIT).contains(&t)
}

/// A "latest time" field, which is `i64::MIN` ("never") in a window that saw nothing.
fn last_ok(t: i64) -> bool {
    t == i64::MIN || time_ok(t)
}

/// Rejects a body whose values could not have been written by the correlator.
fn check(body: &Body, set: &crate::engine::RuleSet) -> Result<(), SnapshotError> {
    let bad = |what: &str| Err(SnapshotError::Body(format!("{what} out of range")));
    let s = &body.stats;
    let counters = [
        s.late,
        s.no_time,
        s.evicted,
        s.fired,
        s.peak_keys,
        s.unlocated,
    ];
    if body.seq > COUNT_LIMIT || counters.iter().any(|&c| c > COUNT_LIMIT) {
        return bad("a counter");
    }
    if body.max_time.is_some_and(|t| !time_ok(t)) {
        return bad("the newest event time");
    }
    if body.floor.is_some_and(|t| !time_ok(t)) {
        return bad("the quiet stream's watermark");
    }
    if body
        .correlations
        .iter()
        .any(|c| c.started.iter().any(|(_, t)| !time_ok(*t)))
    {
        return bad("a first-seen learning start");
    }
    let corrs = set.correlations();
    let by_id = |id: &str| corrs.iter().find(|c| c.id() == id);
    for saved in &body.correlations {
        let Some(corr) = by_id(&saved.id) else {
            continue; // dropped on restore
        };
        for (_, state) in &saved.groups {
            if !state_ok(state, corr.inputs.len()) {
                return bad("a correlation window");
            }
        }
    }
    for p in &body.pending {
        let e = &p.entry;
        if !time_ok(e.time) || e.seq > COUNT_LIMIT || e.origin.input_index > COUNT_LIMIT {
            return bad("a buffered event");
        }
        for (id, f) in &p.feeds {
            if by_id(id).is_some_and(|c| usize::from(f.pos) >= c.inputs.len()) {
                return bad("a buffered event's input");
            }
        }
    }
    Ok(())
}

/// Whether a window's state keeps the invariants its updates rely on.
fn state_ok(state: &State, n_inputs: usize) -> bool {
    match state {
        State::Times(times) => {
            times.iter().all(|&t| time_ok(t)) && times.windows(2).all(|w| w[0] <= w[1])
        }
        State::Values(v) => {
            let mut counts: crate::keyed::Map<&str, u32> = Default::default();
            for (_, value) in &v.order {
                *counts.entry(value).or_default() += 1;
            }
            last_ok(v.last)
                && v.order.iter().all(|(t, _)| time_ok(*t))
                && counts.len() == v.counts.len()
                && v.counts.iter().all(|(k, n)| counts.get(&**k) == Some(n))
        }
        State::Numbers(n) => {
            last_ok(n.last) && n.items.iter().all(|(t, x)| time_ok(*t) && x.is_finite())
        }
        State::Seen(m) | State::Chain(m) => {
            last_ok(m.last) && m.at.len() == n_inputs && m.at.iter().flatten().all(|&t| time_ok(t))
        }
        // `first` is read (`t - first`) once a principal has events.
        State::Countries(c) => {
            let times = if c.events == 0 {
                last_ok(c.first) && last_ok(c.last)
            } else {
                time_ok(c.first) && time_ok(c.last)
            };
            times && c.events < 1 << 31
        }
        // `at` is `i64::MIN` until the first located event, and read only after it.
        State::Travel(t) => last_ok(t.at) && t.lat.is_finite() && t.lon.is_finite(),
        State::Early(w) => w.is_consistent(time_ok),
        State::EarlyCount(w) => {
            w.iter().all(|&x| time_ok(x >> 1)) && w.windows(2).all(|p| p[0] >> 1 <= p[1] >> 1)
        }
        State::Known(t) => time_ok(*t),
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
    if version != VERSION.to_string() && !READS_ALSO.contains(&version) {
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
