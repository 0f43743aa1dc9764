//! The audit archive: every alert, every batch processed (what, from where, how many events of
//! which accounts and regions, under which rule set) and a heartbeat when nothing happened,
//! sealed into hash-chained objects with a signed manifest per day, put to S3 under Object Lock
//! or to a local directory. Records are acknowledged once in the encrypted local spool; the
//! store catches up from it after an outage.

pub mod manifest;
pub mod object;
pub mod spool;
pub mod store;
pub mod verify;

use crate::alert::Alert;
use crate::metrics::Metrics;
use serde::Serialize;
use spool::{Spool, SpoolError};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::Store;
use tokio::sync::{watch, Notify};

/// How the archive runs, from `[sink.archive]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The spool directory.
    pub spool: std::path::PathBuf,
    /// This instance's chain name.
    pub writer: String,
    /// The archive key (manifest signatures, spool encryption).
    pub key: Vec<u8>,
    /// The spool refuses records beyond this many bytes.
    pub spool_max_bytes: u64,
    /// An object is sealed this often (a heartbeat when idle)...
    pub every: Duration,
    /// ...or as soon as its records reach this many bytes.
    pub object_bytes: u64,
    /// Where objects go.
    pub store: Store,
}

/// The archive sink: the spool behind a lock, shared by the pipelines and the task that seals
/// and uploads.
pub struct Archive {
    spool: Mutex<Spool>,
    store: Store,
    every: Duration,
    object_bytes: u64,
    wake: Notify,
    metrics: Metrics,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("store", &self.store.describe())
            .finish()
    }
}

impl Archive {
    /// Opens the spool (finishing what a crash interrupted).
    pub fn open(settings: Settings, metrics: Metrics) -> Result<Archive, SpoolError> {
        let spool = Spool::open(
            &settings.spool,
            &settings.writer,
            &settings.key,
            settings.spool_max_bytes,
        )?;
        metrics.archive_spool_bytes.set(spool.bytes() as i64);
        Ok(Archive {
            spool: Mutex::new(spool),
            store: settings.store,
            every: settings.every,
            object_bytes: settings.object_bytes,
            wake: Notify::new(),
            metrics,
        })
    }

    /// Where objects go.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn spool(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the archive already goes on past where this spool's chain ends: with a new
    /// spool (or one whose state was lost), the writer's newest object; with an older copy of
    /// the spool (a backup), the object after its last. Either way the service's first put
    /// would collide forever, so it refuses to start; returns what it found.
    pub async fn conflicting_chain(&self) -> Result<Option<String>, store::StoreError> {
        let (writer, chain) = {
            let spool = self.spool();
            (spool.writer().to_string(), spool.chain().clone())
        };
        if chain.seq == 0 {
            let names = self.store.list().await?;
            return Ok(names.into_iter().rev().find(|n| {
                matches!(object::parse_name(n), Some(object::Name::Object { writer: w, .. }) if w == writer)
            }));
        }
        // The next object is sealed on the chain's day or a later one, up to today.
        let today = object::day_of(&object::now_rfc3339()).to_string();
        let mut day = chain.day.clone().unwrap_or_else(|| today.clone());
        for _ in 0..=31 {
            let name = object::object_name(&writer, &day, chain.seq + 1);
            if self.store.exists(&name).await? {
                return Ok(Some(name));
            }
            match next_day(&day) {
                Some(next) if day < today => day = next,
                _ => break,
            }
        }
        Ok(None)
    }

    /// Appends records durably (synced to the spool when this returns `Ok`).
    pub fn append(&self, records: &[Vec<u8>]) -> Result<(), SpoolError> {
        let mut spool = self.spool();
        spool.append(records)?;
        self.metrics.archive_spool_bytes.set(spool.bytes() as i64);
        if spool.pending().1 >= self.object_bytes {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Seals an object every `every` (or when one is full) and puts what is sealed to the
    /// store, oldest first, retrying with backoff while it fails; on `stop`, seals what is
    /// left and tries to put it all until `deadline` passes. What is not put stays spooled.
    pub async fn drive(&self, mut stop: watch::Receiver<bool>, deadline: Duration) {
        let mut next_seal = Instant::now() + self.every;
        let mut backoff = Duration::from_millis(200);
        let mut retry_at: Option<Instant> = None;
        loop {
            let full = self.spool().pending().1 >= self.object_bytes;
            if Instant::now() >= next_seal || full {
                self.seal();
                next_seal = Instant::now() + self.every;
            }
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                match self.upload().await {
                    Ok(()) => {
                        backoff = Duration::from_millis(200);
                        retry_at = None;
                    }
                    Err(e) => {
                        self.metrics.archive_store_failures.inc();
                        tracing::warn!(error = %e, store = %self.store.describe(), retry_in_ms = backoff.as_millis() as u64, "putting archive objects failed; they stay in the spool");
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            let wait_until = retry_at.map_or(next_seal, |r| r.min(next_seal));
            tokio::select! {
                _ = tokio::time::sleep_until(wait_until.into()) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => break,
            }
        }
        self.seal();
        let give_up = Instant::now() + deadline;
        while Instant::now() < give_up {
            match tokio::time::timeout_at(give_up.into(), self.upload()).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "putting archive objects at shutdown failed; they stay in the spool for the next start");
                    tokio::time::sleep(
                        Duration::from_millis(500).min(give_up - Instant::now().min(give_up)),
                    )
                    .await;
                }
                Err(_) => break,
            }
        }
        tracing::warn!(
            spool_bytes = self.spool().bytes(),
            "archive objects left in the spool at shutdown; the next start puts them"
        );
    }

    /// Seals the records since the last seal into an object (a heartbeat when none and the
    /// spool has room for it).
    pub fn seal(&self) {
        let mut spool = self.spool();
        match tokio::task::block_in_place(|| spool.seal()) {
            Ok(Some(seq)) => {
                self.metrics.archive_objects_sealed.inc();
                tracing::debug!(seq, "archive object sealed");
            }
            Ok(None) => {
                tracing::debug!(
                    spool_bytes = spool.bytes(),
                    "no heartbeat sealed: the spool is full"
                );
            }
            Err(e) => {
                self.metrics.archive_store_failures.inc();
                tracing::error!(error = %e, "sealing an archive object failed; its records stay in the journal");
            }
        }
        self.metrics.archive_spool_bytes.set(spool.bytes() as i64);
    }

    /// Puts every sealed outbox file to the store, oldest first; stops at the first failure
    /// (the chain goes up in order).
    pub async fn upload(&self) -> Result<(), String> {
        let ready = self.spool().ready().map_err(|e| e.to_string())?;
        for out in ready {
            let read = self.spool().read_outgoing(&out);
            let (name, bytes) = match read {
                Ok(r) => r,
                Err(e @ SpoolError::Damaged { .. }) => {
                    // It would block every object after it for good; set aside, the chain
                    // shows the hole (verify-archive: MISSING) and the file stays for a look.
                    self.metrics.archive_store_failures.inc();
                    tracing::error!(error = %e, "an archive object in the spool is damaged; it is set aside as .damaged and the objects after it go on");
                    self.spool().set_aside(&out).map_err(|e| e.to_string())?;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            self.store
                .put(&name, &bytes)
                .await
                .map_err(|e| e.to_string())?;
            let mut spool = self.spool();
            spool.done(&out).map_err(|e| e.to_string())?;
            self.metrics.archive_objects_stored.inc();
            self.metrics.archive_spool_bytes.set(spool.bytes() as i64);
        }
        Ok(())
    }
}

/// What a record of the archive says, beside alerts.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record<'a> {
    /// The service started or loaded a rule set: the rules in force from now on.
    Rules {
        /// RFC 3339.
        at: String,
        /// Why: `start` or `reload`.
        reason: &'a str,
        /// The rule set.
        rules: &'a RuleSetId,
        /// trailwatch's version.
        version: &'a str,
    },
    /// A batch the pipeline processed and the source was acknowledged for.
    Batch {
        /// RFC 3339, when processed.
        at: String,
        /// `sqs` or `kafka`.
        source: &'a str,
        /// The queue URL or the topic.
        from: &'a str,
        /// SQS message ids, or Kafka `partition:first-last` offset ranges.
        range: Vec<String>,
        /// Records decoded.
        events: u64,
        /// Messages that did not decode.
        unreadable: u64,
        /// The rule set's hash.
        rules: &'a str,
        /// Events by account, region and hour of event time.
        coverage: Vec<Coverage>,
        /// Alerts this batch raised (each archived as its own record).
        alerts: usize,
    },
    /// The service stopped.
    Stop {
        /// RFC 3339.
        at: String,
    },
}

impl Record<'_> {
    /// The record's JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An alert as archived: the native alert, whatever format the other sinks use.
pub fn alert_record(alert: &Alert) -> Vec<u8> {
    let mut out = b"{\"kind\":\"alert\",\"alert\":".to_vec();
    out.extend(serde_json::to_vec(alert).unwrap_or_default());
    out.push(b'}');
    out
}

/// The identity of a rule set: what an auditor checks the rules in force against.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RuleSetId {
    /// Hex SHA-256 of the rule files and placeholder files, by path.
    pub hash: String,
    /// Detection rules.
    pub rules: usize,
    /// Correlation rules.
    pub correlations: usize,
}

/// Events of one account and region in one hour of event time.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Coverage {
    /// `recipientAccountId`.
    pub account: String,
    /// `awsRegion`.
    pub region: String,
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    /// Events.
    pub events: u64,
}

/// An account, a region and its events by hour.
type HourCounts = (Box<str>, Box<str>, std::collections::BTreeMap<i64, u64>);

/// Events by account, region and hour of event time, counted by a pipeline that was asked to
/// (`Pipeline::count_hours`) and taken batch by batch.
#[derive(Debug, Default)]
pub struct Hours {
    /// Keyed by the account's length, the account and the region (unambiguous whatever the
    /// values hold); hours in Unix seconds / 3600.
    table: crate::keyed::Map<Box<str>, HourCounts>,
    key: String,
}

impl Hours {
    /// Counts one event.
    #[inline]
    pub fn add(&mut self, account: &str, region: &str, t: i64) {
        use std::fmt::Write as _;
        self.key.clear();
        let _ = write!(self.key, "{}:{account}{region}", account.len());
        let hour = t.div_euclid(3600);
        if let Some((_, _, hours)) = self.table.get_mut(self.key.as_str()) {
            *hours.entry(hour).or_default() += 1;
            return;
        }
        let hours = std::collections::BTreeMap::from([(hour, 1)]);
        self.table.insert(
            self.key.as_str().into(),
            (account.into(), region.into(), hours),
        );
    }

    /// The counts since the last call, sorted by account, region and hour.
    pub fn take(&mut self) -> Vec<Coverage> {
        let mut out = Vec::new();
        for (_, (account, region, hours)) in self.table.drain() {
            for (hour, events) in hours {
                out.push(Coverage {
                    account: account.to_string(),
                    region: region.to_string(),
                    hour: hour_of(hour * 3600),
                    events,
                });
            }
        }
        out.sort_by(|a, b| (&a.account, &a.region, &a.hour).cmp(&(&b.account, &b.region, &b.hour)));
        out
    }
}

/// The day after `YYYY-MM-DD`.
fn next_day(day: &str) -> Option<String> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(d.succ_opt()?.format("%Y-%m-%d").to_string())
}

/// `YYYY-MM-DDTHH` of an event time in Unix seconds.
pub fn hour_of(t: i64) -> String {
    crate::window::format_time(t)
        .get(..13)
        .unwrap_or_default()
        .to_string()
}
